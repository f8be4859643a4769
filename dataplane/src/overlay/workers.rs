//! A gateway of several workers: which worker owns what, and the notes the
//! stages pass each other (`worker/handoff.rs` carries them).
//!
//! Each class belongs to one worker ([`classify::class_owner`]): its
//! sessions and their admission. Each flow belongs to one worker
//! ([`classify::flow_owner`], spreading a class's flows over the workers):
//! its pacing queue, MONtra controller and ack tracker at the origin, its
//! ack aggregation at the destination. Whole packets go to the owner
//! through the handoff ports: a LAN packet to its class's owner (which
//! classifies it), then, tagged with the flow it chose, to the flow's
//! owner (which paces and sends it: at most two hops, never back); an
//! overlay data packet to its flow's owner. What is smaller than a packet
//! goes as a note:
//! - [`NOTE_ACK`]: an ack entry for a flow the owner controls (an ack
//!   message carries one source site's entries of every class);
//! - [`NOTE_ECHO`]: a probe echo for the worker that sent the probe (worker
//!   0's probes and the control's, any worker's hop checks: the probe's
//!   sequence number names it);
//! - [`NOTE_LEARN`]: a LAN host's MAC, learned here, for the workers that
//!   deliver to it;
//! - [`NOTE_PATH`]: while no control drives the paths, worker 0 (the one
//!   that probes) tells the others when a path goes down or comes back up,
//!   and another worker tells worker 0 when its ack gap (or hop check)
//!   took a path down, so that every worker follows that verdict too;
//! - [`NOTE_KEY`]: a new responder key confirmed (a packet authenticated
//!   with it) on one worker is its peer's sending key on every worker (a
//!   worker that never receives a packet under it would otherwise keep
//!   sealing with the old key until the control revokes it).
//! - [`NOTE_RST`]: a TCP RST from a remote host, delivered here, for the
//!   worker that holds the session it ends (its class's owner).
//!
//! A note that finds its ring full is lost and counted (`notes_lost`): an
//! ack is repeated by the next one (cumulative), an echo by the next probe,
//! a host's MAC at its next move. Notes are drained at every `poll`, up to
//! a budget.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Gateway, QueueId, Role, entry_to_info};
use crate::classify;
use crate::engine::Nanos;
use crate::wire::ethernet::MacAddr;
use crate::wire::oam::{ACK_ENTRY_LEN, AckEntry, Probe};
use crate::worker::handoff::{NOTE_DATA, Note, Notes, port_to};

/// An ack entry: flow index (u32 LE), then the 40-byte entry.
pub const NOTE_ACK: u32 = 1;
/// A probe echo: path id, sequence, send and echo times, nonce (LE).
pub const NOTE_ECHO: u32 = 2;
/// A learned LAN host: family (4 or 6), 16 address bytes, 6 MAC bytes.
pub const NOTE_LEARN: u32 = 3;
/// Worker 0's verdict on a path while no control drives them: peer
/// (u16 LE), candidate (u16 LE), up (1) or down (0).
pub const NOTE_PATH: u32 = 4;
/// A responder key confirmed by a packet on the sending worker: its local
/// index (u32 LE).
pub const NOTE_KEY: u32 = 5;
/// A remote host's TCP RST (remote -> local tuple): source and
/// destination addresses (16 bytes each, BE), source and destination ports
/// (BE), IP protocol, 1 for IPv6.
pub const NOTE_RST: u32 = 6;
const _: () = assert!(NOTE_DATA >= 4 + ACK_ENTRY_LEN);
const _: () = assert!(NOTE_DATA >= 38);
/// Notes taken per `poll`, per other worker.
const NOTE_BUDGET: u32 = 256;

impl Gateway {
    /// Joins the stage to its gateway's other workers (the application
    /// calls it once, before the worker runs).
    pub fn attach_notes(&mut self, notes: Notes) {
        self.notes = Some(notes);
    }

    /// The worker that owns flow `fi` ([`classify::flow_owner`]).
    #[inline]
    pub(crate) fn flow_owner(&self, fi: usize) -> u16 {
        classify::flow_owner(u32::try_from(fi).unwrap_or(0), self.settings.workers)
    }

    /// Whether this worker owns flow `fi`.
    #[inline]
    pub(crate) fn owns_flow(&self, fi: usize) -> bool {
        self.settings.workers <= 1 || self.flow_owner(fi) == self.settings.worker
    }

    /// The port that hands a packet to worker `to`.
    #[inline]
    pub(crate) fn handoff_port(&self, to: u16) -> Option<u16> {
        port_to(
            usize::from(self.settings.worker),
            usize::from(to),
            self.settings.handoff_first_port,
        )
    }

    fn send_note(&mut self, to: u16, n: Note) {
        let ok = self
            .notes
            .as_mut()
            .is_some_and(|ns| ns.push(usize::from(to), n));
        if ok {
            self.stats.notes_sent += 1;
        } else {
            self.stats.notes_lost += 1;
        }
    }

    /// Sends ack entry `e` of flow `fi` to the flow's owner.
    pub(crate) fn note_ack(&mut self, fi: usize, e: &AckEntry) {
        let mut n = Note::new(NOTE_ACK);
        let Ok(f) = u32::try_from(fi) else { return };
        n.data[..4].copy_from_slice(&f.to_le_bytes());
        if e.emit(&mut n.data[4..4 + ACK_ENTRY_LEN]).is_err() {
            return;
        }
        let to = self.flow_owner(fi);
        self.send_note(to, n);
    }

    /// Sends a probe echo to worker `to`, the one that sent the probe.
    pub(crate) fn note_echo(&mut self, to: u16, p: &Probe) {
        let mut n = Note::new(NOTE_ECHO);
        n.data[0..4].copy_from_slice(&p.path_id.to_le_bytes());
        n.data[4..8].copy_from_slice(&p.probe_seq.to_le_bytes());
        n.data[8..16].copy_from_slice(&p.send_ts_ns.to_le_bytes());
        n.data[16..24].copy_from_slice(&p.echo_ts_ns.to_le_bytes());
        n.data[24..32].copy_from_slice(&p.nonce.to_le_bytes());
        self.send_note(to, n);
    }

    /// Tells every other worker that LAN host `ip` is at `mac`.
    pub(crate) fn note_learned(&mut self, ip: IpAddr, mac: MacAddr) {
        let mut n = Note::new(NOTE_LEARN);
        match ip {
            IpAddr::V4(a) => {
                n.data[0] = 4;
                n.data[1..5].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                n.data[0] = 6;
                n.data[1..17].copy_from_slice(&a.octets());
            }
        }
        n.data[17..23].copy_from_slice(&mac.0);
        for w in 0..self.settings.workers {
            if w != self.settings.worker {
                self.send_note(w, n);
            }
        }
    }

    /// Worker 0, while it drives the paths itself (no control's lease):
    /// tells the other workers each path whose up/down state changed since
    /// it last told them (they do not probe, so they learn it here).
    pub(crate) fn share_path_states(&mut self) {
        if self.settings.workers <= 1 || self.settings.worker != 0 {
            return;
        }
        for peer in 0..self.peers.len() {
            for i in 0..self.peers[peer].paths.len() {
                let p = &mut self.peers[peer].paths[i];
                if p.health.up == p.shared_up {
                    continue;
                }
                p.shared_up = p.health.up;
                let up = p.health.up;
                for w in 1..self.settings.workers {
                    self.note_path(w, peer, i, up);
                }
            }
        }
    }

    /// Tells worker `to` that path `i` of `peer` is up or down: worker 0's
    /// verdicts to the others, another worker's ack gap to worker 0.
    pub(crate) fn note_path(&mut self, to: u16, peer: usize, i: usize, up: bool) {
        let (Ok(pe), Ok(ix)) = (u16::try_from(peer), u16::try_from(i)) else {
            return;
        };
        let mut n = Note::new(NOTE_PATH);
        n.data[0..2].copy_from_slice(&pe.to_le_bytes());
        n.data[2..4].copy_from_slice(&ix.to_le_bytes());
        n.data[4] = u8::from(up);
        self.send_note(to, n);
    }

    /// Tells every other worker that the key of `local_index` is confirmed.
    pub(crate) fn note_key_confirmed(&mut self, local_index: u32) {
        let mut n = Note::new(NOTE_KEY);
        n.data[0..4].copy_from_slice(&local_index.to_le_bytes());
        for w in 0..self.settings.workers {
            if w != self.settings.worker {
                self.send_note(w, n);
            }
        }
    }

    /// A TCP RST from a remote host was delivered here: the session it
    /// ends is this worker's, or its class owner's (told by a note).
    pub(crate) fn on_remote_rst(&mut self, i: &classify::inner::Inner) {
        if self.classifier.remote_rst(i) || self.settings.workers <= 1 {
            return;
        }
        let Some(owner) = self.classifier.remote_session_owner(i) else {
            return;
        };
        if owner == self.settings.worker {
            return;
        }
        let t = &i.tuple;
        let mut n = Note::new(NOTE_RST);
        n.data[0..16].copy_from_slice(&t.src.to_be_bytes());
        n.data[16..32].copy_from_slice(&t.dst.to_be_bytes());
        n.data[32..34].copy_from_slice(&t.sport.to_be_bytes());
        n.data[34..36].copy_from_slice(&t.dport.to_be_bytes());
        n.data[36] = t.proto;
        n.data[37] = u8::from(t.v6);
        self.send_note(owner, n);
    }

    /// Publishes the notes queued since the last call.
    pub(crate) fn flush_notes(&mut self) {
        if let Some(ns) = self.notes.as_mut() {
            ns.flush();
        }
    }

    /// Applies the other workers' notes (up to a budget per worker).
    pub(crate) fn drain_notes(&mut self, now: Nanos) {
        let Some(mut ns) = self.notes.take() else {
            return;
        };
        ns.drain(NOTE_BUDGET, |_, n| self.apply_note(n, now));
        self.notes = Some(ns);
    }

    fn apply_note(&mut self, n: &Note, now: Nanos) {
        self.stats.notes_received += 1;
        let d = &n.data;
        let u32_at = |i: usize| u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[i..i + 8]);
            u64::from_le_bytes(b)
        };
        match n.kind {
            NOTE_ACK => {
                let fi = u32_at(0) as usize;
                let Ok(e) = AckEntry::parse(&d[4..4 + ACK_ENTRY_LEN]) else {
                    self.stats.notes_bad += 1;
                    return;
                };
                if fi >= self.flows.len() || !self.owns_flow(fi) {
                    self.stats.notes_bad += 1;
                    return;
                }
                if self.apply_ack_entry(fi, &e, now)
                    && let Some(pi) = self.flows[fi].dest_peer
                {
                    self.note_ack_from_peer(pi, now);
                }
            }
            NOTE_ECHO => {
                let p = Probe {
                    path_id: u32_at(0),
                    probe_seq: u32_at(4),
                    send_ts_ns: u64_at(8),
                    echo_ts_ns: u64_at(16),
                    nonce: u64_at(24),
                };
                self.on_echo(&p, now);
            }
            NOTE_LEARN => {
                let ip = match d[0] {
                    4 => IpAddr::V4(Ipv4Addr::new(d[1], d[2], d[3], d[4])),
                    6 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&d[1..17]);
                        IpAddr::V6(Ipv6Addr::from(a))
                    }
                    _ => {
                        self.stats.notes_bad += 1;
                        return;
                    }
                };
                let mut m = [0u8; 6];
                m.copy_from_slice(&d[17..23]);
                self.learned.learn_from_worker(ip, MacAddr(m), now);
            }
            NOTE_KEY => {
                if self.sec.keys.confirm(u32_at(0)) {
                    self.stats.keys_confirmed += 1;
                }
            }
            NOTE_RST => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&d[0..16]);
                let src = u128::from_be_bytes(a);
                a.copy_from_slice(&d[16..32]);
                let dst = u128::from_be_bytes(a);
                let i = classify::inner::Inner {
                    tuple: classify::inner::FiveTuple {
                        src,
                        dst,
                        sport: u16::from_be_bytes([d[32], d[33]]),
                        dport: u16::from_be_bytes([d[34], d[35]]),
                        proto: d[36],
                        v6: d[37] != 0,
                    },
                    dscp: 0,
                    tcp_flags: crate::wire::tcp::flags::RST,
                };
                if d[37] > 1 {
                    self.stats.notes_bad += 1;
                    return;
                }
                // False: gone already (expired, or the host's own RST).
                self.classifier.remote_rst(&i);
            }
            NOTE_PATH => {
                let peer = usize::from(u16::from_le_bytes([d[0], d[1]]));
                let idx = usize::from(u16::from_le_bytes([d[2], d[3]]));
                self.on_path_note(peer, idx, d[4] != 0, now);
            }
            _ => self.stats.notes_bad += 1,
        }
    }

    /// Applies one ack entry to flow `fi`'s tracker and controller (this
    /// worker owns the flow); false when the flow does not start here.
    pub(crate) fn apply_ack_entry(&mut self, fi: usize, e: &AckEntry, now: Nanos) -> bool {
        self.note_flow_acked(fi);
        let Some(o) = self.flows[fi].origin.as_mut() else {
            self.stats.ack_entries_unknown += 1;
            return false;
        };
        let outcome = o.tracker.on_ack(&entry_to_info(e), now);
        // The first ack after an outage of the route further on: what it
        // declares lost was lost in the outage, not to congestion.
        let back = core::mem::replace(&mut o.route_out, false);
        if outcome.acked > 0 {
            o.ctl.on_acks(outcome.acked, now);
        }
        if outcome.lost > 0 && !back {
            o.ctl.on_losses(outcome.lost);
        }
        let rate = o.ctl.rate();
        self.pacing.set_rate(QueueId::flow(fi).0, rate, now);
        if back {
            self.restart_rate(fi, now);
        }
        // A new RTT estimate or oldest packet moves the loss deadline.
        self.rearm(fi);
        if let Some(rtt) = outcome.rtt_sample_ns {
            self.note_flow_rtt(fi, rtt);
        }
        self.stats.ack_entries_applied += 1;
        true
    }

    /// Worker 0's verdict on candidate `idx` of `peer`: applied while no
    /// control drives the paths (its marks and assignments rule
    /// otherwise), then the peer's active path chosen again as worker 0's
    /// own reflex would.
    fn on_path_note(&mut self, peer: usize, idx: usize, up: bool, now: Nanos) {
        if self.control_drives_paths(now) {
            return;
        }
        // Worker 0 takes only the others' downs (their ack gaps); its own
        // probes decide when a path is up again.
        if self.settings.worker == 0 && up {
            self.stats.notes_bad += 1;
            return;
        }
        let policy = self.settings.health;
        let Some(p) = self
            .peers
            .get_mut(peer)
            .and_then(|pp| pp.paths.get_mut(idx))
        else {
            self.stats.notes_bad += 1;
            return;
        };
        if p.health.up == up {
            return;
        }
        p.health.up = up;
        if up {
            p.health.held = false;
            p.health.up_since = now;
        } else {
            p.health.downs += 1;
        }
        if let Some((o, n)) = self.peers[peer].select(now, &policy, true) {
            self.hold_for_move(peer, o, n, None, now);
        }
    }

    /// Whether a destination flow's data packet goes to another worker.
    #[inline]
    pub(crate) fn data_owner_elsewhere(&self, fi: usize) -> Option<u16> {
        if self.settings.workers <= 1 || self.flows[fi].role != Role::Destination {
            return None;
        }
        let o = self.flow_owner(fi);
        (o != self.settings.worker).then_some(o)
    }
}
