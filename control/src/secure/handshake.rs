//! The Noise IK handshake with one peer ([`Handshaker`]), as WireGuard runs it: pure, time and
//! random bytes passed in, no I/O (the [`super::driver`] moves the messages and keys).
//!
//! - **Handshake**: `Noise_IK_25519_ChaChaPoly_BLAKE2s` (`snow`), prologue [`PROLOGUE`]. The
//!   initiator knows the responder's static key; message 1 carries the initiator's static key
//!   and a TAI64N timestamp, message 2 nothing. The split gives two 32-byte keys: the first
//!   seals initiator -> responder, the second responder -> initiator ([`SessionKeys`]).
//! - **Indices**: each side picks the receiver index of the packets it will receive under the
//!   new key (the sender index of its message). Its low [`KEY_SLOT_BITS`] bits are the
//!   dataplane's key slot, `peer * 4 + k` with `k` rotating over the peer's four slots; the rest
//!   is random (so an index cannot be guessed from the slot alone).
//! - **Replay**: an initiation is accepted only with a timestamp newer than every one accepted
//!   from that peer before, and at most one per [`MIN_INIT_INTERVAL`]: a replayed initiation is
//!   refused, a restarted peer's new one (wall clock, later) is answered at once.
//! - **Keys**: per peer at most a *current* key (sending), the *previous* one (still receiving:
//!   no packet in flight is lost to a rekey), a *next* one (responder keys, until the dataplane
//!   confirms that the peer sent with it) and the slot of our initiation in flight: four slots.
//!   An initiator key is used at once; a responder key once confirmed (`Telemetry::Keys`). A key
//!   that stops being the previous one is not revoked: it stays until a new key takes its slot
//!   (see [`Handshaker::make_current`]) or it expires.
//! - **Timers**: a new handshake when the current key is older than the rekey time (the
//!   responder of a session waits a quarter longer, so the initiator normally rekeys alone),
//!   when it sent more than the rekey packet count, or when there is no key; an unanswered
//!   initiation is retried every [`REKEY_TIMEOUT`] plus jitter, for ever, with a
//!   [`Event::Failing`] after [`REKEY_ATTEMPT_TIME`]; keys are forgotten (and revoked in the
//!   dataplane) [`REJECT_AFTER_TIME`] after creation.

use std::collections::VecDeque;

use mongate_dataplane::sys::{MS, Nanos, Rng, SEC};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState};

use super::cookie::{CookieError, MacSender};
use super::keys::{KEY_LEN, PublicKey, StaticSecret};
use super::messages::{
    CookieReply, INIT_LEN, Init, MessageBuf, NOISE_INIT_LEN, NOISE_RESPONSE_LEN, RESPONSE_LEN,
    Response,
};

/// The Noise protocol.
pub const NOISE_PARAMS: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// Prologue mixed into every handshake (a mongate handshake is no other protocol's).
pub const PROLOGUE: &[u8] = b"mongate overlay handshake v1";
/// Retry interval of an unanswered initiation (WireGuard's `REKEY_TIMEOUT`).
pub const REKEY_TIMEOUT: Nanos = 5 * SEC;
/// Largest random delay added to each retry.
pub const REKEY_JITTER: Nanos = 333 * MS;
/// Largest random delay added to a key's rekey time.
pub const REKEY_JITTER_KEY: Nanos = SEC;
/// After this long without a handshake, [`Event::Failing`] (retries go on).
pub const REKEY_ATTEMPT_TIME: Nanos = 90 * SEC;
/// A key is not used after this age (WireGuard's `REJECT_AFTER_TIME`; the dataplane's).
pub const REJECT_AFTER_TIME: Nanos = mongate_dataplane::secure::REJECT_AFTER_TIME_NS;
/// At most one initiation per peer is consumed per this interval (WireGuard: 50 per second).
pub const MIN_INIT_INTERVAL: Nanos = 20 * MS;
/// Key slots per peer.
pub const KEYS_PER_PEER: u32 = mongate_dataplane::secure::KEYS_PER_PEER;
/// Low bits of an index that name the dataplane's key slot.
pub const KEY_SLOT_BITS: u32 = mongate_dataplane::secure::KEY_SLOT_BITS;
/// The slot bits of an index.
pub const SLOT_MASK: u32 = mongate_dataplane::secure::keys::SLOT_MASK;
/// Most peers (every peer has [`KEYS_PER_PEER`] slots).
pub const MAX_PEERS: u32 = mongate_dataplane::secure::MAX_PEERS;
/// TAI64N timestamp length.
pub const TIMESTAMP_LEN: usize = 12;

/// The peer a local index belongs to (`None` beyond [`MAX_PEERS`] cannot happen).
pub fn peer_of_index(index: u32) -> u32 {
    (index & SLOT_MASK) / KEYS_PER_PEER
}

/// Random bytes: the OS generator in the control, a seeded one in tests.
pub trait Entropy {
    /// Fills `out`.
    fn fill(&mut self, out: &mut [u8]);
    /// 32 random bytes.
    fn bytes32(&mut self) -> [u8; 32] {
        let mut b = [0u8; 32];
        self.fill(&mut b);
        b
    }
    /// 32 random bits.
    fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_ne_bytes(b)
    }
    /// Uniform in `0..n` (`0` for `n == 0`), bias below 2^-32.
    fn below(&mut self, n: u64) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        let m = u128::from(u64::from_ne_bytes(b)) * u128::from(n);
        u64::try_from(m >> 64).unwrap_or(0)
    }
}

/// The operating system's generator (`getrandom`).
#[derive(Debug)]
pub struct OsEntropy(());

impl OsEntropy {
    /// Checks the OS generator works once; the control refuses to start otherwise.
    pub fn new() -> std::io::Result<Self> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Self(()))
    }
}

impl Entropy for OsEntropy {
    fn fill(&mut self, out: &mut [u8]) {
        // It worked at start; on Linux getrandom does not fail afterwards.
        getrandom::fill(out).expect("the OS random generator failed");
    }
}

/// Deterministic bytes from a seed: tests and simulations only (not secret).
#[derive(Clone, Debug)]
pub struct SeededEntropy(Rng);

impl SeededEntropy {
    /// The stream of `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Rng::new(seed))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let v = self.0.next_u64().to_ne_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// snow's default primitives with the ephemeral key's randomness given (so a seeded test is
/// reproducible and no hidden RNG is read).
struct Injected([u8; KEY_LEN]);

struct OneShot(Option<[u8; KEY_LEN]>);

impl Random for OneShot {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        match self.0.take() {
            Some(b) if dest.len() <= b.len() => {
                dest.copy_from_slice(&b[..dest.len()]);
                Ok(())
            }
            _ => Err(snow::Error::Rng),
        }
    }
}

impl CryptoResolver for Injected {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(OneShot(Some(self.0))))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

fn builder<'a>(params: NoiseParams, eph: [u8; KEY_LEN]) -> Builder<'a> {
    Builder::with_resolver(params, Box::new(Injected(eph)))
}

fn params() -> Result<NoiseParams, HandshakeError> {
    NOISE_PARAMS.parse().map_err(|_| HandshakeError::Noise)
}

/// A TAI64N timestamp (12 bytes, big-endian: byte order is time order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub [u8; TIMESTAMP_LEN]);

impl Timestamp {
    /// The timestamp of `ns` nanoseconds after the Unix epoch.
    pub fn from_unix_ns(ns: u64) -> Self {
        let secs = 0x4000_0000_0000_000a_u64 + ns / SEC;
        // Below 10^9: fits.
        let nanos = u32::try_from(ns % SEC).unwrap_or(0);
        let mut b = [0u8; TIMESTAMP_LEN];
        b[..8].copy_from_slice(&secs.to_be_bytes());
        b[8..].copy_from_slice(&nanos.to_be_bytes());
        Self(b)
    }
}

/// Our initiations' timestamps: the wall clock read once at start, advanced by the monotonic
/// clock, strictly increasing.
#[derive(Clone, Debug)]
pub struct Tai64nClock {
    wall_ns: u64,
    mono_ns: Nanos,
    last: u64,
}

impl Tai64nClock {
    /// `wall_unix_ns` (the wall clock, ns since the Unix epoch) read at monotonic time `now`.
    pub fn new(wall_unix_ns: u64, now: Nanos) -> Self {
        Self {
            wall_ns: wall_unix_ns,
            mono_ns: now,
            last: 0,
        }
    }

    /// The timestamp for an initiation sent at `now`.
    pub fn now(&mut self, now: Nanos) -> Timestamp {
        let t = self
            .wall_ns
            .saturating_add(now.saturating_sub(self.mono_ns))
            .max(self.last.saturating_add(1));
        self.last = t;
        Timestamp::from_unix_ns(t)
    }
}

/// Rekey limits (from the site's `[security]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Rekey when the current key is this old (the initiator of its session).
    pub rekey_after: Nanos,
    /// Rekey when the current key sent this many packets.
    pub rekey_after_packets: u64,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            rekey_after: 120 * SEC,
            rekey_after_packets: 1 << 60,
        }
    }
}

impl Timers {
    /// When the responder of a session rekeys: a quarter after the initiator would, and in time
    /// before the key expires.
    fn responder_rekey_after(&self) -> Nanos {
        let latest = REJECT_AFTER_TIME - REKEY_TIMEOUT * 3;
        self.rekey_after
            .saturating_add(self.rekey_after / 4)
            .min(latest)
    }
    fn initiator_rekey_after(&self) -> Nanos {
        self.rekey_after.min(REJECT_AFTER_TIME - REKEY_TIMEOUT * 3)
    }
}

/// Two session keys and their indices, for the dataplane.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionKeys {
    /// Receiver index of packets to us under these keys (low bits: the key slot).
    pub local_index: u32,
    /// Receiver index to put in packets to the peer.
    pub remote_index: u32,
    /// Seals our packets.
    pub send: [u8; KEY_LEN],
    /// Opens the peer's packets.
    pub recv: [u8; KEY_LEN],
    /// We initiated: usable for sending at once (otherwise after confirmation).
    pub initiator: bool,
    /// When the handshake completed.
    pub created: Nanos,
}

impl core::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("local_index", &format_args!("{:#010x}", self.local_index))
            .field("remote_index", &format_args!("{:#010x}", self.remote_index))
            .field("initiator", &self.initiator)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Something that happened, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A handshake completed: keys installed.
    Established {
        /// Its local index.
        local_index: u32,
        /// We initiated.
        initiator: bool,
    },
    /// A responder key carried the peer's first packet: it is the current key now.
    Confirmed {
        /// Its local index.
        local_index: u32,
    },
    /// No handshake completed for [`REKEY_ATTEMPT_TIME`] (retries go on).
    Failing {
        /// Since when.
        since: Nanos,
    },
}

/// What the handshake asks the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this initiation to the peer (on its active path).
    Initiation(MessageBuf),
    /// Install keys in the dataplane (before any message that completes their handshake).
    Install(SessionKeys),
    /// Forget the key of this local index in the dataplane.
    Revoke(u32),
    /// For the log.
    Event(Event),
}

/// Why a handshake message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The Noise message did not decrypt (wrong keys, corrupted, forged).
    #[error("handshake does not authenticate")]
    Auth,
    /// The initiator's static key is no configured peer's.
    #[error("unknown static key")]
    UnknownPeer,
    /// A timestamp not newer than one accepted before: a replay.
    #[error("replayed initiation")]
    Replay,
    /// An initiation less than the minimum interval after the last one.
    #[error("initiation flood")]
    Flood,
    /// No initiation of ours with that index is in flight.
    #[error("unknown receiver index")]
    UnknownIndex,
    /// The cookie reply was not for us.
    #[error("cookie reply: {0}")]
    Cookie(CookieError),
    /// The Noise library refused an operation (a bug, not an input).
    #[error("noise state error")]
    Noise,
}

/// An initiation whose Noise message 1 decrypted: the peer it names and its state, ready for
/// [`Handshaker::on_initiation`].
pub struct OpenedInit {
    hs: HandshakeState,
    /// The initiator's static key.
    pub peer: PublicKey,
    /// Its timestamp.
    pub timestamp: Timestamp,
    /// Its sender index.
    pub sender: u32,
}

impl core::fmt::Debug for OpenedInit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OpenedInit")
            .field("peer", &self.peer)
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

/// Decrypts an initiation to us (two Diffie-Hellmans: check mac1 and the rate limits first).
pub fn open_initiation<T: AsRef<[u8]>>(
    secret: &StaticSecret,
    msg: &Init<T>,
    rng: &mut dyn Entropy,
) -> Result<OpenedInit, HandshakeError> {
    let mut hs = builder(params()?, rng.bytes32())
        .local_private_key(secret.bytes())
        .and_then(|b| b.prologue(PROLOGUE))
        .and_then(Builder::build_responder)
        .map_err(|_| HandshakeError::Noise)?;
    let mut payload = [0u8; NOISE_INIT_LEN];
    let n = hs
        .read_message(msg.noise(), &mut payload)
        .map_err(|_| HandshakeError::Auth)?;
    if n != TIMESTAMP_LEN {
        return Err(HandshakeError::Auth);
    }
    let rs = hs.get_remote_static().ok_or(HandshakeError::Auth)?;
    let peer = PublicKey(<[u8; KEY_LEN]>::try_from(rs).map_err(|_| HandshakeError::Auth)?);
    let mut ts = [0u8; TIMESTAMP_LEN];
    ts.copy_from_slice(&payload[..TIMESTAMP_LEN]);
    Ok(OpenedInit {
        hs,
        peer,
        timestamp: Timestamp(ts),
        sender: msg.sender(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Current,
    Previous,
    /// Responder key not confirmed yet.
    Next,
    /// Found in the dataplane after an attach (a previous control's).
    Adopted,
    /// Was the previous key: left in the dataplane (the peer may still send with it, see
    /// [`Handshaker::make_current`]) until its slot is reused or it expires.
    Retired,
}

#[derive(Clone, Copy, Debug)]
struct Key {
    local_index: u32,
    role: Role,
    initiator: bool,
    created: Nanos,
    /// Packets sealed with it, per dataplane worker (each seals in its own counter lane and
    /// reports its own count): [`Key::sent`] is their sum.
    sent_lanes: [u64; LANES],
    /// Random delay added to its rekey time (two peers rarely rekey at once).
    jitter: Nanos,
    /// When the dataplane last opened a packet with it (0: never), as last reported.
    last_rx: Nanos,
}

/// Counter lanes (dataplane workers) a key's use is reported by.
const LANES: usize = mongate_dataplane::secure::MAX_LANES;

impl Key {
    /// Packets sealed with it, by every worker.
    fn sent(&self) -> u64 {
        self.sent_lanes
            .iter()
            .fold(0u64, |a, &b| a.saturating_add(b))
    }

    fn k(&self) -> usize {
        // 0..4.
        usize::try_from(self.local_index % KEYS_PER_PEER).unwrap_or(0)
    }
}

struct Pending {
    hs: HandshakeState,
    local_index: u32,
    /// A cookie reply to it already triggered an early resend.
    cookie_resent: bool,
}

/// Counters of one peer's handshakes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeStats {
    /// Initiations sent (first tries and retries).
    pub initiations: u64,
    /// Handshakes completed as initiator.
    pub completed_initiator: u64,
    /// Initiations answered.
    pub responded: u64,
    /// Responder keys confirmed.
    pub confirmed: u64,
    /// Keys revoked (replaced or expired).
    pub revoked: u64,
}

/// The handshake state with one peer.
pub struct Handshaker {
    peer: u32,
    peer_public: PublicKey,
    macs: MacSender,
    timers: Timers,
    pending: Option<Pending>,
    /// When to send an initiation (first try or retry); `None`: when the key timers say.
    next_attempt: Option<Nanos>,
    trying_since: Option<Nanos>,
    failing_reported: bool,
    /// By `k` (the slot within the peer's four).
    keys: [Option<Key>; KEYS_PER_PEER as usize],
    next_k: u32,
    last_ts: Option<Timestamp>,
    last_init_at: Option<Nanos>,
    /// Keys the dataplane reports that we do not know are a previous control's (until our first
    /// install after an attach).
    adopting: bool,
    out: VecDeque<Output>,
    stats: HandshakeStats,
}

impl core::fmt::Debug for Handshaker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Handshaker")
            .field("peer", &self.peer)
            .field("keys", &self.keys)
            .field("pending", &self.pending.as_ref().map(|p| p.local_index))
            .finish_non_exhaustive()
    }
}

impl Handshaker {
    /// The handshake with peer number `peer` (below [`MAX_PEERS`]) of static key `peer_public`;
    /// it initiates at once.
    pub fn new(peer: u32, peer_public: PublicKey, timers: Timers, now: Nanos) -> Self {
        debug_assert!(peer < MAX_PEERS);
        Self {
            peer,
            peer_public,
            macs: MacSender::new(&peer_public),
            timers,
            pending: None,
            next_attempt: Some(now),
            trying_since: None,
            failing_reported: false,
            keys: [None; KEYS_PER_PEER as usize],
            next_k: 0,
            last_ts: None,
            last_init_at: None,
            adopting: true,
            out: VecDeque::new(),
            stats: HandshakeStats::default(),
        }
    }

    /// The peer's number.
    pub fn peer(&self) -> u32 {
        self.peer
    }

    /// The peer's static key.
    pub fn peer_public(&self) -> &PublicKey {
        &self.peer_public
    }

    /// Counters.
    pub fn stats(&self) -> &HandshakeStats {
        &self.stats
    }

    /// The local index of the current key, if any.
    pub fn current(&self) -> Option<u32> {
        self.find_role(Role::Current).map(|k| k.local_index)
    }

    /// Whether the dataplane can seal packets to the peer that the peer opens: a current key,
    /// or, after an attach, a key adopted from the dataplane that opened a packet from the
    /// peer within `recent` of `now` (the peer holds it, and the dataplane kept sending with
    /// its key while no control ran). A restarted control thus need not wait for its new
    /// handshakes, whose retry after a lost message is [`REKEY_TIMEOUT`] away.
    pub fn sealable(&self, now: Nanos, recent: Nanos) -> bool {
        self.current().is_some()
            || self.keys.iter().flatten().any(|k| {
                k.role == Role::Adopted && k.last_rx != 0 && now.saturating_sub(k.last_rx) < recent
            })
    }

    /// Whether an initiation of ours is in flight.
    pub fn in_flight(&self) -> bool {
        self.pending.is_some()
    }

    /// The local index of our initiation in flight.
    pub fn pending_index(&self) -> Option<u32> {
        self.pending.as_ref().map(|p| p.local_index)
    }

    /// Local indices of every key the dataplane should hold.
    pub fn key_indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.iter().flatten().map(|k| k.local_index)
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The dataplane was (re-)attached: what it holds is unknown (a restarted dataplane holds
    /// nothing, one that outlived its control holds keys we never saw). Forget our keys without
    /// revoking them, adopt the keys it reports until our next install, and handshake at once.
    pub fn reset(&mut self, now: Nanos) {
        self.keys = [None; KEYS_PER_PEER as usize];
        self.pending = None;
        self.next_attempt = Some(now);
        self.trying_since = None;
        self.failing_reported = false;
        self.adopting = true;
    }

    fn find_role(&self, r: Role) -> Option<&Key> {
        self.keys.iter().flatten().find(|k| k.role == r)
    }

    fn revoke(&mut self, k: Key) {
        self.stats.revoked += 1;
        self.out.push_back(Output::Revoke(k.local_index));
    }

    /// A `k` for a new key (`reuse`: the caller replaces its own): the next free one in
    /// rotation, else the retired or adopted key that carried a packet least recently (the peer
    /// no longer sends with it), else the previous key's (the key there is replaced in the
    /// dataplane by the install).
    fn alloc_k(&mut self, reuse: Option<u32>) -> u32 {
        if let Some(k) = reuse {
            return k;
        }
        let pending_k = self.pending.as_ref().map(|p| p.local_index % KEYS_PER_PEER);
        let free = |s: &Self, k: u32| {
            s.keys[usize::try_from(k).unwrap_or(0)].is_none() && pending_k != Some(k)
        };
        let order: Vec<u32> = (0..KEYS_PER_PEER)
            .map(|i| (self.next_k + i) % KEYS_PER_PEER)
            .collect();
        let oldest = |roles: &[Role]| {
            self.keys
                .iter()
                .flatten()
                .filter(|x| {
                    roles.contains(&x.role) && pending_k != Some(x.local_index % KEYS_PER_PEER)
                })
                .min_by_key(|x| (x.last_rx, x.created))
                .map(|x| x.local_index % KEYS_PER_PEER)
        };
        let k = order
            .iter()
            .copied()
            .find(|&k| free(self, k))
            .or_else(|| oldest(&[Role::Retired, Role::Adopted]))
            .or_else(|| oldest(&[Role::Previous]))
            .unwrap_or(self.next_k % KEYS_PER_PEER);
        self.keys[usize::try_from(k).unwrap_or(0)] = None;
        self.next_k = (k + 1) % KEYS_PER_PEER;
        k
    }

    fn new_index(&self, k: u32, rng: &mut dyn Entropy) -> u32 {
        (rng.u32() & !SLOT_MASK) | (self.peer * KEYS_PER_PEER + k)
    }

    /// Stores a key that just became the current one: the current one becomes the previous,
    /// the previous is retired but not revoked. The peer may still be sending with the key we
    /// call previous-but-one: after simultaneous initiations each side sends with the key the
    /// other initiated, so our "current" can be one generation ahead of what the peer sends
    /// with. A retired key leaves the dataplane when its slot is reused (two rekeys later, by
    /// when the peer has confirmed a newer key) or when it expires.
    fn make_current(&mut self, key: Key) {
        for k in self.keys.iter_mut().flatten() {
            k.role = match k.role {
                Role::Previous => Role::Retired,
                Role::Current => Role::Previous,
                r => r,
            };
        }
        self.keys[key.k()] = Some(Key {
            role: Role::Current,
            ..key
        });
    }

    fn established(&mut self) {
        self.next_attempt = None;
        self.trying_since = None;
        self.failing_reported = false;
        self.adopting = false;
    }

    /// The earliest time [`Self::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Nanos> {
        let expiry = self
            .keys
            .iter()
            .flatten()
            .map(|k| k.created.saturating_add(REJECT_AFTER_TIME))
            .min();
        let rekey = if self.pending.is_some() || self.next_attempt.is_some() {
            self.next_attempt
        } else {
            Some(self.rekey_due_at().unwrap_or(0))
        };
        [expiry, rekey].into_iter().flatten().min()
    }

    /// When the keys call for a new handshake (`None`: now, there is no usable key).
    fn rekey_due_at(&self) -> Option<Nanos> {
        let newest = self
            .keys
            .iter()
            .flatten()
            .filter(|k| matches!(k.role, Role::Current | Role::Next))
            .max_by_key(|k| k.created)?;
        let after = if newest.initiator {
            self.timers.initiator_rekey_after()
        } else {
            self.timers.responder_rekey_after()
        };
        let by_count = self
            .find_role(Role::Current)
            .is_some_and(|c| c.sent() >= self.timers.rekey_after_packets);
        if by_count && self.find_role(Role::Next).is_none() {
            return Some(0);
        }
        Some(
            newest
                .created
                .saturating_add(after)
                .saturating_add(newest.jitter),
        )
    }

    /// Runs the timers: key expiry, rekeying, retries.
    pub fn handle_timeout(
        &mut self,
        now: Nanos,
        secret: &StaticSecret,
        clock: &mut Tai64nClock,
        rng: &mut dyn Entropy,
    ) {
        for i in 0..self.keys.len() {
            if let Some(k) = self.keys[i]
                && now >= k.created.saturating_add(REJECT_AFTER_TIME)
            {
                self.keys[i] = None;
                self.revoke(k);
            }
        }
        if self.pending.is_none() && self.next_attempt.is_none() {
            let due = self.rekey_due_at().unwrap_or(0);
            if now >= due {
                self.next_attempt = Some(now);
            }
        }
        if self.next_attempt.is_some_and(|t| now >= t) {
            self.initiate(now, secret, clock, rng);
        }
        if let Some(since) = self.trying_since
            && !self.failing_reported
            && now.saturating_sub(since) >= REKEY_ATTEMPT_TIME
        {
            self.failing_reported = true;
            self.out.push_back(Output::Event(Event::Failing { since }));
        }
    }

    /// Sends a new initiation (replacing one in flight).
    fn initiate(
        &mut self,
        now: Nanos,
        secret: &StaticSecret,
        clock: &mut Tai64nClock,
        rng: &mut dyn Entropy,
    ) {
        let reuse = self.pending.take().map(|p| p.local_index % KEYS_PER_PEER);
        let k = self.alloc_k(reuse);
        let local_index = self.new_index(k, rng);
        self.next_attempt = Some(now + REKEY_TIMEOUT + rng.below(REKEY_JITTER + 1));
        self.trying_since.get_or_insert(now);
        let built = params().and_then(|p| {
            builder(p, rng.bytes32())
                .local_private_key(secret.bytes())
                .and_then(|b| b.remote_public_key(&self.peer_public.0))
                .and_then(|b| b.prologue(PROLOGUE))
                .and_then(Builder::build_initiator)
                .map_err(|_| HandshakeError::Noise)
        });
        let Ok(mut hs) = built else { return };
        let ts = clock.now(now);
        let mut msg = MessageBuf::zeroed(INIT_LEN);
        let Ok(mut init) = Init::new_emit(msg.as_mut_bytes()) else {
            return;
        };
        init.set_sender(local_index);
        match hs.write_message(&ts.0, init.noise_mut()) {
            Ok(NOISE_INIT_LEN) => {}
            _ => return,
        }
        self.macs.seal(msg.as_mut_bytes(), now);
        self.pending = Some(Pending {
            hs,
            local_index,
            cookie_resent: false,
        });
        self.stats.initiations += 1;
        self.out.push_back(Output::Initiation(msg));
    }

    /// A response to our initiation in flight (mac1 checked by the caller): on success the
    /// keys are installed as the current ones.
    pub fn on_response<T: AsRef<[u8]>>(
        &mut self,
        msg: &Response<T>,
        now: Nanos,
        rng: &mut dyn Entropy,
    ) -> Result<(), HandshakeError> {
        let p = self
            .pending
            .as_mut()
            .filter(|p| p.local_index == msg.receiver())
            .ok_or(HandshakeError::UnknownIndex)?;
        let mut payload = [0u8; NOISE_RESPONSE_LEN];
        // A failed read leaves the state as it was: the real response still completes it.
        let n =
            p.hs.read_message(msg.noise(), &mut payload)
                .map_err(|_| HandshakeError::Auth)?;
        if n != 0 || !p.hs.is_handshake_finished() {
            return Err(HandshakeError::Auth);
        }
        let (i2r, r2i) = p.hs.dangerously_get_raw_split();
        let local_index = p.local_index;
        self.pending = None;
        let keys = SessionKeys {
            local_index,
            remote_index: msg.sender(),
            send: i2r,
            recv: r2i,
            initiator: true,
            created: now,
        };
        self.out.push_back(Output::Install(keys));
        self.make_current(Key {
            local_index,
            role: Role::Current,
            initiator: true,
            created: now,
            sent_lanes: [0; LANES],
            jitter: rng.below(REKEY_JITTER_KEY + 1),
            last_rx: 0,
        });
        self.established();
        self.stats.completed_initiator += 1;
        self.out.push_back(Output::Event(Event::Established {
            local_index,
            initiator: true,
        }));
        Ok(())
    }

    /// An initiation from this peer (opened by [`open_initiation`]): answered with the response
    /// to send back, keys installed as the next ones (before the response goes out).
    pub fn on_initiation(
        &mut self,
        init: OpenedInit,
        now: Nanos,
        rng: &mut dyn Entropy,
    ) -> Result<MessageBuf, HandshakeError> {
        if init.peer != self.peer_public {
            return Err(HandshakeError::UnknownPeer);
        }
        if self.last_ts.is_some_and(|t| init.timestamp <= t) {
            return Err(HandshakeError::Replay);
        }
        if self
            .last_init_at
            .is_some_and(|t| now.saturating_sub(t) < MIN_INIT_INTERVAL)
        {
            return Err(HandshakeError::Flood);
        }
        let OpenedInit {
            mut hs,
            timestamp,
            sender,
            ..
        } = init;
        let mut msg = MessageBuf::zeroed(RESPONSE_LEN);
        let mut resp = Response::new_emit(msg.as_mut_bytes()).map_err(|_| HandshakeError::Noise)?;
        match hs.write_message(&[], resp.noise_mut()) {
            Ok(NOISE_RESPONSE_LEN) => {}
            _ => return Err(HandshakeError::Noise),
        }
        if !hs.is_handshake_finished() {
            return Err(HandshakeError::Noise);
        }
        let (i2r, r2i) = hs.dangerously_get_raw_split();
        // Accepted: from here on this timestamp is the one to beat.
        self.last_ts = Some(timestamp);
        self.last_init_at = Some(now);
        let reuse = self
            .find_role(Role::Next)
            .map(|k| k.local_index % KEYS_PER_PEER);
        let k = self.alloc_k(reuse);
        let local_index = self.new_index(k, rng);
        resp.set_sender(local_index);
        resp.set_receiver(sender);
        self.macs.seal(msg.as_mut_bytes(), now);
        let keys = SessionKeys {
            local_index,
            remote_index: sender,
            send: r2i,
            recv: i2r,
            initiator: false,
            created: now,
        };
        self.out.push_back(Output::Install(keys));
        self.keys[usize::try_from(k).unwrap_or(0)] = Some(Key {
            local_index,
            role: Role::Next,
            initiator: false,
            created: now,
            sent_lanes: [0; LANES],
            jitter: rng.below(REKEY_JITTER_KEY + 1),
            last_rx: 0,
        });
        self.adopting = false;
        self.stats.responded += 1;
        self.out.push_back(Output::Event(Event::Established {
            local_index,
            initiator: false,
        }));
        Ok(msg)
    }

    /// A cookie reply to one of our messages: its cookie goes into mac2 from now on; an
    /// initiation in flight is resent at once (once per initiation).
    pub fn on_cookie_reply<T: AsRef<[u8]>>(
        &mut self,
        msg: &CookieReply<T>,
        now: Nanos,
    ) -> Result<(), HandshakeError> {
        let to_pending = self.pending_index() == Some(msg.receiver());
        let to_next = self
            .find_role(Role::Next)
            .is_some_and(|k| k.local_index == msg.receiver());
        if !to_pending && !to_next {
            return Err(HandshakeError::UnknownIndex);
        }
        self.macs
            .on_cookie_reply(msg, now)
            .map_err(HandshakeError::Cookie)?;
        if let Some(p) = self.pending.as_mut().filter(|_| to_pending)
            && !p.cookie_resent
        {
            p.cookie_resent = true;
            self.next_attempt = Some(now);
        }
        Ok(())
    }

    /// Whether a cookie from this peer is held (mac2 is sent).
    pub fn has_cookie(&self, now: Nanos) -> bool {
        self.macs.has_cookie(now)
    }

    /// Dataplane worker `lane`'s report of one key of this peer: packets it sealed with it
    /// (in its own counter lane: the key's count is the sum over the workers), when it last
    /// opened a packet, and whether the peer sent with it (a responder key becomes the current
    /// one then). A lane beyond the dataplane's is counted in its last one.
    pub fn on_key_usage(
        &mut self,
        local_index: u32,
        lane: usize,
        sent: u64,
        last_rx: Nanos,
        confirmed: bool,
        now: Nanos,
    ) {
        let Some(i) = self
            .keys
            .iter()
            .position(|k| k.is_some_and(|k| k.local_index == local_index))
        else {
            self.adopt(local_index, lane, sent, last_rx, now);
            return;
        };
        let Some(k) = self.keys[i].as_mut() else {
            return;
        };
        // A worker's count only grows (a stale report does not undo a later one).
        let l = &mut k.sent_lanes[lane.min(LANES - 1)];
        *l = (*l).max(sent);
        k.last_rx = k.last_rx.max(last_rx);
        if k.role == Role::Next && confirmed {
            let key = *k;
            self.keys[i] = None;
            self.make_current(key);
            self.stats.confirmed += 1;
            self.out
                .push_back(Output::Event(Event::Confirmed { local_index }));
        }
    }

    fn adopt(&mut self, local_index: u32, lane: usize, sent: u64, last_rx: Nanos, now: Nanos) {
        if !self.adopting || peer_of_index(local_index) != self.peer {
            return;
        }
        let k = usize::try_from(local_index % KEYS_PER_PEER).unwrap_or(0);
        let pending_k = self
            .pending
            .as_ref()
            .map(|p| usize::try_from(p.local_index % KEYS_PER_PEER).unwrap_or(0));
        if self.keys[k].is_none() && pending_k != Some(k) {
            self.keys[k] = Some(Key {
                local_index,
                role: Role::Adopted,
                initiator: false,
                created: now,
                sent_lanes: {
                    let mut l = [0; LANES];
                    l[lane.min(LANES - 1)] = sent;
                    l
                },
                jitter: 0,
                last_rx,
            });
            // The slot rotation continues after it, away from the keys in use.
            self.next_k = (u32::try_from(k).unwrap_or(0) + 1) % KEYS_PER_PEER;
        }
    }
}

#[cfg(test)]
mod tests;
