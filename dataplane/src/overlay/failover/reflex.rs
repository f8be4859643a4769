//! The dataplane's failover reflex: its own path timers. An ack gap takes
//! a path down at once, control or not; without a control's lease it also
//! probes every candidate, declares a silent path down and fails back to a
//! better path that stayed up (the [`HealthPolicy`](super::HealthPolicy)
//! of the settings).

use super::{PathEventKind, path_ref};
use crate::engine::{Arena, Batch, Nanos};
use crate::overlay::Gateway;
use crate::overlay::secure::key_peer;

/// A gap between two runs of the path timers longer than this is a stall
/// of this worker, not of the paths (the timers run every loop iteration).
const STALL_NS: u64 = 10_000_000;

/// The RTT the ack-gap reflex assumes for a path before it has a sample
/// (of its data or its probes): 250 ms, an intercontinental path's.
const UNKNOWN_RTT_NS: u64 = 250_000_000;

impl Gateway {
    /// Probe timers and failure detection; emits due probes into `out`.
    /// The control's probe commands run whatever the settings; the
    /// dataplane's own probing and failover only with a probe interval.
    pub(crate) fn path_timers(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        if self.control_drives_paths(now) {
            self.control_paths.was_driven = true;
            if self.settings.health.probe_interval_ns > 0 {
                // Ack gaps only (the local timers skip the rest).
                let _ = self.local_path_timers(now, arena, out);
            }
        } else if self.settings.health.probe_interval_ns > 0 {
            let done = self.local_path_timers(now, arena, out);
            // The other workers follow worker 0's verdicts (they do not probe).
            self.share_path_states();
            if !done {
                return;
            }
        }
        self.control_probe_timers(now, arena, out);
    }

    /// The dataplane's own probes and failure detection; false when the
    /// batch or the frame reserve ran out.
    fn local_path_timers(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) -> bool {
        let policy = self.settings.health;
        let interval = policy.probe_interval_ns;
        let ack_gap = policy.ack_gap_ns;
        let local = !self.control_drives_paths(now);
        // Time this stage did not run (the worker was descheduled) is not
        // silence from the paths: their echoes and acks wait in our receive
        // ring. Shift the detection baselines past the stall.
        let last = core::mem::replace(&mut self.last_path_check, now);
        let stall = now.saturating_sub(last);
        // Back from a control's lease: our probes were paused, so the echo
        // baselines are stale; give every path a fresh probe interval
        // before silence counts.
        if local && core::mem::replace(&mut self.control_paths.was_driven, false) {
            for pp in &mut self.peers {
                for p in &mut pp.paths {
                    p.health.last_echo = now;
                    p.health.last_probe = 0;
                }
            }
        }
        if last != 0 && stall > STALL_NS {
            for pp in &mut self.peers {
                for p in &mut pp.paths {
                    p.unacked.shift(stall, now);
                    p.health.last_echo = p.health.last_echo.saturating_add(stall).min(now);
                }
            }
        }
        for peer in 0..self.peers.len() {
            // Which paths a packet can be sealed on now: a move (below, or
            // by an echo) never lands on a path without a session key.
            let sec = &self.sec;
            for p in &mut self.peers[peer].paths {
                let kp = crate::overlay::secure::key_peer(peer, p);
                p.sealable = !sec.required || sec.keys.can_send(kp, now);
            }
            // Ack gap on a path that carries data: data went out, no ack
            // came back. The dataplane's own reflex, control or not.
            for i in 0..self.peers[peer].paths.len() {
                let p = &mut self.peers[peer].paths[i];
                // A gap of twice the RTT (the data's, queueing included, or
                // the probes' before any data was acked) is a full queue's
                // worth of acks still to come, not a dead path.
                // Without either, an RTT of `UNKNOWN_RTT_NS` (a long path's
                // first packets wait a whole RTT for their first ack).
                let rtt = match p.data_rtt.max(p.health.srtt_ns) {
                    0 => UNKNOWN_RTT_NS,
                    r => r,
                };
                let limit = ack_gap.max(rtt.saturating_mul(2));
                let late = |t: Option<Nanos>| t.is_some_and(|t| now.saturating_sub(t) > limit);
                if ack_gap == 0 || !p.health.up {
                    continue;
                }
                // The flows ending at the peer got no ack for the gap, or a
                // hop check (below) is unanswered for as long: the hop is dead.
                if late(p.unacked.gap_from()) || late(p.unacked.check()) {
                    p.health.up = false;
                    p.health.downs += 1;
                    p.unacked.clear();
                    self.stats.ack_gap_failovers += 1;
                    self.push_event(path_ref(peer, i), PathEventKind::AckGap, now);
                    // Without a control, worker 0 decides the paths for all:
                    // it takes this verdict too and passes it on (and its
                    // echoes raise the path again for every worker).
                    if local && self.settings.worker != 0 {
                        self.note_path(0, peer, i, false);
                    }
                } else if late(p.unacked.relayed_gap_from()) {
                    // Their acks come from further on: whether this hop is
                    // the dead one, one probe on it tells (a path without a
                    // session key carries nothing to check: its data was
                    // dropped here).
                    if !p.sealable {
                        p.unacked.forget_relayed();
                        continue;
                    }
                    let mut echoes = p.echoes;
                    let (k, nonce) = echoes.issue(&mut self.control_paths.nonce_keys);
                    let seq = super::probes::reflex_seq(k, self.settings.worker);
                    if !self.send_probe(peer, i, (seq, nonce), now, arena, out) {
                        return false;
                    }
                    let p = &mut self.peers[peer].paths[i];
                    p.echoes = echoes;
                    p.unacked.start_check(now);
                    self.stats.hop_checks += 1;
                }
            }
            let pp = &mut self.peers[peer];
            // Of several workers only worker 0 probes the paths (the others
            // send hop checks only): the others see no regular echo, so
            // silence says nothing there; their reflex is the ack gap and
            // the hop checks of the flows they run.
            let prober = self.settings.worker == 0;
            if local && prober {
                let sec = &self.sec;
                for p in &mut pp.paths {
                    // Without a session key with the path's next gateway
                    // (before its first handshake) no probe can be sealed:
                    // its silence says nothing, and counts from the key on,
                    // or once the start's grace is over (a peer that never
                    // answers a handshake is down).
                    if sec.required
                        && now < sec.no_key_grace_until
                        && !sec.keys.can_send(key_peer(peer, p), now)
                    {
                        p.health.last_echo = p.health.last_echo.max(now);
                        continue;
                    }
                    let rtt = p.data_rtt.max(p.health.srtt_ns);
                    if p.health.up && now > policy.silence_deadline(p.health.last_echo, rtt) {
                        p.health.up = false;
                        p.health.downs += 1;
                    }
                }
            }
            if let Some((o, n)) = pp.select(now, &policy, local) {
                self.hold_for_move(peer, o, n, None, now);
            }
            if !local || !prober {
                continue;
            }
            for i in 0..self.peers[peer].paths.len() {
                if now.saturating_sub(self.peers[peer].paths[i].health.last_probe) < interval {
                    continue;
                }
                // Issued on a copy: kept only if the probe went out.
                let mut echoes = self.peers[peer].paths[i].echoes;
                let (k, nonce) = echoes.issue(&mut self.control_paths.nonce_keys);
                let seq = super::probes::reflex_seq(k, self.settings.worker);
                if !self.send_probe(peer, i, (seq, nonce), now, arena, out) {
                    return false;
                }
                self.peers[peer].paths[i].echoes = echoes;
            }
        }
        true
    }
}
