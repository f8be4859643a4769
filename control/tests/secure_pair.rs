//! Two security drivers (sites A and B of the triangle, keys in 0600 files) joined through two
//! simulated dataplanes: each holds the dataplane's real [`KeyTable`], turns the driver's ring
//! commands (encoded and decoded as on the ring) into installed keys and handshake packets over
//! a seeded network (delay, reordering, lost handshakes), reports its keys and paths every
//! 100 ms, and sends the other a ChaCha20-Poly1305 packet every millisecond, opened with the
//! dataplane's `aead::open_at` after the receiver index picked the key.
//!
//! Checks: keys installed on both sides and matching (traffic opens both ways); rekeys every
//! 5 s lose no packet; a control restart re-handshakes at once while traffic keeps flowing; a
//! dataplane restart re-handshakes at once.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use mongate_control::secure::driver::{SecureDriver, endpoint_config, is_broadcast};
use mongate_control::secure::keys::{load, write_key};
use mongate_control::secure::{SeededEntropy, StaticSecret};
use mongate_dataplane::config::Config;
use mongate_dataplane::overlay::failover::PathTelemetry;
use mongate_dataplane::secure::KeyTable;
use mongate_dataplane::secure::aead::open_at;
use mongate_dataplane::shm::msg::{HandshakeIn, KEYS_PER_MSG, KeyUsage, PATHS_PER_MSG};
use mongate_dataplane::shm::{Command, Telemetry};
use mongate_dataplane::sys::{MS, Nanos, Rng, SEC};
use ring::aead::{Aad, Nonce};

const SITE_A: &str = include_str!("../../docs/examples/triangle/site-a.toml");
const SITE_B: &str = include_str!("../../docs/examples/triangle/site-b.toml");
const WALL: u64 = 1_760_000_000 * SEC;
const REPORT: Nanos = 100 * MS;
const PAYLOAD: usize = 32;
const TAG: usize = 16;
const HDR: usize = 12;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("mongate-secure-pair-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

/// Site `text` with a private key file and its peers' public keys (A, B, C = seeds 1, 2, 3).
fn site(text: &str, me: &str, seed: u8) -> Config {
    // One file per call: the tests run in parallel.
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let key = dir().join(format!("{me}-{n}.key"));
    let _ = std::fs::remove_file(&key);
    write_key(&key, [seed; 32]).unwrap();
    let public = |s: u8| StaticSecret::from_bytes([s; 32]).public_key();
    let mut t = text.replace(
        "[security]\nmode = \"off\"",
        &format!(
            "[security]\nprivate_key_file = {:?}\nrekey_after_seconds = 5",
            key.display().to_string()
        ),
    );
    for (name, s) in [("A", 1), ("B", 2), ("C", 3)] {
        t = t.replace(
            &format!("[[peers]]\nname = \"{name}\"\n"),
            &format!(
                "[[peers]]\nname = \"{name}\"\npublic_key = \"{}\"\n",
                public(s)
            ),
        );
    }
    Config::from_toml_str(&t, &format!("site-{me}.toml")).unwrap()
}

fn key_path(c: &Config) -> &Path {
    c.security.private_key_file.as_deref().unwrap()
}

/// One side: its driver and its dataplane model.
struct Side {
    cfg: Config,
    driver: SecureDriver<SeededEntropy>,
    table: KeyTable,
    /// Address of uplink 0 (the A-B link).
    addr: IpAddr,
    delivered: u64,
    unsealed: u64,
    drops: BTreeMap<&'static str, u64>,
    installs: Vec<(Nanos, u32)>,
}

impl Side {
    fn new(cfg: Config, seed: u64, now: Nanos) -> Self {
        let addr = cfg.uplinks[0].local_address;
        let table = KeyTable::new(cfg.peers.len());
        let mut s = Self {
            driver: driver(&cfg, seed, now),
            cfg,
            table,
            addr,
            delivered: 0,
            unsealed: 0,
            drops: BTreeMap::new(),
            installs: Vec::new(),
        };
        s.driver.attached(now);
        s
    }
    fn drop(&mut self, why: &'static str) {
        *self.drops.entry(why).or_default() += 1;
    }
    fn dropped(&self) -> u64 {
        self.drops.values().sum()
    }
}

fn driver(cfg: &Config, seed: u64, now: Nanos) -> SecureDriver<SeededEntropy> {
    let secret = load(key_path(cfg)).unwrap();
    SecureDriver::new(
        cfg,
        secret,
        endpoint_config(cfg),
        WALL + now,
        now,
        SeededEntropy::new(seed),
    )
    .unwrap()
}

#[derive(Clone, Copy)]
enum What {
    Hs(HandshakeIn),
    Data([u8; HDR + PAYLOAD + TAG]),
}

struct Flight {
    at: Nanos,
    seq: u64,
    to: usize,
    what: What,
}

struct Pair {
    sides: Vec<Side>,
    flights: Vec<Flight>,
    rng: Rng,
    seq: u64,
    now: Nanos,
    hs_loss: f64,
}

/// Through the ring's wire form and back.
fn ring_cmd(c: &Command) -> Command {
    Command::decode(&c.encode()).unwrap()
}

fn ring_tel(t: &Telemetry) -> Telemetry {
    Telemetry::decode(&t.encode()).unwrap()
}

/// The peer at index 0 (the other side) on uplink 0, direct.
fn paths() -> Telemetry {
    let mut items = [PathTelemetry::default(); PATHS_PER_MSG];
    items[0] = PathTelemetry {
        path: 0,
        uplink: 0,
        via: u16::MAX,
        remote: 0,
        up: true,
        active: true,
        srtt_us: 0,
        rx_recent: false,
    };
    Telemetry::Paths { count: 1, items }
}

fn key_reports(t: &KeyTable) -> Vec<Telemetry> {
    let all: Vec<KeyUsage> = t.usage().collect();
    let mut out = Vec::new();
    for c in all.chunks(KEYS_PER_MSG) {
        let mut items = [KeyUsage::default(); KEYS_PER_MSG];
        items[..c.len()].copy_from_slice(c);
        out.push(Telemetry::Keys {
            count: u32::try_from(c.len()).unwrap(),
            items,
        });
    }
    out
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

impl Pair {
    fn new(seed: u64) -> Self {
        let a = site(SITE_A, "A", 1);
        let b = site(SITE_B, "B", 2);
        Self {
            sides: vec![Side::new(a, seed * 10, 0), Side::new(b, seed * 10 + 1, 0)],
            flights: Vec::new(),
            rng: Rng::new(seed),
            seq: 0,
            now: 0,
            hs_loss: 0.2,
        }
    }

    fn fly(&mut self, to: usize, what: What) {
        if matches!(what, What::Hs(_)) && self.rng.chance(self.hs_loss) {
            return;
        }
        let at = self.now + 10 * MS + self.rng.below(10 * MS + 1);
        self.seq += 1;
        self.flights.push(Flight {
            at,
            seq: self.seq,
            to,
            what,
        });
    }

    /// Side `i`'s commands: keys into its table, handshakes onto the wire.
    fn commands(&mut self, i: usize) {
        let now = self.now;
        while let Some(c) = self.sides[i].driver.poll(now) {
            let c = ring_cmd(&c);
            match c {
                Command::InstallKey(k) => {
                    assert!(is_broadcast(&c));
                    self.sides[i].table.install(&k).unwrap();
                    self.sides[i].installs.push((now, k.local_index));
                }
                Command::RevokeKey { local_index } => {
                    self.sides[i].table.revoke(local_index);
                }
                Command::SendHandshake(h) => {
                    assert!(!is_broadcast(&c));
                    // Only the A-B path exists; an answer goes back to the source address.
                    assert_eq!(h.path, 0);
                    if let Some((ip, port)) = h.dst {
                        assert_eq!((ip, port), (self.sides[1 - i].addr, 6081));
                    }
                    let hin = HandshakeIn {
                        port: 0,
                        src: self.sides[i].addr,
                        src_port: 6081,
                        msg_type: h.msg_type,
                        len: h.len,
                        bytes: h.bytes,
                    };
                    self.fly(1 - i, What::Hs(hin));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn telemetry(&mut self, i: usize, t: &Telemetry) {
        let t = ring_tel(t);
        let now = self.now;
        self.sides[i].driver.on_telemetry(0, &t, now);
        self.commands(i);
    }

    fn receive(&mut self, i: usize, mut p: [u8; HDR + PAYLOAD + TAG]) {
        let now = self.now;
        let idx = u32::from_be_bytes(p[..4].try_into().unwrap());
        let counter = u64::from_be_bytes(p[4..12].try_into().unwrap());
        let s = &mut self.sides[i];
        let Ok(k) = s.table.receiving(idx, now) else {
            s.drop("auth_no_key");
            return;
        };
        if open_at(
            &mut p,
            0,
            &(HDR..HDR + PAYLOAD),
            &(HDR + PAYLOAD..HDR + PAYLOAD + TAG),
            k.recv_key(),
            counter,
        )
        .is_err()
        {
            s.drop("auth_failed");
            return;
        }
        if s.table.accept(idx, counter, now).is_err() {
            s.drop("auth_replay");
            return;
        }
        assert_eq!(&p[HDR..HDR + PAYLOAD], &[0xAB; PAYLOAD]);
        s.delivered += 1;
    }

    fn seal(&mut self, i: usize) {
        let now = self.now;
        let s = &mut self.sides[i];
        let Ok((k, counter)) = s.table.sending(0, now) else {
            s.unsealed += 1;
            return;
        };
        let mut p = [0u8; HDR + PAYLOAD + TAG];
        p[..4].copy_from_slice(&k.remote_index.to_be_bytes());
        p[4..12].copy_from_slice(&counter.to_be_bytes());
        p[HDR..HDR + PAYLOAD].fill(0xAB);
        let (head, rest) = p.split_at_mut(HDR);
        let (body, tag) = rest.split_at_mut(PAYLOAD);
        let t = k
            .send_key()
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&head[..]), body)
            .unwrap();
        tag.copy_from_slice(t.as_ref());
        self.fly(1 - i, What::Data(p));
    }

    fn step(&mut self) {
        let now = self.now;
        for i in 0..2 {
            if now.is_multiple_of(REPORT) {
                // A report: paths, then keys (none when the table is empty), published
                // together; the loop polls after draining them.
                let mut report = vec![paths()];
                report.extend(key_reports(&self.sides[i].table));
                for t in &report {
                    let t = ring_tel(t);
                    self.sides[i].driver.on_telemetry(0, &t, now);
                }
            }
            self.commands(i);
        }
        let (mut due, rest): (Vec<Flight>, Vec<Flight>) =
            self.flights.drain(..).partition(|f| f.at <= now);
        self.flights = rest;
        due.sort_by_key(|f| (f.at, f.seq));
        for f in due {
            match f.what {
                What::Hs(h) => self.telemetry(f.to, &Telemetry::Handshake(h)),
                What::Data(p) => self.receive(f.to, p),
            }
        }
        for i in 0..2 {
            self.seal(i);
        }
        self.now += MS;
    }

    fn run_for(&mut self, d: Nanos) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    fn drops(&self) -> u64 {
        self.sides.iter().map(Side::dropped).sum()
    }

    fn unsealed(&self) -> Vec<u64> {
        self.sides.iter().map(|s| s.unsealed).collect()
    }
}

#[test]
fn from_config_loads_the_key_and_refuses_others_readable() {
    use std::os::unix::fs::PermissionsExt as _;
    let c = site(SITE_A, "A-mode", 1);
    let d = SecureDriver::from_config(&c, 0).unwrap();
    assert!(d.enabled());
    assert_eq!(
        d.endpoint().unwrap().public_key(),
        load(key_path(&c)).unwrap().public_key()
    );
    std::fs::set_permissions(key_path(&c), std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(SecureDriver::from_config(&c, 0).is_err());
}

#[test]
fn keys_installed_on_both_sides_then_rekeys_lose_nothing() {
    for seed in 1..=3 {
        let mut p = Pair::new(seed);
        p.run_for(2 * SEC);
        for s in &p.sides {
            assert!(!s.table.is_empty(), "seed {seed}");
            assert!(s.table.can_send(0, p.now), "seed {seed}");
            assert!(s.delivered > 1000, "seed {seed}: {}", s.delivered);
        }
        assert_eq!(p.drops(), 0, "seed {seed}");
        let unsealed = p.unsealed();
        let first: Vec<u32> = p
            .sides
            .iter_mut()
            .map(|s| s.table.sending(0, 2 * SEC).unwrap().0.local_index)
            .collect();
        p.run_for(30 * SEC);
        for (s, f) in p.sides.iter_mut().zip(&first) {
            // At least four rekeys (one every 5 to 6.25 s), and the sending key changed.
            assert!(s.installs.len() >= 6, "seed {seed}: {:?}", s.installs);
            assert_ne!(s.table.sending(0, 32 * SEC).unwrap().0.local_index, *f);
            assert!(s.table.len() <= 4);
        }
        assert_eq!(
            p.drops(),
            0,
            "seed {seed}: {:?} {:?}",
            p.sides[0].drops,
            p.sides[1].drops
        );
        assert_eq!(p.unsealed(), unsealed, "seed {seed}");
    }
}

#[test]
fn control_restart_rehandshakes_at_once_and_traffic_keeps_flowing() {
    let mut p = Pair::new(4);
    p.hs_loss = 0.0;
    p.run_for(3 * SEC);
    let t0 = p.now;
    let unsealed = p.unsealed();
    let delivered = p.sides[1].delivered;
    // A's control restarts: a new driver, the same key, the dataplane and its keys kept.
    let cfg = p.sides[0].cfg.clone();
    p.sides[0].driver = driver(&cfg, 77, t0);
    p.sides[0].driver.attached(t0);
    p.run_for(SEC);
    // New keys within the inventory wait (one report period) and a round trip.
    let new = p.sides[0]
        .installs
        .iter()
        .find(|(t, _)| *t >= t0)
        .unwrap()
        .0;
    assert!(new - t0 <= REPORT + 41 * MS, "{}", new - t0);
    // Nothing lost meanwhile: the old keys carried the traffic until the new ones replaced
    // them.
    assert_eq!(
        p.drops(),
        0,
        "{:?} {:?}",
        p.sides[0].drops,
        p.sides[1].drops
    );
    assert_eq!(p.unsealed(), unsealed);
    assert!(p.sides[1].delivered - delivered >= 990);
    let b = p.sides[1].driver.endpoint().unwrap().stats();
    assert_eq!(b.replayed, 0);
}

#[test]
fn dataplane_restart_rehandshakes_at_once() {
    let mut p = Pair::new(5);
    p.hs_loss = 0.0;
    p.run_for(3 * SEC);
    let t0 = p.now;
    // B's dataplane restarts (its keys are gone); its control re-attaches.
    p.sides[1].table = KeyTable::new(2);
    p.sides[1].driver.attached(t0);
    let delivered = p.sides[1].delivered;
    p.run_for(SEC);
    let new = p.sides[1]
        .installs
        .iter()
        .find(|(t, _)| *t >= t0)
        .unwrap()
        .0;
    assert!(new - t0 <= REPORT + 41 * MS, "{}", new - t0);
    // Traffic back within the second; only what was in flight to the empty table (and sent
    // under the old key until the new one was confirmed) is dropped.
    assert!(p.sides[1].delivered - delivered > 800);
    assert!(p.drops() < 250, "{:?}", p.sides[1].drops);
    assert!(p.sides.iter().all(|s| s.table.can_send(0, p.now)));
}
