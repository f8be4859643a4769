//! The address plan: MACs, interface names and prefixes, all pure.
//!
//! Everything lives in the RFC 5180 / RFC 2544 benchmarking ranges:
//! IPv4 `198.18.0.0/15`, IPv6 `2001:2::/48`. See `docs/testbed.md`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::{Error, Result};

/// Longest interface name Linux accepts (`IFNAMSIZ - 1`).
pub const IFNAME_MAX: usize = 15;

/// Checks that `name` is a usable Linux interface name.
pub fn check_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "interface name {name:?}: need 1..={IFNAME_MAX} chars of [A-Za-z0-9._-]"
        )))
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Second octet of every MAC this testbed derives (`'m'`), so testbed
    /// MACs are recognisable in captures.
    pub const TAG: u8 = 0x6d;

    /// Deterministic locally administered unicast MAC derived from an IPv4
    /// address: `02:6d:a:b:c:d`. Unique within a topology because its
    /// addresses are.
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        let [a, b, c, d] = ip.octets();
        Self([0x02, Self::TAG, a, b, c, d])
    }

    /// Deterministic locally administered unicast MAC for an end without an
    /// IPv4 address: `02:6e:hi(a):lo(a):hi(b):lo(b)`.
    pub fn from_ids(a: u16, b: u16) -> Self {
        let [a1, a0] = a.to_be_bytes();
        let [b1, b0] = b.to_be_bytes();
        Self([0x02, Self::TAG + 1, a1, a0, b1, b0])
    }

    /// True for a locally administered unicast address.
    pub fn is_local_unicast(&self) -> bool {
        self.0[0] & 0x03 == 0x02
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// An IPv4 interface address with its prefix length (`198.18.0.1/24`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct V4 {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub len: u8,
}

impl V4 {
    /// Builds `addr/len`.
    pub const fn new(addr: Ipv4Addr, len: u8) -> Self {
        Self { addr, len }
    }

    /// The network this address belongs to, as `network/len`.
    pub fn network(&self) -> V4 {
        let len = u32::from(self.len.min(32));
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        V4 {
            addr: Ipv4Addr::from(u32::from(self.addr) & mask),
            len: self.len.min(32),
        }
    }
}

impl fmt::Display for V4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// An IPv6 interface address with its prefix length (`2001:2::1/64`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct V6 {
    /// The address.
    pub addr: Ipv6Addr,
    /// Prefix length, 0..=128.
    pub len: u8,
}

impl V6 {
    /// Builds `addr/len`.
    pub const fn new(addr: Ipv6Addr, len: u8) -> Self {
        Self { addr, len }
    }

    /// The network this address belongs to, as `network/len`.
    pub fn network(&self) -> V6 {
        let len = u32::from(self.len.min(128));
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        V6 {
            addr: Ipv6Addr::from(u128::from(self.addr) & mask),
            len: self.len.min(128),
        }
    }
}

impl fmt::Display for V6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Most sites the [`site_lan_v4`] plan can number: 16 in `198.18/16`, 8 in
/// the lower half of `198.19/16` (the upper half is for WAN links).
pub const MAX_SITES: usize = 24;
/// Most WAN links the [`wan_link_v4`] plan can number.
pub const MAX_WAN_LINKS: usize = 128;

/// LAN prefix of site `i`: `198.18.(16*i).0/24` for `i < 16`, then
/// `198.19.(16*(i-16)).0/24`. Each site owns the whole `/20` around it.
pub fn site_lan_v4(i: usize) -> Result<V4> {
    if i >= MAX_SITES {
        return Err(Error::Invalid(format!("site index {i} >= {MAX_SITES}")));
    }
    let second = if i < 16 { 18 } else { 19 };
    let third = u8::try_from((i % 16) * 16).map_err(|_| Error::Invalid("site index".into()))?;
    Ok(V4::new(Ipv4Addr::new(198, second, third, 0), 24))
}

/// Host address `host` inside site `i`'s LAN.
pub fn site_lan_host_v4(i: usize, host: u8) -> Result<V4> {
    let net = site_lan_v4(i)?;
    let [a, b, c, _] = net.addr.octets();
    Ok(V4::new(Ipv4Addr::new(a, b, c, host), 24))
}

/// LAN IPv6 prefix of site `i`: `2001:2:0:i::/64`.
pub fn site_lan_v6_host(i: usize, host: u16) -> Result<V6> {
    let i = u16::try_from(i)
        .ok()
        .filter(|&i| usize::from(i) < MAX_SITES);
    let i = i.ok_or_else(|| Error::Invalid("site index out of range".into()))?;
    Ok(V6::new(Ipv6Addr::new(0x2001, 2, 0, i, 0, 0, 0, host), 64))
}

/// Addresses of the two ends of WAN link `k`: `198.19.(128+k).1/24` (end
/// `a`) and `.2/24` (end `b`). The upper half of `198.19.0.0/16` keeps the
/// WAN plan clear of site LANs (which use at most `198.19.0.0/17`).
pub fn wan_link_v4(k: usize) -> Result<(V4, V4)> {
    if k >= MAX_WAN_LINKS {
        return Err(Error::Invalid(format!(
            "WAN link index {k} >= {MAX_WAN_LINKS}"
        )));
    }
    let third = u8::try_from(128 + k).map_err(|_| Error::Invalid("link index".into()))?;
    Ok((
        V4::new(Ipv4Addr::new(198, 19, third, 1), 24),
        V4::new(Ipv4Addr::new(198, 19, third, 2), 24),
    ))
}

/// IPv6 addresses of WAN link `k`: `2001:2:0:(0x100+k)::1/64` and `::2/64`.
pub fn wan_link_v6(k: usize) -> Result<(V6, V6)> {
    let k = u16::try_from(k)
        .ok()
        .filter(|&k| usize::from(k) < MAX_WAN_LINKS);
    let k = k.ok_or_else(|| Error::Invalid("WAN link index out of range".into()))?;
    let net = 0x100 + k;
    Ok((
        V6::new(Ipv6Addr::new(0x2001, 2, 0, net, 0, 0, 0, 1), 64),
        V6::new(Ipv6Addr::new(0x2001, 2, 0, net, 0, 0, 0, 2), 64),
    ))
}

/// Checks that an address lies in the benchmarking ranges this crate may use.
pub fn in_benchmark_range_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 198 && (b == 18 || b == 19)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_limits() {
        assert!(check_ifname("wan0").is_ok());
        assert!(check_ifname("abcdefghijklmno").is_ok());
        assert!(check_ifname("abcdefghijklmnop").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a b").is_err());
        assert!(check_ifname("a/b").is_err());
    }

    #[test]
    fn macs_are_local_unicast_and_distinct() {
        let a = Mac::from_ipv4(Ipv4Addr::new(198, 18, 0, 1));
        let b = Mac::from_ipv4(Ipv4Addr::new(198, 18, 0, 2));
        assert_ne!(a, b);
        assert!(a.is_local_unicast() && Mac::from_ids(1, 2).is_local_unicast());
        assert_eq!(a.to_string(), "02:6d:c6:12:00:01");
        assert_ne!(Mac::from_ids(0, 1), Mac::from_ids(1, 0));
    }

    #[test]
    fn site_plan_is_disjoint_and_in_range() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..MAX_SITES {
            let n = site_lan_v4(i).unwrap();
            assert!(in_benchmark_range_v4(n.addr));
            assert!(seen.insert(n.addr), "site {i} reuses {n}");
            assert_eq!(n.network(), n);
        }
        assert!(site_lan_v4(MAX_SITES).is_err());
        assert_eq!(site_lan_v4(1).unwrap().to_string(), "198.18.16.0/24");
        for k in 0..MAX_WAN_LINKS {
            let (a, b) = wan_link_v4(k).unwrap();
            assert!(in_benchmark_range_v4(a.addr) && in_benchmark_range_v4(b.addr));
            assert_eq!(a.network(), b.network());
            assert!(seen.insert(a.network().addr), "link {k} overlaps");
        }
        assert!(wan_link_v4(MAX_WAN_LINKS).is_err());
        assert!(wan_link_v6(MAX_WAN_LINKS).is_err());
        assert!(site_lan_v6_host(MAX_SITES, 1).is_err());
    }

    #[test]
    fn network_masks() {
        let v = V4::new(Ipv4Addr::new(198, 18, 3, 7), 16);
        assert_eq!(v.network().to_string(), "198.18.0.0/16");
        let w = V6::new("2001:2::5".parse().unwrap(), 48);
        assert_eq!(w.network().to_string(), "2001:2::/48");
        assert_eq!(
            V4::new(Ipv4Addr::new(1, 2, 3, 4), 0).network().to_string(),
            "0.0.0.0/0"
        );
    }
}
