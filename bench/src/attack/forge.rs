//! The attacker's packets, built without any I/O: what an off-path host
//! that knows the overlay's VNI, the gateways' addresses and the flow ids
//! (a hash of config names) can put on a WAN segment. Forged overlay
//! packets are made with the dataplane's own encapsulation and OAM code,
//! so they are exactly as well-formed as a gateway's; their inner payloads
//! start with [`FORGED_MARK`] so a capture at a LAN host can tell them.

use std::net::{IpAddr, Ipv4Addr};

use mongate_dataplane::sys::Rng;

use crate::payload::{FlowAddrs, build_frame};
use mongate_dataplane::wire::checksum;
use mongate_dataplane::wire::ethernet::MacAddr;
use mongate_dataplane::wire::geneve::FlowOption;
use mongate_dataplane::wire::oam::{self, AckEntries, AckEntry, Probe, Repr};
use mongate_dataplane::wire::overlay::{
    self, EncapParams, OVERHEAD_V4, OverlayTemplate, TemplateConfig,
};

/// First bytes of every forged inner payload (then the kind and a counter).
pub const FORGED_MARK: [u8; 8] = *b"MGFORGED";
/// OAM message types of the handshake (docs: issue 11's design):
/// initiation, response, cookie reply, and their body lengths.
pub const HANDSHAKE_TYPES: [(u8, usize); 3] = [(4, 148), (5, 92), (6, 64)];
/// Ethernet + IPv4 + UDP header bytes.
const L2L4: usize = 42;

/// What the attacker sends.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Random bytes (some with a GENEVE-looking header) to UDP 6081.
    Garbage,
    /// GENEVE data with the overlay's VNI and a real flow id (some with a
    /// sequence near 2^63, some best effort, some an unknown flow),
    /// inner packet from a site's host to a LAN host.
    Data,
    /// Aggregated acks for flows starting at the target (everything acked,
    /// empty, huge losses).
    Ack,
    /// Probe echoes for path ids 0..16 with the machine's clock as send time.
    Echo,
    /// Probes (the gateway answers them: reflection).
    Probe,
    /// OAM messages of the handshake types 4/5/6 with random bodies.
    Handshake,
    /// Frames captured on the wire, resent unchanged.
    Replay,
    /// Captured frames resent with the outer source rewritten.
    ReplaySpoofed,
    /// Frames of the segment's full MTU (inner frame as large as the
    /// overlay carries), headers claiming more than the frame holds, and
    /// frames beyond the MTU (the kernel refuses those: counted refused).
    Oversized,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 9] = [
        Kind::Garbage,
        Kind::Data,
        Kind::Ack,
        Kind::Echo,
        Kind::Probe,
        Kind::Handshake,
        Kind::Replay,
        Kind::ReplaySpoofed,
        Kind::Oversized,
    ];

    /// The kind's code in forged payloads (after [`FORGED_MARK`]).
    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// One gateway attacked from one outer source address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Attacker's MAC on the segment.
    pub src_mac: [u8; 6],
    /// The gateway's WAN MAC.
    pub dst_mac: [u8; 6],
    /// Outer source: the attacker's own address (off path) or a peer
    /// gateway's (spoofed).
    pub src_ip: Ipv4Addr,
    /// The gateway's WAN address.
    pub dst_ip: Ipv4Addr,
    /// The overlay's VNI.
    pub vni: u32,
    /// Flow ids for forged data (flows the target delivers or relays).
    pub data_flows: Vec<u32>,
    /// Flow ids for forged acks (flows starting at the target).
    pub ack_flows: Vec<u32>,
    /// The forged inner packet's addresses (Ethernet / IPv4 / UDP).
    pub inner: FlowAddrs,
    /// The segment's IP MTU.
    pub mtu: usize,
}

/// Builds the attacker's frames for one [`Target`].
pub struct Forger {
    target: Target,
    template: OverlayTemplate,
    replay: Vec<Vec<u8>>,
    rng: Rng,
    now_ns: fn() -> u64,
}

impl std::fmt::Debug for Forger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forger")
            .field("target", &self.target)
            .field("replay", &self.replay.len())
            .finish()
    }
}

/// Why a [`Forger`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    /// The dataplane refused the template (VNI over 24 bits).
    #[error("overlay template: {0:?}")]
    Template(mongate_dataplane::wire::Error),
}

fn ipv4_header(buf: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr, total_len: u16, ident: u16) {
    buf[0] = 0x45;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&total_len.to_be_bytes());
    buf[4..6].copy_from_slice(&ident.to_be_bytes());
    buf[6..8].copy_from_slice(&[0x40, 0]); // DF
    buf[8] = 64;
    buf[9] = 17;
    buf[10..12].copy_from_slice(&[0, 0]);
    buf[12..16].copy_from_slice(&src.octets());
    buf[16..20].copy_from_slice(&dst.octets());
    let c = !checksum::data(&buf[..20]);
    buf[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Rewrites the outer IPv4 source of an Ethernet/IPv4 frame (checksums
/// fixed: IPv4 header recomputed, UDP checksum set to 0 as allowed over
/// IPv4). False for anything else.
pub fn rewrite_outer_src(frame: &mut [u8], src: Ipv4Addr) -> bool {
    if frame.len() < L2L4 || frame[12..14] != [0x08, 0x00] || frame[14] != 0x45 {
        return false;
    }
    frame[26..30].copy_from_slice(&src.octets());
    frame[24..26].copy_from_slice(&[0, 0]);
    let c = !checksum::data(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
    if frame[23] == 17 {
        frame[40..42].copy_from_slice(&[0, 0]);
    }
    true
}

/// The outer IPv4 destination of a frame, if it is Ethernet/IPv4.
pub fn outer_dst(frame: &[u8]) -> Option<Ipv4Addr> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let d: [u8; 4] = frame.get(30..34)?.try_into().ok()?;
    Some(Ipv4Addr::from(d))
}

impl Forger {
    /// A forger for `target`; `replay` holds captured frames (those to the
    /// target's address are replayed to it); `seed` drives every random
    /// choice; `now_ns` is the clock forged timestamps are read from.
    pub fn new(
        target: Target,
        replay: &[Vec<u8>],
        seed: u64,
        now_ns: fn() -> u64,
    ) -> Result<Self, ForgeError> {
        let mut tc = TemplateConfig::new(
            MacAddr(target.src_mac),
            MacAddr(target.dst_mac),
            IpAddr::V4(target.src_ip),
            IpAddr::V4(target.dst_ip),
        );
        tc.vni = target.vni;
        let template = OverlayTemplate::new(&tc).map_err(ForgeError::Template)?;
        let replay = replay
            .iter()
            .filter(|f| outer_dst(f) == Some(target.dst_ip))
            .cloned()
            .collect();
        Ok(Self {
            target,
            template,
            replay,
            rng: Rng::new(seed),
            now_ns,
        })
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Captured frames this forger replays.
    pub fn replayable(&self) -> usize {
        self.replay.len()
    }

    /// Writes the `i`-th frame of `kind` into `out` (cleared first). False
    /// when the kind has nothing to send (no captured frame, no flow).
    pub fn frame(&mut self, kind: Kind, i: u64, out: &mut Vec<u8>) -> bool {
        out.clear();
        match kind {
            Kind::Garbage => self.garbage(i, out),
            Kind::Data => self.data(i, out),
            Kind::Ack => self.ack(i, out),
            Kind::Echo => self.probe(true, i, out),
            Kind::Probe => self.probe(false, i, out),
            Kind::Handshake => self.handshake(i, out),
            Kind::Replay | Kind::ReplaySpoofed => self.replayed(kind, i, out),
            Kind::Oversized => self.oversized(i, out),
        }
    }

    /// Outer Ethernet/IPv4/UDP to 6081 around `payload_len` bytes, which
    /// the caller writes after the returned offset.
    fn udp_shell(&mut self, payload_len: usize, out: &mut Vec<u8>) -> usize {
        let t = &self.target;
        out.resize(L2L4 + payload_len, 0);
        out[0..6].copy_from_slice(&t.dst_mac);
        out[6..12].copy_from_slice(&t.src_mac);
        out[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = u16::try_from(20 + 8 + payload_len).unwrap_or(u16::MAX);
        let ident = u16::try_from(self.rng.below(65536)).unwrap_or(0);
        ipv4_header(&mut out[14..34], t.src_ip, t.dst_ip, ip_len, ident);
        let sport = overlay::source_port(self.rng.next_u32());
        out[34..36].copy_from_slice(&sport.to_be_bytes());
        out[36..38].copy_from_slice(&6081u16.to_be_bytes());
        out[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
        L2L4
    }

    fn garbage(&mut self, i: u64, out: &mut Vec<u8>) -> bool {
        let len = usize::try_from(self.rng.below(200)).unwrap_or(0);
        let off = self.udp_shell(len, out);
        for b in &mut out[off..] {
            *b = self.rng.next_u32().to_le_bytes()[0];
        }
        if i.is_multiple_of(3) && len >= 8 {
            // A GENEVE-looking start with our VNI: version 0, random
            // option length and bits.
            let vni = self.target.vni.to_be_bytes();
            out[off + 1] &= 0xC0;
            out[off + 4..off + 7].copy_from_slice(&vni[1..4]);
            out[off] &= 0x3F;
        }
        true
    }

    /// The forged inner frame (marker, kind, counter) of `len` bytes.
    fn inner(&self, kind: Kind, i: u64, len: usize, buf: &mut [u8]) {
        // Lengths used here are within the bench frames' 60..=1514 bytes.
        let f = build_frame(&self.target.inner, u32::try_from(len + 4).unwrap_or(0));
        let n = f.len().min(len);
        buf[..n].copy_from_slice(&f[..n]);
        let p = &mut buf[L2L4..len];
        p[..8].copy_from_slice(&FORGED_MARK);
        p[8] = kind.code();
        p[9..17].copy_from_slice(&i.to_be_bytes());
    }

    /// Encapsulates `inner_len` bytes already at `out[hdr..]`.
    fn encap(&self, out: &mut [u8], inner_len: usize, params: &EncapParams) -> bool {
        let hl = self.template.header_len();
        self.template.encap(out, hl, inner_len, params).is_ok()
    }

    fn data(&mut self, i: u64, out: &mut Vec<u8>) -> bool {
        let flows = &self.target.data_flows;
        let flow_id = match (i % 4, flows.is_empty()) {
            (0 | 1, false) => flows[usize::try_from(i / 4).unwrap_or(0) % flows.len()],
            (2, _) => mongate_dataplane::overlay::BEST_EFFORT_FLOW_ID,
            _ => self.rng.next_u32() | 1,
        };
        let seq = if i % 4 == 1 {
            (1u64 << 63) - 1 - self.rng.below(1 << 20)
        } else {
            1 + self.rng.below(1 << 24)
        };
        let inner_len = 64 + usize::try_from(self.rng.below(400)).unwrap_or(0);
        self.data_frame(Kind::Data, i, flow_id, seq, inner_len, out)
    }

    fn data_frame(
        &mut self,
        kind: Kind,
        i: u64,
        flow_id: u32,
        seq: u64,
        inner_len: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        let hl = self.template.header_len();
        out.resize(hl + inner_len, 0);
        self.inner(kind, i, inner_len, &mut out[hl..]);
        let params = EncapParams {
            flow: FlowOption {
                flow_id,
                seq,
                timestamp_ns: (self.now_ns)(),
            },
            entropy: self.rng.next_u32(),
            ..EncapParams::default()
        };
        self.encap(out, inner_len, &params)
    }

    fn oam(&mut self, body: &[u8], out: &mut Vec<u8>) -> bool {
        let hl = self.template.header_len();
        out.resize(hl + body.len(), 0);
        out[hl..].copy_from_slice(body);
        let params = EncapParams {
            flow: FlowOption {
                flow_id: mongate_dataplane::overlay::OAM_FLOW_ID,
                seq: self.rng.below(1 << 20),
                timestamp_ns: (self.now_ns)(),
            },
            entropy: self.rng.next_u32(),
            oam: true,
            ..EncapParams::default()
        };
        self.encap(out, body.len(), &params)
    }

    fn ack(&mut self, i: u64, out: &mut Vec<u8>) -> bool {
        let now = (self.now_ns)();
        let mut entries = Vec::with_capacity(self.target.ack_flows.len());
        for &flow_id in &self.target.ack_flows {
            let e = match i % 3 {
                // Everything acknowledged far ahead (hides loss).
                0 => AckEntry {
                    flow_id,
                    ack_delay_ns: 0,
                    cum_seq: 1 << 40,
                    bitmap: u64::MAX,
                    echo_ts_ns: now,
                    received: u32::MAX / 2,
                    lost: 0,
                },
                // Huge losses (drives the rate down).
                1 => AckEntry {
                    flow_id,
                    ack_delay_ns: 1_000_000,
                    cum_seq: self.rng.below(1 << 20),
                    bitmap: 0,
                    echo_ts_ns: now,
                    received: 0,
                    lost: u32::MAX / 2,
                },
                // Plausible numbers.
                _ => AckEntry {
                    flow_id,
                    ack_delay_ns: 100_000,
                    cum_seq: self.rng.below(1 << 16),
                    bitmap: self.rng.next_u64(),
                    echo_ts_ns: now.saturating_sub(1_000_000),
                    received: self.rng.next_u32(),
                    lost: self.rng.next_u32() & 0xFF,
                },
            };
            entries.push(e);
        }
        // Every fourth ack is empty (a keepalive from a "peer").
        if i % 4 == 3 {
            entries.clear();
        }
        let repr = Repr::Ack(AckEntries::Values(&entries));
        let mut body = vec![0u8; repr.len()];
        if repr.emit(&mut body).is_err() {
            return false;
        }
        self.oam(&body, out)
    }

    fn probe(&mut self, echo: bool, i: u64, out: &mut Vec<u8>) -> bool {
        let now = (self.now_ns)();
        let p = Probe {
            path_id: u32::try_from(i % 16).unwrap_or(0),
            probe_seq: self.rng.next_u32() & 0xFFFF,
            send_ts_ns: now.saturating_sub(self.rng.below(5_000_000)),
            echo_ts_ns: if echo { now } else { 0 },
            // The attacker does not know the prober's nonces: a guess.
            nonce: self.rng.next_u64(),
        };
        let repr = if echo {
            Repr::ProbeEcho(p)
        } else {
            Repr::Probe(p)
        };
        let mut body = vec![0u8; repr.len()];
        if repr.emit(&mut body).is_err() {
            return false;
        }
        self.oam(&body, out)
    }

    fn handshake(&mut self, i: u64, out: &mut Vec<u8>) -> bool {
        let (t, len) = HANDSHAKE_TYPES[usize::try_from(i % 3).unwrap_or(0)];
        let mut body = vec![0u8; oam::HEADER_LEN + len];
        body[0] = oam::VERSION;
        body[1] = t;
        for b in &mut body[oam::HEADER_LEN..] {
            *b = self.rng.next_u32().to_le_bytes()[0];
        }
        self.oam(&body, out)
    }

    fn replayed(&mut self, kind: Kind, i: u64, out: &mut Vec<u8>) -> bool {
        if self.replay.is_empty() {
            return false;
        }
        let k = usize::try_from(i).unwrap_or(0) % self.replay.len();
        out.extend_from_slice(&self.replay[k]);
        // Sent from the attacker's MAC: the segment's switch would not
        // care, and a capture can tell the copies from the originals.
        out[6..12].copy_from_slice(&self.target.src_mac);
        if kind == Kind::ReplaySpoofed {
            return rewrite_outer_src(out, self.target.src_ip);
        }
        true
    }

    fn oversized(&mut self, i: u64, out: &mut Vec<u8>) -> bool {
        let max_frame = self.target.mtu + 14;
        let max_inner = self.target.mtu.saturating_sub(OVERHEAD_V4 - 14);
        let flow = self
            .target
            .data_flows
            .first()
            .copied()
            .unwrap_or(mongate_dataplane::overlay::BEST_EFFORT_FLOW_ID);
        match i % 4 {
            // The largest frame the segment carries.
            0 => self.data_frame(Kind::Oversized, i, flow, 1 + i, max_inner, out),
            // Outer IPv4 and UDP lengths claiming 9000 bytes.
            1 => {
                let ok = self.data_frame(Kind::Oversized, i, flow, 1 + i, 256, out);
                out[16..18].copy_from_slice(&9000u16.to_be_bytes());
                out[24..26].copy_from_slice(&[0, 0]);
                let c = !checksum::data(&out[14..34]);
                out[24..26].copy_from_slice(&c.to_be_bytes());
                out[38..40].copy_from_slice(&8980u16.to_be_bytes());
                ok
            }
            // Inner IPv4 length claiming more than the inner frame.
            2 => {
                let ok = self.data_frame(Kind::Oversized, i, flow, 1 + i, 256, out);
                let inner_ip = self.template.header_len() + 14;
                out[inner_ip + 2..inner_ip + 4].copy_from_slice(&8000u16.to_be_bytes());
                ok
            }
            // Beyond the MTU: the kernel refuses it (counted refused).
            _ => {
                let extra = 1 + usize::try_from(self.rng.below(8000)).unwrap_or(0);
                self.data_frame(
                    Kind::Oversized,
                    i,
                    flow,
                    1 + i,
                    (max_frame + extra).saturating_sub(self.template.header_len()),
                    out,
                ) || {
                    // The template refuses above 64 KiB: a raw shell then.
                    let off = self.udp_shell(max_frame + extra - L2L4, out);
                    out[off..].fill(0xAB);
                    true
                }
            }
        }
    }
}

/// Where [`FORGED_MARK`] starts in a frame, if anywhere (a capture's test
/// for forged payloads).
pub fn find_mark(frame: &[u8]) -> Option<usize> {
    frame
        .windows(FORGED_MARK.len())
        .position(|w| w == FORGED_MARK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongate_dataplane::wire::overlay::decap;

    fn target() -> Target {
        Target {
            src_mac: [2, 0x66, 0, 0, 0, 1],
            dst_mac: [2, 0x6d, 198, 19, 129, 2],
            src_ip: Ipv4Addr::new(198, 19, 129, 66),
            dst_ip: Ipv4Addr::new(198, 19, 129, 2),
            vni: 4242,
            data_flows: vec![0x1234_5678],
            ack_flows: vec![0x0BAD_F00D, 7],
            inner: FlowAddrs {
                src_mac: [2, 0, 0, 0, 0, 1],
                dst_mac: [2, 0, 0, 0, 0, 2],
                src_ip: Ipv4Addr::new(198, 18, 0, 2),
                dst_ip: Ipv4Addr::new(198, 18, 32, 2),
                src_port: 40000,
                dst_port: 5001,
            },
            mtu: 1500,
        }
    }

    fn clock() -> u64 {
        1_000_000_000
    }

    #[test]
    fn forged_data_is_a_valid_overlay_packet_with_the_mark() {
        let mut f = Forger::new(target(), &[], 1, clock).unwrap();
        let mut out = Vec::new();
        for i in 0..8 {
            assert!(f.frame(Kind::Data, i, &mut out));
            let d = decap(&out, true).unwrap();
            assert_eq!(d.meta.vni, 4242);
            assert!(!d.meta.oam);
            assert_eq!(d.meta.outer_src, IpAddr::V4(target().src_ip));
            let flow = d.meta.flow.unwrap();
            match i % 4 {
                0 => assert_eq!(flow.flow_id, 0x1234_5678),
                1 => assert!(flow.seq > 1 << 62),
                2 => assert_eq!(flow.flow_id, u32::MAX),
                _ => {}
            }
            let inner = &out[d.inner.clone()];
            assert_eq!(&inner[26..30], &[198, 18, 0, 2]);
            assert_eq!(&inner[30..34], &[198, 18, 32, 2]);
            assert_eq!(find_mark(inner), Some(42));
            assert_eq!(inner[50], Kind::Data.code());
            assert_eq!(!checksum::data(&inner[14..34]), 0);
        }
    }

    #[test]
    fn forged_oam_parses_as_the_dataplane_reads_it() {
        let mut f = Forger::new(target(), &[], 2, clock).unwrap();
        let mut out = Vec::new();
        for i in 0..4 {
            assert!(f.frame(Kind::Ack, i, &mut out));
            let d = decap(&out, true).unwrap();
            assert!(d.meta.oam);
            let m = oam::Message::new_checked(&out[d.inner.clone()]).unwrap();
            assert_eq!(m.msg_type(), oam::MessageType::Ack);
            let want = if i % 4 == 3 { 0 } else { 2 };
            assert_eq!(m.acks().count(), want);
        }
        assert!(f.frame(Kind::Echo, 5, &mut out));
        let d = decap(&out, true).unwrap();
        let m = oam::Message::new_checked(&out[d.inner.clone()]).unwrap();
        assert_eq!(m.msg_type(), oam::MessageType::ProbeEcho);
        assert_eq!(m.probe().unwrap().path_id, 5);
        assert!(f.frame(Kind::Probe, 1, &mut out));
        let d = decap(&out, true).unwrap();
        let m = oam::Message::new_checked(&out[d.inner.clone()]).unwrap();
        assert_eq!(m.msg_type(), oam::MessageType::Probe);
        for i in 0..3 {
            assert!(f.frame(Kind::Handshake, i, &mut out));
            let d = decap(&out, true).unwrap();
            assert!(d.meta.oam && d.meta.security.is_none());
            let body = &out[d.inner.clone()];
            let (t, len) = HANDSHAKE_TYPES[usize::try_from(i).unwrap()];
            assert_eq!((body[0], body[1], body.len()), (1, t, 4 + len));
        }
    }

    #[test]
    fn replays_only_frames_to_the_target_and_rewrites_the_source() {
        let mut other = target();
        other.dst_ip = Ipv4Addr::new(198, 19, 129, 1);
        let mut g = Forger::new(target(), &[], 3, clock).unwrap();
        let mut to_target = Vec::new();
        assert!(g.frame(Kind::Data, 0, &mut to_target));
        let mut h = Forger::new(other, &[], 3, clock).unwrap();
        let mut elsewhere = Vec::new();
        assert!(h.frame(Kind::Data, 0, &mut elsewhere));
        let mut t = target();
        t.src_ip = Ipv4Addr::new(198, 19, 129, 99);
        let mut f = Forger::new(t, &[to_target.clone(), elsewhere], 4, clock).unwrap();
        assert_eq!(f.replayable(), 1);
        let mut out = Vec::new();
        assert!(f.frame(Kind::Replay, 7, &mut out));
        assert_eq!(out[12..], to_target[12..]);
        assert!(f.frame(Kind::ReplaySpoofed, 7, &mut out));
        let d = decap(&out, true).unwrap();
        assert_eq!(
            d.meta.outer_src,
            IpAddr::V4(Ipv4Addr::new(198, 19, 129, 99))
        );
        let mut empty = Forger::new(target(), &[], 5, clock).unwrap();
        assert!(!empty.frame(Kind::Replay, 0, &mut out));
    }

    #[test]
    fn oversized_frames_fill_the_mtu_or_exceed_it() {
        let mut f = Forger::new(target(), &[], 6, clock).unwrap();
        let mut out = Vec::new();
        assert!(f.frame(Kind::Oversized, 0, &mut out));
        assert_eq!(out.len(), 1514);
        let d = decap(&out, true).unwrap();
        assert_eq!(d.inner.len(), 1440);
        assert!(f.frame(Kind::Oversized, 1, &mut out));
        assert!(decap(&out, true).is_err());
        assert!(f.frame(Kind::Oversized, 3, &mut out));
        assert!(out.len() > 1514);
    }

    #[test]
    fn garbage_is_udp_to_geneve() {
        let mut f = Forger::new(target(), &[], 7, clock).unwrap();
        let mut out = Vec::new();
        for i in 0..50 {
            assert!(f.frame(Kind::Garbage, i, &mut out));
            assert_eq!(&out[36..38], &6081u16.to_be_bytes());
            assert_eq!(!checksum::data(&out[14..34]), 0);
        }
    }
}
