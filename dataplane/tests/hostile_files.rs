//! Truncated and garbled shared files: every reader (stats, flows, the
//! control's attach) and the dataplane's own side of its control region get
//! a clear error or harmless numbers, never a panic or a fault.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use mongate_dataplane::plan::PlanShape;
use mongate_dataplane::shm::{ControlPort, CtlRegion, PlanAssembler, WorkerChannel};
use mongate_dataplane::stats::StatsRegion;
use mongate_dataplane::stats::flows::FlowStatsRegion;
use mongate_dataplane::stats::gateway::GatewayLayout;
use mongate_dataplane::sys::rng::Rng;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("mongate-hostile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::DirBuilder::new().mode(0o700).create(&p).unwrap();
        Self(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `bytes` as the file `path` (mode 0600, replacing it).
fn put(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true).mode(0o600);
    std::io::Write::write_all(&mut o.open(path).unwrap(), bytes).unwrap();
}

/// The sizes tried for a file whose valid form is `full` bytes long.
fn sizes(full: usize) -> Vec<usize> {
    let mut v = vec![0, 1, 7, 8, 63, 64, 65, 127, 128, 129, 255, 4095, 4096];
    v.extend([full / 2, full - 64, full - 1, full, full + 1, full + 4096]);
    v.retain(|&n| n <= full + 4096);
    v
}

fn random(n: usize, rng: &mut Rng) -> Vec<u8> {
    (0..n)
        .map(|_| u8::try_from(rng.next_u64() & 0xFF).unwrap())
        .collect()
}

/// Variants of a valid file `good`: truncated to every size, random bytes
/// of every size, the valid start followed by random bytes, and the valid
/// file with random bytes scattered over it.
fn variants(good: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for n in sizes(good.len()) {
        out.push(good[..n.min(good.len())].to_vec());
        out.push(random(n, rng));
        let mut v = good[..n.min(good.len())].to_vec();
        let keep = v.len().min(64);
        let tail = random(v.len() - keep, rng);
        v[keep..].copy_from_slice(&tail);
        out.push(v);
    }
    for _ in 0..20 {
        let mut v = good.to_vec();
        for _ in 0..16 {
            let i = usize::try_from(rng.below(v.len() as u64)).unwrap();
            v[i] = u8::try_from(rng.next_u64() & 0xFF).unwrap();
        }
        out.push(v);
    }
    out
}

#[test]
fn stats_and_flows_readers_never_fault() {
    let d = Dir::new("counters");
    let mut rng = Rng::new(11);
    let stats = d.0.join("x.stats");
    let w = StatsRegion::create(&stats, 3).unwrap();
    let good = std::fs::read(&stats).unwrap();
    drop(w);
    let (mut ok, mut refused) = (0, 0);
    for v in variants(&good, &mut rng) {
        put(&stats, &v);
        match StatsRegion::open(&stats) {
            Ok(r) => {
                ok += 1;
                let s = r.snapshot();
                assert!(s.len() <= 64);
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");

    let flows = d.0.join("x.flows");
    // A site gateway's file: with the gateway section (`mongate status`).
    let layout = GatewayLayout {
        classes: vec!["bulk".into(), "voice".into()],
        peers: vec!["B".into(), "C".into()],
        uplinks: vec!["ab (veth0)".into()],
        paths: 4,
        flow_classes: vec![0, 0, 1],
        rate_unit_bytes: 1250,
    };
    let w =
        FlowStatsRegion::create_gateway(&flows, 2, &["a-direct", "a-via-b", "c"], &layout).unwrap();
    let good = std::fs::read(&flows).unwrap();
    drop(w);
    let (mut ok, mut refused, mut with_section) = (0, 0, 0);
    for v in variants(&good, &mut rng) {
        put(&flows, &v);
        match FlowStatsRegion::open(&flows) {
            Ok(r) => {
                ok += 1;
                let t = r.totals();
                assert!(t.len() <= 4096);
                for (i, (id, _)) in t.iter().enumerate() {
                    assert!(id.len() <= 64 * 4);
                    let _ = (r.flow_path(i), r.flow_class(i));
                }
                if let Some(g) = r.gateway() {
                    with_section += 1;
                    assert!(g.classes.len() <= 4096 && g.paths.len() <= 4096);
                    for n in g.peers.iter().chain(&g.uplinks) {
                        assert!(n.len() <= 64 * 4);
                    }
                }
            }
            Err(_) => refused += 1,
        }
    }
    assert!(
        ok > 0 && refused > 0 && with_section > 0,
        "ok {ok}, refused {refused}, with a gateway section {with_section}"
    );
}

#[test]
fn control_attach_never_faults() {
    let d = Dir::new("ctl");
    let mut rng = Rng::new(12);
    let path = d.0.join("x.ctl");
    let region = CtlRegion::create(&path, 2, 64, 0).unwrap();
    let good = std::fs::read(&path).unwrap();
    drop(region);
    let (mut ok, mut refused) = (0, 0);
    for v in variants(&good, &mut rng) {
        put(&path, &v);
        match ControlPort::attach(&path) {
            Ok(mut c) => {
                ok += 1;
                // Whatever the rings hold: messages decode or are errors.
                for w in 0..c.workers() {
                    for _ in 0..200 {
                        if c.recv(w).is_none() {
                            break;
                        }
                    }
                    let _ = c.worker_state(w);
                }
                let _ = c.next_epoch();
                let _ = c.check();
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
}

#[test]
fn dataplane_survives_a_garbled_region() {
    let d = Dir::new("garbled");
    let mut rng = Rng::new(13);
    let path = d.0.join("x.ctl");
    let region = CtlRegion::create(&path, 2, 64, 0).unwrap();
    let shape = PlanShape::new(2, vec![0, 1]);
    let mut chs: Vec<WorkerChannel> = (0..2)
        .map(|i| {
            WorkerChannel::new(
                region.worker_port(i).unwrap(),
                PlanAssembler::new(shape.clone(), 1_000_000_000),
            )
        })
        .collect();
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    for round in 0..50u64 {
        // Random bytes over the whole region (its length unchanged: only
        // the owner could truncate it), or over a random part of it.
        let (off, n) = if round % 2 == 0 {
            (0, len)
        } else {
            let off = rng.below(len);
            (off, rng.below(len - off) + 1)
        };
        let bytes = random(usize::try_from(n).unwrap(), &mut rng);
        std::os::unix::fs::FileExt::write_all_at(&f, &bytes, off).unwrap();
        for ch in &mut chs {
            for _ in 0..4 {
                let _ = ch.step(round, 64, |_| {});
            }
            // The running plan is a whole plan of the shape.
            assert_eq!(ch.plan().sessions.len(), 2);
        }
        let _ = region.verify_and_repair();
        for ch in &mut chs {
            let _ = ch.step(round, 64, |_| {});
        }
    }
    // Repaired: a control attaches and its plan goes through.
    region.verify_and_repair();
    for ch in &mut chs {
        let _ = ch.step(999, 64, |_| {});
    }
    assert!(!region.verify_and_repair(), "nothing left to repair");
    let mut c = ControlPort::attach(&path).unwrap();
    let e = c.next_epoch();
    let entries = vec![
        mongate_dataplane::shm::PlanEntry::Class {
            class: 0,
            sessions: 1,
        },
        mongate_dataplane::shm::PlanEntry::Flow {
            flow: 0,
            rate_mbps: 1.0,
            weight: 1.0,
            floored: false,
        },
    ];
    c.broadcast(&mongate_dataplane::shm::plan_commands(e, &entries))
        .unwrap();
    for ch in &mut chs {
        for _ in 0..4 {
            let _ = ch.step(1_000, 64, |_| {});
        }
    }
    assert!(c.all_staged(e));
    c.activate(e).unwrap();
    for ch in &mut chs {
        let _ = ch.step(1_000, 64, |_| {});
        assert_eq!(ch.plan().epoch, e);
    }
}
