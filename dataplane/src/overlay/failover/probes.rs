//! Probes out and echoes back: the dataplane's own probes (timed by the
//! reflex) and the control's probe commands, each answered by one
//! [`ProbeOutcome`].

use super::{PathEventKind, ProbeOutcome, path_ref, split_path_ref};
use crate::engine::{Arena, Batch, Nanos, Packet, Verdict};
use crate::overlay::secure::EncapFail;
use crate::overlay::{Gateway, oam_params};
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
/// number is the slot and its generation).
const CONTROL_SEQ_BIT: u32 = 0x8000_0000;

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
            // on this very path, of this generation.
            let slot = usize::try_from(probe.probe_seq & 0xFFFF).unwrap_or(usize::MAX);
            let generation = u16::try_from((probe.probe_seq >> 16) & 0x7FFF).unwrap_or(0);
            match self.control_paths.slots.get_mut(slot) {
                Some(s)
                    if s.busy
                        && s.generation == generation
                        && usize::from(s.peer) == peer
                        && usize::from(s.index) == idx
                        && s.received < s.sent =>
                {
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
        }
        let h = &mut p.health;
        h.echoes += 1;
        h.last_echo = h.last_echo.max(now);
        h.srtt_ns = if h.srtt_ns == 0 {
            rtt
        } else {
            (7 * h.srtt_ns + rtt) / 8
        };
        // While a control decides, an echo is its evidence, not a verdict:
        // it raises a path with an assignment or an up mark.
        if !h.up && local {
            h.up = true;
            h.up_since = now;
            self.push_event(path_ref(peer, idx), PathEventKind::Up, now);
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
                let seq = CONTROL_SEQ_BIT | u32::from(s.generation) << 16 | slot;
                if !self.send_probe(
                    usize::from(s.peer),
                    usize::from(s.index),
                    seq,
                    now,
                    arena,
                    out,
                ) {
                    return;
                }
                let s = &mut self.control_paths.slots[k];
                s.sent += 1;
                s.last_sent = now;
                s.next_at = now.saturating_add(s.interval);
            }
        }
    }

    /// Emits one probe on candidate `i` of `peer`; false when there is no
    /// room (batch full or no frame: try again next time).
    pub(super) fn send_probe(
        &mut self,
        peer: usize,
        i: usize,
        seq: u32,
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
        };
        let params = oam_params(self.oam_seq, now);
        let off = (arena.headroom() as usize).max(path.template.header_len());
        let msg = oam::Repr::Probe(probe);
        let frame_size = arena.frame_size();
        let kp = crate::overlay::secure::key_peer(peer, path);
        let res = match arena.get_mut(base, frame_size) {
            Some(buf) => match buf.get_mut(off..).map(|b| msg.emit(b)) {
                Some(Ok(len)) => crate::overlay::secure::encap_out(
                    sec,
                    kp,
                    &path.template,
                    buf,
                    off,
                    len,
                    &params,
                    now,
                ),
                _ => Err(EncapFail::Room),
            },
            None => Err(EncapFail::Room),
        };
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
