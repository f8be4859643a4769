//! Two handshakers face to face, messages passed by hand.

use super::*;
use crate::secure::cookie::CookieChecker;
use crate::secure::cookie::Source;

const WALL: u64 = 1_760_000_000 * SEC;

struct Side {
    secret: StaticSecret,
    hs: Handshaker,
    clock: Tai64nClock,
    rng: SeededEntropy,
}

impl Side {
    fn new(seed: u8, peer_public: PublicKey, now: Nanos) -> Self {
        Self::with_secret(StaticSecret::from_bytes([seed; 32]), peer_public, now, seed)
    }
    fn with_secret(secret: StaticSecret, peer_public: PublicKey, now: Nanos, seed: u8) -> Self {
        Self {
            secret,
            hs: Handshaker::new(0, peer_public, Timers::default(), now),
            clock: Tai64nClock::new(WALL + now, now),
            rng: SeededEntropy::new(u64::from(seed)),
        }
    }
    fn tick(&mut self, now: Nanos) -> Vec<Output> {
        self.hs
            .handle_timeout(now, &self.secret, &mut self.clock, &mut self.rng);
        std::iter::from_fn(|| self.hs.poll_output()).collect()
    }
    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.hs.poll_output()).collect()
    }
    /// Opens and answers an initiation.
    fn answer(&mut self, init: &MessageBuf, now: Nanos) -> Result<MessageBuf, HandshakeError> {
        let m = Init::new_checked(init.as_bytes()).unwrap();
        let o = open_initiation(&self.secret, &m, &mut self.rng)?;
        self.hs.on_initiation(o, now, &mut self.rng)
    }
    fn complete(&mut self, resp: &MessageBuf, now: Nanos) -> Result<(), HandshakeError> {
        let m = Response::new_checked(resp.as_bytes()).unwrap();
        self.hs.on_response(&m, now, &mut self.rng)
    }
}

fn pair() -> (Side, Side) {
    pair_with(Timers::default())
}

fn pair_with(timers: Timers) -> (Side, Side) {
    let a = StaticSecret::from_bytes([1; 32]);
    let b = StaticSecret::from_bytes([2; 32]);
    let (pa, pb) = (a.public_key(), b.public_key());
    let (mut a, mut b) = (
        Side::with_secret(a, pb, 0, 1),
        Side::with_secret(b, pa, 0, 2),
    );
    a.hs = Handshaker::new(0, pb, timers, 0);
    b.hs = Handshaker::new(0, pa, timers, 0);
    (a, b)
}

fn initiation(outs: &[Output]) -> MessageBuf {
    outs.iter()
        .find_map(|o| match o {
            Output::Initiation(m) => Some(*m),
            _ => None,
        })
        .expect("an initiation")
}

fn installs(outs: &[Output]) -> Vec<SessionKeys> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Install(k) => Some(*k),
            _ => None,
        })
        .collect()
}

fn revokes(outs: &[Output]) -> Vec<u32> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Revoke(i) => Some(*i),
            _ => None,
        })
        .collect()
}

/// A's initiation, B's answer, A's completion: the keys each side installed.
fn handshake(a: &mut Side, b: &mut Side, now: Nanos) -> (SessionKeys, SessionKeys) {
    let init = initiation(&a.tick(now));
    let resp = b.answer(&init, now).unwrap();
    let kb = installs(&b.drain())[0];
    a.complete(&resp, now).unwrap();
    let ka = installs(&a.drain())[0];
    (ka, kb)
}

#[test]
fn keys_match_and_indices_carry_the_slot() {
    let (mut a, mut b) = pair();
    let (ka, kb) = handshake(&mut a, &mut b, 0);
    assert!(ka.initiator && !kb.initiator);
    assert_eq!(ka.send, kb.recv);
    assert_eq!(ka.recv, kb.send);
    assert_ne!(ka.send, ka.recv);
    assert_eq!(ka.remote_index, kb.local_index);
    assert_eq!(kb.remote_index, ka.local_index);
    for k in [ka, kb] {
        assert_eq!(peer_of_index(k.local_index), 0);
        assert!(k.local_index & SLOT_MASK < KEYS_PER_PEER);
    }
    assert_eq!(a.hs.current(), Some(ka.local_index));
    // B's key waits for confirmation.
    assert_eq!(b.hs.current(), None);
    b.hs.on_key_usage(kb.local_index, 0, 0, 1, true, 1);
    assert_eq!(b.hs.current(), Some(kb.local_index));
    assert!(b.drain().contains(&Output::Event(Event::Confirmed {
        local_index: kb.local_index
    })));
}

#[test]
fn messages_have_wireguard_sizes_and_valid_mac1() {
    let (mut a, mut b) = pair();
    let init = initiation(&a.tick(0));
    assert_eq!(init.len(), 148);
    let cb = CookieChecker::new(&b.secret.public_key(), [0; 32], 0);
    assert!(cb.check_mac1(init.as_bytes()));
    let resp = b.answer(&init, 0).unwrap();
    assert_eq!(resp.len(), 92);
    let ca = CookieChecker::new(&a.secret.public_key(), [0; 32], 0);
    assert!(ca.check_mac1(resp.as_bytes()));
    assert!(!cb.check_mac1(resp.as_bytes()));
}

#[test]
fn replayed_initiation_is_refused() {
    let (mut a, mut b) = pair();
    let first = initiation(&a.tick(0));
    // A retries (no answer yet): a newer initiation.
    let second = initiation(&a.tick(REKEY_TIMEOUT + REKEY_JITTER));
    let t = SEC;
    b.answer(&second, t).unwrap();
    // The older one and the same one again are replays, whenever they arrive.
    assert_eq!(
        b.answer(&first, t + SEC).unwrap_err(),
        HandshakeError::Replay
    );
    assert_eq!(
        b.answer(&second, t + 2 * SEC).unwrap_err(),
        HandshakeError::Replay
    );
}

#[test]
fn initiation_flood_from_one_peer_is_limited() {
    let (mut a, mut b) = pair();
    let first = initiation(&a.tick(0));
    b.answer(&first, SEC).unwrap();
    let second = initiation(&a.tick(REKEY_TIMEOUT + REKEY_JITTER));
    assert_eq!(
        b.answer(&second, SEC + MIN_INIT_INTERVAL - 1).unwrap_err(),
        HandshakeError::Flood
    );
    // Not consumed: it is still accepted a little later.
    b.answer(&second, SEC + MIN_INIT_INTERVAL).unwrap();
}

#[test]
fn wrong_static_keys_are_refused() {
    let (mut a, mut b) = pair();
    // C, whom B does not know, with B's real public key.
    let mut c = Side::new(3, b.secret.public_key(), 0);
    let init = initiation(&c.tick(0));
    assert_eq!(b.answer(&init, 0).unwrap_err(), HandshakeError::UnknownPeer);
    // A initiating toward a wrong public key for B: B cannot decrypt it.
    let mut a2 = Side::with_secret(
        StaticSecret::from_bytes([1; 32]),
        PublicKey(public_key_of_seed(9)),
        0,
        4,
    );
    let init = initiation(&a2.tick(0));
    assert_eq!(b.answer(&init, 0).unwrap_err(), HandshakeError::Auth);
    // A response from someone who is not B does not complete A's handshake.
    let init = initiation(&a.tick(0));
    let mut fake_b = Side::with_secret(
        StaticSecret::from_bytes([5; 32]),
        a.secret.public_key(),
        0,
        5,
    );
    let m = Init::new_checked(init.as_bytes()).unwrap();
    assert!(open_initiation(&fake_b.secret, &m, &mut fake_b.rng).is_err());
    assert!(a.hs.in_flight());
}

fn public_key_of_seed(s: u8) -> [u8; 32] {
    StaticSecret::from_bytes([s; 32]).public_key().0
}

#[test]
fn a_forged_response_leaves_the_initiation_usable() {
    let (mut a, mut b) = pair();
    let init = initiation(&a.tick(0));
    let resp = b.answer(&init, 0).unwrap();
    let mut forged = resp;
    forged.as_mut_bytes()[20] ^= 0x40;
    assert_eq!(a.complete(&forged, 1).unwrap_err(), HandshakeError::Auth);
    let mut wrong = resp;
    Response::new_checked(wrong.as_mut_bytes())
        .unwrap()
        .set_receiver(0x1234_0000);
    assert_eq!(
        a.complete(&wrong, 1).unwrap_err(),
        HandshakeError::UnknownIndex
    );
    a.complete(&resp, 2).unwrap();
    assert!(a.hs.current().is_some());
    // A second copy of the response completes nothing more.
    assert_eq!(
        a.complete(&resp, 3).unwrap_err(),
        HandshakeError::UnknownIndex
    );
}

#[test]
fn retries_with_jitter_then_reports_failing() {
    let (mut a, _) = pair();
    let first = a.tick(0);
    let i0 = Init::new_checked(initiation(&first).as_bytes())
        .unwrap()
        .sender();
    assert!(a.tick(REKEY_TIMEOUT - 1).is_empty());
    let at = a.hs.poll_timeout().unwrap();
    assert!((REKEY_TIMEOUT..=REKEY_TIMEOUT + REKEY_JITTER).contains(&at));
    let i1 = Init::new_checked(initiation(&a.tick(at)).as_bytes())
        .unwrap()
        .sender();
    // A fresh index in the same slot.
    assert_ne!(i0, i1);
    assert_eq!(i0 & SLOT_MASK, i1 & SLOT_MASK);
    let mut failing = false;
    let mut t = at;
    while t < REKEY_ATTEMPT_TIME + 2 * REKEY_TIMEOUT {
        t = a.hs.poll_timeout().unwrap();
        failing |= a
            .tick(t)
            .iter()
            .any(|o| matches!(o, Output::Event(Event::Failing { since: 0 })));
    }
    assert!(failing);
    // Still trying.
    assert!(a.hs.in_flight());
    assert!(a.hs.stats().initiations >= 18);
}

#[test]
fn rekey_keeps_older_keys_until_their_slot_is_reused() {
    let (mut a, mut b) = pair_with(Timers {
        rekey_after: 10 * SEC,
        ..Timers::default()
    });
    let (k1, _) = handshake(&mut a, &mut b, 0);
    // Nothing before the rekey time (plus at most a second of jitter).
    assert!(a.hs.poll_timeout().unwrap() >= 10 * SEC);
    let mut keys = vec![k1];
    for _ in 0..4 {
        let t = a.hs.poll_timeout().unwrap();
        assert!(t <= keys.last().unwrap().created + 11 * SEC);
        let init = initiation(&a.tick(t));
        let resp = b.answer(&init, t).unwrap();
        a.complete(&resp, t).unwrap();
        let outs = a.drain();
        assert!(revokes(&outs).is_empty());
        keys.push(installs(&outs)[0]);
    }
    // Slots rotate: each new key took the slot of the one four generations before.
    for w in keys.windows(4) {
        let slots: std::collections::BTreeSet<u32> =
            w.iter().map(|k| k.local_index & SLOT_MASK).collect();
        assert_eq!(slots.len(), 4);
    }
    assert_eq!(
        keys[4].local_index & SLOT_MASK,
        keys[0].local_index & SLOT_MASK
    );
    // The four newest are held (current, previous, two retired); the one replaced is not.
    let held: Vec<u32> = a.hs.key_indices().collect();
    assert_eq!(held.len(), 4);
    for k in &keys[1..] {
        assert!(held.contains(&k.local_index));
    }
    assert_eq!(a.hs.current(), Some(keys[4].local_index));
}

#[test]
fn rekey_on_packet_count() {
    let (mut sa, mut sb) = pair_with(Timers {
        rekey_after: 120 * SEC,
        rekey_after_packets: 1000,
    });
    let (k, _) = handshake(&mut sa, &mut sb, 0);
    sa.hs.on_key_usage(k.local_index, 0, 999, SEC, true, SEC);
    assert!(sa.tick(SEC).is_empty());
    sa.hs
        .on_key_usage(k.local_index, 0, 1000, 2 * SEC, true, 2 * SEC);
    assert_eq!(sa.hs.poll_timeout(), Some(0));
    initiation(&sa.tick(2 * SEC));
}

/// Each dataplane worker seals with the key in its own counter lane and reports its own count:
/// the packet count that calls for a rekey is their sum, and a worker's stale (lower) report
/// does not undo its later one.
#[test]
fn rekey_on_packet_count_of_every_worker() {
    let (mut sa, mut sb) = pair_with(Timers {
        rekey_after: 120 * SEC,
        rekey_after_packets: 1000,
    });
    let (k, _) = handshake(&mut sa, &mut sb, 0);
    sa.hs.on_key_usage(k.local_index, 0, 600, SEC, true, SEC);
    sa.hs.on_key_usage(k.local_index, 1, 300, SEC, true, SEC);
    sa.hs.on_key_usage(k.local_index, 1, 100, SEC, true, SEC);
    assert!(sa.tick(SEC).is_empty(), "900 sealed: no rekey yet");
    sa.hs
        .on_key_usage(k.local_index, 1, 400, 2 * SEC, true, 2 * SEC);
    assert_eq!(sa.hs.poll_timeout(), Some(0), "600 + 400 sealed");
    initiation(&sa.tick(2 * SEC));
}

#[test]
fn keys_expire_and_are_revoked() {
    let (mut a, mut b) = pair();
    let (k, _) = handshake(&mut a, &mut b, 0);
    // A peer that never answers again: A keeps retrying, its key dies at 180 s.
    let mut revoked = Vec::new();
    let mut t = 0;
    while t <= REJECT_AFTER_TIME {
        t = a.hs.poll_timeout().unwrap();
        revoked.extend(revokes(&a.tick(t)));
    }
    assert_eq!(revoked, vec![k.local_index]);
    assert_eq!(a.hs.current(), None);
}

#[test]
fn restarted_peer_is_answered_at_once() {
    let (mut a, mut b) = pair();
    handshake(&mut a, &mut b, 0);
    // A restarts 30 s later: a new handshaker, its wall clock later than before.
    let t = 30 * SEC;
    let mut a2 = Side::with_secret(
        StaticSecret::from_bytes([1; 32]),
        b.secret.public_key(),
        t,
        7,
    );
    let init = initiation(&a2.tick(t));
    let resp = b.answer(&init, t).unwrap();
    a2.complete(&resp, t).unwrap();
    let ka = installs(&a2.drain())[0];
    let kb = installs(&b.drain())[0];
    assert_eq!(ka.send, kb.recv);
}

#[test]
fn simultaneous_initiations_both_complete() {
    let (mut a, mut b) = pair();
    let ia = initiation(&a.tick(0));
    let ib = initiation(&b.tick(0));
    let ra = b.answer(&ia, 1).unwrap();
    let rb = a.answer(&ib, 1).unwrap();
    a.complete(&ra, 2).unwrap();
    b.complete(&rb, 2).unwrap();
    let ka = installs(&a.drain());
    let kb = installs(&b.drain());
    assert_eq!(ka.len(), 2);
    assert_eq!(kb.len(), 2);
    // Every key one side sends with opens at the other.
    for x in &ka {
        assert!(
            kb.iter()
                .any(|y| y.recv == x.send && y.local_index == x.remote_index)
        );
    }
    // Four distinct slots in use on each side at most.
    let slots: std::collections::BTreeSet<u32> =
        ka.iter().map(|k| k.local_index & SLOT_MASK).collect();
    assert_eq!(slots.len(), 2);
}

#[test]
fn cookie_reply_resends_the_initiation_at_once_with_mac2() {
    let (mut a, b) = pair();
    let init = initiation(&a.tick(0));
    let checker = CookieChecker::new(&b.secret.public_key(), [8; 32], 0);
    let src = Source {
        addr: "192.0.2.7".parse().unwrap(),
        port: 6081,
    };
    assert!(!checker.check_mac2(init.as_bytes(), &src, 0));
    let reply = checker
        .cookie_reply(init.as_bytes(), &src, [1; 24])
        .unwrap();
    let r = CookieReply::new_checked(reply.as_bytes()).unwrap();
    a.hs.on_cookie_reply(&r, 10 * MS).unwrap();
    assert_eq!(a.hs.poll_timeout(), Some(10 * MS));
    let again = initiation(&a.tick(10 * MS));
    assert!(checker.check_mac2(again.as_bytes(), &src, 10 * MS));
    // One early resend per initiation.
    assert!(a.hs.on_cookie_reply(&r, 11 * MS).is_err());
    assert!(a.hs.poll_timeout().unwrap() >= 10 * MS + REKEY_TIMEOUT);
}

#[test]
fn timestamps_increase_and_order_as_bytes() {
    let mut c = Tai64nClock::new(WALL, 5);
    let t1 = c.now(5);
    let t2 = c.now(5);
    let t3 = c.now(6 * SEC);
    assert!(t1 < t2 && t2 < t3);
    assert!(Timestamp::from_unix_ns(SEC) < Timestamp::from_unix_ns(SEC + 1));
    assert!(Timestamp::from_unix_ns(SEC - 1) < Timestamp::from_unix_ns(SEC));
    // A control restarted later (a new clock from the wall clock) stamps later.
    let mut later = Tai64nClock::new(WALL + 10 * SEC, 0);
    assert!(later.now(0) > t3);
}
