//! Two security drivers on two real dataplane pipelines: sites A and B, each a `Gateway` stage
//! with its arena and frame pool (no root, no sockets), joined by a fake 10 ms link. Each
//! driver gets its gateway's reports (paths, key usage) and received handshake messages, as the
//! worker sends them, and its commands (keys, handshake messages) are applied as the worker
//! applies them; every message goes through the ring's wire form.
//!
//! Checks: the handshake runs over the wire between the gateways (unsealed OAM messages), keys
//! are installed on both sides, A's LAN traffic reaches B's LAN sealed, and rekeys every second
//! lose no packet (every frame delivered, no authentication drop, the flow acked in full).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use mongate_control::secure::driver::{SecureDriver, endpoint_config, is_broadcast};
use mongate_control::secure::keys::{load, write_key};
use mongate_control::secure::{SeededEntropy, StaticSecret};
use mongate_dataplane::config::Config;
use mongate_dataplane::engine::{Arena, Batch, FramePool, Packet, Stage, Verdict};
use mongate_dataplane::overlay::failover::PathTelemetry;
use mongate_dataplane::overlay::{Gateway, Settings};
use mongate_dataplane::shm::msg::{KEYS_PER_MSG, KeyUsage, PATHS_PER_MSG};
use mongate_dataplane::shm::{Command, Telemetry};
use mongate_dataplane::sys::{MS, Nanos, SEC};
use mongate_dataplane::wire::ethernet::MacAddr;
use mongate_dataplane::wire::{ipv4, udp};

const LAN: u16 = 0;
const WAN: u16 = 1;
const FRAME: u32 = 2048;
const HEADROOM: u32 = 256;
const FRAMES: u32 = 2048;
const HOST_MAC: [u8; 6] = [0x02, 0xAA, 0, 0, 0, 0x01];
const NAMES: [&str; 2] = ["A", "B"];
const WALL: u64 = 1_760_000_000 * SEC;
const REPORT: Nanos = 100 * MS;
const DELAY: Nanos = 10 * MS;
const B_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 7);

fn gw_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 100, u8::try_from(i + 1).unwrap())
}

fn lan_mac(i: usize) -> MacAddr {
    MacAddr([0x02, 0x10, 0, 0, 0, u8::try_from(i).unwrap()])
}

fn public(seed: u8) -> String {
    StaticSecret::from_bytes([seed; 32])
        .public_key()
        .to_string()
}

/// Site `i` with a key file (seed `i + 1`), its peer's public key, rekeying every second.
fn config(i: usize) -> Config {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("mongate-secure-gw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join(format!(
        "{}-{}.key",
        NAMES[i],
        N.fetch_add(1, Ordering::Relaxed)
    ));
    write_key(&key, [u8::try_from(i + 1).unwrap(); 32]).unwrap();
    let j = 1 - i;
    let t = format!(
        r#"
[site]
name = "{me}"
vni = 4242
lan_interface = "lan0"
lan_prefixes = ["198.18.{my_lan}.0/24"]

[security]
private_key_file = {key:?}
rekey_after_seconds = 1

[[uplinks]]
name = "isp1"
interface = "up0"
local_address = "{my_addr}"
capacity_mbps = 100
gateway_mac = "02:00:00:00:00:fe"
backend = "af_xdp"

[[peers]]
name = "{peer}"
prefixes = ["198.18.{peer_lan}.0/24"]
gateways = ["{peer_addr}"]
public_key = "{peer_key}"

[[classes]]
id = "ab"
source = "A"
destination = "B"
type = "video"
overflow = "best_effort"
{rule}
[[flows]]
id = "ab-direct"
class = "ab"
route = ["A", "B"]

[plan]
epoch = 1

[[plan.classes]]
id = "ab"
sessions = 10

[[plan.flows]]
id = "ab-direct"
rate_mbps = 20.0
weight = 1.0
"#,
        me = NAMES[i],
        my_lan = 10 * (i + 1),
        key = key.display().to_string(),
        my_addr = gw_addr(i),
        peer = NAMES[j],
        peer_lan = 10 * (j + 1),
        peer_addr = gw_addr(j),
        peer_key = public(u8::try_from(j + 1).unwrap()),
        rule = if i == 0 {
            "[[classes.rules]]\nprotocol = \"udp\"\ndst_ports = \"5000-5999\"\n"
        } else {
            ""
        },
    );
    Config::from_toml_str(&t, &format!("site-{}.toml", NAMES[i])).expect("test config")
}

fn settings(i: usize) -> Settings {
    Settings {
        lan_port: LAN,
        uplink_ports: vec![WAN],
        lan_mac: lan_mac(i),
        uplink_macs: vec![MacAddr([0x02, 0x20, 0, 0, 0, u8::try_from(i).unwrap()])],
        lan_next_hop_mac: MacAddr(HOST_MAC),
        lan_address_v4: Some(Ipv4Addr::new(198, 18, 10 * u8::try_from(i + 1).unwrap(), 1)),
        initial_fraction: 1.0,
        seed: 7 + i as u64,
        ..Settings::default()
    }
}

struct Site {
    arena: Arena,
    pool: FramePool,
    gw: Gateway,
    driver: SecureDriver<SeededEntropy>,
    lan_out: Vec<Vec<u8>>,
    installs: u64,
}

impl Site {
    fn new(i: usize) -> Self {
        let cfg = config(i);
        let arena = Arena::new(FRAMES, FRAME, HEADROOM, false).expect("arena");
        let mut pool = FramePool::new(&arena);
        let reserve = (0..64).filter_map(|_| pool.alloc()).collect();
        let gw = Gateway::new(&cfg, settings(i), reserve, 0).expect("gateway");
        assert!(gw.security_required());
        let secret = load(cfg.security.private_key_file.as_deref().unwrap()).unwrap();
        let mut driver = SecureDriver::new(
            &cfg,
            secret,
            endpoint_config(&cfg),
            WALL,
            0,
            SeededEntropy::new(40 + i as u64),
        )
        .unwrap();
        driver.attached(0);
        Self {
            arena,
            pool,
            gw,
            driver,
            lan_out: Vec::new(),
            installs: 0,
        }
    }

    /// The worker's report: paths, then key usage (ring wire form).
    fn report(&mut self, now: Nanos) {
        let mut paths = Vec::new();
        self.gw.for_each_path(now, |p| paths.push(p));
        for c in paths.chunks(PATHS_PER_MSG) {
            let mut items = [PathTelemetry::default(); PATHS_PER_MSG];
            items[..c.len()].copy_from_slice(c);
            let t = Telemetry::Paths {
                count: u32::try_from(c.len()).unwrap(),
                items,
            };
            self.driver.on_telemetry(0, &ring(&t), now);
        }
        let keys: Vec<KeyUsage> = self.gw.key_usage().collect();
        for c in keys.chunks(KEYS_PER_MSG) {
            let mut items = [KeyUsage::default(); KEYS_PER_MSG];
            items[..c.len()].copy_from_slice(c);
            let t = Telemetry::Keys {
                count: u32::try_from(c.len()).unwrap(),
                items,
            };
            self.driver.on_telemetry(0, &ring(&t), now);
        }
    }

    /// Received handshake messages to the driver, the driver's commands to the gateway.
    fn control(&mut self, now: Nanos) {
        let mut hs = Vec::new();
        self.gw.drain_handshakes(|h| {
            hs.push(*h);
            true
        });
        for h in hs {
            self.driver
                .on_telemetry(0, &ring(&Telemetry::Handshake(h)), now);
        }
        while let Some(c) = self.driver.poll(now) {
            let c = Command::decode(&c.encode()).unwrap();
            match c {
                Command::InstallKey(k) => {
                    assert!(is_broadcast(&c));
                    self.gw.install_key(&k).unwrap();
                    self.installs += 1;
                }
                Command::RevokeKey { local_index } => {
                    self.gw.revoke_key(local_index);
                }
                Command::SendHandshake(h) => assert!(self.gw.queue_handshake(&h)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn ring(t: &Telemetry) -> Telemetry {
    Telemetry::decode(&t.encode()).unwrap()
}

struct Net {
    sites: Vec<Site>,
    /// Per direction (from site), frames in flight: (arrival, bytes).
    links: Vec<VecDeque<(Nanos, Vec<u8>)>>,
    now: Nanos,
}

impl Net {
    fn new() -> Self {
        Self {
            sites: vec![Site::new(0), Site::new(1)],
            links: vec![VecDeque::new(), VecDeque::new()],
            now: 0,
        }
    }

    fn dispatch(&mut self, s: usize, b: &Batch) {
        for p in b.as_slice() {
            let site = &mut self.sites[s];
            match p.verdict {
                Verdict::Held => continue,
                Verdict::Tx(LAN) => site.lan_out.push(site.arena.packet(p).unwrap().to_vec()),
                Verdict::Tx(WAN) => {
                    let bytes = site.arena.packet(p).unwrap().to_vec();
                    self.links[s].push_back((self.now + DELAY, bytes));
                }
                Verdict::Drop(_) => {}
                v => panic!("unexpected verdict {v:?}"),
            }
            self.sites[s].pool.free(p.addr);
        }
    }

    fn inject(&mut self, s: usize, port: u16, bytes: &[u8]) -> Verdict {
        let site = &mut self.sites[s];
        let base = site.pool.alloc().expect("frame");
        let addr = base + u64::from(HEADROOM);
        let len = u32::try_from(bytes.len()).unwrap();
        site.arena
            .get_mut(addr, len)
            .unwrap()
            .copy_from_slice(bytes);
        let mut b = Batch::new();
        b.push(Packet::new(addr, len, port, self.now));
        site.gw.process(self.now, &mut site.arena, &mut b);
        let v = b.as_slice()[0].verdict;
        self.dispatch(s, &b);
        v
    }

    fn step(&mut self, t: Nanos) {
        self.now = t;
        for s in 0..2 {
            if t.is_multiple_of(REPORT) {
                self.sites[s].gw.expire_keys(t);
                self.sites[s].report(t);
            }
            self.sites[s].control(t);
            let site = &mut self.sites[s];
            site.gw.maintain(&mut site.pool);
            loop {
                let site = &mut self.sites[s];
                let mut out = Batch::new();
                site.gw.poll(t, &mut site.arena, &mut out);
                if out.is_empty() {
                    break;
                }
                self.dispatch(s, &out);
            }
        }
        for from in 0..2 {
            while self.links[from].front().is_some_and(|f| f.0 <= t) {
                let (_, bytes) = self.links[from].pop_front().unwrap();
                self.inject(1 - from, WAN, &bytes);
            }
        }
    }

    fn run_until(&mut self, end: Nanos) {
        while self.now < end {
            let t = self.now + 500_000;
            self.step(t);
        }
    }
}

/// A UDP frame from A's LAN host to B's, `len` payload bytes tagged `tag`.
fn frame(len: usize, tag: u8) -> Vec<u8> {
    let mut f = vec![0x02, 0x10, 0, 0, 0, 0];
    f.extend_from_slice(&HOST_MAC);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = vec![0u8; 28 + len];
    ipv4::Repr {
        src: Ipv4Addr::new(198, 18, 10, 5),
        dst: B_HOST,
        protocol: 17,
        payload_len: 8 + len,
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: true,
    }
    .emit(&mut ip)
    .unwrap();
    udp::Repr {
        src_port: 40000,
        dst_port: 5000,
    }
    .emit(&mut ip[20..], len)
    .unwrap();
    ip[28..].fill(tag);
    f.extend_from_slice(&ip);
    f
}

#[test]
fn drivers_handshake_over_real_gateways_and_rekey_without_loss() {
    let mut net = Net::new();
    // The handshake runs over the link; nothing else can pass before it.
    net.run_until(300 * MS);
    for s in &net.sites {
        assert!(s.installs >= 1, "keys installed");
        assert!(!s.gw.keys().is_empty());
        assert!(s.gw.stats().handshakes_sent >= 1);
    }
    assert!(net.sites[0].gw.keys().can_send(0, net.now));
    // A's LAN host sends 200 byte frames every 2 ms for 4 s: several rekeys.
    let installs0: Vec<u64> = net.sites.iter().map(|s| s.installs).collect();
    let mut sent = 0;
    let end = net.now + 4 * SEC;
    while net.now < end {
        let tag = u8::try_from(sent % 251).unwrap();
        assert_eq!(net.inject(0, LAN, &frame(200, tag)), Verdict::Held);
        sent += 1;
        let t = net.now + 2 * MS;
        net.run_until(t);
    }
    net.run_until(net.now + 500 * MS);
    for (s, i0) in net.sites.iter().zip(&installs0) {
        assert!(s.installs >= i0 + 3, "rekeys: {} -> {}", i0, s.installs);
        let st = s.gw.stats();
        assert_eq!(
            (
                st.auth_failed,
                st.auth_no_key,
                st.auth_replay,
                st.auth_unsealed,
                st.no_session
            ),
            (0, 0, 0, 0, 0),
            "{st:?}"
        );
    }
    assert_eq!(net.sites[1].lan_out.len(), sent, "every frame delivered");
    let tr = net.sites[0].gw.flow_tracker("ab-direct").unwrap();
    assert_eq!((tr.sent, tr.lost), (u64::try_from(sent).unwrap(), 0));
    assert_eq!(tr.acked, tr.sent);

    // A's control restarts (a new driver, same key; the gateway keeps its keys): it
    // handshakes again at once and the traffic does not notice.
    let cfg = config(0);
    let secret = load(cfg.security.private_key_file.as_deref().unwrap()).unwrap();
    // The new file holds the same key (seed 1).
    assert_eq!(
        secret.public_key(),
        StaticSecret::from_bytes([1; 32]).public_key()
    );
    let t0 = net.now;
    let mut d = SecureDriver::new(
        &cfg,
        secret,
        endpoint_config(&cfg),
        WALL + t0,
        t0,
        SeededEntropy::new(99),
    )
    .unwrap();
    d.attached(t0);
    net.sites[0].driver = d;
    let installs = net.sites[0].installs;
    let before = net.sites[1].lan_out.len();
    let end = t0 + SEC;
    let mut more = 0;
    while net.now < end {
        assert_eq!(net.inject(0, LAN, &frame(200, 7)), Verdict::Held);
        more += 1;
        let t = net.now + 2 * MS;
        net.run_until(t);
    }
    net.run_until(net.now + 500 * MS);
    assert!(
        net.sites[0].installs > installs,
        "new keys after the restart"
    );
    assert_eq!(net.sites[1].lan_out.len() - before, more);
    for s in &net.sites {
        let st = s.gw.stats();
        assert_eq!(st.auth_failed + st.auth_no_key + st.no_session, 0, "{st:?}");
    }
}
