//! Extracting the inner 5-tuple, DSCP and TCP flags from a LAN-side
//! Ethernet frame, through the [`crate::wire`] views (no hand parsing beyond
//! the port words of SCTP, which has no view yet).

use crate::wire::ipv4::protocol;
use crate::wire::{self, Error, ethernet, get_u16, ipv4, ipv6, tcp, udp};

/// IP protocol number of SCTP.
pub const SCTP: u8 = 132;
const SCTP_COMMON_HEADER: usize = 12;

/// An inner 5-tuple. IPv4 addresses are stored in the low 32 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FiveTuple {
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// Source port (0 when the protocol has none, and for IPv4 fragments).
    pub sport: u16,
    /// Destination port (same rule).
    pub dport: u16,
    /// IP protocol (IPv6: the first next header; extension headers are not walked).
    pub proto: u8,
    /// IPv6 rather than IPv4.
    pub v6: bool,
}

impl FiveTuple {
    /// The other direction's tuple.
    #[inline]
    pub fn reversed(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            ..*self
        }
    }
}

/// What the classifier looks at in a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Inner {
    /// The 5-tuple.
    pub tuple: FiveTuple,
    /// DSCP, 0..=63.
    pub dscp: u8,
    /// TCP control flags ([`tcp::flags`]); 0 for other protocols and for
    /// IPv4 fragments.
    pub tcp_flags: u8,
}

impl Inner {
    /// A TCP segment with RST.
    #[inline]
    pub fn rst(&self) -> bool {
        self.tuple.proto == protocol::TCP && self.tcp_flags & tcp::flags::RST != 0
    }
    /// A TCP segment with FIN.
    #[inline]
    pub fn fin(&self) -> bool {
        self.tuple.proto == protocol::TCP && self.tcp_flags & tcp::flags::FIN != 0
    }
    /// A TCP connection's first segment: SYN without ACK.
    #[inline]
    pub fn syn(&self) -> bool {
        self.tuple.proto == protocol::TCP
            && self.tcp_flags & (tcp::flags::SYN | tcp::flags::ACK) == tcp::flags::SYN
    }
}

/// Source port, destination port and TCP flags of a transport header.
fn ports(proto: u8, l4: &[u8]) -> wire::Result<(u16, u16, u8)> {
    match proto {
        protocol::UDP => {
            let u = udp::Packet::new_checked(l4)?;
            Ok((u.src_port(), u.dst_port(), 0))
        }
        protocol::TCP => {
            let t = tcp::Packet::new_checked(l4)?;
            Ok((t.src_port(), t.dst_port(), t.flags()))
        }
        SCTP => {
            if l4.len() < SCTP_COMMON_HEADER {
                return Err(Error::Truncated);
            }
            Ok((get_u16(l4, 0), get_u16(l4, 2), 0))
        }
        _ => Ok((0, 0, 0)),
    }
}

/// Parses an Ethernet frame (optionally 802.1Q tagged) carrying IPv4 or IPv6.
/// IPv4 fragments (all of them, first included) get ports 0 so that every
/// fragment of a datagram maps to the same session.
pub fn parse(frame: &[u8]) -> wire::Result<Inner> {
    let eth = ethernet::Frame::new_checked(frame)?;
    match eth.ethertype() {
        ethernet::ethertype::IPV4 => {
            let ip = ipv4::Packet::new_checked(eth.payload())?;
            let proto = ip.protocol();
            let (sport, dport, tcp_flags) = if ip.is_fragment() {
                (0, 0, 0)
            } else {
                ports(proto, ip.payload())?
            };
            let tuple = FiveTuple {
                src: u128::from(u32::from(ip.src())),
                dst: u128::from(u32::from(ip.dst())),
                sport,
                dport,
                proto,
                v6: false,
            };
            Ok(Inner {
                tuple,
                dscp: ip.dscp(),
                tcp_flags,
            })
        }
        ethernet::ethertype::IPV6 => {
            let ip = ipv6::Packet::new_checked(eth.payload())?;
            let proto = ip.next_header();
            let (sport, dport, tcp_flags) = ports(proto, ip.payload())?;
            let tuple = FiveTuple {
                src: u128::from(ip.src()),
                dst: u128::from(ip.dst()),
                sport,
                dport,
                proto,
                v6: true,
            };
            Ok(Inner {
                tuple,
                dscp: ip.traffic_class() >> 2,
                tcp_flags,
            })
        }
        _ => Err(Error::Unsupported),
    }
}
