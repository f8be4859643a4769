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

    /// Removes the oldest `n` pending entries.
    pub(crate) fn pop_front(&mut self, n: usize) {
        self.head += n.min(self.len());
        if self.head == self.entries.len() {
            self.clear();
        }
    }
}

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

    /// Sends the pending acks: one message (up to 32 entries) per source
    /// site per call, while reserve frames and batch room last.
    pub(crate) fn emit_acks(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        for peer in 0..self.pending_acks.len() {
            if self.pending_acks[peer].is_empty() {
                continue;
            }
            let Some(path) = self.peers.get(peer).and_then(|pp| pp.ack_route(now)) else {
                self.pending_acks[peer].clear();
                continue;
            };
            if out.spare() == 0 {
                return;
            }
            let Some(base) = self.reserve.pop() else {
                self.stats.ack_no_frame += 1;
                return;
            };
            let q = &self.pending_acks[peer];
            let n = q.len().min(MAX_ACK_ENTRIES_PER_MESSAGE);
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
        }
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

    proptest! {
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
