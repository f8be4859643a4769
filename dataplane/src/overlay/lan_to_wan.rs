//! LAN -> WAN: source checks (the inner source must be one of the site's
//! addresses, sent from the MAC that holds it), classification, pacing
//! queues, paced encapsulation, and the ICMP errors for inner packets too big
//! for the path.

use core::net::IpAddr;

use super::{Gateway, Learn, Role, Stats, entropy};
use crate::classify::{Decision, inner};
use crate::engine::{Arena, Batch, DropReason, Nanos, Packet, Verdict};
use crate::wire::ethernet::{self, ethertype};
use crate::wire::geneve::FlowOption;
use crate::wire::overlay::EncapParams;
use crate::wire::{Error, icmp, ipv4};

/// TTL / hop limit of the ICMP errors we originate.
const ICMP_TTL: u8 = 64;

/// The inner destination address of a parsed tuple.
pub(crate) fn dst_addr(t: &inner::FiveTuple) -> IpAddr {
    if t.v6 {
        IpAddr::V6(t.dst.into())
    } else {
        IpAddr::V4(u32::try_from(t.dst).unwrap_or(0).into())
    }
}

/// The inner source address of a parsed tuple.
pub(crate) fn src_addr(t: &inner::FiveTuple) -> IpAddr {
    if t.v6 {
        IpAddr::V6(t.src.into())
    } else {
        IpAddr::V4(u32::try_from(t.src).unwrap_or(0).into())
    }
}

impl Gateway {
    /// Runs the LAN -> WAN half on a batch received on the LAN port.
    pub fn lan_to_wan(&mut self, now: Nanos, arena: &mut Arena, batch: &mut Batch) {
        for p in batch.as_mut_slice() {
            if p.verdict == Verdict::Pending {
                self.lan_packet(now, arena, p, None);
            }
        }
    }

    /// One LAN packet: classify, check the path MTU, enqueue (`Held`).
    /// `pre`: its headers, parsed already (the batch's prefetch pass).
    pub(crate) fn lan_packet(
        &mut self,
        now: Nanos,
        arena: &mut Arena,
        p: &mut Packet,
        pre: Option<inner::Inner>,
    ) {
        p.verdict = match self.lan_queue(now, arena, p, pre) {
            Ok(v) | Err(v) => v,
        };
    }

    fn lan_queue(
        &mut self,
        now: Nanos,
        arena: &mut Arena,
        p: &mut Packet,
        pre: Option<inner::Inner>,
    ) -> Result<Verdict, Verdict> {
        let drop = |r| Verdict::Drop(r);
        let frame = arena.packet(p).ok_or(drop(DropReason::Truncated))?;
        let parsed = match pre {
            Some(i) => i,
            None => inner::parse(frame).map_err(|e| drop(e.drop_reason()))?,
        };
        // Only our own hosts send from the LAN: an inner source outside the
        // site's prefixes is spoofed (or link-local) and goes nowhere.
        let src = src_addr(&parsed.tuple);
        if !self.is_local(src) {
            self.stats.lan_source += 1;
            return Err(drop(DropReason::LanSource));
        }
        let nflows = self.flows.len();
        // Classified by its class's worker, which handed it here to be
        // paced on the flow it chose (this worker's).
        if p.handed_from() != 0
            && let Some(flow) = p.handoff_flow()
        {
            let fi = flow as usize;
            let ok = self
                .flows
                .get(fi)
                .is_some_and(|f| f.role == Role::Origin && f.next_peer.is_some())
                && self.owns_flow(fi);
            if !ok {
                self.stats.no_route += 1;
                return Err(drop(DropReason::NoRoute));
            }
            let np = self.flows[fi].next_peer.unwrap_or(0);
            return self.enqueue_lan(now, arena, p, QueueId::flow(fi), np);
        }
        // Learn the sender's MAC: replies and traffic from other sites are
        // delivered to it. Another MAC holding the address refuses it.
        if let Some(mac) = frame.get(6..12) {
            let mut m = [0u8; 6];
            m.copy_from_slice(mac);
            match self.learn(src, ethernet::MacAddr(m), now) {
                Learn::Conflict => {
                    self.stats.lan_mac_conflict += 1;
                    return Err(drop(DropReason::LanMacConflict));
                }
                // The workers that deliver to it learn it too.
                Learn::Learned | Learn::Moved if self.settings.workers > 1 => {
                    self.note_learned(src, ethernet::MacAddr(m));
                }
                _ => {}
            }
        }
        let decision = self.classifier.classify_inner(&parsed, now).map_err(drop)?;
        let (queue, peer) = match decision {
            Decision::Handoff { worker, .. } => {
                // Its class is another worker's: there it is admitted
                // (and paced, or handed on to its flow's worker). Handed
                // here by a worker that did not own the class either: the
                // workers disagree on owners (not by construction), a
                // counted drop rather than a loop.
                if p.handed_from() != 0 {
                    self.stats.no_route += 1;
                    return Err(drop(DropReason::NoRoute));
                }
                let port = self.handoff_port(worker).ok_or(drop(DropReason::NoRoute))?;
                self.stats.handed_off_lan += 1;
                return Ok(Verdict::Tx(port));
            }
            Decision::Flow { flow, .. } => {
                let fi = flow as usize;
                let f = self.flows.get(fi).ok_or(drop(DropReason::NoRoute))?;
                let np = match (f.role, f.next_peer) {
                    (Role::Origin, Some(np)) => np,
                    _ => {
                        self.stats.no_route += 1;
                        return Err(drop(DropReason::NoRoute));
                    }
                };
                if !self.owns_flow(fi) {
                    // Another worker paces the flow: handed there with it.
                    let to = self.flow_owner(fi);
                    let port = self.handoff_port(to).ok_or(drop(DropReason::NoRoute))?;
                    p.set_handoff_flow(flow);
                    self.stats.handed_off_flow += 1;
                    return Ok(Verdict::Tx(port));
                }
                (QueueId::flow(fi), np)
            }
            Decision::BestEffort { .. } => {
                let Some(np) = self.peer_of(dst_addr(&parsed.tuple)) else {
                    self.stats.no_route += 1;
                    return Err(drop(DropReason::NoRoute));
                };
                self.stats.best_effort += 1;
                (QueueId::best_effort(nflows, np), np)
            }
        };
        self.enqueue_lan(now, arena, p, queue, peer)
    }

    /// Checks `p` against its path's MTU and the frame's room for the
    /// overlay's headers, then queues it for pacing on `queue` (toward
    /// `peer`).
    fn enqueue_lan(
        &mut self,
        now: Nanos,
        arena: &mut Arena,
        p: &mut Packet,
        queue: QueueId,
        peer: usize,
    ) -> Result<Verdict, Verdict> {
        let drop = |r| Verdict::Drop(r);
        let assigned = self.flows.get(queue.0 as usize).and_then(|f| f.path);
        let Some((_, path)) = self.peers.get(peer).and_then(|pp| pp.path_for(assigned)) else {
            self.stats.no_route += 1;
            return Err(drop(DropReason::NoRoute));
        };
        let (max_inner, hl, tl) = (
            path.max_inner,
            path.template.header_len() as u64,
            path.template.trailer_len() as u64,
        );
        if p.len as usize > max_inner {
            return self.too_big(arena, p, max_inner);
        }
        let headroom = p.addr - arena.frame_of(p.addr);
        let room_after = u64::from(arena.frame_size()).saturating_sub(headroom + u64::from(p.len));
        if headroom < hl || room_after < tl {
            self.stats.encap_failed += 1;
            return Err(drop(DropReason::Oversized));
        }
        match self.pacing.enqueue(queue.0, *p, now) {
            Ok(()) => {
                self.stats.enqueued += 1;
                Ok(Verdict::Held)
            }
            Err((_, r)) => {
                if r == DropReason::QueueFull {
                    self.stats.queue_full += 1;
                    if let Some(f) = self.flows.get_mut(queue.0 as usize) {
                        f.counters.queue_drops += 1;
                    }
                }
                Err(drop(r))
            }
        }
    }

    /// Rewrites the frame into an ICMP frag-needed / packet-too-big reply to
    /// its sender, out of the LAN port; or drops it (counted).
    fn too_big(
        &mut self,
        arena: &mut Arena,
        p: &mut Packet,
        max_inner: usize,
    ) -> Result<Verdict, Verdict> {
        let lan = self.settings.lan_port;
        let oversized = |s: &mut Stats| {
            s.oversized_dropped += 1;
            Err(Verdict::Drop(DropReason::Oversized))
        };
        let Some(frame) = arena.packet(p) else {
            return oversized(&mut self.stats);
        };
        let Ok(eth) = ethernet::Frame::new_checked(frame) else {
            return oversized(&mut self.stats);
        };
        let mut hdr = ethernet::Repr::parse(&eth);
        let ehl = eth.header_len();
        let ip_mtu = max_inner.saturating_sub(ehl);
        let offending = &frame[ehl..];
        let out = &mut self.scratch[..];
        let n = match hdr.ethertype {
            ethertype::IPV4 => {
                let Some(router) = self.settings.lan_address_v4 else {
                    return oversized(&mut self.stats);
                };
                match ipv4::Packet::new_checked(offending) {
                    Ok(ip) if ip.dont_frag() => {}
                    _ => return oversized(&mut self.stats),
                }
                let mtu = u16::try_from(ip_mtu).unwrap_or(u16::MAX);
                icmp::emit_frag_needed_v4(out, router, offending, mtu, ICMP_TTL)
            }
            ethertype::IPV6 => {
                let Some(router) = self.settings.lan_address_v6 else {
                    return oversized(&mut self.stats);
                };
                let mtu = u32::try_from(ip_mtu).unwrap_or(u32::MAX);
                icmp::emit_packet_too_big_v6(out, router, offending, mtu, ICMP_TTL)
            }
            _ => Err(Error::Unsupported),
        };
        let Ok(n) = n else {
            return oversized(&mut self.stats);
        };
        hdr.dst = hdr.src;
        hdr.src = self.settings.lan_mac;
        let total = ehl + n;
        let Some(buf) = arena.get_mut(p.addr, u32::try_from(total).unwrap_or(u32::MAX)) else {
            return oversized(&mut self.stats);
        };
        if hdr.emit(buf).is_err() {
            return oversized(&mut self.stats);
        }
        buf[ehl..].copy_from_slice(&self.scratch[..n]);
        p.len = u32::try_from(total).unwrap_or(0);
        self.stats.ptb_sent += 1;
        Ok(Verdict::Tx(lan))
    }

    /// Releases due packets from the pacing queues into `out`, each
    /// stamped for its queue ([`Gateway::flow_departure`] or
    /// [`Gateway::best_effort_departure`]) and encapsulated toward its next
    /// site ([`Gateway::encap_departure`]): `Tx(uplink)`, or a counted drop.
    pub(crate) fn departures(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        let start = out.len();
        let n = self.pacing.poll(now, out);
        let nflows = self.flows.len();
        if n > 1 {
            self.prefetch_departures(n, nflows);
            // Each released packet's frame: it was queued long ago (cold at
            // many flows) and the encapsulation writes the outer headers in
            // front of it (up to two lines: 74 bytes for IPv4 GENEVE with
            // our option, more with IPv6), then sums them with its first
            // line for the outer UDP checksum.
            for p in out.as_slice().get(start..start + n).unwrap_or(&[]) {
                let at = usize::try_from(p.addr).unwrap_or(usize::MAX);
                let base = arena.as_ptr().cast_const();
                crate::sys::prefetch_read(base.wrapping_add(at.saturating_sub(128)));
                crate::sys::prefetch_read(base.wrapping_add(at.saturating_sub(64)));
                crate::sys::prefetch_read(base.wrapping_add(at));
            }
        }
        for k in 0..n {
            let i = start + k;
            let queue = QueueId(self.pacing.released()[k]);
            let mut pkt = out.as_slice()[i];
            let departure = match queue.kind(nflows) {
                Queue::Flow(fi) => self.flow_departure(fi, now),
                Queue::BestEffort(peer) => self.best_effort_departure(peer, now),
            };
            pkt.verdict = match departure {
                Some(d) => self.encap_departure(now, arena, &mut pkt, queue, &d),
                None => Verdict::Drop(DropReason::NoRoute),
            };
            out.as_mut_slice()[i] = pkt;
        }
        if !self.relays.is_empty() {
            self.send_relays(start, n, nflows, out);
        }
    }

    /// Puts the held relays (as many as `out` has room for) among the `n`
    /// departures from `out[start]` at random places, each order of the two
    /// as likely as any other, and the best-effort departures after both:
    /// a relay and a planned departure leaving together are as likely to
    /// be first into the uplink's queue (docs/overlay.md, "Relays among the
    /// departures"), and best effort goes behind planned traffic, relayed
    /// or not, as before.
    fn send_relays(&mut self, start: usize, n: usize, nflows: usize, out: &mut Batch) {
        let k = out.spare().min(self.relays.len());
        if k == 0 {
            return;
        }
        let mut planned = [crate::engine::Packet::new(0, 0, 0, 0); crate::engine::BATCH_SIZE];
        let mut best = [crate::engine::Packet::new(0, 0, 0, 0); crate::engine::BATCH_SIZE];
        let (mut np, mut nb) = (0usize, 0usize);
        let released = self.pacing.released();
        for j in 0..n {
            let pkt = out.as_slice()[start + j];
            let be = released
                .get(j)
                .is_some_and(|&q| matches!(QueueId(q).kind(nflows), Queue::BestEffort(_)));
            if be {
                best[nb] = pkt;
                nb += 1;
            } else {
                planned[np] = pkt;
                np += 1;
            }
        }
        out.truncate(start);
        interleave(
            &planned[..np],
            &self.relays[..k],
            &mut self.relay_rng,
            |p| {
                out.push(p);
            },
        );
        for p in &best[..nb] {
            out.push(*p);
        }
        self.relays.drain(..k);
    }

    /// Starts loading the state the `n` released packets' flows will touch
    /// (with many flows, each departure's flow state is a cache miss):
    /// first every flow's record, then, from those, each tracker's next
    /// send slot, so that the misses of the batch overlap.
    fn prefetch_departures(&self, n: usize, nflows: usize) {
        let released = &self.pacing.released()[..n];
        for &q in released {
            if let Queue::Flow(fi) = QueueId(q).kind(nflows) {
                self.prefetch_departure(fi);
                // A send onto an empty tracker re-arms the flow's timer.
                self.flow_timers.prefetch(q);
            }
        }
        for &q in released {
            if let Queue::Flow(fi) = QueueId(q).kind(nflows)
                && let Some(o) = self.flows.get(fi).and_then(|f| f.origin.as_ref())
            {
                o.tracker.prefetch_send();
            }
        }
    }

    /// A planned flow's packet leaves: its sequence number, the ack-gap
    /// watch on the path to its next site, MONtra's send and loss
    /// bookkeeping. `None`: the flow no longer leaves from here.
    fn flow_departure(&mut self, fi: usize, now: Nanos) -> Option<Departure> {
        let queue = QueueId::flow(fi);
        let qlen = self.pacing.queue_len(queue.0);
        let f = self.flows.get_mut(fi)?;
        let (Some(o), Some(np)) = (f.origin.as_mut(), f.next_peer) else {
            return None;
        };
        let (seq, evicted) = o.tracker.on_send(now);
        // The ack-gap watch of the path to the next site: a flow ending
        // there arms the path's ack gap; a flow going on (its acks come
        // from its last site) arms the path's hop check (on the worker that
        // runs the flow: the check's echo comes back to it).
        if let Some(pp) = self.peers.get_mut(np)
            && let Some((pi, _)) = pp.path_for(f.path)
        {
            let w = &mut pp.paths[pi].unacked;
            if f.dest_peer == Some(np) {
                w.on_send(now);
            } else {
                w.on_relayed_send(now);
            }
        }
        o.ctl.on_send(now, qlen == 0);
        if evicted > 0 && !self.settings.open_loop && !o.route_out {
            let r = o.ctl.on_losses(evicted);
            self.pacing.set_rate(queue.0, r, now);
        }
        let d = Departure {
            option: FlowOption {
                flow_id: f.wire_id,
                seq: seq + 1,
                timestamp_ns: now,
            },
            peer: np,
            path: f.path,
        };
        // A send moves the tracker's loss deadline only when nothing was
        // outstanding (a first deadline) or a packet was evicted.
        if f.timer_at == super::NO_TIMER || evicted > 0 {
            self.rearm(fi);
        }
        Some(d)
    }

    /// A best-effort packet to `peer` leaves: the peer's best-effort
    /// sequence number, the peer's default path.
    fn best_effort_departure(&mut self, peer: usize, now: Nanos) -> Option<Departure> {
        let s = self.be_seq.get_mut(peer)?;
        *s += 1;
        Some(Departure {
            option: FlowOption {
                flow_id: super::BEST_EFFORT_FLOW_ID,
                seq: *s,
                timestamp_ns: now,
            },
            peer,
            path: None,
        })
    }

    /// Encapsulates a departing packet in place on its path's template (and
    /// seals it for the path's next gateway when security is required) and
    /// counts it: `Tx(uplink)`, or a counted drop.
    fn encap_departure(
        &mut self,
        now: Nanos,
        arena: &mut Arena,
        pkt: &mut Packet,
        queue: QueueId,
        d: &Departure,
    ) -> Verdict {
        let Some((_, path)) = self.peers.get(d.peer).and_then(|pp| pp.path_for(d.path)) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let base = arena.frame_of(pkt.addr);
        let params = EncapParams {
            flow: d.option,
            entropy: entropy(d.option.flow_id),
            ..EncapParams::default()
        };
        let kp = super::secure::key_peer(d.peer, path);
        let res = match arena.get_mut(base, arena.frame_size()) {
            Some(buf) => match usize::try_from(pkt.addr - base) {
                Ok(off) => super::secure::encap_out(
                    &mut self.sec,
                    kp,
                    &path.template,
                    buf,
                    off,
                    pkt.len as usize,
                    &params,
                    now,
                ),
                Err(_) => Err(super::secure::EncapFail::Room),
            },
            None => Err(super::secure::EncapFail::Room),
        };
        let port = path.port;
        let r = match res {
            Ok(r) => r,
            Err(e) => {
                self.count_encap_fail(e);
                return Verdict::Drop(e.reason());
            }
        };
        if let Some(f) = self.flows.get_mut(queue.0 as usize) {
            f.counters.tx_packets += 1;
            f.counters.tx_bytes += u64::from(pkt.len);
        }
        pkt.addr = base + r.start as u64;
        pkt.len = u32::try_from(r.len()).unwrap_or(0);
        self.stats.sent += 1;
        Verdict::Tx(port)
    }
}

/// What a departing packet carries and where it goes.
struct Departure {
    /// Our GENEVE option: flow id, sequence number, timestamp.
    option: FlowOption,
    /// Next site (peer index).
    peer: usize,
    /// The flow's assigned path (`None`: the peer's default).
    path: Option<u16>,
}

/// A pacing queue of the gateway: planned flow `i` is queue `i`; the
/// best-effort traffic to peer `p` is queue `flows + p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueId(pub(crate) u32);

/// What a [`QueueId`] paces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Queue {
    /// Planned flow (index in the configuration).
    Flow(usize),
    /// Best-effort traffic to a peer (peer index).
    BestEffort(usize),
}

impl QueueId {
    /// The queue of planned flow `fi`.
    pub(crate) fn flow(fi: usize) -> Self {
        Self(u32::try_from(fi).unwrap_or(u32::MAX))
    }
    /// The queue of the best-effort traffic to peer `p`, with `nflows`
    /// planned flows.
    pub(crate) fn best_effort(nflows: usize, p: usize) -> Self {
        Self::flow(nflows + p)
    }
    /// What this queue paces, with `nflows` planned flows.
    pub(crate) fn kind(self, nflows: usize) -> Queue {
        let q = self.0 as usize;
        if q < nflows {
            Queue::Flow(q)
        } else {
            Queue::BestEffort(q - nflows)
        }
    }
}

/// Emits `a` and `b` merged, each in its own order, every one of the
/// `(|a|+|b|)! / (|a|! |b|!)` interleavings equally likely: each step takes
/// the next of `a` with probability (what is left of `a`) / (what is left).
pub(crate) fn interleave<T: Copy>(
    a: &[T],
    b: &[T],
    rng: &mut crate::sys::rng::SplitMix64,
    mut emit: impl FnMut(T),
) {
    let (mut i, mut j) = (0usize, 0usize);
    while i < a.len() || j < b.len() {
        let left_a = (a.len() - i) as u64;
        let left = left_a + (b.len() - j) as u64;
        if rng.next_u64() % left < left_a {
            emit(a[i]);
            i += 1;
        } else {
            emit(b[j]);
            j += 1;
        }
    }
}

#[cfg(test)]
mod interleave_tests {
    use super::interleave;
    use crate::sys::rng::SplitMix64;

    fn merged(a: &[u32], b: &[u32], seed: u64) -> Vec<u32> {
        let mut out = Vec::new();
        interleave(a, b, &mut SplitMix64::new(seed), |x| out.push(x));
        out
    }

    /// Every element once, each input in its own order; empty inputs pass the other through.
    #[test]
    fn a_merge_keeps_both_orders() {
        let (a, b) = ([1, 2, 3, 4, 5], [10, 20, 30]);
        for seed in 0..200 {
            let m = merged(&a, &b, seed);
            assert_eq!(m.len(), 8);
            let from_a: Vec<u32> = m.iter().copied().filter(|x| *x < 10).collect();
            let from_b: Vec<u32> = m.iter().copied().filter(|x| *x >= 10).collect();
            assert_eq!(from_a, a);
            assert_eq!(from_b, b);
        }
        assert_eq!(merged(&a, &[], 1), a);
        assert_eq!(merged(&[], &b, 1), b);
        assert!(merged(&[], &[], 1).is_empty());
    }

    /// One relay among three departures lands at each of the four places about as often
    /// (40 000 draws: 10 000 each, within 5 %); so the first place is a relay's with
    /// probability relays / all, not 1 (relays first) or 0.
    #[test]
    fn every_place_is_as_likely() {
        let mut rng = SplitMix64::new(7);
        let mut at = [0u32; 4];
        for _ in 0..40_000 {
            let mut k = 0;
            interleave(&[0u32, 0, 0], &[1u32], &mut rng, |x| {
                if x == 1 {
                    at[k] += 1;
                }
                k += 1;
            });
        }
        for (i, n) in at.iter().enumerate() {
            assert!(
                (9_500..=10_500).contains(n),
                "place {i}: {n} of 40000 ({at:?})"
            );
        }
    }
}
