//! Issue 11's secure overlay on real packets, two acceptance points the
//! in-process tests cannot show: the MON triangle in network namespaces, one
//! `mongate` gateway and one `mongate-control` (keys, handshakes) per site.
//!
//! 1. Rekeying under load: with `rekey_after_seconds = 2`, UDP at a
//!    constant rate A -> C and C -> A for [`LOAD`]: at least three
//!    handshakes between A and C complete (A's control log), every datagram
//!    arrives or is counted as a capacity drop (`queue_full`, `tx_full`,
//!    `not_admitted`), and no gateway's `auth_*` or `no_session` drop
//!    counter grows while the traffic flows: none is lost to a rekey.
//! 2. A peer's restart: C's dataplane and control are stopped and started
//!    again while A keeps sending to C; the first datagram arrives less than
//!    1 s after the new dataplane is up (the issue's "traffic back within
//!    1 s"). Printed, not asserted: the datagrams delivered per 100 ms
//!    after the restart, when the flow is back at its rate, and every drop
//!    counter that grew (the flow's rate comes back much later than its
//!    first datagram: its origin's queue overflows, `queue_full`, while the
//!    controls re-plan around the failed and repaired link A-C).
//! 3. Rekeying by packet count with two workers per gateway
//!    (`rekeys_by_packet_count_count_every_worker`): each worker seals in
//!    its own counter lane; the handshakes follow the sum of both workers'
//!    packets, not worker 0's alone.
//!
//! The figures are printed before the assertions.

mod common;
#[path = "common/secure.rs"]
mod secure;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mongate_dataplane::app::RunningDataplane;
use mongate_dataplane::stats::WorkerSnapshot;
use mongate_testbed::topology::triangle::triangle_overlay_udp;
use mongate_testbed::traffic::{UdpReceiver, UdpSender};
use mongate_testbed::{ClassSpec, FlowSpec, NsChild, OverlaySpec, PlanSpec, RuleSpec};
use mongate_testbed::{Sites, SitesTopology};

const PREFIX: &str = "mgwire";
const SITES: [&str; 3] = ["A", "B", "C"];
/// Session keys are renewed this often (seconds; the configuration's minimum is 1).
const REKEY_AFTER_SECONDS: u64 = 2;
/// How long the constant load runs in point 1.
const LOAD: Duration = Duration::from_secs(12);
/// Datagrams/s each way and their payload: about 0.9 Mbit/s on 10 Mbit/s links.
const PPS: f64 = 200.0;
const PAYLOAD: usize = 500;
/// UDP ports at the hosts: the warm-up traffic, the load, the restart's.
const PORT_WARMUP: u16 = 5002;
const PORT_LOAD: u16 = 5001;
const PORT_RESTART: u16 = 5003;
/// How long the receiver is watched after a restart.
const WATCH_AFTER_RESTART: Duration = Duration::from_secs(5);
/// A flow is back at its rate when 90 % of [`PPS`] arrives over this window
/// (printed, not asserted).
const RATE_WINDOW: Duration = Duration::from_millis(200);
/// Traffic back at most this long after the restarted dataplane is up.
const BACK_WITHIN: Duration = Duration::from_secs(1);

/// The demo's UDP overlay plus a UDP class and flow C -> A, every class
/// best effort beyond its sessions (warm-up, load and restart traffic are
/// separate sessions).
fn overlay() -> OverlaySpec {
    let mut o = triangle_overlay_udp(Some(plan()));
    o.classes.push(ClassSpec {
        id: "C->A".into(),
        source: "C".into(),
        destination: "A".into(),
        kind: "interactive".into(),
        rules: vec![RuleSpec {
            protocol: Some("udp".into()),
            dst_ports: Some("5000-5099".into()),
        }],
        overflow: "best_effort".into(),
    });
    o.flows.push(FlowSpec {
        id: "C->A/direct".into(),
        class: "C->A".into(),
        route: vec!["C".into(), "A".into()],
    });
    for c in &mut o.classes {
        c.overflow = "best_effort".into();
    }
    o
}

/// Sessions (one per sender: warm-up, load, restart) and per-session rates
/// above what the hosts send.
fn plan() -> PlanSpec {
    secure::plan_spec(
        &[("A->C", 4), ("B->C", 1), ("C->A", 2)],
        &[
            ("A->C/direct", 2.0),
            ("A->C/via-B", 0.0),
            ("B->C/direct", 1.0),
            ("B->C/via-A", 0.0),
            ("C->A/direct", 2.0),
        ],
    )
}

/// The triangle, its site files (keys, fast rekeying) and PFO instance.
struct Setup {
    topo: SitesTopology,
    dir: PathBuf,
    files: Vec<PathBuf>,
    instance: PathBuf,
    /// Namespaces' and instances' prefix.
    prefix: &'static str,
    /// Workers per gateway (and queues per interface).
    workers: usize,
}

impl Setup {
    fn instance_name(&self, site: &str) -> String {
        format!("{}{}-{site}", self.prefix, std::process::id())
    }
}

fn setup(dir: &Path) -> Setup {
    setup_with(
        dir,
        PREFIX,
        1,
        &format!("rekey_after_seconds = {REKEY_AFTER_SECONDS}\n"),
        overlay(),
    )
}

/// The triangle with `workers` queues per interface (and workers per
/// gateway), `security` added to every site's `[security]`, overlay `spec`.
fn setup_with(
    dir: &Path,
    prefix: &'static str,
    workers: usize,
    security: &str,
    mut spec: OverlaySpec,
) -> Setup {
    let mut s = Sites::triangle().prefix(prefix);
    s.disable_offloads = true;
    s.queues = u16::try_from(workers).unwrap();
    let topo = s.build().expect("build triangle");
    spec.keys = Some(secure::keys(dir, &SITES));
    // Every class's utility saturates at 1.2 Mbit/s per session (a flow of
    // this test needs 0.9), so the plan admits every session of [`plan`]
    // (8.4 of A-C's 10 Mbit/s) instead of filling a link with one class
    // (what a linear utility does).
    let instance = secure::instance(dir, &spec, &plan(), |_| {
        r#"{"piecewise_linear": [[0.0, 0.0], [1.2, 12.0]]}"#.to_string()
    });
    let files = SITES
        .iter()
        .map(|site| {
            let text = topo.site_config(site, &spec).unwrap().replacen(
                "[security]\n",
                &format!("[security]\n{security}"),
                1,
            );
            assert!(text.contains(security), "{text}");
            let file = dir.join(format!("site-{site}.toml"));
            std::fs::write(&file, &text).unwrap();
            file
        })
        .collect();
    Setup {
        topo,
        dir: dir.to_path_buf(),
        files,
        instance,
        prefix,
        workers,
    }
}

/// Starts site `i`'s dataplane (returns once its worker runs) and then its
/// control process.
fn start_site(s: &Setup, i: usize) -> (RunningDataplane, NsChild) {
    let site = SITES[i];
    let text = std::fs::read_to_string(&s.files[i]).unwrap();
    let cfg = secure::parse_site(site, &text);
    let ns = &s.topo.site(site).unwrap().gw_ns;
    let name = s.instance_name(site);
    let dp = secure::start_dataplane_workers(ns, site, cfg, &name, true, s.workers);
    let ctl = secure::start_control(ns, &s.dir, &s.files[i], &s.instance, &name);
    (dp, ctl)
}

fn host_v4(topo: &SitesTopology, site: &str) -> Ipv4Addr {
    topo.site(site).unwrap().host_if().v4.unwrap().addr
}

/// UDP at [`PPS`] from `from`'s host to `to`'s host at `port`: the receiver
/// (bound before the sender starts) and the sender, each with its stop flag.
struct Udp {
    stop_rx: Arc<AtomicBool>,
    stop_tx: Arc<AtomicBool>,
    rx: UdpReceiver,
    tx: UdpSender,
}

impl Udp {
    fn start(topo: &SitesTopology, from: &str, to: &str, port: u16, limit: Duration) -> Self {
        Self::start_at(topo, from, to, port, PPS, limit)
    }

    /// UDP at `pps` datagrams/s of [`PAYLOAD`] bytes.
    fn start_at(
        topo: &SitesTopology,
        from: &str,
        to: &str,
        port: u16,
        pps: f64,
        limit: Duration,
    ) -> Self {
        let stop_rx = Arc::new(AtomicBool::new(false));
        let stop_tx = Arc::new(AtomicBool::new(false));
        let dst = SocketAddr::from((host_v4(topo, to), port));
        let rx = UdpReceiver::start(
            &topo.site(to).unwrap().lan_ns,
            dst,
            100_000,
            stop_rx.clone(),
            limit,
        )
        .unwrap();
        let tx = UdpSender::start(
            &topo.site(from).unwrap().lan_ns,
            dst,
            pps,
            PAYLOAD,
            stop_tx.clone(),
            limit,
        )
        .unwrap();
        Self {
            stop_rx,
            stop_tx,
            rx,
            tx,
        }
    }

    fn received(&self) -> u64 {
        self.rx.counts.unique.load(Ordering::Relaxed)
    }

    /// Stops sending, waits at most `drain` for every datagram sent to
    /// arrive, stops the receiver; returns (sent, received, duplicates).
    fn finish(self, drain: Duration) -> (u64, u64, u64) {
        self.stop_tx.store(true, Ordering::Relaxed);
        let sent = self.tx.join().unwrap();
        let until = Instant::now() + drain;
        while self.rx.counts.unique.load(Ordering::Relaxed) < sent && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop_rx.store(true, Ordering::Relaxed);
        let c = self.rx.join().unwrap();
        (
            sent,
            c.unique.load(Ordering::Relaxed),
            c.duplicates.load(Ordering::Relaxed),
        )
    }
}

/// Waits (bounded by `limit`) until `ok` holds; false if it never did.
fn wait_for(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if ok() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The first instant of `timeline` ((time, count) samples) from which 90 %
/// of [`PPS`] arrives over [`RATE_WINDOW`], the window starting with a
/// datagram (the count above `before`, its value at the restart).
fn at_rate(timeline: &[(Duration, u64)], before: u64) -> Option<Duration> {
    // A small count of datagrams.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let want = (0.9 * PPS * RATE_WINDOW.as_secs_f64()) as u64;
    let start = timeline.iter().position(|x| x.1 > before)?;
    timeline[start..].iter().find_map(|&(t, n)| {
        let end = timeline.iter().find(|x| x.0 >= t + RATE_WINDOW)?;
        (end.1 - n >= want).then_some(t)
    })
}

/// Handshakes completed with `peer` so far, from a control's log (one
/// `security` event `Established` per handshake at either end).
fn handshakes(s: &Setup, site: &str, peer: &str) -> usize {
    let log = std::fs::read_to_string(s.dir.join(format!("control-{}.log", s.instance_name(site))))
        .unwrap_or_default();
    let needle = format!("security: {peer}: Established");
    log.lines().filter(|l| l.contains(&needle)).count()
}

/// The drop counters a lost key would move: the `auth_*` and `no_session`
/// entries of a map of drop counters.
fn key_drops_of(m: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut m = m.clone();
    m.retain(|k, _| k.starts_with("auth_") || k == "no_session");
    m
}

/// Every drop counter, summed over a gateway's workers.
fn drops(snap: &[WorkerSnapshot]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for w in snap {
        for (k, v) in &w.drops {
            *m.entry(k.clone()).or_default() += v;
        }
    }
    m
}

fn grown(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    b.iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(a.get(k).copied().unwrap_or(0))))
        .filter(|(_, d)| *d > 0)
        .collect()
}

#[test]
fn rekeys_lose_nothing_and_a_restart_rehandshakes_at_once() {
    if common::skip("rekeys_lose_nothing_and_a_restart_rehandshakes_at_once") {
        return;
    }
    let _g = common::net_lock();
    let t_start = Instant::now();
    // Removed on drop, also on a panic (the controls' logs printed first);
    // MONGATE_KEEP_TMP keeps it.
    let dir = common::TempDir::new(PREFIX);
    println!("site files and control logs in {}", dir.display());
    let s = setup(&dir);
    let topo = &s.topo;
    for f in &s.files {
        let text = std::fs::read_to_string(f).unwrap();
        let cfg = secure::parse_site("site", &text);
        assert_eq!(
            cfg.security.rekey_after_ns,
            REKEY_AFTER_SECONDS * 1_000_000_000
        );
    }
    let mut sites: Vec<Option<(RunningDataplane, NsChild)>> =
        (0..SITES.len()).map(|i| Some(start_site(&s, i))).collect();
    let limit = Duration::from_secs(40);

    // Warm-up: keys in place both ways (handshakes run by the controls).
    let ready = Instant::now();
    let warm = [
        Udp::start(topo, "A", "C", PORT_WARMUP, limit),
        Udp::start(topo, "C", "A", PORT_WARMUP, limit),
    ];
    let flowing = wait_for(Duration::from_secs(20), || {
        warm.iter().all(|u| u.received() > 0)
    });
    println!(
        "warm-up: traffic A->C and C->A flowing after {:?}",
        ready.elapsed()
    );
    assert!(flowing, "no traffic between A and C 20 s after start");
    for u in warm {
        u.finish(Duration::ZERO);
    }

    // Point 1: constant load across rekeys.
    let snap = |sites: &[Option<(RunningDataplane, NsChild)>]| -> Vec<BTreeMap<String, u64>> {
        sites
            .iter()
            .map(|x| drops(&x.as_ref().unwrap().0.snapshot()))
            .collect()
    };
    let hs0 = handshakes(&s, "A", "C");
    let d0 = snap(&sites);
    let load = [
        Udp::start(topo, "A", "C", PORT_LOAD, limit),
        Udp::start(topo, "C", "A", PORT_LOAD, limit),
    ];
    std::thread::sleep(LOAD);
    let results = load.map(|u| u.finish(Duration::from_secs(2)));
    let d1 = snap(&sites);
    let hs1 = handshakes(&s, "A", "C");
    let rekeys = hs1 - hs0;
    println!(
        "rekeying under load ({LOAD:?}, rekey_after_seconds = {REKEY_AFTER_SECONDS}): {rekeys} handshakes A-C"
    );
    for (name, (sent, got, dup)) in ["A->C", "C->A"].iter().zip(results) {
        println!("  {name}: sent {sent}, received {got} ({dup} duplicates)");
    }
    let mut drops_grew = BTreeMap::new();
    // Datagrams the gateways dropped for want of capacity (a queue or ring
    // full, a session over the plan), not for want of a key.
    let mut capacity_drops = 0;
    for (i, site) in SITES.iter().enumerate() {
        let all = grown(&d0[i], &d1[i]);
        capacity_drops += ["queue_full", "tx_full", "not_admitted"]
            .iter()
            .filter_map(|k| all.get(*k))
            .sum::<u64>();
        let g = key_drops_of(&all);
        println!("  gateway {site}: drops during the load {all:?}");
        if !g.is_empty() {
            drops_grew.insert(*site, g);
        }
    }

    // Point 2: C's dataplane and control stop and start again while A sends.
    let back = Udp::start(topo, "A", "C", PORT_RESTART, limit);
    assert!(
        wait_for(Duration::from_secs(5), || back.received() > 0),
        "restart traffic A->C not flowing"
    );
    let c = SITES.iter().position(|x| *x == "C").unwrap();
    let d2 = snap(&sites);
    let (dp, ctl) = sites[c].take().unwrap();
    ctl.stop(Duration::ZERO).unwrap();
    dp.stop();
    // What was in flight to the receiver arrives before the count is taken.
    std::thread::sleep(Duration::from_millis(100));
    let before = back.received();
    let restarted = start_site(&s, c);
    let up = Instant::now();
    // The receiver's count every millisecond for a while: when the first
    // datagram arrives, and when the flow is back at its rate.
    let mut timeline: Vec<(Duration, u64)> = Vec::new();
    while up.elapsed() < WATCH_AFTER_RESTART {
        timeline.push((up.elapsed(), back.received()));
        std::thread::sleep(Duration::from_millis(1));
    }
    sites[c] = Some(restarted);
    let d3 = snap(&sites);
    let to_traffic = timeline.iter().find(|x| x.1 > before).map(|x| x.0);
    let per_100ms: Vec<u64> = timeline
        .chunks(100)
        .map(|c| c.last().unwrap().1 - c.first().unwrap().1)
        .collect();
    println!("  datagrams A->C delivered per 100 ms after the restart: {per_100ms:?}");
    let at_rate = at_rate(&timeline, before);
    println!(
        "restart of C (dataplane and control): first datagram A->C {to_traffic:?} after the new dataplane was up; back at its rate (90 % over {RATE_WINDOW:?}) after {at_rate:?}"
    );
    for (i, site) in SITES.iter().enumerate() {
        let from = if i == c { &BTreeMap::new() } else { &d2[i] };
        println!(
            "  gateway {site}: drops after the restart {:?}",
            grown(from, &d3[i])
        );
    }
    let (sent, got, _) = back.finish(Duration::from_secs(1));
    println!("  restart flow A->C: sent {sent}, received {got}");
    println!("test ran {:.1} s", t_start.elapsed().as_secs_f64());

    // --- Assertions ---
    assert!(
        sites.iter().all(|x| x.as_ref().unwrap().0.healthy()),
        "a gateway died"
    );
    assert!(
        rekeys >= 3,
        "{rekeys} handshakes between A and C during {LOAD:?} of load"
    );
    for (name, (sent, got, dup)) in ["A->C", "C->A"].iter().zip(results) {
        assert!(
            sent as f64 >= 0.9 * PPS * LOAD.as_secs_f64(),
            "{name}: sent {sent}"
        );
        // Every datagram arrives, or its loss is counted as a capacity
        // drop (the key drops are checked below).
        assert!(
            sent - got <= capacity_drops,
            "{name}: {} datagrams lost, {capacity_drops} capacity drops",
            sent - got
        );
        assert_eq!(dup, 0, "{name}: duplicates");
    }
    assert!(
        drops_grew.is_empty(),
        "key drops while the load ran: {drops_grew:?}"
    );
    let to_traffic = to_traffic.expect("no traffic A->C after C's restart");
    assert!(
        to_traffic < BACK_WITHIN,
        "traffic A->C back {to_traffic:?} after C's restart"
    );
    assert!(
        t_start.elapsed() < Duration::from_secs(60),
        "the test must stay under a minute"
    );
    drop(sites);
}

/// Point 3's namespaces' prefix.
const PREFIX_WORKERS: &str = "mgwirw";
/// Point 3: a key is renewed after this many packets sealed with it.
const REKEY_AFTER_PACKETS: u64 = 400;
/// Point 3's load A -> C, datagrams/s (500-byte payloads: ~1.3 Mbit/s).
const WORKERS_PPS: f64 = 320.0;
/// How long point 3's load runs.
const WORKERS_LOAD: Duration = Duration::from_secs(10);

/// 3. Rekeying by packet count with two workers per gateway: each worker
///    seals with a session key in its own counter lane and reports its own
///    count; the control renews the key when their sum reaches
///    `rekey_after_packets`. The loaded flow A->C/direct is paced (and
///    sealed) by A's worker 1; worker 0 seals the probes. The handshakes
///    A-C during the load must follow what both workers sealed: before
///    the control added the lanes up it saw worker 0's count alone, and
///    rekeyed once in several times too few packets.
#[test]
fn rekeys_by_packet_count_count_every_worker() {
    use mongate_dataplane::classify::flow_owner;
    if common::skip("rekeys_by_packet_count_count_every_worker") {
        return;
    }
    let _g = common::net_lock();
    let t_start = Instant::now();
    let dir = common::TempDir::new(PREFIX_WORKERS);
    println!("site files and control logs in {}", dir.display());
    let mut spec = overlay();
    // A->C/direct on worker 1 (flows are owned by index modulo workers),
    // A->C/via-B (unplanned) in its place.
    let direct = spec
        .flows
        .iter()
        .position(|f| f.id == "A->C/direct")
        .unwrap();
    let via_b = spec
        .flows
        .iter()
        .position(|f| f.id == "A->C/via-B")
        .unwrap();
    if flow_owner(u32::try_from(direct).unwrap(), 2) != 1 {
        spec.flows.swap(direct, via_b);
    }
    let direct = spec
        .flows
        .iter()
        .position(|f| f.id == "A->C/direct")
        .unwrap();
    assert_eq!(flow_owner(u32::try_from(direct).unwrap(), 2), 1);
    let s = setup_with(
        &dir,
        PREFIX_WORKERS,
        2,
        &format!("rekey_after_packets = {REKEY_AFTER_PACKETS}\n"),
        spec,
    );
    let topo = &s.topo;
    let sites: Vec<(RunningDataplane, NsChild)> =
        (0..SITES.len()).map(|i| start_site(&s, i)).collect();
    let limit = Duration::from_secs(40);
    let ready = Instant::now();
    let warm = Udp::start(topo, "A", "C", PORT_WARMUP, limit);
    let flowing = wait_for(Duration::from_secs(20), || warm.received() > 0);
    println!("warm-up: traffic A->C flowing after {:?}", ready.elapsed());
    assert!(flowing, "no traffic A->C 20 s after start");
    warm.finish(Duration::ZERO);

    // A's packets sealed for C per worker, and the drops, before and after
    // the load. A's ports: the LAN (0), the uplinks to B (1) and to C (2),
    // then the workers' handoff ports. Every packet on the uplink to C is
    // sealed for C (its peer, or its waypoint on a detour to B).
    let a = SITES.iter().position(|x| *x == "A").unwrap();
    let uplink_tx = |dp: &RunningDataplane| -> Vec<u64> {
        dp.snapshot()
            .iter()
            .map(|w| w.tx_packets.get(2).copied().unwrap_or(0))
            .collect()
    };
    let tx0 = uplink_tx(&sites[a].0);
    let d0: Vec<_> = sites.iter().map(|x| drops(&x.0.snapshot())).collect();
    let hs0 = handshakes(&s, "A", "C");
    let load = Udp::start_at(topo, "A", "C", PORT_LOAD, WORKERS_PPS, limit);
    std::thread::sleep(WORKERS_LOAD);
    let (sent, got, dup) = load.finish(Duration::from_secs(2));
    let hs1 = handshakes(&s, "A", "C");
    let tx1 = uplink_tx(&sites[a].0);
    let d1: Vec<_> = sites.iter().map(|x| drops(&x.0.snapshot())).collect();
    let per_worker: Vec<u64> = tx1.iter().zip(&tx0).map(|(b, a)| b - a).collect();
    let total: u64 = per_worker.iter().sum();
    let rekeys = hs1 - hs0;
    let expected = total / REKEY_AFTER_PACKETS;
    println!(
        "rekeying by count ({WORKERS_LOAD:?} at {WORKERS_PPS} datagrams/s, rekey_after_packets = {REKEY_AFTER_PACKETS}): \
         A sealed {per_worker:?} packets for C per worker ({total} in all, {expected} x the limit), {rekeys} handshakes A-C"
    );
    println!("  A->C: sent {sent}, received {got} ({dup} duplicates)");
    let mut key_drops = BTreeMap::new();
    for (i, site) in SITES.iter().enumerate() {
        let all = grown(&d0[i], &d1[i]);
        println!("  gateway {site}: drops during the load {all:?}");
        let g = key_drops_of(&all);
        if !g.is_empty() {
            key_drops.insert(*site, g);
        }
    }
    println!("test ran {:.1} s", t_start.elapsed().as_secs_f64());

    assert!(sites.iter().all(|x| x.0.healthy()), "a gateway died");
    assert!(
        per_worker.len() == 2 && per_worker[1] >= 4 * REKEY_AFTER_PACKETS,
        "A's worker 1 sealed {per_worker:?}: the test needs it to carry the load"
    );
    // A handshake takes a round trip and the control's next report after
    // the count is reached, and packets go on under the old key meanwhile:
    // at least half of the count's renewals (measured: 7 for 9; with worker
    // 0's count alone, 2).
    assert!(
        rekeys * 2 >= usize::try_from(expected).unwrap() && rekeys >= 3,
        "{rekeys} handshakes A-C for {total} packets sealed ({per_worker:?} per worker) \
         at rekey_after_packets = {REKEY_AFTER_PACKETS}"
    );
    assert!(
        got > 0 && dup == 0,
        "A->C: {got} received, {dup} duplicates"
    );
    assert!(
        key_drops.is_empty(),
        "key drops while the load ran: {key_drops:?}"
    );
    drop(sites);
}
