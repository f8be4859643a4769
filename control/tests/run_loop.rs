//! The control loop end to end, in process, without network: a fake dataplane (a control
//! region with two worker threads stepping `WorkerChannel`s and sending telemetry) and
//! `mongate_control::run::run` in another thread, on the paper's triangle.
//!
//! Checks: both workers run the epoch whose plan is PFO's (A->C direct 10, via B 5); a new
//! control process resynchronises (new epoch, same plan); a restarted dataplane (region
//! re-created) gets the whole plan again; a failed link yields a plan with no rate on the flows
//! crossing it; garbage telemetry records are counted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mongate_control::pfo::{Instance, SolveOptions, solve};
use mongate_control::run::{
    ControlEvent, LogRecord, RunOptions, RunSummary, SiteMap, plan_from_solution, run,
};
use mongate_dataplane::config::Config;
use mongate_dataplane::plan::{PlanShape, PlanTable};
use mongate_dataplane::shm::msg::{
    CLASSES_PER_MSG, ClassTelemetry, FLOW_TEL_PER_MSG, FlowTelemetry,
};
use mongate_dataplane::shm::{CtlRegion, PlanAssembler, Telemetry, WorkerChannel, ctl_path};
use mongate_dataplane::sys::clock;

const TRIANGLE: &str = include_str!("../../docs/examples/triangle-paper.json");

/// Site A of the paper's triangle, class and flow ids as in the instance.
const SITE_A: &str = include_str!("../../docs/examples/triangle-paper-site-a.toml");

const DEADLINE: Duration = Duration::from_secs(60);

fn cfg() -> Config {
    Config::from_toml_str(SITE_A, "site-a.toml").unwrap()
}

/// Polls `f` (bounded) until it holds.
fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Removes the region file even when the test fails.
struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The fake dataplane: a region and one thread per worker.
struct Dataplane {
    region: Arc<CtlRegion>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    plans: Vec<Arc<Mutex<PlanTable>>>,
}

impl Dataplane {
    fn start(path: &Path, cfg: &Config) -> Self {
        let region = Arc::new(CtlRegion::create(path, 2, 64, 0).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let shape = PlanShape::from_config(cfg);
        let mut threads = Vec::new();
        let mut plans = Vec::new();
        for w in 0..2usize {
            let mut ch = WorkerChannel::new(
                region.worker_port(w).unwrap(),
                PlanAssembler::new(shape.clone(), 5_000_000_000),
            );
            let plan = Arc::new(Mutex::new(ch.plan().clone()));
            plans.push(plan.clone());
            let stop = stop.clone();
            // Flows starting at A; every worker carries half of each flow.
            let local: Vec<u32> = cfg
                .flows
                .iter()
                .enumerate()
                .filter(|(_, f)| f.route[0] == "A")
                .map(|(i, _)| u32::try_from(i).unwrap())
                .collect();
            threads.push(std::thread::spawn(move || {
                let mut acks = 0u64;
                // Inner bytes each local flow sent, at its reported rate.
                let mut sent = vec![0u64; local.len()];
                let mut last_tel = 0u64;
                let mut sent_garbage = false;
                while !stop.load(Ordering::Relaxed) {
                    let now = clock::now_ns();
                    let r = ch.step(now, 64, |_| {});
                    if r.switched.is_some() {
                        *plan.lock().unwrap() = ch.plan().clone();
                    }
                    if now.saturating_sub(last_tel) >= 50_000_000 {
                        last_tel = now;
                        acks += 100;
                        let p = ch.plan().clone();
                        let mut items = [FlowTelemetry::default(); FLOW_TEL_PER_MSG];
                        let mut count = 0;
                        for (&f, sent) in local.iter().zip(&mut sent) {
                            let rate = p.rate_mbps[f as usize] * 1e6 / 2.0;
                            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                            // planned rates: positive, far below 2^64
                            let rate_bps = rate as u64;
                            // 50 ms at the rate.
                            *sent += rate_bps / 8 / 20;
                            items[count] = FlowTelemetry {
                                flow: f,
                                path: mongate_dataplane::shm::msg::PATH_NONE,
                                rate_bps,
                                acks,
                                losses: 0,
                                queue_drops: 0,
                                tx_bytes: *sent,
                            };
                            count += 1;
                        }
                        if !sent_garbage {
                            // A record naming a flow that does not exist: counted, ignored.
                            items[count] = FlowTelemetry {
                                flow: 999,
                                ..FlowTelemetry::default()
                            };
                            count += 1;
                            sent_garbage = true;
                        }
                        let _ = ch.port().send(&Telemetry::Flows {
                            count: u32::try_from(count).unwrap(),
                            items,
                        });
                        let mut cls = [ClassTelemetry::default(); CLASSES_PER_MSG];
                        // Worker 0 holds the admitted sessions of A->C (class 0).
                        cls[0] = ClassTelemetry {
                            class: 0,
                            active: if w == 0 { p.sessions[0] } else { 0 },
                            waiting: 0,
                        };
                        let _ = ch.port().send(&Telemetry::Classes {
                            count: 1,
                            items: cls,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }));
        }
        Self {
            region,
            stop,
            threads,
            plans,
        }
    }

    /// The plan every worker runs, if they all run the same epoch (per the region's words
    /// and their own snapshots).
    fn running(&self) -> Option<PlanTable> {
        let first = self.plans[0].lock().unwrap().clone();
        for (i, p) in self.plans.iter().enumerate() {
            let p = p.lock().unwrap();
            if *p != first || self.region.worker_state(i)?.running_epoch != first.epoch {
                return None;
            }
        }
        Some(first)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// A control loop in a thread.
struct Control {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<RunSummary>>,
    events: Sender<ControlEvent>,
    logs: Arc<Mutex<Vec<LogRecord>>>,
}

impl Control {
    fn start(path: &Path, cfg: &Config, inst: &Instance) -> Self {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink_logs = logs.clone();
        let mut opts = RunOptions::new(
            path.to_path_buf(),
            cfg.clone(),
            inst.clone(),
            Arc::new(move |r: &LogRecord| sink_logs.lock().unwrap().push(r.clone())),
        );
        opts.poll = Duration::from_millis(2);
        let (tx, rx) = crossbeam_channel::unbounded();
        opts.events = Some(rx);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || run(&opts, &s));
        Self {
            stop,
            thread,
            events: tx,
            logs,
        }
    }

    fn stop(self) -> RunSummary {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap().unwrap()
    }

    fn plan_logged(&self, epoch: u64) -> bool {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .any(|r| matches!(r, LogRecord::Plan(p) if p.epoch == epoch))
    }
}

fn rate(cfg: &Config, p: &PlanTable, flow: &str) -> f64 {
    p.rate_mbps[cfg.flow_index(flow).unwrap()]
}

/// Whether the worker runs the plan `expected` (same rates, weights, sessions).
fn same_plan(p: &PlanTable, expected: &PlanTable) -> bool {
    p.sessions == expected.sessions
        && p.rate_mbps == expected.rate_mbps
        && p.weight == expected.weight
}

#[test]
fn control_loop_plans_resyncs_and_routes_around_a_failed_link() {
    let cfg = cfg();
    let inst = Instance::from_json(TRIANGLE).unwrap();
    let name = format!("test-runloop-{}", std::process::id());
    let path = ctl_path(&name);
    let _ = std::fs::remove_file(&path);
    let _cleanup = Cleanup(path.clone());

    // PFO's plan for the triangle, in dataplane form.
    let map = SiteMap::new(&inst, &cfg).unwrap();
    let expected = plan_from_solution(&inst, &map, &solve(&inst, &SolveOptions::default()));
    assert_eq!(expected.check(&PlanShape::from_config(&cfg)), Ok(()));

    // The control starts first: it waits for the region.
    let ctl = Control::start(&path, &cfg, &inst);
    wait("the control to report waiting", || {
        ctl.logs
            .lock()
            .unwrap()
            .iter()
            .any(|r| matches!(r, LogRecord::Event(e) if e.event == "waiting"))
    });
    let dp = Dataplane::start(&path, &cfg);

    // 1. Both workers run PFO's plan.
    let mut e1 = 0;
    wait("both workers running PFO's plan", || {
        dp.running().is_some_and(|p| {
            e1 = p.epoch;
            p.epoch >= 1 && same_plan(&p, &expected)
        })
    });
    let p = dp.running().unwrap();
    assert!((rate(&cfg, &p, "A->C/direct") - 10.0).abs() < 1e-6, "{p:?}");
    assert!((rate(&cfg, &p, "A->C/via-B") - 5.0).abs() < 1e-6, "{p:?}");
    assert_eq!(p.sessions[cfg.class_index("A->C").unwrap()], 1);
    assert_eq!(p.sessions[cfg.class_index("B->C").unwrap()], 0);
    wait("the plan log line", || ctl.plan_logged(e1));
    assert!(
        ctl.logs
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.to_json().starts_with(r#"{"type":"plan""#))
    );
    // The garbage record reached the planner and was counted.
    let s1 = ctl.stop();
    assert!(s1.plans_sent >= 1 && s1.attaches == 1, "{s1:?}");
    assert!(s1.bad_records >= 1, "{s1:?}");

    // 2. A new control process resynchronises: a newer epoch, the same plan.
    let ctl = Control::start(&path, &cfg, &inst);
    let mut e2 = 0;
    wait("a new control's epoch running", || {
        dp.running().is_some_and(|p| {
            e2 = p.epoch;
            p.epoch > e1 && same_plan(&p, &expected)
        })
    });
    assert!(e2 > e1);

    // 3. The dataplane restarts (region removed and re-created, workers start empty): the
    // control re-attaches and sends the whole plan again.
    dp.stop();
    drop(_cleanup);
    let _cleanup = Cleanup(path.clone());
    let dp = Dataplane::start(&path, &cfg);
    wait("the plan on the restarted dataplane", || {
        dp.running()
            .is_some_and(|p| p.epoch >= 1 && same_plan(&p, &expected))
    });
    let e3 = dp.running().unwrap().epoch;

    // 4. Link A-C fails: nothing may cross it; A->C goes via B only.
    ctl.events
        .send(ControlEvent::LinkFailed {
            link: "A-C".into(),
            failed: true,
        })
        .unwrap();
    wait("a plan around the failed link", || {
        dp.running().is_some_and(|p| p.epoch > e3)
    });
    let p = dp.running().unwrap();
    assert_eq!(rate(&cfg, &p, "A->C/direct"), 0.0, "{p:?}");
    assert_eq!(rate(&cfg, &p, "B->C/via-A"), 0.0, "{p:?}");
    assert!((rate(&cfg, &p, "A->C/via-B") - 5.0).abs() < 1e-6, "{p:?}");
    assert!(ctl.logs.lock().unwrap().iter().any(|r| matches!(
        r,
        LogRecord::Event(e) if e.event == "link_failed"
    )));

    let s2 = ctl.stop();
    assert!(s2.attaches >= 2, "re-attached after the restart: {s2:?}");
    assert!(s2.plans_sent >= 3, "{s2:?}");
    let region_path = path.clone();
    dp.stop();
    assert!(
        !region_path.exists(),
        "region file removed by the dataplane"
    );
}
