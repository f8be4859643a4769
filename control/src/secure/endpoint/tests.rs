//! Two endpoints over a simulated network (seeded loss, delay and reordering), each with a
//! model of its dataplane's key table ([`SimKeys`]) sending a packet to the other every
//! millisecond: keys match, rekeys lose nothing, restarts re-handshake at once, cookies under
//! load.

use mongate_dataplane::sys::{MS, Rng, SEC};

use super::*;
use crate::secure::handshake::{Event, SeededEntropy};
use crate::secure::messages::{INIT_LEN, MessageBuf};
use crate::secure::sim::{SimKeys, SimPacket};

const WALL: u64 = 1_760_000_000 * SEC;
/// Every how often each dataplane reports its keys.
const REPORT: Nanos = 100 * MS;

#[derive(Clone, Copy, Debug)]
enum Payload {
    Hs(MessageBuf),
    Data(SimPacket),
}

struct Flight {
    at: Nanos,
    seq: u64,
    to: usize,
    src: Source,
    p: Payload,
}

struct Node {
    secret_seed: u8,
    ep: Endpoint<SeededEntropy>,
    dp: SimKeys,
    addr: Source,
    /// Data packets opened.
    delivered: u64,
    /// Data packets the dataplane had no key to seal.
    unsealed: u64,
    events: Vec<(Nanos, Event)>,
}

struct Net {
    nodes: Vec<Node>,
    flights: Vec<Flight>,
    rng: Rng,
    seq: u64,
    /// Loss of handshake messages.
    hs_loss: f64,
    delay: Nanos,
    jitter: Nanos,
    now: Nanos,
    /// Send data every step.
    data: bool,
    cfg: EndpointConfig,
}

fn secret(seed: u8) -> StaticSecret {
    StaticSecret::from_bytes([seed; 32])
}

fn endpoint(
    me: u8,
    peer: u8,
    cfg: EndpointConfig,
    now: Nanos,
    rng_seed: u64,
) -> Endpoint<SeededEntropy> {
    Endpoint::new(
        secret(me),
        &[(0, secret(peer).public_key())],
        cfg,
        WALL + now,
        now,
        SeededEntropy::new(rng_seed),
    )
    .unwrap()
}

impl Net {
    fn new(seed: u64, cfg: EndpointConfig) -> Self {
        let node = |i: u8| Node {
            secret_seed: i + 1,
            ep: endpoint(i + 1, 2 - i, cfg, 0, seed * 10 + u64::from(i)),
            dp: SimKeys::new(),
            addr: Source {
                addr: format!("192.0.2.{}", i + 1).parse().unwrap(),
                port: 6081,
            },
            delivered: 0,
            unsealed: 0,
            events: Vec::new(),
        };
        Self {
            nodes: vec![node(0), node(1)],
            flights: Vec::new(),
            rng: Rng::new(seed),
            seq: 0,
            hs_loss: 0.0,
            delay: 10 * MS,
            jitter: 10 * MS,
            now: 0,
            data: true,
            cfg,
        }
    }

    fn send(&mut self, from: usize, p: Payload) {
        if matches!(p, Payload::Hs(_)) && self.rng.chance(self.hs_loss) {
            return;
        }
        let at = self.now + self.delay + self.rng.below(self.jitter + 1);
        self.seq += 1;
        self.flights.push(Flight {
            at,
            seq: self.seq,
            to: 1 - from,
            src: self.nodes[from].addr,
            p,
        });
    }

    /// Applies node `i`'s outputs: keys to its dataplane, initiations to the wire.
    fn pump(&mut self, i: usize) {
        while let Some((peer, o)) = self.nodes[i].ep.poll_output() {
            match o {
                Output::Install(k) => self.nodes[i].dp.install(peer, k),
                Output::Revoke(x) => self.nodes[i].dp.revoke(x),
                Output::Initiation(m) => self.send(i, Payload::Hs(m)),
                Output::Event(e) => self.nodes[i].events.push((self.now, e)),
            }
        }
    }

    fn step(&mut self) {
        let now = self.now;
        for i in 0..2 {
            if self.nodes[i].ep.poll_timeout().is_some_and(|t| t <= now) {
                self.nodes[i].ep.handle_timeout(now);
            }
            self.pump(i);
            if now.is_multiple_of(REPORT) {
                for u in self.nodes[i].dp.report() {
                    self.nodes[i].ep.on_key_usage(
                        u.local_index,
                        0,
                        u.sent,
                        u.last_rx,
                        u.confirmed,
                        now,
                    );
                }
                self.pump(i);
            }
        }
        let (due, rest): (Vec<Flight>, Vec<Flight>) =
            self.flights.drain(..).partition(|f| f.at <= now);
        self.flights = rest;
        let mut due = due;
        due.sort_by_key(|f| (f.at, f.seq));
        for f in due {
            match f.p {
                Payload::Hs(m) => {
                    let answer = self.nodes[f.to].ep.on_message(m.as_bytes(), f.src, now);
                    // Keys first, then the answer.
                    self.pump(f.to);
                    if let Some((r, _)) = answer {
                        assert!(r.len() < m.len());
                        self.send(f.to, Payload::Hs(r));
                    }
                }
                Payload::Data(p) => {
                    if self.nodes[f.to].dp.open(&p, now).is_ok() {
                        self.nodes[f.to].delivered += 1;
                    }
                }
            }
        }
        if self.data {
            for i in 0..2 {
                match self.nodes[i].dp.seal(0, now) {
                    Some(p) => self.send(i, Payload::Data(p)),
                    None => self.nodes[i].unsealed += 1,
                }
            }
        }
        self.now += MS;
    }

    fn run_for(&mut self, d: Nanos) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// Node `i`'s control restarts: a new endpoint (its wall clock later), the dataplane
    /// kept; it reports its keys before the new control's first initiation.
    fn restart_control(&mut self, i: usize, seed: u64) {
        let me = self.nodes[i].secret_seed;
        let peer = 3 - me;
        self.nodes[i].ep = endpoint(me, peer, self.cfg, self.now, seed);
        for u in self.nodes[i].dp.report() {
            self.nodes[i].ep.on_key_usage(
                u.local_index,
                0,
                u.sent,
                u.last_rx,
                u.confirmed,
                self.now,
            );
        }
    }

    fn drops(&self) -> u64 {
        self.nodes.iter().map(|n| n.dp.dropped()).sum()
    }
}

fn fast_rekey() -> EndpointConfig {
    EndpointConfig {
        timers: Timers {
            rekey_after: 10 * SEC,
            ..Timers::default()
        },
        ..EndpointConfig::default()
    }
}

#[test]
fn pair_over_a_lossy_reordering_network_gets_matching_keys() {
    for seed in 1..=5 {
        let mut net = Net::new(seed, EndpointConfig::default());
        net.hs_loss = 0.3;
        net.run_for(30 * SEC);
        for n in &net.nodes {
            assert!(n.ep.peer(0).unwrap().current().is_some(), "seed {seed}");
        }
        let (a, b) = (&net.nodes[0], &net.nodes[1]);
        // What each sends with, the other opens with.
        let sa = a.dp.sending(0).unwrap();
        let kb = b.dp.keys_of(0);
        let ka = a.dp.keys_of(0);
        let k = ka.iter().find(|k| k.local_index == sa).unwrap();
        assert!(
            kb.iter()
                .any(|x| x.local_index == k.remote_index && x.recv == k.send)
        );
        assert_eq!(
            net.drops(),
            0,
            "seed {seed}: {:?} {:?}",
            a.dp.drops,
            b.dp.drops
        );
        assert!(a.delivered > 20_000 && b.delivered > 20_000, "seed {seed}");
    }
}

#[test]
fn rekeys_lose_no_packet() {
    for seed in 1..=3 {
        let mut net = Net::new(seed, fast_rekey());
        net.run_for(2 * SEC);
        let established: Vec<u64> = net.nodes.iter().map(|n| n.delivered).collect();
        assert!(established.iter().all(|&d| d > 0));
        let unsealed: Vec<u64> = net.nodes.iter().map(|n| n.unsealed).collect();
        let first: Vec<u32> = net.nodes.iter().map(|n| n.dp.sending(0).unwrap()).collect();
        net.run_for(65 * SEC);
        // Several rekeys happened ...
        let rekeys: u64 = net
            .nodes
            .iter()
            .map(|n| {
                let s = n.ep.peer(0).unwrap().stats();
                s.completed_initiator + s.confirmed
            })
            .sum();
        assert!(rekeys >= 10, "seed {seed}: {rekeys}");
        for (n, f) in net.nodes.iter().zip(&first) {
            assert_ne!(n.dp.sending(0), Some(*f));
        }
        // ... without a single packet failing to open or going out unsealed.
        assert_eq!(
            net.drops(),
            0,
            "seed {seed}: {:?} {:?} {:?}",
            net.nodes[0].dp.drops,
            net.nodes[1].dp.drops,
            net.nodes
                .iter()
                .map(|n| n.events.clone())
                .collect::<Vec<_>>()
        );
        let unsealed_after: Vec<u64> = net.nodes.iter().map(|n| n.unsealed).collect();
        assert_eq!(unsealed, unsealed_after, "seed {seed}");
        // At most the peer's four slots.
        for n in &net.nodes {
            assert!(n.dp.keys_of(0).len() <= 4);
        }
    }
}

#[test]
fn simultaneous_start_resolves() {
    // Both initiate at t = 0 (every endpoint does at start).
    let mut net = Net::new(7, EndpointConfig::default());
    net.run_for(SEC);
    for n in &net.nodes {
        let s = n.ep.peer(0).unwrap().stats();
        assert_eq!(
            (s.initiations, s.completed_initiator, s.responded),
            (1, 1, 1)
        );
        assert!(n.delivered > 900);
    }
    assert_eq!(net.drops(), 0);
}

#[test]
fn control_restart_rehandshakes_at_once_and_traffic_keeps_flowing() {
    let mut net = Net::new(3, EndpointConfig::default());
    net.run_for(5 * SEC);
    let before = net.nodes[0].dp.sending(0).unwrap();
    let delivered = net.nodes[1].delivered;
    net.restart_control(0, 99);
    let t0 = net.now;
    net.run_for(SEC);
    // A new key within one round trip (two 20 ms flights at most).
    let est = net.nodes[0]
        .events
        .iter()
        .find(|(t, e)| {
            *t >= t0
                && matches!(
                    e,
                    Event::Established {
                        initiator: true,
                        ..
                    }
                )
        })
        .map(|(t, _)| *t)
        .unwrap();
    assert!(est - t0 <= 41 * MS, "{}", est - t0);
    assert_ne!(net.nodes[0].dp.sending(0), Some(before));
    // The old keys were adopted: the new key took a free slot, nothing was lost.
    assert_eq!(net.drops(), 0);
    assert!(net.nodes[1].delivered - delivered > 900);
}

#[test]
fn full_restart_rehandshakes_at_once() {
    let mut net = Net::new(4, EndpointConfig::default());
    net.run_for(5 * SEC);
    // Node 1 restarts, dataplane and all: its keys are gone.
    net.nodes[1].dp = SimKeys::new();
    net.restart_control(1, 98);
    let t0 = net.now;
    let delivered = net.nodes[1].delivered;
    net.run_for(SEC);
    let est = net.nodes[1]
        .events
        .iter()
        .find(|(t, e)| {
            *t >= t0
                && matches!(
                    e,
                    Event::Established {
                        initiator: true,
                        ..
                    }
                )
        })
        .map(|(t, _)| *t)
        .unwrap();
    assert!(est - t0 <= 41 * MS, "{}", est - t0);
    // Node 0 answered the restarted peer at once (its timestamp is newer).
    assert_eq!(net.nodes[0].ep.stats().replayed, 0);
    // Traffic back both ways within the second (what was in flight to the restarted
    // dataplane under the old keys is counted as dropped, nothing else).
    assert!(net.nodes[1].delivered - delivered > 900);
    assert!(net.drops() < 100, "{}", net.drops());
}

#[test]
fn replayed_initiation_from_the_wire_is_refused() {
    let mut net = Net::new(5, EndpointConfig::default());
    net.data = false;
    // Capture node 0's first initiation.
    net.nodes[0].ep.handle_timeout(0);
    let init = std::iter::from_fn(|| net.nodes[0].ep.poll_output())
        .find_map(|(_, o)| match o {
            Output::Initiation(m) => Some(m),
            _ => None,
        })
        .unwrap();
    let src = net.nodes[0].addr;
    let b = &mut net.nodes[1].ep;
    assert!(b.on_message(init.as_bytes(), src, 0).is_some());
    // Replayed a second later, from anywhere: no answer.
    assert!(b.on_message(init.as_bytes(), src, SEC).is_none());
    let other = Source {
        addr: "198.51.100.9".parse().unwrap(),
        port: 1,
    };
    assert!(b.on_message(init.as_bytes(), other, 2 * SEC).is_none());
    assert_eq!(b.stats().replayed, 2);
    assert_eq!(b.stats().responses_sent, 1);
}

#[test]
fn under_load_initiations_get_cookies_and_the_peer_still_gets_through() {
    let cfg = EndpointConfig {
        under_load_per_s: 50,
        ..EndpointConfig::default()
    };
    let mut net = Net::new(6, cfg);
    net.data = false;
    // An attacker who knows node 1's public key floods it with initiations (valid mac1,
    // garbage inside) from spoofed sources.
    let victim_key = net.nodes[1].ep.public_key();
    let mut sender = crate::secure::cookie::MacSender::new(&victim_key);
    let mut answered_bytes = 0;
    let mut received_bytes = 0;
    for i in 0..1000u32 {
        let mut m = [0u8; INIT_LEN];
        m[0] = 4;
        m[4..8].copy_from_slice(&i.to_be_bytes());
        m[8] = u8::try_from(i % 251).unwrap();
        sender.seal(&mut m, 0);
        let src = Source {
            addr: std::net::IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + i)),
            port: 4000,
        };
        received_bytes += m.len();
        if let Some((r, peer)) = net.nodes[1].ep.on_message(&m, src, u64::from(i) * 100_000) {
            assert_eq!(peer, None);
            answered_bytes += r.len();
        }
    }
    let s = *net.nodes[1].ep.stats();
    // Past the threshold every initiation got a cookie reply and cost no Diffie-Hellman.
    assert!(s.cookies_sent >= 940, "{s:?}");
    assert!(s.auth_failed <= 60, "{s:?}");
    assert!(answered_bytes < received_bytes / 2);
    // Node 0 starts now, while node 1 is still under load: it gets a cookie, resends at once
    // with mac2, and completes.
    net.now = 100 * MS;
    net.data = true;
    net.nodes[0].ep.reset(net.now);
    // Node 1 stays quiet (its own initiation would race ours).
    net.nodes[1].ep.set_ready(0, false);
    net.run_for(200 * MS);
    let h0 = net.nodes[0].ep.peer(0).unwrap();
    assert!(h0.current().is_some());
    assert!(h0.has_cookie(net.now));
    assert!(net.nodes[1].ep.stats().cookies_sent > s.cookies_sent);
    assert_eq!(net.nodes[1].ep.stats().responses_sent, 1);
}

#[test]
fn per_source_rate_limit() {
    let mut ep = endpoint(2, 1, EndpointConfig::default(), 0, 1);
    let mut sender = crate::secure::cookie::MacSender::new(&ep.public_key());
    let src = Source {
        addr: "203.0.113.5".parse().unwrap(),
        port: 9,
    };
    for i in 0..10u8 {
        let mut m = [i; INIT_LEN];
        m[0] = 4;
        m[1..4].fill(0);
        sender.seal(&mut m, 0);
        assert!(ep.on_message(&m, src, u64::from(i)).is_none());
    }
    let s = ep.stats();
    assert_eq!((s.auth_failed, s.rate_limited), (5, 5));
    // Garbage of every kind is counted, never answered.
    assert!(ep.on_message(&[], src, 10).is_none());
    assert!(ep.on_message(&[4; 10], src, 10).is_none());
    assert!(ep.on_message(&[9; 148], src, 10).is_none());
    let mut bad = [0u8; INIT_LEN];
    bad[0] = 4;
    assert!(ep.on_message(&bad, src, 10).is_none());
    let s = ep.stats();
    assert_eq!((s.malformed, s.bad_mac1), (3, 1));
}
