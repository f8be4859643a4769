//! The bench's test frames: Ethernet / IPv4 / UDP with a 16-byte payload
//! header (timestamp, sequence, flow, magic), padded to the frame size. A
//! 64-byte frame (60 bytes + 4 bytes of FCS the NIC would add) is the
//! smallest that holds it.

use std::net::Ipv4Addr;

/// UDP port of bench traffic.
pub const BENCH_PORT: u16 = 7777;
/// The DUT's address on the generator side (io_uring relay listens there).
pub const BENCH_PORT_ADDR_DUT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Magic in every bench payload.
pub const MAGIC: u16 = 0x4d47;
/// Offset of the payload header in a frame (14 + 20 + 8).
pub const PAYLOAD_OFF: usize = 42;
/// Smallest frame size (incl. 4-byte FCS) the bench generates.
pub const MIN_FRAME: u32 = 64;
/// Largest frame size (incl. FCS) for a 1500-byte MTU.
pub const MAX_FRAME: u32 = 1518;

/// What the sink reads back from a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Send time (CLOCK_MONOTONIC ns).
    pub ts_ns: u64,
    /// Sequence number within the flow.
    pub seq: u32,
    /// Flow id.
    pub flow: u16,
}

/// Writes `s` into `frame`'s payload header. Returns false if `frame` is too short.
#[inline]
pub fn stamp(frame: &mut [u8], s: Stamp) -> bool {
    let Some(p) = frame.get_mut(PAYLOAD_OFF..PAYLOAD_OFF + 16) else {
        return false;
    };
    p[0..8].copy_from_slice(&s.ts_ns.to_le_bytes());
    p[8..12].copy_from_slice(&s.seq.to_le_bytes());
    p[12..14].copy_from_slice(&s.flow.to_le_bytes());
    p[14..16].copy_from_slice(&MAGIC.to_le_bytes());
    true
}

/// UDP port of GENEVE (the mongate overlay).
pub const GENEVE_PORT: u16 = 6081;
/// UDP port of VXLAN (the kernel-gateway baseline).
pub const VXLAN_PORT: u16 = 4789;

/// Reads a bench payload header from an Ethernet/IPv4/UDP frame (any IHL), or
/// `None` for anything else (never panics). A frame tunnelled in GENEVE (UDP
/// 6081, inner Ethernet or IPv4) or VXLAN (UDP 4789) is read through one
/// level of encapsulation, so a sink behind a gateway counts the inner bench
/// packets.
#[inline]
pub fn read_stamp(frame: &[u8]) -> Option<Stamp> {
    stamp_in_eth(frame, true)
}

fn stamp_in_eth(frame: &[u8], decap: bool) -> Option<Stamp> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    stamp_in_ipv4(frame.get(14..)?, decap)
}

fn stamp_in_ipv4(ip: &[u8], decap: bool) -> Option<Stamp> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ihl < 20 || *ip.get(9)? != 17 {
        return None;
    }
    let udp = ip.get(ihl..)?;
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    if decap && dport == GENEVE_PORT {
        let g = udp.get(8..)?;
        let opt_len = usize::from(g.first()? & 0x3f) * 4;
        let proto = u16::from_be_bytes([*g.get(2)?, *g.get(3)?]);
        let inner = g.get(8 + opt_len..)?;
        return match proto {
            0x6558 => stamp_in_eth(inner, false),
            0x0800 => stamp_in_ipv4(inner, false),
            _ => None,
        };
    }
    if decap && dport == VXLAN_PORT {
        return stamp_in_eth(udp.get(16..)?, false);
    }
    let p = udp.get(8..8 + 16)?;
    let u16le = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
    if u16le(&p[14..16]) != MAGIC {
        return None;
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&p[0..8]);
    let mut seq = [0u8; 4];
    seq.copy_from_slice(&p[8..12]);
    Some(Stamp {
        ts_ns: u64::from_le_bytes(ts),
        seq: u32::from_le_bytes(seq),
        flow: u16le(&p[12..14]),
    })
}

/// UDP port of the WireGuard baseline (boringtun).
pub const WIREGUARD_PORT: u16 = 51820;
/// GENEVE protocol type of mongate's sealed data (0x88B6; the plaintext
/// is the inner Ethernet frame).
const PROTO_SEALED: u16 = mongate_dataplane::wire::overlay::SEALED_PROTOCOL;
/// mongate's GENEVE option class and the security option's type and data length.
const SEC_CLASS: u16 = 0xFFF0;
const SEC_TYPE: u8 = 0x82;
const SEC_DATA_LEN: usize = 12;
/// AEAD tag length (AES-256-GCM for ours, ChaCha20-Poly1305 for WireGuard).
const TAG_LEN: usize = 16;
/// WireGuard transport-data header (type, reserved, receiver, counter) + tag.
const WG_DATA_OVERHEAD: usize = 16 + TAG_LEN;

/// What the sink counts. Encrypted tunnels hide the bench stamp, so for them
/// the sink counts the packets that carry the DUT's encapsulation of one
/// generated frame (no latency, no reordering: those need the stamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkMatch {
    /// Frames whose bench stamp [`read_stamp`] reads (plain or through one
    /// GENEVE/VXLAN level).
    Stamp,
    /// GENEVE data packets (UDP 6081, O bit clear, protocol 0x88B6: sealed
    /// data) with mongate's security option (class 0xFFF0, type 0x82, 12
    /// bytes of data) whose sealed payload is the inner Ethernet frame plus
    /// the 16-byte tag: `frame_len + 16` bytes.
    GeneveSealed {
        /// Generated frame length (without FCS).
        frame_len: u32,
    },
    /// WireGuard transport-data messages (UDP `port`, type 4, reserved
    /// bytes zero) carrying one IP packet of `ip_len` bytes: 32 bytes of
    /// header and tag plus `ip_len`, padded to 16 or not (boringtun does not
    /// pad).
    WireGuardData {
        /// UDP destination port.
        port: u16,
        /// Inner IP packet length.
        ip_len: u32,
    },
}

impl SinkMatch {
    /// True when `frame` is what this match counts (never panics).
    #[inline]
    pub fn sealed(&self, frame: &[u8]) -> bool {
        match *self {
            SinkMatch::Stamp => read_stamp(frame).is_some(),
            SinkMatch::GeneveSealed { frame_len } => geneve_sealed(frame, frame_len),
            SinkMatch::WireGuardData { port, ip_len } => wireguard_data(frame, port, ip_len),
        }
    }
}

/// The UDP payload of an Ethernet/IPv4/UDP frame to `port`, bounded by the
/// UDP length field.
fn udp_payload_to(frame: &[u8], port: u16) -> Option<&[u8]> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ihl < 20 || *ip.get(9)? != 17 {
        return None;
    }
    let udp = ip.get(ihl..)?;
    if u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]) != port {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    udp.get(8..len.max(8))
}

fn geneve_sealed(frame: &[u8], frame_len: u32) -> bool {
    (|| {
        let g = udp_payload_to(frame, GENEVE_PORT)?;
        let (b0, b1) = (*g.first()?, *g.get(1)?);
        // Version 0, O bit (control message) clear.
        if b0 >> 6 != 0 || b1 & 0x80 != 0 {
            return None;
        }
        let opt_len = usize::from(b0 & 0x3f) * 4;
        let mut opts = g.get(8..8 + opt_len)?;
        let mut secured = false;
        while !opts.is_empty() {
            let class = u16::from_be_bytes([*opts.first()?, *opts.get(1)?]);
            let data = usize::from(opts.get(3)? & 0x1f) * 4;
            if class == SEC_CLASS && *opts.get(2)? == SEC_TYPE && data == SEC_DATA_LEN {
                secured = true;
            }
            opts = opts.get(4 + data..)?;
        }
        let inner = usize::try_from(frame_len).ok()?;
        let sealed_data = u16::from_be_bytes([*g.get(2)?, *g.get(3)?]) == PROTO_SEALED;
        Some(sealed_data && secured && g.len() - 8 - opt_len == inner + TAG_LEN)
    })()
    .unwrap_or(false)
}

fn wireguard_data(frame: &[u8], port: u16, ip_len: u32) -> bool {
    (|| {
        let p = udp_payload_to(frame, port)?;
        let ip_len = usize::try_from(ip_len).ok()?;
        let len_ok = p.len() == ip_len + WG_DATA_OVERHEAD
            || p.len() == ip_len.div_ceil(16) * 16 + WG_DATA_OVERHEAD;
        Some(len_ok && p.get(0..4)? == [4, 0, 0, 0])
    })()
    .unwrap_or(false)
}

/// Addresses of one generated flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowAddrs {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC (the next hop).
    pub dst_mac: [u8; 6],
    /// Source IPv4.
    pub src_ip: Ipv4Addr,
    /// Destination IPv4.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
}

fn ip_checksum(h: &[u8]) -> u16 {
    !mongate_dataplane::wire::checksum::data(h)
}

/// Builds a whole frame of `size` bytes incl. FCS (so `size - 4` bytes are
/// written) for flow `a`, with a zeroed stamp. `size` is clamped to
/// `MIN_FRAME..=MAX_FRAME`.
pub fn build_frame(a: &FlowAddrs, size: u32) -> Vec<u8> {
    let len = usize::try_from(size.clamp(MIN_FRAME, MAX_FRAME) - 4).unwrap_or(60);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&a.dst_mac);
    f[6..12].copy_from_slice(&a.src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = u16::try_from(len - 14).unwrap_or(u16::MAX);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[20] = 0x40; // DF
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&a.src_ip.octets());
    f[30..34].copy_from_slice(&a.dst_ip.octets());
    let c = ip_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&a.src_port.to_be_bytes());
    f[36..38].copy_from_slice(&a.dst_port.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    // UDP checksum 0: allowed over IPv4, and the payload changes per packet.
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addrs() -> FlowAddrs {
        FlowAddrs {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::new(198, 19, 0, 1),
            src_port: 10000,
            dst_port: BENCH_PORT,
        }
    }

    #[test]
    fn build_stamp_read() {
        for size in [64u32, 512, 1518] {
            let mut f = build_frame(&addrs(), size);
            assert_eq!(f.len(), usize::try_from(size - 4).unwrap());
            assert_eq!(ip_checksum(&f[14..34]), 0);
            let s = Stamp {
                ts_ns: 123_456_789,
                seq: 42,
                flow: 7,
            };
            assert!(stamp(&mut f, s));
            assert_eq!(read_stamp(&f), Some(s));
        }
        assert!(!stamp(
            &mut [0u8; 50],
            Stamp {
                ts_ns: 0,
                seq: 0,
                flow: 0
            }
        ));
    }

    #[test]
    fn reads_through_geneve_and_vxlan() {
        let s = Stamp {
            ts_ns: 5,
            seq: 6,
            flow: 7,
        };
        let mut inner = build_frame(&addrs(), 64);
        assert!(stamp(&mut inner, s));
        // Outer Ethernet/IPv4/UDP to `port`, then `tun` (tunnel header).
        let wrap = |port: u16, tun: &[u8], body: &[u8]| udp_frame(port, &[tun, body].concat());
        // GENEVE, 4 bytes of options, inner Ethernet.
        let g = [1u8, 0, 0x65, 0x58, 0, 0, 42, 0, 0xff, 0xf0, 1, 0];
        assert_eq!(read_stamp(&wrap(GENEVE_PORT, &g, &inner)), Some(s));
        // GENEVE, inner IPv4.
        let g4 = [0u8, 0, 0x08, 0x00, 0, 0, 42, 0];
        assert_eq!(read_stamp(&wrap(GENEVE_PORT, &g4, &inner[14..])), Some(s));
        // VXLAN.
        let v = [8u8, 0, 0, 0, 0, 0, 42, 0];
        assert_eq!(read_stamp(&wrap(VXLAN_PORT, &v, &inner)), Some(s));
        // Only one level of encapsulation; unknown GENEVE protocol: none.
        let twice = wrap(VXLAN_PORT, &v, &wrap(VXLAN_PORT, &v, &inner));
        assert_eq!(read_stamp(&twice), None);
        let gx = [0u8, 0, 0x88, 0xb5, 0, 0, 42, 0];
        assert_eq!(read_stamp(&wrap(GENEVE_PORT, &gx, &inner)), None);
    }

    /// Outer Ethernet/IPv4/UDP to `port` around `body`, the UDP length set.
    fn udp_frame(port: u16, body: &[u8]) -> Vec<u8> {
        let mut o = build_frame(
            &FlowAddrs {
                dst_port: port,
                ..addrs()
            },
            64,
        );
        o.truncate(42);
        o.extend_from_slice(body);
        let udp_len = u16::try_from(8 + body.len()).unwrap();
        o[38..40].copy_from_slice(&udp_len.to_be_bytes());
        o
    }

    /// GENEVE with a flow option (24 B) and, if `sec`, the security option
    /// (16 B) before `payload`.
    fn geneve(proto: u16, oam: bool, sec: bool, payload_len: usize) -> Vec<u8> {
        let opt_words = (24 + if sec { 16 } else { 0 }) / 4;
        let mut g = vec![opt_words, if oam { 0x80 } else { 0 }];
        g.extend_from_slice(&proto.to_be_bytes());
        g.extend_from_slice(&[0, 0, 42, 0]);
        g.extend_from_slice(&[0xff, 0xf0, 0x01, 5]);
        g.extend_from_slice(&[0u8; 20]);
        if sec {
            g.extend_from_slice(&[0xff, 0xf0, 0x82, 3]);
            g.extend_from_slice(&[9u8; 12]);
        }
        g.extend(std::iter::repeat_n(0xA5u8, payload_len));
        g
    }

    #[test]
    fn counts_sealed_geneve_only() {
        let m = SinkMatch::GeneveSealed { frame_len: 508 };
        let f = |proto, oam, sec, len| udp_frame(GENEVE_PORT, &geneve(proto, oam, sec, len));
        assert!(m.sealed(&f(0x88b6, false, true, 508 + 16)));
        // Unsealed, wrong length, OAM, another protocol (a plaintext
        // Ethernet frame or IPv4 packet), wrong port: not counted.
        assert!(!m.sealed(&f(0x88b6, false, false, 508 + 16)));
        assert!(!m.sealed(&f(0x88b6, false, false, 508)));
        assert!(!m.sealed(&f(0x88b6, false, true, 508)));
        assert!(!m.sealed(&f(0x88b6, true, true, 508 + 16)));
        assert!(!m.sealed(&f(0x88b5, false, true, 508 + 16)));
        assert!(!m.sealed(&f(0x6558, false, true, 508 + 16)));
        assert!(!m.sealed(&f(0x0800, false, true, 494 + 16)));
        assert!(!m.sealed(&udp_frame(VXLAN_PORT, &geneve(0x88b6, false, true, 524))));
        // A plain GENEVE bench frame is a stamp, not a sealed packet.
        let mut inner = build_frame(&addrs(), 64);
        let s = Stamp {
            ts_ns: 1,
            seq: 2,
            flow: 3,
        };
        assert!(stamp(&mut inner, s));
        let mut g = geneve(0x6558, false, false, 0);
        g.extend_from_slice(&inner);
        let plain = udp_frame(GENEVE_PORT, &g);
        assert!(SinkMatch::Stamp.sealed(&plain));
        assert!(!SinkMatch::GeneveSealed { frame_len: 60 }.sealed(&plain));
    }

    #[test]
    fn counts_wireguard_data_only() {
        let m = SinkMatch::WireGuardData {
            port: WIREGUARD_PORT,
            ip_len: 494,
        };
        let wg = |ty: u8, len: usize| {
            let mut p = vec![ty, 0, 0, 0];
            p.resize(len, 7);
            udp_frame(WIREGUARD_PORT, &p)
        };
        assert!(m.sealed(&wg(4, 494 + 32)));
        assert!(m.sealed(&wg(4, 496 + 32)), "padded to 16");
        assert!(!m.sealed(&wg(4, 494 + 31)));
        assert!(!m.sealed(&wg(1, 494 + 32)), "handshake initiation");
        assert!(!m.sealed(&wg(4, 148)));
    }

    proptest! {
        #[test]
        fn read_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = read_stamp(&bytes);
        }

        #[test]
        fn sealed_match_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..160),
            frame_len in any::<u32>(),
        ) {
            for m in [
                SinkMatch::GeneveSealed { frame_len },
                SinkMatch::WireGuardData { port: WIREGUARD_PORT, ip_len: frame_len },
            ] {
                let _ = m.sealed(&bytes);
                // Also as the UDP payload of a well-formed frame.
                let mut f = udp_frame(GENEVE_PORT, &bytes);
                let _ = m.sealed(&f);
                f[36..38].copy_from_slice(&WIREGUARD_PORT.to_be_bytes());
                let _ = m.sealed(&f);
            }
        }
    }
}
