//! Paths to peers and fast failover (MONET's redundancy at a site gateway).
//!
//! For each peer the stage holds candidate paths in preference order:
//! every **direct** (local uplink, peer address) pair the application
//! resolved, then **detours** through each other peer (a waypoint: the
//! packet goes to the waypoint's gateway, which relays it to the peer over
//! one of its own direct paths, never another detour, so a packet makes at
//! most one detour and cannot loop). Traffic to a peer rides its *active*
//! path; flows keep their sequence numbers and controllers across a switch.
//!
//! Health, per path: every `probe_interval_ns` a probe (GENEVE OAM) goes
//! out on every candidate; the peer echoes it at once. A path is down when
//! no echo came back for `path_down_after_ns`; up again at its next echo.
//! The fastest signal is the data itself: when packets went out on the
//! active path to a peer and no ack from that peer arrived for
//! `ack_gap_ns`, the active path is declared down at once. A down active
//! path is replaced by the best path that is up (lowest index); a better
//! path than the active one takes over only after staying up for
//! `failback_after_ns` (hysteresis: no flapping).
//!
//! Everything here is pure (time passed in); probes are emitted from
//! [`super::Gateway::poll`] in frames of the stage's reserve.

use core::net::IpAddr;

use super::{Gateway, OAM_FLOW_ID, entropy};
use crate::engine::{Arena, Batch, Nanos, Packet, Verdict};
use crate::wire::geneve::FlowOption;
use crate::wire::oam::{self, Probe};
use crate::wire::overlay::{EncapParams, OverlayTemplate};

/// A gap between two runs of the path timers longer than this is a stall
/// of this worker, not of the paths (the timers run every loop iteration).
const STALL_NS: u64 = 10_000_000;

/// How a candidate path reaches its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// Straight to one of the peer's addresses.
    Direct,
    /// Through this peer (index) as a waypoint.
    Via(usize),
}

/// What the probes and acks say of a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathHealth {
    /// Usable.
    pub up: bool,
    /// Last echo received (or the start).
    pub last_echo: Nanos,
    /// Last probe sent.
    pub last_probe: Nanos,
    /// Since when up (failback hysteresis).
    pub up_since: Nanos,
    /// Smoothed round-trip time of probes, ns (0: none yet).
    pub srtt_ns: u64,
    /// Probes sent.
    pub probes_sent: u64,
    /// Echoes received.
    pub echoes: u64,
    /// Bytes of probes sent (outer frames).
    pub probe_bytes: u64,
    /// Times it went down.
    pub downs: u64,
}

/// One candidate path to a peer.
#[derive(Clone, Debug)]
pub(crate) struct PeerPath {
    pub(crate) template: OverlayTemplate,
    pub(crate) port: u16,
    /// Largest inner frame the path carries.
    pub(crate) max_inner: usize,
    pub(crate) kind: PathKind,
    /// Outer destination.
    pub(crate) remote: IpAddr,
    pub(crate) health: PathHealth,
}

/// The candidates of one peer and the one in use.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerPaths {
    pub(crate) paths: Vec<PeerPath>,
    pub(crate) active: Option<usize>,
    /// Path switches so far.
    pub(crate) switches: u64,
    /// When the last switch happened.
    pub(crate) last_switch: Nanos,
    /// Last ack (any OAM ack message) from this peer.
    pub(crate) last_ack: Nanos,
    /// First data packet sent on the active path since the last ack.
    pub(crate) unacked_since: Option<Nanos>,
}

/// A path's public view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathView {
    /// Kind.
    pub kind: PathKind,
    /// Worker port it leaves on.
    pub port: u16,
    /// Outer destination.
    pub remote: IpAddr,
    /// Health.
    pub health: PathHealth,
    /// Whether traffic to the peer rides it now.
    pub active: bool,
}

/// Path id carried in a probe: peer index and path index.
fn probe_id(peer: usize, path: usize) -> u32 {
    let p = u32::try_from(peer & 0xFFFF).unwrap_or(0);
    let i = u32::try_from(path & 0xFFFF).unwrap_or(0);
    p << 16 | i
}

impl PeerPaths {
    /// The path traffic rides now.
    #[inline]
    pub(crate) fn active_path(&self) -> Option<&PeerPath> {
        self.active.and_then(|i| self.paths.get(i))
    }

    /// The first direct path that is up (for relaying detours: never a detour).
    pub(crate) fn direct_up(&self) -> Option<&PeerPath> {
        if let Some(p) = self.active_path()
            && p.kind == PathKind::Direct
            && p.health.up
        {
            return Some(p);
        }
        self.paths
            .iter()
            .find(|p| p.kind == PathKind::Direct && p.health.up)
    }

    /// Re-evaluates which path is active.
    fn select(&mut self, now: Nanos, failback_after: u64) {
        let best_up = self.paths.iter().position(|p| p.health.up);
        let cur = self.active;
        let next = match (cur, best_up) {
            (_, None) => cur, // nothing up: keep the last (it may come back)
            (None, Some(b)) => Some(b),
            (Some(c), Some(b)) => {
                let c_up = self.paths.get(c).is_some_and(|p| p.health.up);
                let failback =
                    b < c && now.saturating_sub(self.paths[b].health.up_since) >= failback_after;
                if !c_up || failback { Some(b) } else { Some(c) }
            }
        };
        if next != cur {
            self.active = next;
            self.switches += 1;
            self.last_switch = now;
            self.unacked_since = None;
        }
    }
}

impl Gateway {
    /// Candidate paths of every peer, with their health.
    pub fn paths(&self, peer: usize) -> Vec<PathView> {
        self.peers.get(peer).map_or_else(Vec::new, |pp| {
            pp.paths
                .iter()
                .enumerate()
                .map(|(i, p)| PathView {
                    kind: p.kind,
                    port: p.port,
                    remote: p.remote,
                    health: p.health,
                    active: pp.active == Some(i),
                })
                .collect()
        })
    }

    /// `(direct paths, of which up, switches)` toward `peer`.
    pub fn peer_summary(&self, peer: usize) -> Option<(usize, usize, u64)> {
        let pp = self.peers.get(peer)?;
        let direct = pp.paths.iter().filter(|p| p.kind == PathKind::Direct);
        let total = direct.clone().count();
        let up = direct.filter(|p| p.health.up).count();
        Some((total, up, pp.switches))
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Path switches toward `peer` so far.
    pub fn path_switches(&self, peer: usize) -> u64 {
        self.peers.get(peer).map_or(0, |p| p.switches)
    }

    /// Notes an ack message from the gateway at `src`.
    pub(crate) fn note_ack_from(&mut self, src: IpAddr, now: Nanos) {
        if let Some(pi) = self.peer_index_of_gateway(src)
            && let Some(pp) = self.peers.get_mut(pi)
        {
            pp.last_ack = now;
            pp.unacked_since = None;
        }
    }

    /// Notes an ack message from peer `pi`.
    pub(crate) fn note_ack_from_peer(&mut self, pi: usize, now: Nanos) {
        if let Some(pp) = self.peers.get_mut(pi) {
            pp.last_ack = now;
            pp.unacked_since = None;
        }
    }

    /// The peer one of whose gateway addresses is `addr`.
    pub(crate) fn peer_index_of_gateway(&self, addr: IpAddr) -> Option<usize> {
        self.cfg
            .peers
            .iter()
            .position(|p| p.gateways.contains(&addr))
    }

    /// A probe echo came back.
    pub(crate) fn on_echo(&mut self, probe: &Probe, now: Nanos) {
        let peer = usize::try_from(probe.path_id >> 16).unwrap_or(usize::MAX);
        let idx = usize::try_from(probe.path_id & 0xFFFF).unwrap_or(usize::MAX);
        let failback = self.settings.failback_after_ns;
        let Some(pp) = self.peers.get_mut(peer) else {
            self.stats.probe_unknown += 1;
            return;
        };
        let Some(p) = pp.paths.get_mut(idx) else {
            self.stats.probe_unknown += 1;
            return;
        };
        // An echo from the future or from long ago is garbage.
        if probe.send_ts_ns > now || now - probe.send_ts_ns > 10_000_000_000 {
            self.stats.probe_unknown += 1;
            return;
        }
        let rtt = now - probe.send_ts_ns;
        let h = &mut p.health;
        h.echoes += 1;
        h.last_echo = h.last_echo.max(now);
        h.srtt_ns = if h.srtt_ns == 0 {
            rtt
        } else {
            (7 * h.srtt_ns + rtt) / 8
        };
        if !h.up {
            h.up = true;
            h.up_since = now;
        }
        pp.select(now, failback);
    }

    /// Probe timers and failure detection; emits due probes into `out`.
    pub(crate) fn path_timers(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        let interval = self.settings.probe_interval_ns;
        if interval == 0 {
            return;
        }
        let down_after = self.settings.path_down_after_ns;
        let ack_gap = self.settings.ack_gap_ns;
        let failback = self.settings.failback_after_ns;
        // Time this stage did not run (the worker was descheduled) is not
        // silence from the paths: their echoes and acks wait in our receive
        // ring. Shift the detection baselines past the stall.
        let last = core::mem::replace(&mut self.last_path_check, now);
        let stall = now.saturating_sub(last);
        if last != 0 && stall > STALL_NS {
            for pp in &mut self.peers {
                if let Some(u) = pp.unacked_since.as_mut() {
                    *u = u.saturating_add(stall).min(now);
                }
                for p in &mut pp.paths {
                    p.health.last_echo = p.health.last_echo.saturating_add(stall).min(now);
                }
            }
        }
        for peer in 0..self.peers.len() {
            // Ack gap on the active path: data went out, no ack came back.
            let pp = &mut self.peers[peer];
            if ack_gap > 0
                && let Some(since) = pp.unacked_since
                && now.saturating_sub(since) > ack_gap
                && now.saturating_sub(pp.last_switch) > ack_gap
                && let Some(a) = pp.active
                && let Some(p) = pp.paths.get_mut(a)
                && p.health.up
            {
                p.health.up = false;
                p.health.downs += 1;
                self.stats.ack_gap_failovers += 1;
                pp.unacked_since = None;
            }
            for p in &mut pp.paths {
                if p.health.up && now.saturating_sub(p.health.last_echo) > down_after {
                    p.health.up = false;
                    p.health.downs += 1;
                }
            }
            pp.select(now, failback);
            for i in 0..self.peers[peer].paths.len() {
                if now.saturating_sub(self.peers[peer].paths[i].health.last_probe) < interval {
                    continue;
                }
                if out.spare() == 0 {
                    return;
                }
                let Some(base) = self.reserve.pop() else {
                    self.stats.probe_no_frame += 1;
                    return;
                };
                self.oam_seq += 1;
                let path = &mut self.peers[peer].paths[i];
                path.health.last_probe = now;
                let probe = Probe {
                    path_id: probe_id(peer, i),
                    probe_seq: u32::try_from(path.health.probes_sent & 0xFFFF_FFFF).unwrap_or(0),
                    send_ts_ns: now,
                    echo_ts_ns: 0,
                };
                let params = EncapParams {
                    flow: FlowOption {
                        flow_id: OAM_FLOW_ID,
                        seq: self.oam_seq,
                        timestamp_ns: now,
                    },
                    entropy: entropy(OAM_FLOW_ID),
                    oam: true,
                    ..EncapParams::default()
                };
                let off = (arena.headroom() as usize).max(path.template.header_len());
                let msg = oam::Repr::Probe(probe);
                let frame_size = arena.frame_size();
                let res = arena.get_mut(base, frame_size).and_then(|buf| {
                    let len = msg.emit(buf.get_mut(off..)?).ok()?;
                    path.template.encap(buf, off, len, &params).ok()
                });
                match res {
                    Some(r) => {
                        let len = u32::try_from(r.len()).unwrap_or(0);
                        let mut pkt =
                            Packet::new(base + r.start as u64, len, self.settings.lan_port, now);
                        pkt.verdict = Verdict::Tx(path.port);
                        path.health.probes_sent += 1;
                        path.health.probe_bytes += u64::from(len);
                        out.push(pkt);
                        self.stats.probes_sent += 1;
                    }
                    None => {
                        self.stats.encap_failed += 1;
                        self.reserve.push(base);
                    }
                }
            }
        }
    }
}
