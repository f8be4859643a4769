//! IP prefixes (`198.18.0.0/16`, `2001:db8::/32`) with strict parsing: the host
//! bits must be zero, so a typo such as `198.18.1.0/16` is an error rather than
//! a silently different network.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

use serde::{Serialize, Serializer};

/// An IPv4 or IPv6 prefix whose host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// IPv4 network address and length `0..=32`.
    V4(Ipv4Addr, u8),
    /// IPv6 network address and length `0..=128`.
    V6(Ipv6Addr, u8),
}

/// Why a prefix string was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// No `/len` part.
    #[error("expected ADDRESS/LENGTH, e.g. 198.18.0.0/16")]
    NoLength,
    /// The address part does not parse.
    #[error("bad address")]
    BadAddress,
    /// The length is not a number or exceeds 32 (IPv4) / 128 (IPv6).
    #[error("bad prefix length")]
    BadLength,
    /// Bits beyond the length are set.
    #[error("host bits set (the network address of this length differs)")]
    HostBits,
}

impl Prefix {
    /// The prefix length.
    pub const fn len(&self) -> u8 {
        match *self {
            Self::V4(_, l) | Self::V6(_, l) => l,
        }
    }
    /// True for a zero-length prefix (`0.0.0.0/0`, `::/0`), which matches everything.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// True for IPv4.
    pub const fn is_v4(&self) -> bool {
        matches!(self, Self::V4(..))
    }
    /// First and last IPv4 address as integers (None for IPv6).
    pub fn range_v4(&self) -> Option<(u32, u32)> {
        match *self {
            Self::V4(a, l) => {
                let lo = u32::from(a);
                let host = u32::MAX.checked_shr(u32::from(l)).unwrap_or(0);
                Some((lo, lo | host))
            }
            Self::V6(..) => None,
        }
    }
    /// First and last IPv6 address as integers (None for IPv4).
    pub fn range_v6(&self) -> Option<(u128, u128)> {
        match *self {
            Self::V6(a, l) => {
                let lo = u128::from(a);
                let host = u128::MAX.checked_shr(u32::from(l)).unwrap_or(0);
                Some((lo, lo | host))
            }
            Self::V4(..) => None,
        }
    }
    /// True when `addr` lies in this prefix.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self, addr) {
            (Self::V4(..), IpAddr::V4(a)) => self
                .range_v4()
                .is_some_and(|(lo, hi)| (lo..=hi).contains(&u32::from(a))),
            (Self::V6(..), IpAddr::V6(a)) => self
                .range_v6()
                .is_some_and(|(lo, hi)| (lo..=hi).contains(&u128::from(a))),
            _ => false,
        }
    }
    /// True when every address of `other` lies in `self`.
    pub fn covers(&self, other: &Prefix) -> bool {
        match (
            self.range_v4(),
            other.range_v4(),
            self.range_v6(),
            other.range_v6(),
        ) {
            (Some((a, b)), Some((c, d)), _, _) => a <= c && d <= b,
            (_, _, Some((a, b)), Some((c, d))) => a <= c && d <= b,
            _ => false,
        }
    }
    /// True when the two prefixes share at least one address (for prefixes:
    /// one covers the other).
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.covers(other) || other.covers(self)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, PrefixError> {
        let (addr, len) = s.trim().split_once('/').ok_or(PrefixError::NoLength)?;
        let addr: IpAddr = addr.parse().map_err(|_| PrefixError::BadAddress)?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PrefixError::BadLength);
        }
        let len: u8 = len.parse().map_err(|_| PrefixError::BadLength)?;
        let p = match addr {
            IpAddr::V4(a) if len <= 32 => Self::V4(a, len),
            IpAddr::V6(a) if len <= 128 => Self::V6(a, len),
            _ => return Err(PrefixError::BadLength),
        };
        let host_clear = match (p.range_v4(), p.range_v6()) {
            (Some((lo, _)), _) => lo & u32::MAX.checked_shr(u32::from(len)).unwrap_or(0) == 0,
            (_, Some((lo, _))) => lo & u128::MAX.checked_shr(u32::from(len)).unwrap_or(0) == 0,
            _ => true,
        };
        if host_clear {
            Ok(p)
        } else {
            Err(PrefixError::HostBits)
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(a, l) => write!(f, "{a}/{l}"),
            Self::V6(a, l) => write!(f, "{a}/{l}"),
        }
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_host_bits() {
        let p: Prefix = "198.18.0.0/15".parse().unwrap();
        assert_eq!(p.range_v4(), Some((0xC612_0000, 0xC613_FFFF)));
        assert_eq!(
            "198.18.1.0/16".parse::<Prefix>(),
            Err(PrefixError::HostBits)
        );
        assert_eq!(
            "198.18.0.0/33".parse::<Prefix>(),
            Err(PrefixError::BadLength)
        );
        assert_eq!("198.18.0.0".parse::<Prefix>(), Err(PrefixError::NoLength));
        assert_eq!("x/8".parse::<Prefix>(), Err(PrefixError::BadAddress));
        assert_eq!("10.0.0.0/+8".parse::<Prefix>(), Err(PrefixError::BadLength));
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.range_v4(), Some((0, u32::MAX)));
        let v6: Prefix = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("198.18.0.1".parse().unwrap()));
        assert_eq!(
            "2001:db8::1/32".parse::<Prefix>(),
            Err(PrefixError::HostBits)
        );
        assert_eq!(v6.to_string(), "2001:db8::/32");
    }

    #[test]
    fn covers_and_overlaps() {
        let a: Prefix = "198.18.0.0/16".parse().unwrap();
        let b: Prefix = "198.18.4.0/24".parse().unwrap();
        let c: Prefix = "198.19.0.0/16".parse().unwrap();
        assert!(a.covers(&b) && !b.covers(&a));
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        let v6: Prefix = "::/0".parse().unwrap();
        assert!(!v6.overlaps(&a));
    }
}
