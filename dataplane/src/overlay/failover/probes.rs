//! Probes out and echoes back: the dataplane's own probes (timed by the
//! reflex) and the control's probe commands, each answered by one
//! [`ProbeOutcome`].
//!
//! Every probe carries a nonce (`wire::oam::Probe::nonce`) that the echo
//! returns: probe `k` of a path (or of a control command) carries the first
//! output of SplitMix64 seeded with `key ^ k`, where `key` is drawn at random
//! per path (per command) from a generator the kernel seeded. An echo counts
//! only when it names one of the last [`ECHO_WINDOW`] probes sent there,
//! carries that probe's nonce, and that probe was not answered yet; others
//! are counted (`probe_nonce_bad`) and ignored. An off-path host cannot
//! guess a nonce, and a replayed echo answers nothing.

use super::{PathEventKind, ProbeOutcome, path_ref, split_path_ref};
use crate::engine::{Arena, Batch, Nanos, Packet, Verdict};
use crate::overlay::secure::EncapFail;
use crate::overlay::{Gateway, oam_params};
use crate::sys::rng::SplitMix64;
use crate::wire::oam::{self, Probe};

/// Probe commands in flight at once (a fixed table: no allocation).
pub const CONTROL_PROBE_SLOTS: usize = 64;
/// Probes one command may ask for.
pub const CONTROL_PROBE_MAX_COUNT: u32 = 64;
/// Largest gap between the probes of one command, ns.
pub const CONTROL_PROBE_MAX_INTERVAL_NS: u64 = 10_000_000_000;
/// A command's last probe unanswered for this long counts as lost.
pub const CONTROL_PROBE_TIMEOUT_NS: u64 = 1_000_000_000;
/// Marks a probe sent for a control command (the rest of the sequence
/// number is the slot's generation (bits 16..31), the probe's index in the
/// command (bits 8..16) and the slot (bits 0..8)).
const CONTROL_SEQ_BIT: u32 = 0x8000_0000;
/// Probes whose echo is still accepted, per path and per command: the last
/// this many sent (a command sends at most [`CONTROL_PROBE_MAX_COUNT`]).
pub const ECHO_WINDOW: u64 = 64;
/// The dataplane's own probes name the worker that sent them in bits
/// 25..31 of the sequence number (up to 64 workers, `shm::MAX_WORKERS`):
/// worker 0's probes, and any worker's hop checks. Their echo goes back to
/// that worker, whichever worker the NIC gives it to.
const REFLEX_WORKER_SHIFT: u32 = 25;
/// Sequence numbers of the dataplane's own probes wrap at 25 bits (above
/// them the worker, and the top bit is [`CONTROL_SEQ_BIT`]).
const REFLEX_SEQ_MASK: u64 = (1 << REFLEX_WORKER_SHIFT) - 1;

/// The sequence number on the wire of worker `worker`'s own probe `k`.
pub(crate) fn reflex_seq(k: u64, worker: u16) -> u32 {
    let seq = u32::try_from(k & REFLEX_SEQ_MASK).unwrap_or(0);
    let w = u32::from(worker) & 0x3F;
    seq | w << REFLEX_WORKER_SHIFT
}

/// The worker an echo of `probe_seq` belongs to: the sender of one of the
/// dataplane's own probes, worker 0 for the control's (worker 0 sends them).
pub(crate) fn echo_worker(probe_seq: u32) -> u16 {
    if probe_seq & CONTROL_SEQ_BIT != 0 {
        0
    } else {
        u16::try_from((probe_seq >> REFLEX_WORKER_SHIFT) & 0x3F).unwrap_or(0)
    }
}

/// The nonces of one run of probes (a path's own probes, or a command's)
/// and which of the last [`ECHO_WINDOW`] were answered. Pure.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EchoWindow {
    /// 0: not drawn yet (drawn at the first probe).
    key: u64,
    /// Probes issued.
    sent: u64,
    /// Bit `i`: probe `sent - 1 - i` was answered.
    answered: u64,
}

impl EchoWindow {
    /// A fresh run with nonces from `key`.
    pub(crate) fn new(key: u64) -> Self {
        Self {
            key,
            sent: 0,
            answered: 0,
        }
    }

    /// The nonce of probe `k`.
    fn nonce(&self, k: u64) -> u64 {
        SplitMix64::new(self.key ^ k).next_u64()
    }

    /// Issues the next probe: its index and nonce (draws the key from
    /// `keys` at the first one).
    pub(crate) fn issue(&mut self, keys: &mut SplitMix64) -> (u64, u64) {
        if self.key == 0 {
            self.key = keys.next_u64() | 1;
        }
        let k = self.sent;
        self.sent += 1;
        self.answered <<= 1;
        (k, self.nonce(k))
    }

    /// An echo naming probe index `seq` (compared modulo `mask + 1`, the
    /// width the wire carries) with `nonce`: true, once, when it answers one
    /// of the last [`ECHO_WINDOW`] probes issued.
    pub(crate) fn accept(&mut self, seq: u64, mask: u64, nonce: u64) -> bool {
        let Some(last) = self.sent.checked_sub(1) else {
            return false;
        };
        let back = (last & mask).wrapping_sub(seq & mask) & mask;
        if back >= ECHO_WINDOW || back > last || self.nonce(last - back) != nonce {
            return false;
        }
        let bit = 1u64 << back;
        if self.answered & bit != 0 {
            return false;
        }
        self.answered |= bit;
        true
    }
}

/// A probe command being carried out.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ControlProbe {
    busy: bool,
    generation: u16,
    id: u64,
    peer: u16,
    index: u16,
    count: u32,
    sent: u32,
    received: u32,
    interval: u64,
    next_at: Nanos,
    last_sent: Nanos,
    rtt_min: u64,
    rtt_sum: u64,
    echoes: EchoWindow,
}

impl Gateway {
    /// A probe command from the control process: `count` probes on
    /// `path`, `interval_ns` apart, answered by one [`ProbeOutcome`]. A
    /// command naming an unknown path, asking for no or too many probes or
    /// too long a gap, or finding every slot busy, is counted and answered
    /// at once with `sent = 0`.
    pub fn on_probe_command(
        &mut self,
        id: u64,
        path: u32,
        count: u32,
        interval_ns: u64,
        now: Nanos,
    ) {
        self.control_paths.last_command = Some(now);
        let refuse = |g: &mut Self| {
            g.push_outcome(ProbeOutcome {
                id,
                path,
                sent: 0,
                received: 0,
                rtt_min_ns: 0,
                rtt_mean_ns: 0,
            });
        };
        let valid = (1..=CONTROL_PROBE_MAX_COUNT).contains(&count)
            && interval_ns <= CONTROL_PROBE_MAX_INTERVAL_NS;
        let Some((peer, i)) = self.checked_ref(path).filter(|_| valid) else {
            self.stats.probe_command_bad += 1;
            refuse(self);
            return;
        };
        let Some(slot) = self.control_paths.slots.iter_mut().find(|s| !s.busy) else {
            self.stats.probe_command_busy += 1;
            refuse(self);
            return;
        };
        *slot = ControlProbe {
            busy: true,
            generation: slot.generation.wrapping_add(1) & 0x7FFF,
            id,
            peer: u16::try_from(peer).unwrap_or(u16::MAX),
            index: u16::try_from(i).unwrap_or(u16::MAX),
            count,
            interval: interval_ns,
            next_at: now,
            echoes: EchoWindow::new(self.control_paths.nonce_keys.next_u64() | 1),
            ..ControlProbe::default()
        };
        self.control_paths.busy += 1;
    }

    /// A probe echo came back.
    pub(crate) fn on_echo(&mut self, probe: &Probe, now: Nanos) {
        let (peer, idx) = split_path_ref(probe.path_id);
        let policy = self.settings.health;
        let local = !self.control_drives_paths(now);
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
        if probe.probe_seq & CONTROL_SEQ_BIT != 0 {
            // The control's probe: its slot must be carrying out a command
            // on this very path, of this generation, and the nonce must be
            // that of one of its probes not answered yet.
            let slot = usize::try_from(probe.probe_seq & 0xFF).unwrap_or(usize::MAX);
            let index = u64::from((probe.probe_seq >> 8) & 0xFF);
            let generation = u16::try_from((probe.probe_seq >> 16) & 0x7FFF).unwrap_or(0);
            match self.control_paths.slots.get_mut(slot) {
                Some(s)
                    if s.busy
                        && s.generation == generation
                        && usize::from(s.peer) == peer
                        && usize::from(s.index) == idx
                        && s.received < s.sent =>
                {
                    if !s.echoes.accept(index, u64::MAX, probe.nonce) {
                        self.stats.probe_nonce_bad += 1;
                        return;
                    }
                    s.received += 1;
                    s.rtt_min = if s.rtt_min == 0 {
                        rtt
                    } else {
                        s.rtt_min.min(rtt)
                    };
                    s.rtt_sum += rtt;
                }
                _ => {
                    self.stats.probe_unknown += 1;
                    return;
                }
            }
        } else if !p
            .echoes
            .accept(u64::from(probe.probe_seq), REFLEX_SEQ_MASK, probe.nonce)
        {
            self.stats.probe_nonce_bad += 1;
            return;
        }
        // The hop works: a hop check out since the probe left is answered,
        // and the route of the silent flows is out further on.
        let route_out = p.unacked.hop_answered(probe.send_ts_ns);
        let h = &mut p.health;
        h.echoes += 1;
        h.last_echo = h.last_echo.max(now);
        h.srtt_ns = if h.srtt_ns == 0 {
            rtt
        } else {
            (7 * h.srtt_ns + rtt) / 8
        };
        // While a control decides, an echo is its evidence, not a verdict:
        // it raises a path with an assignment or an up mark. Of several
        // workers only worker 0 decides (the others follow its verdicts; an
        // echo here answers their own hop check).
        if !h.up && local && self.settings.worker == 0 {
            h.up = true;
            h.held = false;
            h.up_since = now;
            self.push_event(path_ref(peer, idx), PathEventKind::Up, now);
        }
        if route_out {
            self.stats.hop_checks_answered += 1;
            self.mark_route_out(peer, idx);
        }
        if let Some((o, n)) = self.peers[peer].select(now, &policy, local) {
            self.hold_for_move(peer, o, n, None, now);
        }
    }

    /// Sends due probes of the control's commands; finishes commands.
    pub(super) fn control_probe_timers(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        // Every poll runs this: nothing to look at without a command.
        if self.control_paths.busy == 0 {
            return;
        }
        for k in 0..CONTROL_PROBE_SLOTS {
            let s = self.control_paths.slots[k];
            if !s.busy {
                continue;
            }
            let done = s.received == s.count
                || (s.sent == s.count
                    && now.saturating_sub(s.last_sent) > CONTROL_PROBE_TIMEOUT_NS);
            if done {
                self.control_paths.slots[k].busy = false;
                self.control_paths.busy -= 1;
                self.push_outcome(ProbeOutcome {
                    id: s.id,
                    path: path_ref(usize::from(s.peer), usize::from(s.index)),
                    sent: s.sent,
                    received: s.received,
                    rtt_min_ns: s.rtt_min,
                    rtt_mean_ns: if s.received > 0 {
                        s.rtt_sum / u64::from(s.received)
                    } else {
                        0
                    },
                });
                continue;
            }
            if s.sent < s.count && now >= s.next_at {
                let slot = u32::try_from(k).unwrap_or(0);
                // Issued on a copy: kept only if the probe went out.
                let mut echoes = s.echoes;
                let (j, nonce) = echoes.issue(&mut self.control_paths.nonce_keys);
                let j = u32::try_from(j).unwrap_or(0) & 0xFF;
                let seq = CONTROL_SEQ_BIT | u32::from(s.generation) << 16 | j << 8 | slot;
                if !self.send_probe(
                    usize::from(s.peer),
                    usize::from(s.index),
                    (seq, nonce),
                    now,
                    arena,
                    out,
                ) {
                    return;
                }
                let s = &mut self.control_paths.slots[k];
                s.echoes = echoes;
                s.sent += 1;
                s.last_sent = now;
                s.next_at = now.saturating_add(s.interval);
            }
        }
    }

    /// Emits one probe with `(sequence number, nonce)` on candidate `i` of
    /// `peer`; false when there is no room (batch full or no frame: try
    /// again next time).
    pub(super) fn send_probe(
        &mut self,
        peer: usize,
        i: usize,
        (seq, nonce): (u32, u64),
        now: Nanos,
        arena: &mut Arena,
        out: &mut Batch,
    ) -> bool {
        if out.spare() == 0 {
            return false;
        }
        let Some(base) = self.reserve.pop() else {
            self.stats.probe_no_frame += 1;
            return false;
        };
        self.oam_seq += 1;
        let sec = &mut self.sec;
        let path = &mut self.peers[peer].paths[i];
        path.health.last_probe = now;
        let probe = Probe {
            path_id: path_ref(peer, i),
            probe_seq: seq,
            send_ts_ns: now,
            echo_ts_ns: 0,
            nonce,
        };
        let params = oam_params(self.oam_seq, now);
        let msg = oam::Repr::Probe(probe);
        let kp = crate::overlay::secure::key_peer(peer, path);
        let res = crate::overlay::secure::encap_oam(
            sec,
            kp,
            &path.template,
            arena,
            base,
            &msg,
            &params,
            now,
        );
        match res {
            Ok(r) => {
                let len = u32::try_from(r.len()).unwrap_or(0);
                let mut pkt = Packet::new(base + r.start as u64, len, self.settings.lan_port, now);
                pkt.verdict = Verdict::Tx(path.port);
                path.health.probes_sent += 1;
                path.health.probe_bytes += u64::from(len);
                out.push(pkt);
                self.stats.probes_sent += 1;
            }
            Err(EncapFail::NoSession) => {
                self.stats.no_session += 1;
                self.drop_frame(base, crate::engine::DropReason::NoSession, now, out);
            }
            Err(EncapFail::Room) => {
                self.stats.encap_failed += 1;
                self.reserve.push(base);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echo_answers_one_probe_sent_once() {
        let mut keys = SplitMix64::new(7);
        let mut w = EchoWindow::default();
        assert!(!w.accept(0, u64::MAX, 0), "nothing sent yet");
        let sent: Vec<(u64, u64)> = (0..3).map(|_| w.issue(&mut keys)).collect();
        assert_eq!(sent.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(sent[0].1 != sent[1].1 && sent[1].1 != sent[2].1);
        // Wrong nonce, a probe not sent yet: refused.
        assert!(!w.accept(1, u64::MAX, sent[1].1 ^ 1));
        assert!(!w.accept(3, u64::MAX, sent[2].1));
        // Out of order, each once.
        assert!(w.accept(2, u64::MAX, sent[2].1));
        assert!(w.accept(0, u64::MAX, sent[0].1));
        assert!(!w.accept(2, u64::MAX, sent[2].1), "replay");
        assert!(w.accept(1, u64::MAX, sent[1].1));
        // Another window (another key) does not take these nonces.
        let mut other = EchoWindow::default();
        other.issue(&mut keys);
        assert!(!other.accept(0, u64::MAX, sent[0].1));
    }

    #[test]
    fn only_the_last_probes_are_answered() {
        let mut keys = SplitMix64::new(1);
        let mut w = EchoWindow::new(99);
        let first = w.issue(&mut keys);
        let mut last = first;
        for _ in 0..ECHO_WINDOW {
            last = w.issue(&mut keys);
        }
        assert!(!w.accept(first.0, u64::MAX, first.1), "out of the window");
        assert!(w.accept(last.0, u64::MAX, last.1));
        let oldest = last.0 - (ECHO_WINDOW - 1);
        assert!(w.accept(oldest, u64::MAX, w.nonce(oldest)));
    }

    #[test]
    fn an_echo_goes_back_to_the_worker_that_sent_the_probe() {
        for w in [0u16, 1, 5, 63] {
            for k in [0u64, 1, REFLEX_SEQ_MASK, REFLEX_SEQ_MASK + 1, u64::MAX] {
                let seq = reflex_seq(k, w);
                assert_eq!(seq & CONTROL_SEQ_BIT, 0, "never a control probe's");
                assert_eq!(echo_worker(seq), w, "k {k}");
                assert_eq!(u64::from(seq) & REFLEX_SEQ_MASK, k & REFLEX_SEQ_MASK);
            }
        }
        // The control's probes are worker 0's whatever their other bits.
        assert_eq!(echo_worker(CONTROL_SEQ_BIT | 0x7F00_0000), 0);
        // An echo names the probe by its wire bits: the window takes it.
        let mut keys = SplitMix64::new(3);
        let mut w = EchoWindow::new(5);
        let (k, n) = w.issue(&mut keys);
        assert!(w.accept(u64::from(reflex_seq(k, 7)), REFLEX_SEQ_MASK, n));
    }

    #[test]
    fn sequence_numbers_wrap_at_the_wire_width() {
        let mut keys = SplitMix64::new(3);
        let mut w = EchoWindow::new(5);
        w.sent = REFLEX_SEQ_MASK + 10;
        let (k, n) = w.issue(&mut keys);
        assert_eq!(k & REFLEX_SEQ_MASK, 9);
        assert!(!w.accept(9, REFLEX_SEQ_MASK, n ^ 1));
        assert!(w.accept(9, REFLEX_SEQ_MASK, n));
    }
}
