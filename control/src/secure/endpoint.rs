//! One gateway's side of every handshake ([`Endpoint`]): the static key, a [`Handshaker`] per
//! peer, and the checks a handshake message passes before it costs a Diffie-Hellman. Pure (time
//! and random bytes passed in); the [`super::driver`] connects it to the dataplane's ring.
//!
//! A message from the network goes through, in order:
//! 1. its exact layout ([`super::messages`]); anything else is counted and dropped;
//! 2. mac1 (initiations and responses): proves the sender knows our public key;
//! 3. under load ([`LoadMeter`]), mac2: without a valid one the answer is a cookie reply
//!    (64 bytes) and nothing else is done;
//! 4. the per-source rate limit ([`SourceLimiter`]);
//! 5. the Noise message itself, the peer it names, its timestamp ([`Handshaker`]).
//!
//! An answer always goes back to where the message came from and is smaller than the message
//! (response 92 < initiation 148; cookie reply 64 < both): no amplification.

use std::collections::{BTreeMap, VecDeque};

use mongate_dataplane::sys::Nanos;

use super::cookie::{CookieChecker, Source};
use super::handshake::{
    Entropy, HandshakeError, Handshaker, MAX_PEERS, Output, Tai64nClock, Timers, open_initiation,
    peer_of_index,
};
use super::keys::{PublicKey, StaticSecret};
use super::limit::{
    LoadMeter, MAX_SOURCES, PER_SOURCE_BURST, PER_SOURCE_RATE, SourceLimiter, UNDER_LOAD_PER_S,
};
use super::messages::{CookieReply, Init, MessageBuf, MessageType, NONCE_LEN, Response};

/// Settings of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Rekey limits.
    pub timers: Timers,
    /// Handshake messages per second above which mac2 is demanded.
    pub under_load_per_s: u32,
    /// Messages processed per second per source address.
    pub per_source_rate: u64,
    /// Burst of messages processed per source address.
    pub per_source_burst: u64,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            timers: Timers::default(),
            under_load_per_s: UNDER_LOAD_PER_S,
            per_source_rate: PER_SOURCE_RATE,
            per_source_burst: PER_SOURCE_BURST,
        }
    }
}

/// What an endpoint could not use, by reason, and what it answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Not a handshake message (length, type, reserved bytes).
    pub malformed: u64,
    /// mac1 wrong.
    pub bad_mac1: u64,
    /// Cookie replies sent (under load, no valid mac2).
    pub cookies_sent: u64,
    /// Dropped by the per-source rate limit.
    pub rate_limited: u64,
    /// Noise message did not authenticate.
    pub auth_failed: u64,
    /// Initiations from a static key that is no peer's.
    pub unknown_peer: u64,
    /// Replayed initiations (timestamp not newer).
    pub replayed: u64,
    /// Initiations within the per-peer minimum interval.
    pub flood: u64,
    /// Responses or cookie replies naming no initiation of ours.
    pub unknown_index: u64,
    /// Cookie replies that did not open.
    pub bad_cookie: u64,
    /// Responses sent.
    pub responses_sent: u64,
    /// Noise library refusals (bugs).
    pub noise_errors: u64,
}

/// What [`Endpoint::admit`] decided.
enum Admit {
    /// Passed: open it.
    Process,
    /// Answer with a cookie reply, nothing else.
    Answer(MessageBuf),
    /// Dropped (counted).
    Drop,
}

/// One gateway's handshakes with all its peers.
pub struct Endpoint<E: Entropy> {
    secret: StaticSecret,
    peers: Vec<Handshaker>,
    /// Peer number -> index in `peers`.
    by_number: BTreeMap<u32, usize>,
    by_key: BTreeMap<PublicKey, usize>,
    /// Peers whose timers may run (a path to them is known).
    ready: Vec<bool>,
    checker: CookieChecker,
    load: LoadMeter,
    limiter: SourceLimiter,
    clock: Tai64nClock,
    rng: E,
    out: VecDeque<(u32, Output)>,
    stats: EndpointStats,
}

impl<E: Entropy> core::fmt::Debug for Endpoint<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("public", &self.secret.public_key())
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

/// Why an endpoint cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// A peer number at or beyond [`MAX_PEERS`].
    #[error("peer {0}: at most {MAX_PEERS} peers have key slots")]
    TooManyPeers(u32),
    /// Two peers with one key, or a peer with ours.
    #[error("peer {0}: its public key is another peer's or this gateway's")]
    DuplicateKey(u32),
}

impl<E: Entropy> Endpoint<E> {
    /// The endpoint of the gateway with `secret`, its peers as (number, public key), the wall
    /// clock (ns since the Unix epoch) read at monotonic time `now`.
    pub fn new(
        secret: StaticSecret,
        peers: &[(u32, PublicKey)],
        cfg: EndpointConfig,
        wall_unix_ns: u64,
        now: Nanos,
        mut rng: E,
    ) -> Result<Self, EndpointError> {
        let mut by_key = BTreeMap::new();
        let mut by_number = BTreeMap::new();
        let mut hs = Vec::new();
        for &(n, k) in peers {
            if n >= MAX_PEERS {
                return Err(EndpointError::TooManyPeers(n));
            }
            if k == secret.public_key() || by_key.insert(k, hs.len()).is_some() {
                return Err(EndpointError::DuplicateKey(n));
            }
            by_number.insert(n, hs.len());
            hs.push(Handshaker::new(n, k, cfg.timers, now));
        }
        let checker = CookieChecker::new(&secret.public_key(), rng.bytes32(), now);
        Ok(Self {
            ready: vec![true; hs.len()],
            peers: hs,
            by_number,
            by_key,
            checker,
            load: LoadMeter::new(cfg.under_load_per_s, now),
            limiter: SourceLimiter::new(cfg.per_source_rate, cfg.per_source_burst, MAX_SOURCES),
            clock: Tai64nClock::new(wall_unix_ns, now),
            rng,
            out: VecDeque::new(),
            stats: EndpointStats::default(),
            secret,
        })
    }

    /// Our public key.
    pub fn public_key(&self) -> PublicKey {
        self.secret.public_key()
    }

    /// Counters.
    pub fn stats(&self) -> &EndpointStats {
        &self.stats
    }

    /// The handshake with peer `peer`.
    pub fn peer(&self, peer: u32) -> Option<&Handshaker> {
        self.by_number.get(&peer).map(|&i| &self.peers[i])
    }

    /// Every peer's handshake.
    pub fn peers(&self) -> impl Iterator<Item = &Handshaker> {
        self.peers.iter()
    }

    /// Lets peer `peer`'s timers run (`false`: no path to it is known; nothing is sent).
    pub fn set_ready(&mut self, peer: u32, ready: bool) {
        if let Some(&i) = self.by_number.get(&peer) {
            self.ready[i] = ready;
        }
    }

    /// The dataplane was (re-)attached: every peer handshakes again at once.
    pub fn reset(&mut self, now: Nanos) {
        for h in &mut self.peers {
            h.reset(now);
        }
    }

    /// The next output, with the peer it concerns.
    pub fn poll_output(&mut self) -> Option<(u32, Output)> {
        self.out.pop_front()
    }

    fn collect(&mut self, i: usize) {
        let h = &mut self.peers[i];
        let n = h.peer();
        while let Some(o) = h.poll_output() {
            self.out.push_back((n, o));
        }
    }

    /// The earliest time [`Self::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        self.peers
            .iter()
            .zip(&self.ready)
            .filter(|(_, r)| **r)
            .filter_map(|(h, _)| h.poll_timeout())
            .min()
    }

    /// Runs every ready peer's timers and the cookie secret's rotation.
    pub fn handle_timeout(&mut self, now: Nanos) {
        if self.checker.rotation_due(now) {
            self.checker.rotate(self.rng.bytes32(), now);
        }
        for i in 0..self.peers.len() {
            if self.ready[i] && self.peers[i].poll_timeout().is_some_and(|t| t <= now) {
                self.peers[i].handle_timeout(now, &self.secret, &mut self.clock, &mut self.rng);
                self.collect(i);
            }
        }
    }

    /// The dataplane's report of one key (see [`Handshaker::on_key_usage`]).
    pub fn on_key_usage(
        &mut self,
        local_index: u32,
        lane: usize,
        sent: u64,
        last_rx: Nanos,
        confirmed: bool,
        now: Nanos,
    ) {
        if let Some(&i) = self.by_number.get(&peer_of_index(local_index)) {
            self.peers[i].on_key_usage(local_index, lane, sent, last_rx, confirmed, now);
            self.collect(i);
        }
    }

    fn count(&mut self, e: HandshakeError) {
        let s = &mut self.stats;
        match e {
            HandshakeError::Auth => s.auth_failed += 1,
            HandshakeError::UnknownPeer => s.unknown_peer += 1,
            HandshakeError::Replay => s.replayed += 1,
            HandshakeError::Flood => s.flood += 1,
            HandshakeError::UnknownIndex => s.unknown_index += 1,
            HandshakeError::Cookie(_) => s.bad_cookie += 1,
            HandshakeError::Noise => s.noise_errors += 1,
        }
    }

    /// Steps 2 to 4 for an initiation or response.
    fn admit(&mut self, bytes: &[u8], src: &Source, now: Nanos) -> Admit {
        self.load.record(now);
        if !self.checker.check_mac1(bytes) {
            self.stats.bad_mac1 += 1;
            return Admit::Drop;
        }
        if self.load.under_load(now) && !self.checker.check_mac2(bytes, src, now) {
            let mut nonce = [0u8; NONCE_LEN];
            self.rng.fill(&mut nonce);
            return match self.checker.cookie_reply(bytes, src, nonce) {
                Some(r) => {
                    self.stats.cookies_sent += 1;
                    Admit::Answer(r)
                }
                None => Admit::Drop,
            };
        }
        if !self.limiter.allow(src.addr, now) {
            self.stats.rate_limited += 1;
            return Admit::Drop;
        }
        Admit::Process
    }

    /// A handshake message from `src`; returns the answer to send back to `src` (smaller than
    /// `bytes`) and the peer it is for (`None` for a cookie reply to an unknown sender). Keys
    /// to install are in [`Self::poll_output`] and must reach the dataplane before the answer.
    pub fn on_message(
        &mut self,
        bytes: &[u8],
        src: Source,
        now: Nanos,
    ) -> Option<(MessageBuf, Option<u32>)> {
        let answer = self.dispatch(bytes, src, now)?;
        // By construction; checked so that no change can turn us into an amplifier.
        (answer.0.len() < bytes.len()).then_some(answer)
    }

    fn dispatch(
        &mut self,
        bytes: &[u8],
        src: Source,
        now: Nanos,
    ) -> Option<(MessageBuf, Option<u32>)> {
        let Some(t) = bytes.first().copied().and_then(MessageType::from_u8) else {
            self.stats.malformed += 1;
            return None;
        };
        match t {
            MessageType::Init => {
                let Ok(m) = Init::new_checked(bytes) else {
                    self.stats.malformed += 1;
                    return None;
                };
                match self.admit(bytes, &src, now) {
                    Admit::Process => {}
                    Admit::Answer(r) => return Some((r, None)),
                    Admit::Drop => return None,
                }
                let opened = match open_initiation(&self.secret, &m, &mut self.rng) {
                    Ok(o) => o,
                    Err(e) => {
                        self.count(e);
                        return None;
                    }
                };
                let Some(&i) = self.by_key.get(&opened.peer) else {
                    self.count(HandshakeError::UnknownPeer);
                    return None;
                };
                let r = self.peers[i].on_initiation(opened, now, &mut self.rng);
                self.collect(i);
                match r {
                    Ok(resp) => {
                        self.stats.responses_sent += 1;
                        Some((resp, Some(self.peers[i].peer())))
                    }
                    Err(e) => {
                        self.count(e);
                        None
                    }
                }
            }
            MessageType::Response => {
                let Ok(m) = Response::new_checked(bytes) else {
                    self.stats.malformed += 1;
                    return None;
                };
                match self.admit(bytes, &src, now) {
                    Admit::Process => {}
                    Admit::Answer(r) => return Some((r, None)),
                    Admit::Drop => return None,
                }
                let Some(&i) = self.by_number.get(&peer_of_index(m.receiver())) else {
                    self.count(HandshakeError::UnknownIndex);
                    return None;
                };
                let r = self.peers[i].on_response(&m, now, &mut self.rng);
                self.collect(i);
                if let Err(e) = r {
                    self.count(e);
                }
                None
            }
            MessageType::CookieReply => {
                let Ok(m) = CookieReply::new_checked(bytes) else {
                    self.stats.malformed += 1;
                    return None;
                };
                let Some(&i) = self.by_number.get(&peer_of_index(m.receiver())) else {
                    self.count(HandshakeError::UnknownIndex);
                    return None;
                };
                let r = self.peers[i].on_cookie_reply(&m, now);
                if let Err(e) = r {
                    self.count(e);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
