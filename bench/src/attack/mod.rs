//! `mongate-bench attack`: a hostile host on a WAN segment. It sends, bounded
//! in count and time and as fast as the socket takes them (or at a set
//! rate), every [`Kind`] of hostile input against one or more gateways
//! ([`Target`]: one gateway from one outer source, the attacker's own
//! address or a spoofed peer's), and counts what it sent per kind. Frames go
//! out through an AF_PACKET socket past the interface's qdisc, so a shaper
//! on the segment does not pace them: the gateway sees the attacker's full
//! rate. Replays come from frames captured on the same interface
//! ([`capture_overlay`]) while legitimate traffic flows.
//!
//! The frames are built in [`forge`] (pure, tested against the dataplane's
//! own decapsulation); the hostile-input test (`tests/hostile.rs`) drives
//! this module directly.

pub mod forge;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mongate_testbed::capture::PacketSocket;

pub use crate::payload::FlowAddrs;
pub use forge::{FORGED_MARK, Forger, Kind, Target, find_mark};

/// Frames sent per (target, kind) turn: the kinds interleave through the run.
const TURN: u64 = 16;

/// What to send.
#[derive(Clone, Debug)]
pub struct Attack {
    /// Gateways (and outer sources) to attack, all reachable through the
    /// one interface.
    pub targets: Vec<Target>,
    /// Kinds to send.
    pub kinds: Vec<Kind>,
    /// Frames per kind and target, at most.
    pub per_kind: u64,
    /// Longest the attack runs.
    pub limit: Duration,
    /// Frames per second in total; 0: as fast as the socket takes them.
    pub rate_pps: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

/// Counts of one kind against one target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KindCount {
    /// Frames the kernel took.
    pub sent: u64,
    /// Frames the kernel refused (`EMSGSIZE` beyond the MTU, `ENOBUFS`).
    pub refused: u64,
}

/// What was sent to one target.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TargetReport {
    /// The gateway's address.
    pub dst_ip: std::net::Ipv4Addr,
    /// The outer source used.
    pub src_ip: std::net::Ipv4Addr,
    /// Captured frames available for replay to this target.
    pub replayable: usize,
    /// Per kind.
    pub kinds: BTreeMap<Kind, KindCount>,
}

impl TargetReport {
    /// Frames sent of every kind.
    pub fn sent(&self) -> u64 {
        self.kinds.values().map(|c| c.sent).sum()
    }
}

/// What an attack sent.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AttackReport {
    /// Per target, in [`Attack::targets`] order.
    pub targets: Vec<TargetReport>,
    /// Seconds from the first to the last frame.
    pub seconds: f64,
    /// Frames sent per second over the run.
    pub pps: f64,
}

impl AttackReport {
    /// Frames sent of `kind` to every target.
    pub fn sent_of(&self, kind: Kind) -> u64 {
        self.targets
            .iter()
            .filter_map(|t| t.kinds.get(&kind))
            .map(|c| c.sent)
            .sum()
    }
    /// Frames sent in total.
    pub fn sent(&self) -> u64 {
        self.targets.iter().map(TargetReport::sent).sum()
    }
}

/// Runs `attack` out of `ifname` (in the calling thread's namespace),
/// replaying frames of `replay` that are addressed to a target. Bounded:
/// at most `per_kind` frames per (target, kind) and `limit` of time.
pub fn run(ifname: &str, attack: &Attack, replay: &[Vec<u8>]) -> anyhow::Result<AttackReport> {
    let sock = PacketSocket::open(ifname, false)?;
    sock.bypass_qdisc()?;
    let mut forgers = attack
        .targets
        .iter()
        .enumerate()
        .map(|(k, t)| {
            Forger::new(
                t.clone(),
                replay,
                attack.seed.wrapping_add(k as u64),
                mongate_dataplane::sys::clock::now_ns,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut counts: Vec<BTreeMap<Kind, KindCount>> = attack
        .targets
        .iter()
        .map(|_| {
            attack
                .kinds
                .iter()
                .map(|k| (*k, KindCount::default()))
                .collect()
        })
        .collect();
    // (target, kind, next index, done)
    let mut cells: Vec<(usize, Kind, u64, bool)> = (0..attack.targets.len())
        .flat_map(|t| attack.kinds.iter().map(move |k| (t, *k, 0u64, false)))
        .collect();
    let mut frame = Vec::with_capacity(16384);
    let t0 = Instant::now();
    let gap = if attack.rate_pps > 0.0 {
        Duration::from_secs_f64(1.0 / attack.rate_pps)
    } else {
        Duration::ZERO
    };
    let mut total = 0u64;
    'run: while cells.iter().any(|c| !c.3) {
        for c in &mut cells {
            if c.3 {
                continue;
            }
            let (t, kind) = (c.0, c.1);
            for _ in 0..TURN {
                if t0.elapsed() >= attack.limit {
                    break 'run;
                }
                if c.2 >= attack.per_kind || !forgers[t].frame(kind, c.2, &mut frame) {
                    c.3 = true;
                    break;
                }
                c.2 += 1;
                let e = counts[t].entry(kind).or_default();
                match sock.send(&frame) {
                    Ok(_) => e.sent += 1,
                    Err(_) => e.refused += 1,
                }
                total += 1;
                if !gap.is_zero() {
                    let due = gap.saturating_mul(u32::try_from(total).unwrap_or(u32::MAX));
                    if let Some(wait) = due.checked_sub(t0.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let targets: Vec<TargetReport> = forgers
        .iter()
        .zip(counts)
        .map(|(f, kinds)| TargetReport {
            dst_ip: f.target().dst_ip,
            src_ip: f.target().src_ip,
            replayable: f.replayable(),
            kinds,
        })
        .collect();
    let sent: u64 = targets.iter().map(TargetReport::sent).sum();
    Ok(AttackReport {
        targets,
        seconds,
        pps: if seconds > 0.0 {
            sent as f64 / seconds
        } else {
            0.0
        },
    })
}

/// True when `frame` is Ethernet/IPv4/UDP to port 6081 (an overlay packet
/// on the wire).
pub fn is_overlay(frame: &[u8]) -> bool {
    frame.len() >= 42
        && frame[12..14] == [0x08, 0x00]
        && frame[23] == 17
        && frame[14] & 0x0f == 5
        && frame[36..38] == 6081u16.to_be_bytes()
}

/// Captures overlay frames (UDP 6081, both directions) on `ifname` in the
/// calling thread's namespace for `limit`, keeping at most `max` of them.
pub fn capture_overlay(ifname: &str, limit: Duration, max: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let sock = PacketSocket::open(ifname, true)?;
    sock.set_recv_timeout(Duration::from_millis(20))?;
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < limit && out.len() < max {
        if let Some(m) = sock.recv(&mut buf)? {
            let f = &buf[..m.len];
            if m.len == m.wire_len && is_overlay(f) {
                out.push(f.to_vec());
            }
        }
    }
    Ok(out)
}
