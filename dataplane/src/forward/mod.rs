//! Plain forwarding stages, the engine's baseline pipeline:
//! [`L3Forward`] routes IP frames from one port to another (next-hop MAC
//! rewrite, TTL / hop-limit decrement with incremental checksum update), as
//! a router's fast path does; [`UdpRelay`] relays datagrams of an io_uring
//! port to a fixed destination.

use crate::engine::{Arena, Batch, DropReason, Nanos, Stage, Verdict};

/// Ports a stage can route between.
pub const MAX_RULES: usize = 4;

/// Where packets arriving on one port go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardRule {
    /// Output port index.
    pub out_port: u16,
    /// Source MAC written on output (the output interface's).
    pub src_mac: [u8; 6],
    /// Destination MAC written on output (the next hop's).
    pub dst_mac: [u8; 6],
}

/// Per-stage counters (the worker counts drops by reason itself).
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardStats {
    /// Packets forwarded.
    pub forwarded: u64,
}

/// IP forwarding between ports with static next hops.
#[derive(Clone, Debug)]
pub struct L3Forward {
    rules: [Option<ForwardRule>; MAX_RULES],
    /// Largest IP packet (the L3 MTU) accepted.
    mtu: u32,
    stats: ForwardStats,
}

/// What happened to one frame.
#[inline]
fn route_ip(buf: &mut [u8], mtu: u32) -> Result<(), DropReason> {
    if buf.len() < 14 {
        return Err(DropReason::Runt);
    }
    let ip_len = u32::try_from(buf.len() - 14).unwrap_or(u32::MAX);
    if ip_len > mtu {
        return Err(DropReason::Oversized);
    }
    match [buf[12], buf[13]] {
        [0x08, 0x00] => {
            if buf.len() < 34 {
                return Err(DropReason::Runt);
            }
            let ihl = usize::from(buf[14] & 0x0f) * 4;
            if buf[14] >> 4 != 4 || ihl < 20 {
                return Err(DropReason::Unsupported);
            }
            let total = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
            if total < ihl || 14 + total > buf.len() || 14 + ihl > buf.len() {
                return Err(DropReason::Truncated);
            }
            let ttl = buf[22];
            if ttl <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            let old = u16::from_be_bytes([buf[22], buf[23]]);
            buf[22] = ttl - 1;
            let new = u16::from_be_bytes([buf[22], buf[23]]);
            let c =
                crate::wire::checksum::update16(u16::from_be_bytes([buf[24], buf[25]]), old, new);
            buf[24..26].copy_from_slice(&c.to_be_bytes());
            Ok(())
        }
        [0x86, 0xdd] => {
            if buf.len() < 54 {
                return Err(DropReason::Runt);
            }
            if buf[14] >> 4 != 6 {
                return Err(DropReason::Unsupported);
            }
            let payload = usize::from(u16::from_be_bytes([buf[18], buf[19]]));
            if 54 + payload > buf.len() {
                return Err(DropReason::Truncated);
            }
            if buf[21] <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            buf[21] -= 1;
            Ok(())
        }
        _ => Err(DropReason::Unsupported),
    }
}

impl L3Forward {
    /// No rules yet; `mtu` is the largest IP packet accepted.
    pub fn new(mtu: u32) -> Self {
        Self {
            rules: [None; MAX_RULES],
            mtu,
            stats: ForwardStats::default(),
        }
    }
    /// Routes packets arriving on `in_port` by `rule`.
    pub fn with_rule(mut self, in_port: u16, rule: ForwardRule) -> Self {
        if let Some(r) = self.rules.get_mut(usize::from(in_port)) {
            *r = Some(rule);
        }
        self
    }
    /// Counters.
    pub fn stats(&self) -> ForwardStats {
        self.stats
    }
}

impl Stage for L3Forward {
    #[inline]
    fn process(&mut self, _now: Nanos, arena: &mut Arena, batch: &mut Batch) {
        for p in batch.as_mut_slice() {
            let Some(rule) = self.rules.get(usize::from(p.port)).copied().flatten() else {
                p.verdict = Verdict::Drop(DropReason::NoRoute);
                continue;
            };
            let Some(buf) = arena.packet_mut(p) else {
                p.verdict = Verdict::Drop(DropReason::Oversized);
                continue;
            };
            match route_ip(buf, self.mtu) {
                Ok(()) => {
                    buf[0..6].copy_from_slice(&rule.dst_mac);
                    buf[6..12].copy_from_slice(&rule.src_mac);
                    p.verdict = Verdict::Tx(rule.out_port);
                    self.stats.forwarded += 1;
                }
                Err(r) => p.verdict = Verdict::Drop(r),
            }
        }
    }
}

/// Drops every packet (counted as `other`): the rx-drop benchmark, which
/// measures the engine's raw receive limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct DropAll;

impl Stage for DropAll {
    #[inline]
    fn process(&mut self, _now: Nanos, _arena: &mut Arena, batch: &mut Batch) {
        for p in batch.as_mut_slice() {
            p.verdict = Verdict::Drop(DropReason::Other);
        }
    }
}

/// Relays every datagram arriving on an io_uring UDP port to one destination
/// (IPv4), rewriting the synthetic outer header's destination address and port.
#[derive(Clone, Debug)]
pub struct UdpRelay {
    out_port: u16,
    dst: std::net::SocketAddrV4,
    relayed: u64,
}

impl UdpRelay {
    /// Relays to `dst` out of port `out_port`.
    pub fn new(out_port: u16, dst: std::net::SocketAddrV4) -> Self {
        Self {
            out_port,
            dst,
            relayed: 0,
        }
    }
    /// Datagrams relayed.
    pub fn relayed(&self) -> u64 {
        self.relayed
    }
}

impl Stage for UdpRelay {
    #[inline]
    fn process(&mut self, _now: Nanos, arena: &mut Arena, batch: &mut Batch) {
        for p in batch.as_mut_slice() {
            let Some(buf) = arena.packet_mut(p) else {
                p.verdict = Verdict::Drop(DropReason::Oversized);
                continue;
            };
            if buf.len() < 42 || buf[12..14] != [0x08, 0x00] {
                p.verdict = Verdict::Drop(DropReason::Unsupported);
                continue;
            }
            let ihl = usize::from(buf[14] & 0x0f) * 4;
            if ihl < 20 || 14 + ihl + 8 > buf.len() {
                p.verdict = Verdict::Drop(DropReason::Truncated);
                continue;
            }
            buf[30..34].copy_from_slice(&self.dst.ip().octets());
            buf[14 + ihl + 2..14 + ihl + 4].copy_from_slice(&self.dst.port().to_be_bytes());
            p.verdict = Verdict::Tx(self.out_port);
            self.relayed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full_csum(h: &[u8]) -> u16 {
        !crate::wire::checksum::data(h)
    }

    fn v4_frame(ttl: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12] = 0x08;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&28u16.to_be_bytes());
        f[22] = ttl;
        f[23] = 17;
        f[26..30].copy_from_slice(&[198, 18, 0, 1]);
        f[30..34].copy_from_slice(&[198, 19, 0, 1]);
        let c = full_csum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        for ttl in [2u8, 64, 128, 255] {
            let mut f = v4_frame(ttl);
            route_ip(&mut f, 1500).unwrap();
            assert_eq!(f[22], ttl - 1);
            assert_eq!(
                full_csum(&f[14..34]),
                0,
                "checksum must verify after decrement (ttl {ttl})"
            );
        }
    }

    #[test]
    fn drops_with_reasons() {
        assert_eq!(route_ip(&mut [0u8; 10], 1500), Err(DropReason::Runt));
        assert_eq!(
            route_ip(&mut v4_frame(1), 1500),
            Err(DropReason::TtlExceeded)
        );
        let mut f = v4_frame(64);
        f[16..18].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(route_ip(&mut f, 1500), Err(DropReason::Truncated));
        assert_eq!(
            route_ip(&mut vec![0u8; 1600], 1500),
            Err(DropReason::Oversized)
        );
        let mut arp = vec![0u8; 60];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(route_ip(&mut arp, 1500), Err(DropReason::Unsupported));
    }

    proptest! {
        #[test]
        fn never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = route_ip(&mut bytes, 1500);
        }
        #[test]
        fn incremental_equals_full(ttl in 2u8..=255, id in any::<u16>(), src in any::<[u8; 4]>()) {
            let mut f = v4_frame(ttl);
            f[18..20].copy_from_slice(&id.to_be_bytes());
            f[26..30].copy_from_slice(&src);
            f[24..26].copy_from_slice(&[0, 0]);
            let c = full_csum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            route_ip(&mut f, 1500).unwrap();
            prop_assert_eq!(full_csum(&f[14..34]), 0);
        }
    }
}
