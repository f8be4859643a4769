//! Per-packet cost of the classifier with 10k rules (10k classes, each one
//! TCP rule on its own /32) and 1M sessions: hits on existing sessions (a hot
//! set of 1k and uniformly random over all 1M), new sessions (miss + rule
//! match + admission + insert), and the rule lookup alone.
//!
//! Run: `cargo bench -p mongate-dataplane --bench classify`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mongate_dataplane::classify::{Classifier, Settings, inner};
use mongate_dataplane::config::{
    Backend, Config, Flow, Overflow, Peer, PortRange, Prefix, Rule, Security, Site, TrafficClass,
    Uplink,
};
use mongate_dataplane::plan::{PlanClass, PlanFile, PlanFlow, PlanTable};

const RULES: u32 = 10_000;
const SESSIONS: u32 = 1_000_000;

fn config() -> (Config, PlanTable) {
    let mut cfg = Config {
        site: Site {
            name: "A".into(),
            vni: 1,
            lan_interface: "lan0".into(),
            lan_prefixes: vec!["198.18.0.0/15".parse().expect("prefix")],
            max_sessions_per_host: None,
            session_idle_timeout_seconds: None,
        },
        security: Security::off(),
        uplinks: vec![Uplink {
            name: "u".into(),
            interface: "up0".into(),
            local_address: "198.18.255.1".parse().expect("addr"),
            capacity_mbps: 100.0,
            gateway_mac: None,
            next_hop: None,
            backend: Backend::AfXdp,
        }],
        peers: vec![Peer {
            name: "C".into(),
            prefixes: vec!["10.0.0.0/8".parse().expect("prefix")],
            gateways: vec!["198.18.255.2".parse().expect("addr")],
            public_key: None,
        }],
        classes: Vec::new(),
        flows: Vec::new(),
        metrics: None,
        montra: Default::default(),
        plan: None,
    };
    let mut plan = PlanFile {
        epoch: 1,
        classes: Vec::new(),
        flows: Vec::new(),
        detours: Vec::new(),
    };
    for i in 0..RULES {
        let id = format!("c{i}");
        cfg.classes.push(TrafficClass {
            id: id.clone(),
            source: "A".into(),
            destination: "C".into(),
            kind: "t".into(),
            overflow: Overflow::BestEffort,
            max_sessions_per_host: None,
            rules: vec![Rule {
                dst_prefixes: vec![Prefix::V4(Ipv4Addr::from(0x0A00_0000 + i), 32)],
                protocol: Some(6),
                src_ports: None,
                dst_ports: Some(PortRange { lo: 1, hi: 1024 }),
                dscp: Vec::new(),
            }],
        });
        for r in 0..2 {
            cfg.flows.push(Flow {
                id: format!("f{i}-{r}"),
                class: id.clone(),
                route: vec!["A".into(), "C".into()],
            });
            plan.flows.push(PlanFlow {
                id: format!("f{i}-{r}"),
                rate_mbps: 1.0 + f64::from(r),
                weight: 1.0,
                floored: false,
            });
        }
        plan.classes.push(PlanClass {
            id,
            sessions: SESSIONS,
        });
    }
    let plan = plan.resolve(&cfg).expect("plan fits");
    (cfg, plan)
}

/// An Ethernet + IPv4 + TCP frame (64 bytes) whose tuple `set` rewrites.
fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&40u16.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[36..38].copy_from_slice(&80u16.to_be_bytes()); // dst port (TCP at 34)
    f
}

/// Session `k`: source 198.18.0.0 + k % 65536, port 1024 + k / 65536, to
/// destination 10.0.0.0 + k % 10000.
fn set(f: &mut [u8], k: u32) {
    f[26..30].copy_from_slice(&(0xC612_0000 + (k & 0xFFFF)).to_be_bytes());
    f[30..34].copy_from_slice(&(0x0A00_0000 + k % RULES).to_be_bytes());
    let sport = u16::try_from(1024 + (k >> 16)).unwrap_or(u16::MAX);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
}

fn settings() -> Settings {
    Settings {
        max_sessions: SESSIONS as usize,
        idle_timeout: 3_600_000_000_000,
        hash_seed: 0x5EED,
        ..Settings::default()
    }
}

fn bench(c: &mut Criterion) {
    let (cfg, plan) = config();
    let mut k = Classifier::new(&cfg, &plan, settings()).expect("builds");
    let mut f = frame();
    for s in 0..SESSIONS {
        set(&mut f, s);
        assert!(k.classify(&f, 1).is_ok());
    }
    assert_eq!(k.sessions(), SESSIONS as usize);

    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20).measurement_time(Duration::from_secs(4));

    // Hits, hot set: 1024 sessions cycled.
    let mut i = 0u32;
    g.bench_function("hit_hot_1k_of_1M", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            set(&mut f, i.wrapping_mul(977) % SESSIONS);
            black_box(k.classify(black_box(&f), 2))
        })
    });
    // Hits, uniformly spread over all 1M sessions (a cache miss each).
    let mut x = 1u32;
    g.bench_function("hit_random_of_1M", |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            set(&mut f, x % SESSIONS);
            black_box(k.classify(black_box(&f), 2))
        })
    });
    // Rule lookup alone (parse + 10k-rule table).
    let mut y = 1u32;
    g.bench_function("rules_only_10k", |b| {
        b.iter(|| {
            y = y.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            set(&mut f, y % SESSIONS);
            let p = inner::parse(black_box(&f)).expect("parses");
            black_box(k.rules().lookup(&p))
        })
    });
    drop(k);

    // New sessions: a fresh table (untimed), then `chunk` sessions never seen.
    g.bench_function("new_session_10k_rules", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(u64::from(SESSIONS) / 2);
                let mut k = Classifier::new(&cfg, &plan, settings()).expect("builds");
                let mut f = frame();
                let t = Instant::now();
                for s in 0..chunk {
                    set(&mut f, u32::try_from(s).unwrap_or(0));
                    black_box(k.classify(black_box(&f), 1)).ok();
                }
                total += t.elapsed();
                left -= chunk;
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
