//! Ack emission at the destination: entries produced by the per-flow
//! aggregators (every N packets or after the delay, `montra::AckPolicy`)
//! wait per source site, at most one per flow (a newer ack supersedes an
//! older one: it is cumulative), and leave from [`crate::engine::Stage::poll`]
//! as one OAM message per source site, in frames of the private reserve.

use super::secure::{EncapFail, encap_oam, key_peer};
use super::{Gateway, MAX_ACK_ENTRIES_PER_MESSAGE, NO_ACK_SLOT, info_to_entry};
use crate::engine::{Arena, Batch, DropReason, Nanos, Packet, Verdict};
use crate::montra::AckInfo;
use crate::wire::oam::{self, AckEntries, AckEntry};

/// The acks waiting for one source site, oldest first, at most one per
/// flow. Entries `head..` are pending; a flow's entry is found through its
/// [`super::Receiver::ack_slot`] (O(1), whatever the number pending), sent
/// ones are skipped by moving `head` (nothing is shifted per message), and
/// the vectors are reset when empty or compacted when full.
#[derive(Clone, Debug, Default)]
pub(crate) struct AckQueue {
    entries: Vec<AckEntry>,
    /// Flow index of each entry.
    flows: Vec<u32>,
    head: usize,
}

impl AckQueue {
    /// A queue for up to `flows` flows (allocates here only).
    pub(crate) fn with_capacity(flows: usize) -> Self {
        Self {
            entries: Vec::with_capacity(flows),
            flows: Vec::with_capacity(flows),
            head: 0,
        }
    }

    /// Entries pending.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.head
    }

    /// True when nothing is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every pending entry.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.flows.clear();
        self.head = 0;
    }

    /// Puts flow `fi`'s entry `e` in the queue: in place of its pending one
    /// (`*slot` names it), else at the tail; `*slot` is updated. Returns
    /// false (nothing queued) when the queue is full of pending entries
    /// (more flows than it was built for: not by construction). Call
    /// [`Self::make_room`] first.
    pub(crate) fn put(&mut self, fi: u32, slot: &mut u32, e: AckEntry) -> bool {
        let at = *slot as usize;
        if at >= self.head && at < self.entries.len() && self.flows[at] == fi {
            self.entries[at] = e;
            return true;
        }
        if self.entries.len() == self.entries.capacity() {
            return false;
        }
        *slot = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.entries.push(e);
        self.flows.push(fi);
        true
    }

    /// When the vectors are full and sent entries sit before `head`, moves
    /// the pending entries to the front and returns their flows (whose
    /// slots are now their positions: the caller updates them).
    pub(crate) fn make_room(&mut self) -> Option<&[u32]> {
        if self.entries.len() < self.entries.capacity() || self.head == 0 {
            return None;
        }
        self.entries.drain(..self.head);
        self.flows.drain(..self.head);
        self.head = 0;
        Some(&self.flows)
    }

    /// The oldest `n` pending entries (at most [`Self::len`]).
    pub(crate) fn front(&self, n: usize) -> &[AckEntry] {
        let end = self.head + n.min(self.len());
        &self.entries[self.head..end]
    }

    /// The flows of the oldest `n` pending entries.
    pub(crate) fn front_flows(&self, n: usize) -> &[u32] {
        let end = self.head + n.min(self.len());
        &self.flows[self.head..end]
    }

    /// The flows of the oldest `n` pending entries (as [`Self::front_flows`]).
    pub(crate) fn window(&self, n: usize) -> &[u32] {
        self.front_flows(n)
    }

    /// Moves the entries of the oldest `w` pending ones (`w` at most
    /// [`PARTITION_WINDOW`]) whose bit is set in `mask` (bit `k`: the
    /// `k`-th oldest) to the front, keeping the order within either part,
    /// and returns how many moved there (they are the next message). The
    /// `w` entries' positions may change: the caller updates their flows'
    /// slots from [`Self::window`] (position `k` there is slot
    /// `Self::head_slot() + k`). Copies on the stack only.
    pub(crate) fn partition_front(&mut self, w: usize, mask: u64) -> usize {
        let w = w.min(self.len()).min(PARTITION_WINDOW);
        let mask = if w < PARTITION_WINDOW {
            mask & ((1u64 << w) - 1)
        } else {
            mask
        };
        if mask & mask.wrapping_add(1) == 0 {
            // The oldest ones (or none): already in front.
            return mask.count_ones() as usize;
        }
        let mut rest_e = [AckEntry::default(); PARTITION_WINDOW];
        let mut rest_f = [0u32; PARTITION_WINDOW];
        let (mut m, mut r) = (0, 0);
        for k in 0..w {
            let (e, f) = (self.entries[self.head + k], self.flows[self.head + k]);
            if mask & (1 << k) != 0 {
                self.entries[self.head + m] = e;
                self.flows[self.head + m] = f;
                m += 1;
            } else {
                rest_e[r] = e;
                rest_f[r] = f;
                r += 1;
            }
        }
        self.entries[self.head + m..self.head + w].copy_from_slice(&rest_e[..r]);
        self.flows[self.head + m..self.head + w].copy_from_slice(&rest_f[..r]);
        m
    }

    /// The slot of the oldest pending entry.
    pub(crate) fn head_slot(&self) -> usize {
        self.head
    }

    /// Removes the oldest `n` pending entries.
    pub(crate) fn pop_front(&mut self, n: usize) {
        self.head += n.min(self.len());
        if self.head == self.entries.len() {
            self.clear();
        }
    }
}

/// Pending entries [`AckQueue::partition_front`] looks at for a message:
/// the entries of a route's flows among the oldest this many leave
/// together (a `u64` mask; twice a message's entries).
pub(crate) const PARTITION_WINDOW: usize = 64;

/// Ack messages to one source site per [`Gateway::emit_acks`] call: one per
/// way back its flows' acks take (a flow's acks reverse its data's hop),
/// up to this many ways.
const MESSAGES_PER_PEER: usize = 4;

impl Gateway {
    /// Queues the ack `info` of flow `fi` (ending here) for its source site.
    pub(crate) fn queue_ack(&mut self, fi: usize, info: &AckInfo) {
        let Some(q) = self
            .flows
            .get(fi)
            .and_then(|f| f.src_peer)
            .and_then(|p| self.pending_acks.get_mut(p))
        else {
            return;
        };
        if let Some(moved) = q.make_room() {
            for (k, &g) in moved.iter().enumerate() {
                if let Some(r) = self.flows[g as usize].receiver.as_mut() {
                    r.ack_slot = u32::try_from(k).unwrap_or(NO_ACK_SLOT);
                }
            }
        }
        let f = &mut self.flows[fi];
        let Some(r) = f.receiver.as_mut() else {
            return;
        };
        let e = info_to_entry(f.wire_id, info, r.received, r.agg.abandoned());
        // fi < MAX_FLOWS (Gateway::new refuses more flows).
        let idx = u32::try_from(fi).unwrap_or(u32::MAX);
        q.put(idx, &mut r.ack_slot, e);
    }

    /// Sends the pending acks: per source site per call, one message (up
    /// to 32 entries) per way back its flows' acks take (the reverse of
    /// the hop each flow's data came by, [`super::failover::PeerPaths::flow_ack_route`]),
    /// at most [`MESSAGES_PER_PEER`], while reserve frames and batch room last.
    pub(crate) fn emit_acks(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        for peer in 0..self.pending_acks.len() {
            for _ in 0..MESSAGES_PER_PEER {
                if self.pending_acks[peer].is_empty() {
                    break;
                }
                if !self.emit_ack_message(peer, now, arena, out) {
                    return;
                }
            }
        }
    }

    /// The route (candidate of `pp`) flow `fi`'s acks take at `now`.
    fn ack_route_of(&self, pp: &super::failover::PeerPaths, fi: u32, now: Nanos) -> Option<usize> {
        let r = self
            .flows
            .get(fi as usize)
            .and_then(|f| f.receiver.as_ref());
        pp.flow_ack_route(
            r.and_then(|r| r.ack_hop),
            r.map_or(0, |r| r.ack_hop_seen),
            now,
        )
    }

    /// Sends one ack message to source site `peer` (pending acks there):
    /// the entries, among the oldest [`PARTITION_WINDOW`], of the flows
    /// whose acks take the oldest one's route. False when out of batch
    /// room or reserve frames (stop for this call).
    fn emit_ack_message(
        &mut self,
        peer: usize,
        now: Nanos,
        arena: &mut Arena,
        out: &mut Batch,
    ) -> bool {
        let Some(pp) = self.peers.get(peer) else {
            self.pending_acks[peer].clear();
            return true;
        };
        let q = &self.pending_acks[peer];
        let window = q.window(PARTITION_WINDOW);
        let Some(route) = window
            .first()
            .and_then(|&fi| self.ack_route_of(pp, fi, now))
        else {
            // No way back to that site at all: nothing pending can leave.
            self.pending_acks[peer].clear();
            return true;
        };
        let mut mask = 0u64;
        let mut picked = 0;
        for (k, &fi) in window.iter().enumerate() {
            if picked < MAX_ACK_ENTRIES_PER_MESSAGE && self.ack_route_of(pp, fi, now) == Some(route)
            {
                mask |= 1 << k;
                picked += 1;
            }
        }
        if out.spare() == 0 {
            return false;
        }
        let Some(base) = self.reserve.pop() else {
            self.stats.ack_no_frame += 1;
            return false;
        };
        let w = window.len();
        let q = &mut self.pending_acks[peer];
        let n = q.partition_front(w, mask);
        if n < w {
            let head = q.head_slot();
            for (k, &fi) in q.window(w).iter().enumerate() {
                if let Some(r) = self.flows[fi as usize].receiver.as_mut() {
                    r.ack_slot = u32::try_from(head + k).unwrap_or(NO_ACK_SLOT);
                }
            }
        }
        let q = &self.pending_acks[peer];
        let Some(path) = self.peers.get(peer).and_then(|pp| pp.paths.get(route)) else {
            self.reserve.push(base);
            self.pending_acks[peer].clear();
            return true;
        };
        self.oam_seq += 1;
        let params = super::oam_params(self.oam_seq, now);
        let msg = oam::Repr::Ack(AckEntries::Values(q.front(n)));
        let kp = key_peer(peer, path);
        let res = encap_oam(
            &mut self.sec,
            kp,
            &path.template,
            arena,
            base,
            &msg,
            &params,
            now,
        );
        let q = &mut self.pending_acks[peer];
        for &fi in q.front_flows(n) {
            if let Some(r) = self.flows[fi as usize].receiver.as_mut() {
                r.ack_slot = NO_ACK_SLOT;
            }
        }
        q.pop_front(n);
        let port = path.port;
        match res {
            Ok(r) => {
                let mut pkt = Packet::new(
                    base + r.start as u64,
                    u32::try_from(r.len()).unwrap_or(0),
                    self.settings.lan_port,
                    now,
                );
                pkt.verdict = Verdict::Tx(port);
                out.push(pkt);
                self.stats.acks_sent += 1;
                self.stats.ack_entries_sent += n as u64;
            }
            Err(EncapFail::NoSession) => {
                self.stats.no_session += 1;
                self.drop_frame(base, DropReason::NoSession, now, out);
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
    use crate::overlay::NO_ACK_SLOT;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    fn entry(flow_id: u32, cum_seq: u64) -> AckEntry {
        AckEntry {
            flow_id,
            cum_seq,
            ..AckEntry::default()
        }
    }

    /// The queue as the gateway drives it: one slot per flow, reset when
    /// the flow's entry is sent, moved when the queue compacts.
    struct Driven {
        q: AckQueue,
        slots: Vec<u32>,
    }

    impl Driven {
        fn new(flows: usize) -> Self {
            Self {
                q: AckQueue::with_capacity(flows),
                slots: vec![NO_ACK_SLOT; flows],
            }
        }
        fn put(&mut self, fi: u32, cum: u64) -> bool {
            if let Some(moved) = self.q.make_room() {
                for (k, &g) in moved.iter().enumerate() {
                    self.slots[g as usize] = u32::try_from(k).unwrap();
                }
            }
            let e = entry(fi, cum);
            self.q.put(fi, &mut self.slots[fi as usize], e)
        }
        /// As `emit_ack_message`: the entries (at most 32) of the flows
        /// `same` picks among the oldest 64, moved to the front, the slots
        /// updated, then sent.
        fn pop_matching(&mut self, same: impl Fn(u32) -> bool) -> Vec<(u32, u64)> {
            let window = self.q.window(PARTITION_WINDOW);
            let w = window.len();
            let mut mask = 0u64;
            let mut picked = 0;
            for (k, &fi) in window.iter().enumerate() {
                if picked < MAX_ACK_ENTRIES_PER_MESSAGE && same(fi) {
                    mask |= 1 << k;
                    picked += 1;
                }
            }
            let n = self.q.partition_front(w, mask);
            assert_eq!(n, picked);
            let head = self.q.head_slot();
            for (k, &fi) in self.q.window(w).iter().enumerate() {
                self.slots[fi as usize] = u32::try_from(head + k).unwrap();
            }
            self.pop(n)
        }
        fn pop(&mut self, n: usize) -> Vec<(u32, u64)> {
            let out = self
                .q
                .front(n)
                .iter()
                .map(|e| (e.flow_id, e.cum_seq))
                .collect();
            for &fi in self.q.front_flows(n) {
                self.slots[fi as usize] = NO_ACK_SLOT;
            }
            self.q.pop_front(n);
            out
        }
    }

    #[test]
    fn one_entry_per_flow_in_arrival_order() {
        let mut d = Driven::new(3);
        assert!(d.put(2, 1));
        assert!(d.put(0, 1));
        assert!(d.put(2, 5)); // supersedes in place
        assert_eq!(d.q.len(), 2);
        assert_eq!(d.pop(1), vec![(2, 5)]);
        assert!(d.put(2, 6)); // sent: queued again, at the tail
        // The vectors are full, a sent entry before head: compacted, slots moved.
        assert!(d.put(1, 1));
        assert_eq!(d.q.len(), 3);
        assert!(d.put(0, 2)); // still in place after the move
        assert_eq!(d.pop(8), vec![(0, 2), (2, 6), (1, 1)]);
        assert!(d.q.is_empty());
        assert_eq!(d.pop(8), vec![]);
    }

    #[test]
    fn a_stale_slot_is_not_trusted() {
        let mut d = Driven::new(2);
        assert!(d.put(0, 1));
        d.q.clear(); // the ack route went away: slot 0 is stale
        assert!(d.put(1, 1)); // takes position 0
        assert!(d.put(0, 2)); // not in place of flow 1's
        assert_eq!(d.pop(2), vec![(1, 1), (0, 2)]);
    }

    #[test]
    fn a_message_takes_its_route_s_entries_and_leaves_the_others_in_order() {
        let mut d = Driven::new(8);
        for fi in [3, 0, 5, 2, 7] {
            assert!(d.put(fi, 1));
        }
        let odd = |fi: u32| fi % 2 == 1;
        assert_eq!(d.pop_matching(odd), vec![(3, 1), (5, 1), (7, 1)]);
        assert_eq!(d.q.len(), 2);
        // The others kept their order and their slots: superseded in place.
        assert!(d.put(2, 9));
        assert_eq!(d.q.len(), 2);
        assert_eq!(d.pop_matching(|_| true), vec![(0, 1), (2, 9)]);
    }

    proptest! {
        /// Messages by route against a model (a FIFO, an entry superseded
        /// in place; a message takes the first 32 entries of a route among
        /// the oldest 64, the others keep their order).
        #[test]
        fn routed_messages_match_a_fifo_model(
            ops in proptest::collection::vec((0u32..100, 0usize..40, 0u32..3), 1..400),
        ) {
            let flows = 100;
            let mut d = Driven::new(flows);
            let mut model: VecDeque<(u32, u64)> = VecDeque::new();
            for (k, (fi, n, r)) in ops.into_iter().enumerate() {
                let cum = k as u64;
                let same = |f: u32| f % 3 == r;
                if n < 30 {
                    prop_assert!(d.put(fi, cum));
                    match model.iter_mut().find(|e| e.0 == fi) {
                        Some(e) => e.1 = cum,
                        None => model.push_back((fi, cum)),
                    }
                } else {
                    let got = d.pop_matching(same);
                    let mut want = Vec::new();
                    let mut keep = VecDeque::new();
                    for (i, e) in model.drain(..).enumerate() {
                        if i < PARTITION_WINDOW && want.len() < MAX_ACK_ENTRIES_PER_MESSAGE && same(e.0) {
                            want.push(e);
                        } else {
                            keep.push_back(e);
                        }
                    }
                    model = keep;
                    prop_assert_eq!(got, want);
                }
                prop_assert_eq!(d.q.len(), model.len());
            }
        }

        /// Against a model (a FIFO of flows, an entry superseded in place):
        /// same entries in the same order, never more than one per flow,
        /// never refused (one slot per flow suffices).
        #[test]
        fn matches_a_fifo_model(ops in proptest::collection::vec((0u32..12, 0usize..40), 1..400)) {
            let flows = 12;
            let mut d = Driven::new(flows);
            let mut model: VecDeque<(u32, u64)> = VecDeque::new();
            for (k, (fi, n)) in ops.into_iter().enumerate() {
                let cum = k as u64;
                if n < 30 {
                    prop_assert!(d.put(fi, cum));
                    match model.iter_mut().find(|e| e.0 == fi) {
                        Some(e) => e.1 = cum,
                        None => model.push_back((fi, cum)),
                    }
                } else {
                    let got = d.pop(n - 30);
                    let want: Vec<_> = (0..(n - 30).min(model.len())).filter_map(|_| model.pop_front()).collect();
                    prop_assert_eq!(got, want);
                }
                prop_assert_eq!(d.q.len(), model.len());
                prop_assert!(d.q.len() <= flows);
            }
        }
    }
}
