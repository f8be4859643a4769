//! MAC1 / MAC2 and cookie replies, as WireGuard does them (section 5.4.4 and 5.4.7 of its
//! paper). Pure: time is an argument, secrets and nonces are passed in.
//!
//! - **mac1** = BLAKE2s-128 keyed with `BLAKE2s("mac1----" || receiver's public key)` over the
//!   message up to mac1. Whoever knows the receiver's public key can compute it; a message
//!   without it is dropped before any Diffie-Hellman is spent on it.
//! - **mac2** = BLAKE2s-128 keyed with the cookie over the message up to mac2 (zero without a
//!   cookie). Only checked under load.
//! - **cookie** = BLAKE2s-128 keyed with a secret that changes every
//!   [`COOKIE_SECRET_MAX_AGE`] over the source address and UDP port of the message. Under load,
//!   a message without a valid mac2 is answered by a **cookie reply** (64 bytes, less than the
//!   message it answers) and not processed: the source must prove it receives at its address
//!   before it costs us a Diffie-Hellman.
//! - The cookie reply seals the cookie with XChaCha20-Poly1305, key
//!   `BLAKE2s("cookie--" || responder's public key)`, a random 24-byte nonce, and the mac1 of the
//!   message it answers as associated data: only the sender of that message accepts it.

use core::net::IpAddr;

use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest as _};
use chacha20poly1305::aead::AeadInPlace as _;
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use mongate_dataplane::sys::{Nanos, SEC};

use super::keys::PublicKey;
use super::messages::{
    COOKIE_REPLY_LEN, CookieReply, MAC_LEN, MessageBuf, MessageType, NONCE_LEN, SEALED_COOKIE_LEN,
    field, mac_fields,
};

/// How long a cookie secret is used (and a cookie trusted by its holder), WireGuard's
/// `COOKIE_SECRET_MAX_AGE`.
pub const COOKIE_SECRET_MAX_AGE: Nanos = 120 * SEC;
/// A cookie is used for mac2 until this long before its secret may change.
pub const COOKIE_SECRET_LATENCY: Nanos = 5 * SEC;
/// Cookie length.
pub const COOKIE_LEN: usize = 16;

const LABEL_MAC1: &[u8] = b"mac1----";
const LABEL_COOKIE: &[u8] = b"cookie--";

/// Why a cookie reply was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// No message of ours is waiting for a cookie (none sent, or already answered).
    #[error("no message waiting for a cookie")]
    Unexpected,
    /// The sealed cookie did not open (not from the peer, or not for our last message).
    #[error("cookie reply does not authenticate")]
    Auth,
}

/// Source of a message: the cookie is bound to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// Outer source address.
    pub addr: IpAddr,
    /// Outer UDP source port.
    pub port: u16,
}

impl Source {
    /// Address bytes (4 or 16) and port, big-endian, in a buffer and its used length.
    fn bytes(&self) -> ([u8; 18], usize) {
        let mut b = [0u8; 18];
        let n = match self.addr {
            IpAddr::V4(a) => {
                b[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => {
                b[..16].copy_from_slice(&a.octets());
                16
            }
        };
        b[n..n + 2].copy_from_slice(&self.port.to_be_bytes());
        (b, n + 2)
    }
}

/// `BLAKE2s(label || public key)`.
fn hash(label: &[u8], key: &PublicKey) -> [u8; 32] {
    let mut h = Blake2s256::new();
    blake2::Digest::update(&mut h, label);
    blake2::Digest::update(&mut h, key.0);
    h.finalize().into()
}

/// BLAKE2s-128 keyed with `key` (at most 32 bytes) over `data`.
fn mac(key: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("keys are 16 or 32 bytes");
    Mac::update(&mut m, data);
    m.finalize().into_bytes().into()
}

/// Constant-time check of a 16-byte MAC.
fn mac_ok(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("keys are 16 or 32 bytes");
    Mac::update(&mut m, data);
    m.verify_slice(tag).is_ok()
}

/// The MAC keys derived from one public key.
#[derive(Clone, Copy)]
struct MacKeys {
    /// mac1 key of messages *to* the key's owner.
    mac1: [u8; 32],
    /// Cookie-reply key of replies *from* the key's owner.
    cookie: [u8; 32],
}

impl MacKeys {
    fn of(public: &PublicKey) -> Self {
        Self {
            mac1: hash(LABEL_MAC1, public),
            cookie: hash(LABEL_COOKIE, public),
        }
    }
}

/// The sending side toward one peer: writes mac1 / mac2 into our messages to it and keeps the
/// cookie it gave us.
#[derive(Clone)]
pub struct MacSender {
    keys: MacKeys,
    cookie: Option<([u8; COOKIE_LEN], Nanos)>,
    /// mac1 of our last message, until a cookie reply to it was accepted.
    last_mac1: Option<[u8; MAC_LEN]>,
}

impl core::fmt::Debug for MacSender {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MacSender")
            .field("cookie_at", &self.cookie.map(|c| c.1))
            .finish_non_exhaustive()
    }
}

impl MacSender {
    /// For messages to the owner of `peer`.
    pub fn new(peer: &PublicKey) -> Self {
        Self {
            keys: MacKeys::of(peer),
            cookie: None,
            last_mac1: None,
        }
    }

    /// Writes mac1 and mac2 of an initiation or response `msg` (mac2 zero without a fresh
    /// cookie). Anything else is left alone.
    pub fn seal(&mut self, msg: &mut [u8], now: Nanos) {
        let Some((m1, m2)) = mac_fields(msg) else {
            return;
        };
        let t1 = mac(&self.keys.mac1, &msg[..m1.start]);
        msg[m1].copy_from_slice(&t1);
        self.last_mac1 = Some(t1);
        let fresh = self.cookie.filter(|(_, at)| {
            now.saturating_sub(*at) < COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY
        });
        let t2 = fresh.map_or([0; MAC_LEN], |(c, _)| mac(&c, &msg[..m2.start]));
        msg[m2].copy_from_slice(&t2);
    }

    /// Whether a cookie younger than its use limit is held.
    pub fn has_cookie(&self, now: Nanos) -> bool {
        self.cookie.is_some_and(|(_, at)| {
            now.saturating_sub(at) < COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY
        })
    }

    /// Takes the cookie from a reply to our last message (once per message).
    pub fn on_cookie_reply<T: AsRef<[u8]>>(
        &mut self,
        reply: &CookieReply<T>,
        now: Nanos,
    ) -> Result<(), CookieError> {
        let aad = self.last_mac1.ok_or(CookieError::Unexpected)?;
        let cipher = XChaCha20Poly1305::new(&self.keys.cookie.into());
        let sealed = reply.sealed_cookie();
        let mut cookie = [0u8; COOKIE_LEN];
        cookie.copy_from_slice(&sealed[..COOKIE_LEN]);
        cipher
            .decrypt_in_place_detached(
                &XNonce::from(reply.nonce()),
                &aad,
                &mut cookie,
                sealed[COOKIE_LEN..].into(),
            )
            .map_err(|_| CookieError::Auth)?;
        self.cookie = Some((cookie, now));
        self.last_mac1 = None;
        Ok(())
    }
}

/// The receiving side: checks mac1 / mac2 of messages to us and makes cookie replies.
#[derive(Clone)]
pub struct CookieChecker {
    keys: MacKeys,
    secret: [u8; 32],
    secret_at: Nanos,
}

impl core::fmt::Debug for CookieChecker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CookieChecker")
            .field("secret_at", &self.secret_at)
            .finish_non_exhaustive()
    }
}

impl CookieChecker {
    /// For messages to the owner of `own` (us), with a first random `secret`.
    pub fn new(own: &PublicKey, secret: [u8; 32], now: Nanos) -> Self {
        Self {
            keys: MacKeys::of(own),
            secret,
            secret_at: now,
        }
    }

    /// Whether the secret is due for a change ([`Self::rotate`]).
    pub fn rotation_due(&self, now: Nanos) -> bool {
        now.saturating_sub(self.secret_at) >= COOKIE_SECRET_MAX_AGE
    }

    /// A new random secret from `now` on: cookies given out before stop being valid.
    pub fn rotate(&mut self, secret: [u8; 32], now: Nanos) {
        self.secret = secret;
        self.secret_at = now;
    }

    /// Whether `msg` (initiation or response) carries a valid mac1.
    pub fn check_mac1(&self, msg: &[u8]) -> bool {
        mac_fields(msg).is_some_and(|(m1, _)| mac_ok(&self.keys.mac1, &msg[..m1.start], &msg[m1]))
    }

    fn cookie(&self, src: &Source) -> [u8; COOKIE_LEN] {
        let (b, n) = src.bytes();
        mac(&self.secret, &b[..n])
    }

    /// Whether `msg` carries a valid mac2 for a cookie we gave `src` under the current secret.
    pub fn check_mac2(&self, msg: &[u8], src: &Source, now: Nanos) -> bool {
        if self.rotation_due(now) {
            return false;
        }
        mac_fields(msg).is_some_and(|(_, m2)| mac_ok(&self.cookie(src), &msg[..m2.start], &msg[m2]))
    }

    /// The cookie reply to `msg` (an initiation or response from `src`), with `nonce` random.
    /// `None` when `msg` is neither.
    pub fn cookie_reply(
        &self,
        msg: &[u8],
        src: &Source,
        nonce: [u8; NONCE_LEN],
    ) -> Option<MessageBuf> {
        let (m1, _) = mac_fields(msg)?;
        // The sender index sits at the same place in both messages.
        let mut receiver = [0u8; 4];
        receiver.copy_from_slice(&msg[field::INIT_SENDER]);
        let mut sealed = [0u8; SEALED_COOKIE_LEN];
        sealed[..COOKIE_LEN].copy_from_slice(&self.cookie(src));
        let cipher = XChaCha20Poly1305::new(&self.keys.cookie.into());
        let (c, t) = sealed.split_at_mut(COOKIE_LEN);
        let tag = cipher
            .encrypt_in_place_detached(&XNonce::from(nonce), &msg[m1], c)
            .ok()?;
        t.copy_from_slice(&tag);
        let mut out = MessageBuf::zeroed(COOKIE_REPLY_LEN);
        let mut r = CookieReply::new_emit(out.as_mut_bytes()).ok()?;
        r.set_receiver(u32::from_be_bytes(receiver));
        r.set_nonce(&nonce);
        r.set_sealed_cookie(&sealed);
        debug_assert_eq!(out.message_type(), Some(MessageType::CookieReply));
        Some(out)
    }
}

/// Fuzz body: the MAC checks, a cookie reply to `data` and the opening of `data` as a cookie
/// reply, with fixed keys (none of them may panic).
pub fn fuzz_macs(data: &[u8]) {
    let k = PublicKey([9; 32]);
    let src = Source {
        addr: IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, 1)),
        port: 6081,
    };
    let c = CookieChecker::new(&k, [1; 32], 0);
    core::hint::black_box((c.check_mac1(data), c.check_mac2(data, &src, 1)));
    if let Some(r) = c.cookie_reply(data, &src, [2; NONCE_LEN]) {
        assert_eq!(r.len(), COOKIE_REPLY_LEN);
        assert!(r.len() < data.len());
    }
    if let Ok(r) = CookieReply::new_checked(data) {
        let mut s = MacSender::new(&k);
        let mut m = [0u8; super::messages::INIT_LEN];
        m[0] = MessageType::Init as u8;
        s.seal(&mut m, 0);
        assert!(c.check_mac1(&m));
        core::hint::black_box(s.on_cookie_reply(&r, 0).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::super::messages::{INIT_LEN, RESPONSE_LEN};
    use super::*;

    fn src(port: u16) -> Source {
        Source {
            addr: "2001:db8::1".parse().unwrap(),
            port,
        }
    }

    fn init(sender: u8) -> [u8; INIT_LEN] {
        let mut m = [sender; INIT_LEN];
        m[0] = MessageType::Init as u8;
        m[1..4].fill(0);
        m
    }

    #[test]
    fn mac1_binds_the_receiver_and_the_bytes() {
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let mut s = MacSender::new(&a);
        let mut m = init(7);
        s.seal(&mut m, 0);
        assert!(CookieChecker::new(&a, [0; 32], 0).check_mac1(&m));
        assert!(!CookieChecker::new(&b, [0; 32], 0).check_mac1(&m));
        let mut x = m;
        x[20] ^= 1;
        assert!(!CookieChecker::new(&a, [0; 32], 0).check_mac1(&x));
        // Without a cookie, mac2 is zero and never valid.
        assert_eq!(&m[field::INIT_MAC2], &[0; 16]);
        assert!(!CookieChecker::new(&a, [0; 32], 0).check_mac2(&m, &src(1), 0));
    }

    #[test]
    fn cookie_round_trip_gives_a_valid_mac2_for_that_source_only() {
        let me = PublicKey([3; 32]);
        let checker = CookieChecker::new(&me, [4; 32], 0);
        let mut sender = MacSender::new(&me);
        let mut m = init(8);
        sender.seal(&mut m, 10);
        let reply = checker.cookie_reply(&m, &src(100), [5; 24]).unwrap();
        assert_eq!(reply.len(), COOKIE_REPLY_LEN);
        let r = CookieReply::new_checked(reply.as_bytes()).unwrap();
        assert_eq!(r.receiver(), u32::from_be_bytes([8; 4]));
        sender.on_cookie_reply(&r, 20).unwrap();
        // The same reply is not taken twice.
        assert_eq!(sender.on_cookie_reply(&r, 21), Err(CookieError::Unexpected));
        assert!(sender.has_cookie(20));
        let mut m2 = init(9);
        sender.seal(&mut m2, 30);
        assert!(checker.check_mac1(&m2));
        assert!(checker.check_mac2(&m2, &src(100), 30));
        assert!(!checker.check_mac2(&m2, &src(101), 30));
        // After the secret changes, the old cookie is worthless.
        let mut c2 = checker.clone();
        assert!(c2.rotation_due(COOKIE_SECRET_MAX_AGE));
        c2.rotate([6; 32], COOKIE_SECRET_MAX_AGE);
        assert!(!c2.check_mac2(&m2, &src(100), COOKIE_SECRET_MAX_AGE));
        // The holder stops using it before that.
        let late = 30 + COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY;
        assert!(!sender.has_cookie(late));
        let mut m3 = init(9);
        sender.seal(&mut m3, late);
        assert_eq!(&m3[field::INIT_MAC2], &[0; 16]);
    }

    #[test]
    fn cookie_reply_for_another_message_or_key_is_refused() {
        let me = PublicKey([3; 32]);
        let checker = CookieChecker::new(&me, [4; 32], 0);
        let mut sender = MacSender::new(&me);
        let mut m = init(8);
        sender.seal(&mut m, 0);
        // A reply computed over a message we did not send (another mac1).
        let mut other = init(1);
        MacSender::new(&me).seal(&mut other, 0);
        let reply = checker.cookie_reply(&other, &src(1), [5; 24]).unwrap();
        let r = CookieReply::new_checked(reply.as_bytes()).unwrap();
        assert_eq!(sender.on_cookie_reply(&r, 1), Err(CookieError::Auth));
        // A reply from someone else's key.
        let fake = CookieChecker::new(&PublicKey([7; 32]), [4; 32], 0);
        let reply = fake.cookie_reply(&m, &src(1), [5; 24]).unwrap();
        let r = CookieReply::new_checked(reply.as_bytes()).unwrap();
        assert_eq!(sender.on_cookie_reply(&r, 1), Err(CookieError::Auth));
        assert!(!sender.has_cookie(1));
    }

    #[test]
    fn responses_carry_macs_too_and_others_do_not() {
        let me = PublicKey([3; 32]);
        let mut m = [0u8; RESPONSE_LEN];
        m[0] = MessageType::Response as u8;
        MacSender::new(&me).seal(&mut m, 0);
        let c = CookieChecker::new(&me, [4; 32], 0);
        assert!(c.check_mac1(&m));
        let r = c.cookie_reply(&m, &src(1), [0; 24]).unwrap();
        assert!(r.len() < m.len());
        assert!(!c.check_mac1(r.as_bytes()));
        assert!(c.cookie_reply(r.as_bytes(), &src(1), [0; 24]).is_none());
    }
}
