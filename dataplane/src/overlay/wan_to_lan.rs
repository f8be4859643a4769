//! WAN -> LAN: decapsulation, delivery (with ack bookkeeping), waypoint
//! relaying, and the OAM messages (acks feed the controllers, probes are
//! echoed).

use core::ops::Range;

use super::lan_to_wan::{QueueId, dst_addr, src_addr};
use super::secure::{Auth, encap_out, key_peer};
use super::{Gateway, Role, entropy};
use crate::classify::inner::{self, Inner};
use crate::engine::{Arena, Batch, DropReason, Nanos, Packet, Verdict};
use crate::wire::ethernet::ethertype;
use crate::wire::geneve::FlowOption;
use crate::wire::oam::{self, MessageType};
use crate::wire::overlay::{self, EncapParams, OverlayMeta};
use crate::wire::{Error, ethernet};

impl Gateway {
    /// Runs the WAN -> LAN half on a batch received on an uplink.
    pub fn wan_to_lan(&mut self, now: Nanos, arena: &mut Arena, batch: &mut Batch) {
        for p in batch.as_mut_slice() {
            if p.verdict == Verdict::Pending {
                self.wan_packet(now, arena, p);
            }
        }
    }

    /// One WAN packet.
    pub(crate) fn wan_packet(&mut self, now: Nanos, arena: &mut Arena, p: &mut Packet) {
        let bad = |g: &mut Gateway| {
            g.stats.bad_overlay += 1;
            Verdict::Drop(DropReason::BadOverlay)
        };
        let Some(frame) = arena.packet(p) else {
            p.verdict = Verdict::Drop(DropReason::Truncated);
            return;
        };
        let d = match overlay::decap(frame, self.settings.verify_udp_checksum) {
            Ok(d) => d,
            Err(Error::NotOverlay) => {
                p.verdict = Verdict::Drop(DropReason::Unsupported);
                return;
            }
            Err(_) => {
                p.verdict = bad(self);
                return;
            }
        };
        let m = d.meta;
        if m.vni != self.cfg.site.vni {
            self.stats.wrong_vni += 1;
            p.verdict = bad(self);
            return;
        }
        // Several workers: data of a flow another worker receives (its
        // acks, its counters) goes there whole, before anything here reads
        // or records it (the owner authenticates it).
        if self.settings.workers > 1
            && !m.oam
            && p.handed_from() == 0
            && let Some(flow) = m.flow
            && let Some(fi) = self.flow_of_wire(flow.flow_id)
            && let Some(owner) = self.data_owner_elsewhere(fi)
        {
            p.verdict = match self.handoff_port(owner) {
                Some(port) => {
                    self.stats.handed_off_wan += 1;
                    Verdict::Tx(port)
                }
                None => Verdict::Drop(DropReason::NoRoute),
            };
            return;
        }
        // Security: from here on the inner bytes are plaintext of `from`.
        let from = match self.authenticate(now, arena, p, &d) {
            Ok(a) => a,
            Err(v) => {
                p.verdict = v;
                return;
            }
        };
        if m.oam {
            p.verdict = if m.protocol == oam::OAM_PROTOCOL {
                self.oam_packet(now, arena, p, d.inner, &m, from)
            } else {
                bad(self)
            };
            return;
        }
        // Data: an Ethernet frame, labelled as such in the clear and as
        // sealed data when it came sealed (opened above).
        let data_protocol = if m.security.is_some() {
            overlay::SEALED_PROTOCOL
        } else {
            ethertype::TEB
        };
        if m.protocol != data_protocol {
            p.verdict = Verdict::Drop(DropReason::Unsupported);
            return;
        }
        let Some(flow) = m.flow else {
            p.verdict = bad(self);
            return;
        };
        let fi = self.flow_of_wire(flow.flow_id);
        let role = fi.map(|fi| self.flows[fi].role);
        // The inner addresses, parsed once: for cryptokey routing (sealed)
        // and for delivery or a detour (not for a planned relay, which
        // does not look inside).
        let parsed = if matches!(from, Auth::Peer(_)) || !matches!(role, Some(Role::Waypoint)) {
            arena
                .packet(p)
                .and_then(|f| f.get(d.inner.clone()))
                .and_then(|b| inner::parse(b).ok())
        } else {
            None
        };
        let addrs = parsed
            .as_ref()
            .map(|i| (src_addr(&i.tuple), dst_addr(&i.tuple)));
        if let Auth::Peer(from) = from
            && !addrs.is_some_and(|(src, dst)| self.crypto_route_ok(from, fi, src, dst))
        {
            self.stats.crypto_route += 1;
            p.verdict = Verdict::Drop(DropReason::CryptoRoute);
            return;
        }
        let dst = addrs.map(|(_, dst)| dst);
        p.verdict = match fi {
            Some(fi) => match self.flows[fi].role {
                Role::Destination => {
                    self.note_data_arrival(fi, p.port, m.outer_src, now);
                    self.deliver(now, arena, p, d.inner, dst, Some((fi, flow)))
                }
                Role::Waypoint => {
                    // Acks of the flow relayed back to its origin reverse this hop.
                    self.note_data_arrival(fi, p.port, m.outer_src, now);
                    self.relay(now, arena, p, d.inner, fi, flow)
                }
                Role::Elsewhere => self.detour(now, arena, p, d.inner, flow, dst),
                // Our own flow, back from a site on its route whose next hop
                // is down and whose detour goes through us: on to its
                // destination over a direct path (one detour at most).
                Role::Origin if self.settings.detours => {
                    self.detour(now, arena, p, d.inner, flow, dst)
                }
                Role::Origin => {
                    self.stats.wan_no_route += 1;
                    Verdict::Drop(DropReason::NoRoute)
                }
            },
            // Best effort, or a flow this site does not know: delivered when
            // the inner destination is ours, else relayed as a detour.
            None => match dst {
                Some(a) if !self.is_local(a) => self.detour(now, arena, p, d.inner, flow, dst),
                _ => self.deliver(now, arena, p, d.inner, dst, None),
            },
        };
        // The remote host reset a connection of a host of ours (delivered,
        // not relayed on): its session ends here too (a refused connection
        // gives its class's admission back).
        if let Some(i) = parsed.filter(Inner::rst)
            && matches!(p.verdict, Verdict::Tx(_))
            && dst.is_some_and(|a| self.is_local(a))
        {
            self.on_remote_rst(&i);
        }
    }

    /// Delivers the inner frame to the LAN (MACs rewritten); records the
    /// arrival of a planned flow's packet for the acks.
    fn deliver(
        &mut self,
        now: Nanos,
        arena: &mut Arena,
        p: &mut Packet,
        range: Range<usize>,
        dst: Option<core::net::IpAddr>,
        flow: Option<(usize, FlowOption)>,
    ) -> Verdict {
        let inner_addr = p.addr + range.start as u64;
        let inner_len = u32::try_from(range.len()).unwrap_or(0);
        let Some(buf) = arena.get_mut(inner_addr, inner_len) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        // `dst` is none when the inner frame did not parse.
        let Some(dst) = dst else {
            self.stats.bad_overlay += 1;
            return Verdict::Drop(DropReason::BadOverlay);
        };
        if flow.is_none() && !self.is_local(dst) {
            self.stats.wan_no_route += 1;
            return Verdict::Drop(DropReason::NoRoute);
        }
        // A sequence number no sender could have reached is dropped, not
        // adopted (it would break the flow's acks).
        if let Some((fi, opt)) = flow
            && opt.seq > 0
            && let Some(r) = self.flows[fi].receiver.as_mut()
            && !r.agg.admit(opt.seq - 1, now)
        {
            self.stats.seq_implausible += 1;
            return Verdict::Drop(DropReason::BadOverlay);
        }
        let mac = self.lan_mac_of(dst);
        let Ok(mut eth) = ethernet::Frame::new_checked(&mut *buf) else {
            return Verdict::Drop(DropReason::BadOverlay);
        };
        eth.set_dst(mac);
        eth.set_src(self.settings.lan_mac);
        if let Some((fi, opt)) = flow
            && let f = &mut self.flows[fi]
            && let Some(r) = f.receiver.as_mut()
            && opt.seq > 0
        {
            r.received += 1;
            f.counters.rx_packets += 1;
            f.counters.rx_bytes += u64::from(inner_len);
            f.counters.on_delivery(now, opt.timestamp_ns);
            if let Some(info) = r.agg.on_packet(opt.seq - 1, opt.timestamp_ns, now) {
                self.queue_ack(fi, &info);
            }
            // The ack deadline starts with a first pending arrival and ends
            // with an ack.
            self.rearm(fi);
        }
        p.addr = inner_addr;
        p.len = inner_len;
        self.stats.delivered += 1;
        Verdict::Tx(self.settings.lan_port)
    }

    /// Re-encapsulates `range` of `p` with `params` toward `peer`: over a
    /// direct path that is up, else its active path; or (`direct_only`,
    /// relaying a detour) over a direct path that is up only, so a packet
    /// makes at most one detour. Counts the
    /// failures; returns the port to send on, and for a planned hop the
    /// candidate taken.
    #[allow(clippy::too_many_arguments)]
    fn reencap(
        &mut self,
        now: Nanos,
        arena: &mut Arena,
        p: &mut Packet,
        range: Range<usize>,
        peer: Option<usize>,
        direct_only: bool,
        params: &EncapParams,
    ) -> Result<(u16, Option<usize>), Verdict> {
        let target = peer.unwrap_or(usize::MAX);
        let pp = peer.and_then(|np| self.peers.get(np));
        let (path, index) = if direct_only {
            // The direct hop the peer's data just came by works, whatever
            // the probes say; else a direct path that is up.
            let path = pp.filter(|_| self.settings.detours).and_then(|x| {
                x.reverse_hop(now)
                    .filter(|p| p.kind == super::failover::PathKind::Direct)
                    .or_else(|| x.direct_up())
            });
            (path, None)
        } else {
            // A planned flow's hop follows its plan: a direct path to the
            // next site while one is up (the active one first); a detour only
            // when none is (a detour could lead back to a site on the
            // flow's own route).
            let index = pp.and_then(super::failover::PeerPaths::relay_index);
            (index.and_then(|i| pp.and_then(|x| x.paths.get(i))), index)
        };
        let Some(path) = path else {
            self.stats.wan_no_route += 1;
            return Err(Verdict::Drop(DropReason::NoRoute));
        };
        if range.len() > path.max_inner {
            return Err(Verdict::Drop(DropReason::Oversized));
        }
        let port = path.port;
        let kp = key_peer(target, path);
        match encap_in_frame(
            &mut self.sec,
            kp,
            arena,
            p,
            range,
            &path.template,
            params,
            now,
        ) {
            Ok(()) => Ok((port, index)),
            Err(e) => {
                self.count_encap_fail(e);
                Err(Verdict::Drop(e.reason()))
            }
        }
    }

    /// Counts a packet that could not be encapsulated.
    pub(crate) fn count_encap_fail(&mut self, e: super::secure::EncapFail) {
        match e {
            super::secure::EncapFail::NoSession => self.stats.no_session += 1,
            super::secure::EncapFail::Room => self.stats.encap_failed += 1,
        }
    }

    /// A packet of another site's flow that came here as a detour: relayed
    /// to the site owning its inner destination `dst` over a direct path.
    fn detour(
        &mut self,
        now: Nanos,
        arena: &mut Arena,
        p: &mut Packet,
        range: Range<usize>,
        flow: FlowOption,
        dst: Option<core::net::IpAddr>,
    ) -> Verdict {
        let target = dst
            .filter(|d| !self.is_local(*d))
            .and_then(|d| self.peer_of(d));
        let params = EncapParams {
            flow,
            entropy: entropy(flow.flow_id),
            ..EncapParams::default()
        };
        match self.reencap(now, arena, p, range, target, true, &params) {
            Ok((port, _)) => {
                self.stats.detoured += 1;
                Verdict::Tx(port)
            }
            Err(v) => v,
        }
    }

    /// Relays an OAM message toward `peer` over a direct path (detours).
    fn relay_oam(
        &mut self,
        now: Nanos,
        arena: &mut Arena,
        p: &mut Packet,
        range: Range<usize>,
        peer: Option<usize>,
    ) -> Verdict {
        self.oam_seq += 1;
        let params = super::oam_params(self.oam_seq, 0);
        match self.reencap(now, arena, p, range, peer, true, &params) {
            Ok((port, _)) => {
                self.stats.detoured += 1;
                Verdict::Tx(port)
            }
            Err(v) => v,
        }
    }

    /// Re-encapsulates toward the flow's next site (same flow option).
    fn relay(
        &mut self,
        now: Nanos,
        arena: &mut Arena,
        p: &mut Packet,
        range: Range<usize>,
        fi: usize,
        flow: FlowOption,
    ) -> Verdict {
        let params = EncapParams {
            flow,
            entropy: entropy(flow.flow_id),
            ..EncapParams::default()
        };
        let inner_len = range.len() as u64;
        let next = self.flows[fi].next_peer;
        match self.reencap(now, arena, p, range, next, false, &params) {
            Ok((port, index)) => {
                if let (Some(np), Some(i)) = (next, index)
                    && self.flows[fi].dest_peer == next
                {
                    self.watch_relay(np, i, now);
                }
                self.stats.forwarded += 1;
                let c = &mut self.flows[fi].counters;
                c.relayed_packets += 1;
                c.relayed_bytes += inner_len;
                // Held for the next poll, which sends it among this site's
                // own paced departures at a random place: sent at once it
                // went ahead of them, and where the uplink's bottleneck is a
                // full drop-tail queue right behind us the head of each
                // burst takes the slots that freed up (a relayed 0.78 Mbit/s
                // flow on Abilene took 1.5 while its planned partner on the
                // link sat 7 % under).
                if self.relays.len() < super::RELAY_HOLD {
                    let mut held = *p;
                    held.verdict = Verdict::Tx(port);
                    self.relays.push(held);
                    Verdict::Held
                } else {
                    Verdict::Tx(port)
                }
            }
            Err(v) => v,
        }
    }

    /// An OAM message: acks feed the controllers (the frame joins the
    /// reserve), probes are echoed toward the prober at once.
    fn oam_packet(
        &mut self,
        now: Nanos,
        arena: &mut Arena,
        p: &mut Packet,
        range: Range<usize>,
        m: &OverlayMeta,
        from: Auth,
    ) -> Verdict {
        let Some(bytes) = arena.packet(p).and_then(|f| f.get(range.clone())) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        let Ok(msg) = oam::Message::new_checked(bytes) else {
            self.stats.bad_overlay += 1;
            return Verdict::Drop(DropReason::BadOverlay);
        };
        match msg.msg_type() {
            MessageType::Ack => {
                // The peer that sent it: the key's peer when sealed (by
                // outer source address only with security off).
                let sender = match from {
                    Auth::Peer(pi) => Some(pi),
                    Auth::Off => self.peer_index_of_gateway(m.outer_src),
                };
                // Acks for flows that do not start here came by a detour
                // (their sender's direct paths are down): relay them to the
                // flows' origin (one message carries one origin's flows).
                if let Some(first) = msg.acks().next()
                    && let Some(fi) = self.flow_of_wire(first.flow_id)
                    && self.flows[fi].role != Role::Origin
                {
                    if !self.ack_sender_ok(fi, sender) {
                        self.stats.ack_entries_wrong_peer += msg.acks().len() as u64;
                        return self.consume(arena, p);
                    }
                    self.note_relayed_acks(sender, p.port, m.outer_src, now);
                    // From the destination of a flow this site relays on its
                    // last hop: the relays' wait is answered.
                    let f = &self.flows[fi];
                    if f.role == Role::Waypoint
                        && let Some(d) = f.dest_peer
                        && sender == Some(d)
                        && f.next_peer == Some(d)
                    {
                        self.note_relayed_acks_from_destination(d, now);
                    }
                    let origin = self.cfg.flows[fi]
                        .route
                        .first()
                        .and_then(|s| self.cfg.peers.iter().position(|p| p.name == *s));
                    return self.relay_oam(now, arena, p, range, origin);
                }
                // Whose acks: the destination of the flows (the outer source
                // is a waypoint's when the acks took a detour); it is heard
                // from only when an entry was applied (an empty or forged
                // ack keeps no path alive).
                let dest = msg
                    .acks()
                    .next()
                    .and_then(|e| self.flow_of_wire(e.flow_id))
                    .and_then(|fi| self.flows[fi].dest_peer);
                // The entries' flows are as many cache misses (one flow per
                // entry): start loading them all first.
                if msg.acks().len() > 1 {
                    for e in msg.acks() {
                        self.wire_ids.prefetch(e.flow_id);
                    }
                    for e in msg.acks() {
                        if let Some(fi) = self.flow_of_wire(e.flow_id) {
                            self.prefetch_origin(fi);
                        }
                    }
                    for e in msg.acks() {
                        if let Some(fi) = self.flow_of_wire(e.flow_id)
                            && let Some(o) = self.flows[fi].origin.as_ref()
                        {
                            o.tracker.prefetch_ack();
                            // The rate it may set and the timer it re-arms.
                            let id = u32::try_from(fi).unwrap_or(u32::MAX);
                            self.pacing.prefetch_rate(QueueId::flow(fi).0);
                            self.flow_timers.prefetch(id);
                        }
                    }
                }
                let mut applied = false;
                for e in msg.acks() {
                    let Some(fi) = self.flow_of_wire(e.flow_id) else {
                        self.stats.ack_entries_unknown += 1;
                        continue;
                    };
                    if !self.ack_sender_ok(fi, sender) {
                        self.stats.ack_entries_wrong_peer += 1;
                        continue;
                    }
                    if !self.owns_flow(fi) {
                        // Another worker runs the flow's controller.
                        self.note_ack(fi, &e);
                        continue;
                    }
                    applied |= self.apply_ack_entry(fi, &e, now);
                }
                if applied && let Some(pi) = dest {
                    self.note_ack_from_peer(pi, now);
                }
                self.consume(arena, p)
            }
            MessageType::ProbeEcho => {
                self.stats.probe_echoes += 1;
                if let Some(probe) = msg.probe() {
                    let (pp, idx) = super::failover::split_path_ref(probe.path_id);
                    let to = super::failover::echo_worker(probe.probe_seq);
                    if !self.echo_from_ok(from, pp, idx) || to >= self.settings.workers.max(1) {
                        self.stats.probe_unknown += 1;
                    } else if to == self.settings.worker {
                        self.on_echo(&probe, now);
                    } else {
                        // Another worker's probe: the echo is its evidence.
                        self.note_echo(to, &probe);
                    }
                }
                self.consume(arena, p)
            }
            MessageType::Probe => {
                let Some(probe) = msg.probe() else {
                    return Verdict::Drop(DropReason::BadOverlay);
                };
                // Answer on the path the probe came by (same uplink, back
                // to its source address), else on the active path.
                let pi = match from {
                    Auth::Peer(pi) => Some(pi),
                    Auth::Off => self.peer_index_of_gateway(m.outer_src),
                };
                let Some(pi) = pi else {
                    self.stats.wan_no_route += 1;
                    return Verdict::Drop(DropReason::NoRoute);
                };
                let arrival = p.port;
                let Some(path) = self.peers.get(pi).and_then(|pp| {
                    pp.paths
                        .iter()
                        .find(|c| c.remote == m.outer_src && c.port == arrival)
                        .or_else(|| pp.active_path())
                }) else {
                    self.stats.wan_no_route += 1;
                    return Verdict::Drop(DropReason::NoRoute);
                };
                let echo = oam::Repr::ProbeEcho(probe.echo(now));
                let len = echo.len();
                let start = p.addr + range.start as u64;
                let ok = arena
                    .get_mut(start, u32::try_from(len).unwrap_or(u32::MAX))
                    .is_some_and(|b| echo.emit(b).is_ok());
                let params = super::oam_params(0, now);
                let r = range.start..range.start + len;
                let kp = key_peer(pi, path);
                if !ok {
                    self.stats.encap_failed += 1;
                    return Verdict::Drop(DropReason::Oversized);
                }
                let (port, template) = (path.port, &path.template);
                match encap_in_frame(&mut self.sec, kp, arena, p, r, template, &params, now) {
                    Ok(()) => {
                        self.stats.probes_answered += 1;
                        Verdict::Tx(port)
                    }
                    Err(e) => {
                        self.count_encap_fail(e);
                        Verdict::Drop(e.reason())
                    }
                }
            }
            MessageType::HandshakeInit
            | MessageType::HandshakeResponse
            | MessageType::CookieReply => {
                self.stats.bad_overlay += 1;
                Verdict::Drop(DropReason::BadOverlay)
            }
        }
    }

    /// A consumed OAM frame: kept in the reserve when there is room.
    pub(super) fn consume(&mut self, arena: &Arena, p: &Packet) -> Verdict {
        if self.reserve.len() < self.reserve.capacity() {
            self.reserve.push(arena.frame_of(p.addr));
            Verdict::Held
        } else {
            // Counted by the worker under `oam_consumed`; nothing went wrong.
            Verdict::Drop(DropReason::OamConsumed)
        }
    }
}

/// Encapsulates `p`'s bytes `range` (relative to `p.addr`) with `template`,
/// in place within the frame (sealed for `key_peer` when security is
/// required); updates `p`.
#[allow(clippy::too_many_arguments)]
fn encap_in_frame(
    sec: &mut super::secure::SecureState,
    key_peer: usize,
    arena: &mut Arena,
    p: &mut Packet,
    range: Range<usize>,
    template: &overlay::OverlayTemplate,
    params: &EncapParams,
    now: Nanos,
) -> Result<(), super::secure::EncapFail> {
    use super::secure::EncapFail;
    let base = arena.frame_of(p.addr);
    let off = usize::try_from(p.addr - base).map_err(|_| EncapFail::Room)? + range.start;
    let buf = arena
        .get_mut(base, arena.frame_size())
        .ok_or(EncapFail::Room)?;
    let r = encap_out(sec, key_peer, template, buf, off, range.len(), params, now)?;
    p.addr = base + r.start as u64;
    p.len = u32::try_from(r.len()).map_err(|_| EncapFail::Room)?;
    Ok(())
}
