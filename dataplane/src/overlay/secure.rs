//! Security of the overlay between gateways (issue 11, `docs/security.md`):
//! every packet to a peer is sealed with the peer's current session key
//! ([`encap_out`]); every packet from a peer is opened once with the key
//! its receiver index names, checked against the replay window, and then
//! belongs to the key's peer (never to an outer address):
//! [`Gateway::authenticate`]. After opening, cryptokey routing
//! ([`Gateway::crypto_route_ok`]) checks the inner addresses, and a peer
//! whose packets authenticate from a new outer address is followed
//! (roaming). Handshake messages, the only unsealed packets accepted, are
//! rate limited and queued for the control process; the control's own
//! handshake messages leave from [`Gateway::emit_handshakes`].
//!
//! With `[security] mode = "off"` none of this runs: one branch per packet.

use core::net::IpAddr;
use core::ops::Range;

use super::Gateway;
use super::failover::{PathKind, PeerPath};
use crate::engine::{Arena, Batch, DropReason, Nanos, Packet, Verdict};
use crate::pacing::TokenBucket;
use crate::secure::keys::{InstallError, KeyError};
use crate::secure::{KeyTable, aead};
use crate::shm::msg::{HANDSHAKE_MAX, HandshakeIn, HandshakeOut, KeyInstall, KeyUsage};
use crate::sys::SEC;
use crate::wire::geneve::SecurityOption;
use crate::wire::oam::{self, MessageType};
use crate::wire::overlay::{Decapped, EncapParams, OverlayTemplate, TemplateConfig};

/// Handshake messages passed up per second at most (all sources).
pub const HANDSHAKE_RATE_PER_S: u64 = 1000;
/// Burst of the global handshake limit.
pub const HANDSHAKE_BURST: u64 = 100;
/// Handshake messages per second from one source address.
pub const HANDSHAKE_SOURCE_RATE_PER_S: u64 = 20;
/// Burst of the per-source limit.
pub const HANDSHAKE_SOURCE_BURST: u64 = 5;
/// Slots of the per-source table (direct-mapped by address hash).
pub const HANDSHAKE_SOURCES: usize = 64;
/// Received handshake messages waiting for the control, at least (beyond:
/// dropped and counted `handshake_limited`); a gateway of many peers holds
/// [`HANDSHAKE_QUEUE_PER_PEER`] per peer ([`handshake_queue_len`]).
pub const HANDSHAKE_IN_QUEUE: usize = 16;
/// Handshake messages of the control waiting to leave, at least (as
/// [`HANDSHAKE_IN_QUEUE`]).
pub const HANDSHAKE_OUT_QUEUE: usize = 16;
/// Handshake messages queued per peer (each way): when every site starts at
/// once, each peer's initiation and its response to ours arrive together,
/// with room for a retry and a cookie reply. With 16 for all, an Abilene
/// gateway (10 peers) dropped 4-11 of the ~20 messages of its start while
/// its control was busy, and each lost one cost the 5 s retry: 13-100 %
/// loss for the flows to those peers in the first seconds.
pub const HANDSHAKE_QUEUE_PER_PEER: usize = 4;
/// Most handshake messages queued each way, whatever the peer count.
pub const HANDSHAKE_QUEUE_MAX: usize = 4096;

/// The handshake queues' length for `npeers` peers: at least `min`,
/// [`HANDSHAKE_QUEUE_PER_PEER`] per peer, at most [`HANDSHAKE_QUEUE_MAX`].
pub const fn handshake_queue_len(npeers: usize, min: usize) -> usize {
    let per = npeers.saturating_mul(HANDSHAKE_QUEUE_PER_PEER);
    let n = if per > min { per } else { min };
    if n > HANDSHAKE_QUEUE_MAX {
        HANDSHAKE_QUEUE_MAX
    } else {
        n
    }
}
/// A path that authenticated packets from its remote this recently keeps
/// it when the same peer shows up at another address (no roaming).
pub const ROAM_QUIET_NS: Nanos = SEC;

/// Why a packet could not be encapsulated toward a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EncapFail {
    /// Security is required and there is no usable session key.
    NoSession,
    /// No room in the frame (head or tail).
    Room,
}

impl EncapFail {
    /// The drop reason of a packet that could not leave.
    pub(crate) const fn reason(self) -> DropReason {
        match self {
            Self::NoSession => DropReason::NoSession,
            Self::Room => DropReason::Oversized,
        }
    }
}

/// A ring of plain values of a length fixed at construction (no allocation
/// after it).
struct Ring<T: Copy> {
    items: Box<[Option<T>]>,
    head: usize,
    len: usize,
}

impl<T: Copy> Ring<T> {
    /// A ring of `n` (at least 1) slots.
    fn new(n: usize) -> Self {
        Self {
            items: vec![None; n.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }
    fn push(&mut self, v: T) -> bool {
        let n = self.items.len();
        if self.len == n {
            return false;
        }
        self.items[(self.head + self.len) % n] = Some(v);
        self.len += 1;
        true
    }
    fn front(&self) -> Option<T> {
        (self.len > 0).then(|| self.items[self.head]).flatten()
    }
    fn pop(&mut self) -> Option<T> {
        let v = self.front()?;
        self.items[self.head] = None;
        self.head = (self.head + 1) % self.items.len();
        self.len -= 1;
        Some(v)
    }
}

/// The security state of one [`Gateway`].
pub(crate) struct SecureState {
    /// `[security]` requires sealing (else everything here is idle).
    pub(crate) required: bool,
    pub(crate) keys: KeyTable,
    global: TokenBucket,
    sources: Box<[(Option<IpAddr>, TokenBucket); HANDSHAKE_SOURCES]>,
    hs_in: Ring<HandshakeIn>,
    hs_out: Ring<HandshakeOut>,
    /// Per flow: the peers on its route (a relayed packet of the flow may
    /// come from any of them).
    pub(crate) route_peers: Vec<Vec<u16>>,
    /// Until then a path without a key is not declared down for silence
    /// ([`crate::secure::FIRST_HANDSHAKE_GRACE_NS`] after the start).
    pub(crate) no_key_grace_until: Nanos,
}

impl SecureState {
    /// The state for `npeers` peers, security `required` or not, of
    /// worker `lane` (its seal counters' lane).
    pub(crate) fn new(
        required: bool,
        npeers: usize,
        route_peers: Vec<Vec<u16>>,
        now: Nanos,
        lane: usize,
    ) -> Self {
        let src = TokenBucket::new(HANDSHAKE_SOURCE_RATE_PER_S, HANDSHAKE_SOURCE_BURST, now);
        Self {
            required,
            keys: KeyTable::with_lane(npeers, lane),
            global: TokenBucket::new(HANDSHAKE_RATE_PER_S, HANDSHAKE_BURST, now),
            sources: Box::new(core::array::from_fn(|_| (None, src.clone()))),
            hs_in: Ring::new(handshake_queue_len(npeers, HANDSHAKE_IN_QUEUE)),
            hs_out: Ring::new(handshake_queue_len(npeers, HANDSHAKE_OUT_QUEUE)),
            route_peers,
            no_key_grace_until: now.saturating_add(crate::secure::FIRST_HANDSHAKE_GRACE_NS),
        }
    }

    /// Whether a handshake message from `src` passes the limits at `now`
    /// (per source first, so one noisy source does not drain the global
    /// budget).
    fn admit_handshake(&mut self, src: IpAddr, now: Nanos) -> bool {
        let slot = source_slot(src);
        let (who, bucket) = &mut self.sources[slot];
        if *who != Some(src) {
            *who = Some(src);
            *bucket = TokenBucket::new(HANDSHAKE_SOURCE_RATE_PER_S, HANDSHAKE_SOURCE_BURST, now);
        }
        bucket.try_consume(1, now) && self.global.try_consume(1, now)
    }
}

/// Slot of a source address in the per-source table.
fn source_slot(ip: IpAddr) -> usize {
    usize::try_from(super::addr_hash(ip) >> 58).unwrap_or(0) % HANDSHAKE_SOURCES
}

/// The peer whose key seals packets on `path` to `peer`: the peer itself,
/// or the waypoint of a detour (hop by hop).
#[inline]
pub(crate) const fn key_peer(peer: usize, path: &PeerPath) -> usize {
    match path.kind {
        PathKind::Direct => peer,
        PathKind::Via(w) => w,
    }
}

/// Encapsulates `buf[off..off + len]` with `template` in place, sealed
/// with `key_peer`'s current key when security is required (the security
/// option then carries the peer's receiver index and the key's next
/// counter). Returns the outer frame's range in `buf`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn encap_out(
    sec: &mut SecureState,
    key_peer: usize,
    template: &OverlayTemplate,
    buf: &mut [u8],
    off: usize,
    len: usize,
    params: &EncapParams,
    now: Nanos,
) -> Result<Range<usize>, EncapFail> {
    if !sec.required {
        return template
            .encap(buf, off, len, params)
            .map_err(|_| EncapFail::Room);
    }
    let (k, counter) = sec
        .keys
        .sending(key_peer, now)
        .map_err(|_| EncapFail::NoSession)?;
    let p = EncapParams {
        security: SecurityOption {
            receiver_index: k.remote_index,
            counter,
        },
        ..*params
    };
    let r = template
        .encap_to_seal(buf, off, len, &p)
        .map_err(|_| EncapFail::Room)?;
    let out = buf.get_mut(r.clone()).ok_or(EncapFail::Room)?;
    aead::seal(template, out, k.send_key(), counter).map_err(|_| EncapFail::Room)?;
    Ok(r)
}

/// Writes OAM message `msg` into the reserve frame `base` (after the
/// headroom) and encapsulates it with `template`, sealed for `key_peer`
/// when security is required. Returns the outer frame's range in the frame.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encap_oam(
    sec: &mut SecureState,
    key_peer: usize,
    template: &OverlayTemplate,
    arena: &mut Arena,
    base: u64,
    msg: &oam::Repr<'_>,
    params: &EncapParams,
    now: Nanos,
) -> Result<Range<usize>, EncapFail> {
    let off = (arena.headroom() as usize).max(template.header_len());
    let frame_size = arena.frame_size();
    let buf = arena.get_mut(base, frame_size).ok_or(EncapFail::Room)?;
    let len = buf
        .get_mut(off..)
        .and_then(|b| msg.emit(b).ok())
        .ok_or(EncapFail::Room)?;
    encap_out(sec, key_peer, template, buf, off, len, params, now)
}

/// What [`Gateway::authenticate`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Security is off: nothing to check.
    Off,
    /// Opened; sent by this peer.
    Peer(usize),
}

impl Gateway {
    /// Authenticates a decapsulated packet: with security off, a sealed
    /// packet is dropped (`auth_no_key`) and the rest passes; required: an
    /// unsealed packet is a handshake message (rate limited, queued for the
    /// control, the frame consumed) or dropped `auth_unsealed`; a sealed
    /// one selects its key by receiver index (`auth_no_key`,
    /// `auth_expired`), is refused early when the replay window already
    /// refuses its counter (`auth_replay`), is opened once in place
    /// (`auth_failed`), and only then recorded in the replay window. The
    /// sender is the key's peer; a new outer address of it is followed.
    /// `Err` is the packet's verdict.
    #[inline]
    pub(crate) fn authenticate(
        &mut self,
        now: Nanos,
        arena: &mut Arena,
        p: &mut Packet,
        d: &Decapped,
    ) -> Result<Auth, Verdict> {
        let m = &d.meta;
        if !self.sec.required {
            if m.security.is_some() {
                self.stats.auth_no_key += 1;
                return Err(Verdict::Drop(DropReason::AuthNoKey));
            }
            return Ok(Auth::Off);
        }
        let Some(s) = m.security else {
            return Err(self.unsealed(now, arena, p, d));
        };
        let key = match self.sec.keys.receiving(s.receiver_index, now) {
            Ok(k) => k,
            Err(KeyError::Expired) => {
                self.stats.auth_expired += 1;
                return Err(Verdict::Drop(DropReason::AuthExpired));
            }
            Err(_) => {
                self.stats.auth_no_key += 1;
                return Err(Verdict::Drop(DropReason::AuthNoKey));
            }
        };
        if key.replay_check(s.counter).is_err() {
            self.stats.auth_replay += 1;
            return Err(Verdict::Drop(DropReason::AuthReplay));
        }
        let Some(buf) = arena.get_mut(p.addr, p.len) else {
            return Err(Verdict::Drop(DropReason::Truncated));
        };
        self.stats.auth_opens += 1;
        if aead::open(buf, d, key.recv_key(), s.counter).is_err() {
            self.stats.auth_failed += 1;
            return Err(Verdict::Drop(DropReason::AuthFailed));
        }
        let Ok(a) = self.sec.keys.accept(s.receiver_index, s.counter, now) else {
            self.stats.auth_replay += 1;
            return Err(Verdict::Drop(DropReason::AuthReplay));
        };
        if a.confirmed_now {
            self.stats.keys_confirmed += 1;
            // The other workers seal with it from now on too (they may
            // never see a packet of it themselves).
            if self.settings.workers > 1 {
                self.note_key_confirmed(s.receiver_index);
            }
        }
        let peer = usize::try_from(a.peer).unwrap_or(usize::MAX);
        self.note_authenticated(peer, p.port, m.outer_src, now);
        Ok(Auth::Peer(peer))
    }

    /// An unsealed packet while security is required: a handshake message
    /// is rate limited and queued for the control; anything else dropped.
    fn unsealed(&mut self, now: Nanos, arena: &mut Arena, p: &Packet, d: &Decapped) -> Verdict {
        let m = &d.meta;
        let hs = m.oam
            && m.protocol == oam::OAM_PROTOCOL
            && arena
                .packet(p)
                .and_then(|f| f.get(d.inner.clone()))
                .and_then(|b| oam::Message::new_checked(b).ok())
                .is_some_and(|msg| msg.msg_type().is_handshake());
        if !hs {
            self.stats.auth_unsealed += 1;
            return Verdict::Drop(DropReason::AuthUnsealed);
        }
        let Some(port) = self.uplink_ports.iter().position(|u| *u == p.port) else {
            self.stats.auth_unsealed += 1;
            return Verdict::Drop(DropReason::AuthUnsealed);
        };
        // Addressed to another host: a peer's initiation to a gateway behind
        // us (the control tries every address it knows) that the
        // point-to-point link delivered here. Not ours to answer, and it
        // must not spend its sender's budget: 4 such messages in one batch
        // took the budget of the one addressed to us, and the handshake
        // waited for its retry.
        if !self
            .cfg
            .uplinks
            .iter()
            .any(|u| u.local_address == m.outer_dst)
        {
            self.stats.handshake_not_ours += 1;
            return Verdict::Drop(DropReason::NotOurs);
        }
        if !self.sec.admit_handshake(m.outer_src, now) {
            self.stats.handshake_limited += 1;
            return Verdict::Drop(DropReason::HandshakeLimited);
        }
        let Some(msg) = arena
            .packet(p)
            .and_then(|f| f.get(d.inner.clone()))
            .and_then(|b| oam::Message::new_checked(b).ok())
        else {
            return Verdict::Drop(DropReason::BadOverlay);
        };
        let body = msg.handshake().unwrap_or_default();
        let mut bytes = [0u8; HANDSHAKE_MAX];
        let n = body.len().min(HANDSHAKE_MAX);
        bytes[..n].copy_from_slice(&body[..n]);
        let h = HandshakeIn {
            port: u32::try_from(port).unwrap_or(u32::MAX),
            src: m.outer_src,
            src_port: m.src_port,
            msg_type: msg.msg_type() as u8,
            len: u16::try_from(n).unwrap_or(0),
            bytes,
        };
        if !self.sec.hs_in.push(h) {
            self.stats.handshake_limited += 1;
            return Verdict::Drop(DropReason::HandshakeLimited);
        }
        self.stats.handshakes_received += 1;
        self.consume(arena, p)
    }

    /// A packet of `peer` authenticated, arriving on `port` from `src`:
    /// the direct path to it on that uplink with that remote is vouched
    /// for; none (the peer moved): the path of that uplink that
    /// authenticated least recently takes the new address, unless it
    /// authenticated within [`ROAM_QUIET_NS`] (a peer with two live
    /// addresses does not make the path flap).
    #[inline]
    fn note_authenticated(&mut self, peer: usize, port: u16, src: IpAddr, now: Nanos) {
        let Some(pp) = self.peers.get_mut(peer) else {
            return;
        };
        let mut oldest: Option<(usize, Nanos)> = None;
        for (i, c) in pp.paths.iter_mut().enumerate() {
            if c.kind != PathKind::Direct || c.port != port {
                continue;
            }
            if c.remote == src {
                c.last_auth = now;
                return;
            }
            if oldest.is_none_or(|(_, t)| c.last_auth < t) {
                oldest = Some((i, c.last_auth));
            }
        }
        if let Some((i, t)) = oldest
            && (t == 0 || now.saturating_sub(t) >= ROAM_QUIET_NS)
        {
            self.roam(peer, i, src, now);
        }
    }

    /// Path `i` of `peer` now sends to `src` (same UDP port); so do the
    /// detours of other peers through `peer` that used the old address on
    /// the same uplink.
    fn roam(&mut self, peer: usize, i: usize, src: IpAddr, now: Nanos) {
        let Some(c) = self.peers.get_mut(peer).and_then(|pp| pp.paths.get_mut(i)) else {
            return;
        };
        let (old, port) = (c.remote, c.port);
        let dst_port = c.template.remote().1;
        let Ok(t) = c.template.with_remote(src, dst_port) else {
            return;
        };
        c.template = t;
        c.remote = src;
        c.remote_index = super::remote_index(&self.cfg.peers[peer].gateways, src);
        c.last_auth = now;
        for (pi, pp) in self.peers.iter_mut().enumerate() {
            if pi == peer {
                continue;
            }
            for v in &mut pp.paths {
                if v.kind == PathKind::Via(peer) && v.port == port && v.remote == old {
                    let Ok(t) = v.template.with_remote(src, dst_port) else {
                        continue;
                    };
                    v.template = t;
                    v.remote = src;
                    v.remote_index = super::remote_index(&self.cfg.peers[peer].gateways, src);
                }
            }
        }
        self.stats.roamed += 1;
    }

    /// Cryptokey routing of an authenticated data packet from `from` with
    /// inner addresses `src` -> `dst`, of planned flow `fi` (or best
    /// effort): the inner source belongs to the flow's origin site (best
    /// effort: to a configured peer), the packet comes from that site or a
    /// site that may relay it (on the flow's route, or any peer when detours
    /// are on), and the inner destination is ours or lies in a route we
    /// carry (the flow's destination site; best effort: a peer's prefixes).
    #[inline]
    pub(crate) fn crypto_route_ok(
        &self,
        from: usize,
        fi: Option<usize>,
        src: IpAddr,
        dst: IpAddr,
    ) -> bool {
        let in_peer = |p: usize, a: IpAddr| {
            self.peer_prefixes
                .get(p)
                .is_some_and(|ps| ps.iter().any(|x| x.contains(a)))
        };
        let relays = self.settings.detours;
        match fi {
            Some(fi) => {
                let Some(f) = self.flows.get(fi) else {
                    return false;
                };
                if f.role == super::Role::Origin {
                    // Our own flow back from a site on its route whose next
                    // hop is down (it detours through us): from a host of
                    // ours, to the flow's destination, relayed only with
                    // detours on.
                    return relays
                        && self.is_local(src)
                        && f.dest_peer.is_some_and(|d| in_peer(d, dst))
                        && self
                            .sec
                            .route_peers
                            .get(fi)
                            .is_some_and(|r| r.iter().any(|x| usize::from(*x) == from));
                }
                let Some(origin) = f.src_peer else {
                    return false;
                };
                let from_ok = from == origin
                    || relays
                    || self
                        .sec
                        .route_peers
                        .get(fi)
                        .is_some_and(|r| r.iter().any(|x| usize::from(*x) == from));
                let dst_ok = match f.role {
                    super::Role::Destination => self.is_local(dst),
                    super::Role::Waypoint | super::Role::Elsewhere => {
                        f.dest_peer.is_some_and(|d| in_peer(d, dst))
                    }
                    super::Role::Origin => false,
                };
                from_ok && dst_ok && in_peer(origin, src)
            }
            None => {
                let Some(owner) = self.peer_of(src) else {
                    return false;
                };
                (owner == from || relays) && (self.is_local(dst) || self.peer_of(dst).is_some())
            }
        }
    }

    /// Whether a probe echo naming candidate `path_peer`/`idx` may come from
    /// `from`: the probe went to `from` (directly or as the waypoint).
    pub(crate) fn echo_from_ok(&self, from: Auth, path_peer: usize, idx: usize) -> bool {
        match from {
            Auth::Off => true,
            Auth::Peer(from) => self
                .peers
                .get(path_peer)
                .and_then(|pp| pp.paths.get(idx))
                .is_some_and(|c| key_peer(path_peer, c) == from),
        }
    }

    /// Installs a session key from the control (cold path: builds the
    /// AEAD keys). Counted; a key naming an unknown peer is refused.
    pub fn install_key(&mut self, k: &KeyInstall) -> Result<(), InstallError> {
        let r = self.sec.keys.install(k);
        match r {
            Ok(()) => self.stats.keys_installed += 1,
            Err(_) => self.stats.keys_refused += 1,
        }
        r
    }

    /// Forgets the key of `local_index`; whether there was one.
    pub fn revoke_key(&mut self, local_index: u32) -> bool {
        let had = self.sec.keys.revoke(local_index);
        if had {
            self.stats.keys_revoked += 1;
        }
        had
    }

    /// Forgets expired keys (housekeeping).
    pub fn expire_keys(&mut self, now: Nanos) -> usize {
        let n = self.sec.keys.expire(now);
        self.stats.keys_expired += n as u64;
        n
    }

    /// Use of every installed key (for [`crate::shm::Telemetry::Keys`]).
    pub fn key_usage(&self) -> impl Iterator<Item = KeyUsage> + '_ {
        self.sec.keys.usage()
    }

    /// The session keys (tests, telemetry).
    pub fn keys(&self) -> &KeyTable {
        &self.sec.keys
    }

    /// Whether packets between gateways are sealed.
    pub fn security_required(&self) -> bool {
        self.sec.required
    }

    /// Queues a handshake message of the control for sending (from the
    /// next poll); false (counted `handshake_out_dropped`) when the queue
    /// is full or the message is malformed.
    pub fn queue_handshake(&mut self, h: &HandshakeOut) -> bool {
        let ok = MessageType::from_u8(h.msg_type)
            .and_then(MessageType::handshake_len)
            .is_some_and(|n| n == usize::from(h.len))
            && self.sec.hs_out.push(*h);
        if !ok {
            self.stats.handshake_out_dropped += 1;
        }
        ok
    }

    /// Hands the received handshake messages to `f` in arrival order while
    /// it accepts them (the control ring has room).
    pub fn drain_handshakes(&mut self, mut f: impl FnMut(&HandshakeIn) -> bool) {
        while let Some(h) = self.sec.hs_in.front() {
            if !f(&h) {
                return;
            }
            self.sec.hs_in.pop();
        }
    }

    /// Sends the control's queued handshake messages, unsealed, each on
    /// its path's uplink toward the path's remote (or the message's
    /// override), in frames of the reserve.
    pub(crate) fn emit_handshakes(&mut self, now: Nanos, arena: &mut Arena, out: &mut Batch) {
        while let Some(h) = self.sec.hs_out.front() {
            if out.spare() == 0 {
                return;
            }
            let Some(base) = self.reserve.pop() else {
                return;
            };
            self.sec.hs_out.pop();
            let (peer, idx) = super::failover::split_path_ref(h.path);
            let Some(path) = self.peers.get(peer).and_then(|pp| pp.paths.get(idx)) else {
                self.stats.handshake_out_dropped += 1;
                self.reserve.push(base);
                continue;
            };
            let (ip, port) = h.dst.unwrap_or_else(|| path.template.remote());
            let t = OverlayTemplate::new(&TemplateConfig {
                secure: false,
                dst_ip: ip,
                dst_port: port,
                ..*path.template.config()
            });
            let (Ok(t), Some(t_type)) = (t, MessageType::from_u8(h.msg_type)) else {
                self.stats.handshake_out_dropped += 1;
                self.reserve.push(base);
                continue;
            };
            let n = usize::from(h.len).min(HANDSHAKE_MAX);
            let msg = oam::Repr::Handshake(t_type, &h.bytes[..n]);
            self.oam_seq += 1;
            let params = super::oam_params(self.oam_seq, now);
            let off = (arena.headroom() as usize).max(t.header_len());
            let frame_size = arena.frame_size();
            let res = arena.get_mut(base, frame_size).and_then(|buf| {
                let len = msg.emit(buf.get_mut(off..)?).ok()?;
                t.encap(buf, off, len, &params).ok()
            });
            match res {
                Some(r) => {
                    let len = u32::try_from(r.len()).unwrap_or(0);
                    let mut pkt =
                        Packet::new(base + r.start as u64, len, self.settings.lan_port, now);
                    pkt.verdict = Verdict::Tx(path.port);
                    out.push(pkt);
                    self.stats.handshakes_sent += 1;
                }
                None => {
                    self.stats.handshake_out_dropped += 1;
                    self.reserve.push(base);
                }
            }
        }
    }

    /// Pushes the reserve frame `base` into `out` as a packet dropped for
    /// `why` (so the worker counts the reason and frees the frame).
    pub(crate) fn drop_frame(&mut self, base: u64, why: DropReason, now: Nanos, out: &mut Batch) {
        let mut pkt = Packet::new(base, 0, self.settings.lan_port, now);
        pkt.verdict = Verdict::Drop(why);
        out.push(pkt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_queues_hold_every_peer_s_start() {
        assert_eq!(
            handshake_queue_len(0, HANDSHAKE_IN_QUEUE),
            HANDSHAKE_IN_QUEUE
        );
        assert_eq!(
            handshake_queue_len(2, HANDSHAKE_IN_QUEUE),
            HANDSHAKE_IN_QUEUE
        );
        // Abilene: 10 peers, each with its initiation and its response at once.
        assert!(handshake_queue_len(10, HANDSHAKE_IN_QUEUE) >= 2 * 10);
        assert_eq!(handshake_queue_len(10, HANDSHAKE_IN_QUEUE), 40);
        assert_eq!(handshake_queue_len(usize::MAX, 16), HANDSHAKE_QUEUE_MAX);
        let s = SecureState::new(true, 10, Vec::new(), 0, 0);
        assert_eq!(s.hs_in.items.len(), 40);
        assert_eq!(s.hs_out.items.len(), 40);
    }

    /// The ring against a FIFO model, wrapping many times, at several lengths.
    #[test]
    fn the_ring_is_a_bounded_fifo() {
        for n in [1usize, 2, 3, 16, 40] {
            let mut r: Ring<u32> = Ring::new(n);
            let mut model = std::collections::VecDeque::new();
            let mut x = 0x9e37_79b9_u32;
            for i in 0..2000u32 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if x.is_multiple_of(3) {
                    assert_eq!(r.pop(), model.pop_front(), "n {n} step {i}");
                } else {
                    let ok = r.push(i);
                    assert_eq!(ok, model.len() < n, "n {n} step {i}");
                    if ok {
                        model.push_back(i);
                    }
                }
                assert_eq!(r.front(), model.front().copied());
                assert_eq!(r.len, model.len());
            }
        }
        // A zero length is one slot.
        let mut r: Ring<u8> = Ring::new(0);
        assert!(r.push(1));
        assert!(!r.push(2));
    }
}
