//! The control <-> dataplane channel end to end: plans of many epochs pushed
//! while worker threads apply them, two workers switching together, garbage
//! and corruption injected into the region, a control restart, and a control
//! process in another process.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mongate_dataplane::plan::{PlanShape, PlanTable};
use mongate_dataplane::ring::ShmRing;
use mongate_dataplane::shm::{
    ControlPort, CtlError, CtlRegion, Msg, PlanAssembler, PlanEntry, Refusal, SendError,
    WorkerChannel, plan_commands,
};
use mongate_dataplane::sys::clock;

const SLOTS: u32 = 64;
const DEADLINE: Duration = Duration::from_secs(30);

fn shape() -> PlanShape {
    PlanShape::new(4, (0..24).map(|f| f % 4).collect())
}

fn sessions(epoch: u64, c: u32) -> u32 {
    u32::try_from(epoch % 1000).unwrap() + c
}

/// A valid plan whose every value is derived from its epoch.
fn entries(epoch: u64) -> Vec<PlanEntry> {
    let mut v: Vec<PlanEntry> = (0..4)
        .map(|c| PlanEntry::Class {
            class: c,
            sessions: sessions(epoch, c),
        })
        .collect();
    v.extend((0..24).map(|f| PlanEntry::Flow {
        flow: f,
        rate_mbps: 1.0 + f64::from(f) + f64::from(u32::try_from(epoch % 1000).unwrap()),
        weight: 1.0 + f64::from(f),
        floored: false,
    }));
    v
}

/// Whether `p` is entirely the plan of its epoch (never a mix).
fn consistent(p: &PlanTable) -> bool {
    if p.epoch == 0 {
        return p.sessions.iter().all(|s| *s == 0) && p.rate_mbps.iter().all(|r| *r == 0.0);
    }
    let e = entries(p.epoch);
    e.iter().all(|x| match *x {
        PlanEntry::Class { class, sessions } => p.sessions[class as usize] == sessions,
        PlanEntry::Flow {
            flow,
            rate_mbps,
            weight,
            floored,
        } => {
            p.rate_mbps[flow as usize] == rate_mbps
                && p.weight[flow as usize] == weight
                && p.floored[flow as usize] == floored
        }
        PlanEntry::Detour { peer, via, mbps } => p.detour(peer as usize, via as usize) == mbps,
    })
}

/// The tests of this file run one at a time: `two_processes` forks, and a
/// forked child shares every open file description of the parent until it
/// execs, including another test's `flock` on its region file, which would
/// then look held ("Busy") for a moment after that test dropped it.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tmp_path(tag: &str) -> PathBuf {
    let dir = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    // A private directory: a region is only created in one that only we may
    // write (see `sys::shm`).
    let dir = dir.join(format!("mongate-test-{}", std::process::id()));
    let _ =
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&dir);
    let p = dir.join(format!("{tag}.ctl"));
    // A file left by an earlier run whose pid was reused must not count.
    let _ = std::fs::remove_file(&p);
    p
}

fn channel(region: &CtlRegion, i: usize) -> WorkerChannel {
    WorkerChannel::new(
        region.worker_port(i).unwrap(),
        PlanAssembler::new(shape(), 5_000_000_000),
    )
}

/// Spins (bounded) until `f` holds.
fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// Sends the plan of `epoch` to every worker (retrying while full), waits
/// until all staged it, flips the active word, waits until all run it.
fn push_plan(ctl: &mut ControlPort, epoch: u64) {
    let cmds = plan_commands(epoch, &entries(epoch));
    wait("room in the rings", || match ctl.broadcast(&cmds) {
        Ok(()) => true,
        Err(SendError::Full) => false,
        Err(e) => panic!("send: {e}"),
    });
    wait("staged", || ctl.all_staged(epoch));
    ctl.activate(epoch).unwrap();
    wait("running", || ctl.all_running(epoch));
}

/// A worker thread stepping until `stop`, checking after every step that
/// its plan is whole and its epochs only grow. Returns the epochs it ran.
fn spawn_worker(
    region: Arc<CtlRegion>,
    i: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<u64>, WorkerChannel)> {
    let mut ch = channel(&region, i);
    std::thread::spawn(move || {
        let mut seen = vec![ch.plan().epoch];
        let t = Instant::now();
        while !stop.load(Ordering::Acquire) && t.elapsed() < DEADLINE {
            let r = ch.step(clock::now_ns(), 16, |_| {});
            assert!(consistent(ch.plan()), "worker {i} exposes a mixed plan");
            if let Some(e) = r.switched {
                assert!(e > *seen.last().unwrap(), "epochs only grow");
                // Nobody switches to E before every worker has E ready.
                for w in 0..region.workers() {
                    let s = region.worker_state(w).unwrap();
                    assert!(
                        s.staged_epoch >= e || s.running_epoch >= e,
                        "worker {i} switched to {e} while worker {w} had not staged it: {s:?}"
                    );
                }
                seen.push(e);
            }
        }
        (seen, ch)
    })
}

#[test]
fn worker_thread_applies_plans_of_many_epochs() {
    let _serial = serial();
    let path = tmp_path("many");
    let region = Arc::new(CtlRegion::create(&path, 1, SLOTS, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let h = spawn_worker(region.clone(), 0, stop.clone());
    let mut ctl = ControlPort::attach(&path).unwrap();
    for e in 1..=40 {
        ctl.heartbeat(clock::now_ns());
        push_plan(&mut ctl, e);
    }
    stop.store(true, Ordering::Release);
    let (seen, ch) = h.join().unwrap();
    assert_eq!(seen, (0..=40).collect::<Vec<_>>());
    assert_eq!(ch.plan().epoch, 40);
    assert_eq!(ch.assembler().counters().refused(), 0);
    // Acknowledgements also travel as telemetry.
    let mut acks = 0;
    while let Some(t) = ctl.recv(0) {
        assert!(t.is_ok());
        acks += 1;
    }
    assert!(acks > 0);
}

#[test]
fn two_workers_switch_together_never_mixed() {
    let _serial = serial();
    let path = tmp_path("two");
    let region = Arc::new(CtlRegion::create(&path, 2, SLOTS, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..2)
        .map(|i| spawn_worker(region.clone(), i, stop.clone()))
        .collect();
    let mut ctl = ControlPort::attach(&path).unwrap();
    for e in 1..=60 {
        push_plan(&mut ctl, e);
        // Between plans, a burst of non-plan commands to interleave.
        let _ = ctl.broadcast(&[mongate_dataplane::shm::Command::Probe {
            id: e,
            path: 0,
            count: 1,
            interval_ns: 0,
        }]);
    }
    stop.store(true, Ordering::Release);
    for h in hs {
        let (seen, ch) = h.join().unwrap();
        assert_eq!(seen, (0..=60).collect::<Vec<_>>());
        assert_eq!(ch.assembler().counters().refused(), 0);
    }
}

/// Offsets in the region (see `shm::region`): header 128 bytes, 64 bytes of
/// words per worker, then per worker the command and telemetry rings.
fn cmd_ring_off(workers: u64, i: u64) -> u64 {
    128 + 64 * workers + 2 * i * ShmRing::<Msg>::bytes(SLOTS) as u64
}

fn put_u32(path: &Path, off: u64, v: u32) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&v.to_le_bytes(), off).unwrap();
}

fn get_u32(path: &Path, off: u64) -> u32 {
    let f = std::fs::File::open(path).unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, off).unwrap();
    u32::from_le_bytes(b)
}

/// xorshift: deterministic garbage.
fn garbage(seed: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            seed.to_le_bytes()[3]
        })
        .collect()
}

fn step_until_idle(ch: &mut WorkerChannel) {
    for _ in 0..100 {
        if ch.step(clock::now_ns(), 64, |_| {}).received == 0 {
            return;
        }
    }
}

#[test]
fn corruption_is_refused_and_the_plan_stays() {
    let _serial = serial();
    let path = tmp_path("corrupt");
    let region = CtlRegion::create(&path, 1, SLOTS, 0).unwrap();
    let mut ch = channel(&region, 0);
    let mut ctl = ControlPort::attach(&path).unwrap();
    ctl.broadcast(&plan_commands(1, &entries(1))).unwrap();
    step_until_idle(&mut ch);
    ctl.activate(1).unwrap();
    step_until_idle(&mut ch);
    assert_eq!(ch.plan().epoch, 1);

    // 1. Garbage messages, published through the producer index.
    drop(ctl);
    let ring = cmd_ring_off(1, 0);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for round in 0..20u32 {
        let prod = get_u32(&path, ring + 64);
        for k in 0..8u32 {
            let slot = u64::from((prod + k) % SLOTS);
            let mut bytes = garbage(&mut seed, 256);
            if k % 2 == 0 {
                bytes[0..4].copy_from_slice(&(1 + round % 4).to_le_bytes()); // plausible kinds
                bytes[8..16].copy_from_slice(&(2 + u64::from(round)).to_le_bytes());
            }
            f.write_all_at(&bytes, ring + 192 + slot * 256).unwrap();
        }
        put_u32(&path, ring + 64, prod.wrapping_add(8));
        step_until_idle(&mut ch);
        assert_eq!(ch.plan().epoch, 1, "garbage never replaces the plan");
        assert!(consistent(ch.plan()));
    }
    let c = *ch.assembler().counters();
    assert!(
        c.decode_errors + c.refused() > 0,
        "garbage was counted: {c:?}"
    );

    // 2. A checksum mismatch and an out-of-order plan from a live control.
    let mut ctl = ControlPort::attach(&path).unwrap();
    let e = ctl.next_epoch();
    let mut cmds = plan_commands(e, &entries(e));
    if let Some(mongate_dataplane::shm::Command::PlanCommit { checksum, .. }) = cmds.last_mut() {
        *checksum ^= 0xff;
    }
    ctl.broadcast(&cmds).unwrap();
    let mut cmds = plan_commands(e + 1, &entries(e + 1));
    cmds.swap(0, 1);
    ctl.broadcast(&cmds).unwrap();
    step_until_idle(&mut ch);
    assert_eq!(ch.assembler().counters().checksum, c.checksum + 1);
    assert!(ch.assembler().counters().out_of_order > c.out_of_order);
    assert_eq!(ctl.activate(e), Err(SendError::NotStaged));
    assert_eq!(ch.plan().epoch, 1);

    // 3. Corrupt ring indices: the worker resets its rings, the generation
    // moves, the control re-attaches and resynchronises.
    let g0 = ctl.generation();
    let prod = get_u32(&path, ring + 64);
    put_u32(&path, ring + 64, prod.wrapping_add(10_000));
    let r = ch.step(clock::now_ns(), 64, |_| {});
    assert!(r.ring_reset);
    assert_eq!(ch.plan().epoch, 1);
    assert_eq!(ctl.check(), Err(SendError::Stale));
    drop(ctl);
    let mut ctl = ControlPort::attach(&path).unwrap();
    assert!(ctl.generation() > g0);
    let e = ctl.next_epoch();
    ctl.broadcast(&plan_commands(e, &entries(e))).unwrap();
    step_until_idle(&mut ch);
    ctl.activate(e).unwrap();
    step_until_idle(&mut ch);
    assert_eq!(ch.plan().epoch, e);

    // 4. A smashed region header: attach refuses it, the dataplane repairs it.
    drop(ctl);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&garbage(&mut seed, 64), 0)
        .unwrap();
    assert!(matches!(
        ControlPort::attach(&path),
        Err(CtlError::Header(_))
    ));
    assert!(region.verify_and_repair());
    assert!(!region.verify_and_repair(), "repaired");
    // 5. A smashed ring header: flagged, reset by the worker at its next step.
    put_u32(&path, ring, 0xdead_beef);
    assert!(matches!(
        ControlPort::attach(&path),
        Err(CtlError::Ring { .. })
    ));
    assert!(region.verify_and_repair());
    assert!(ch.step(clock::now_ns(), 64, |_| {}).ring_reset);
    let ctl = ControlPort::attach(&path).unwrap();
    assert_eq!(ch.plan().epoch, e, "the plan survived every corruption");
    assert!(consistent(ch.plan()));
    drop(ctl);
}

#[test]
fn control_restart_keeps_the_plan_and_resynchronises() {
    let _serial = serial();
    let path = tmp_path("restart");
    let region = CtlRegion::create(&path, 2, SLOTS, 0).unwrap();
    let mut chs: Vec<_> = (0..2).map(|i| channel(&region, i)).collect();
    let step_all = |chs: &mut Vec<WorkerChannel>| chs.iter_mut().for_each(step_until_idle);

    let mut ctl = ControlPort::attach(&path).unwrap();
    assert!(matches!(ControlPort::attach(&path), Err(CtlError::Busy(_))));
    ctl.heartbeat(1_000);
    ctl.broadcast(&plan_commands(3, &entries(3))).unwrap();
    step_all(&mut chs);
    ctl.activate(3).unwrap();
    step_all(&mut chs);
    assert!(region.control_alive(2_000, 5_000));
    // The control dies in the middle of sending plan 4.
    let half = plan_commands(4, &entries(4));
    ctl.broadcast(&half[..2]).unwrap();
    drop(ctl);
    step_all(&mut chs);
    assert!(!region.control_alive(1_000_000, 5_000), "heartbeat stale");
    for ch in &chs {
        assert_eq!(ch.plan().epoch, 3, "fail-static: the last plan stays");
        assert!(consistent(ch.plan()));
    }
    // A new control attaches, reads the state, resends a full newer plan.
    let mut ctl = ControlPort::attach(&path).unwrap();
    assert_eq!(ctl.active_epoch(), 3);
    let e = ctl.next_epoch();
    assert!(e > 3);
    ctl.broadcast(&plan_commands(e, &entries(e))).unwrap();
    step_all(&mut chs);
    ctl.activate(e).unwrap();
    step_all(&mut chs);
    for ch in &chs {
        assert_eq!(ch.plan().epoch, e);
        assert_eq!(
            ch.assembler().counters().abandoned,
            1,
            "half plan 4 abandoned"
        );
    }
    assert!(ctl.all_running(e));

    // The dataplane re-creates the region: the control sees a new generation.
    let g = ctl.generation();
    drop(chs);
    drop(region);
    assert_eq!(ctl.check(), Err(SendError::Stale), "closed region noticed");
    let region = CtlRegion::create(&path, 2, SLOTS, 0).unwrap();
    assert!(region.generation() >= 1);
    drop(ctl);
    let ctl = ControlPort::attach(&path).unwrap();
    assert_ne!(ctl.generation(), g);
    drop(ctl);
    drop(region);
    assert!(!path.exists(), "the dataplane removes its region");
}

const CHILD_ENV: &str = "MONGATE_SHM_CHILD_PATH";
const CHILD_EPOCHS: u64 = 10;

/// The control process of `two_processes`: only does something when run by it.
#[test]
#[ignore = "run by two_processes as a child process"]
fn child_control_process() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut ctl = ControlPort::attach(Path::new(&path)).unwrap();
    for e in 1..=CHILD_EPOCHS {
        ctl.heartbeat(clock::now_ns());
        push_plan(&mut ctl, e);
    }
}

#[test]
fn two_processes() {
    let _serial = serial();
    let path = tmp_path("proc");
    let region = Arc::new(CtlRegion::create(&path, 1, SLOTS, 0).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let h = spawn_worker(region.clone(), 0, stop.clone());
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_control_process",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    stop.store(true, Ordering::Release);
    let (seen, ch) = h.join().unwrap();
    assert!(status.success(), "child control process failed");
    assert_eq!(seen, (0..=CHILD_EPOCHS).collect::<Vec<_>>());
    assert_eq!(ch.plan().epoch, CHILD_EPOCHS);
    assert!(region.control_heartbeat_ns() > 0);
}

/// A writer that pushed absurd epochs (u64::MAX to every worker, then
/// epochs a third of the circle apart to single workers, so that no epoch
/// is newer than all of them) cannot lock out the control that attaches
/// after it: a new session starts a new epoch space.
#[test]
fn absurd_epochs_do_not_lock_out_a_restarted_control() {
    let _serial = serial();
    let path = tmp_path("absurd");
    let region = CtlRegion::create(&path, 3, SLOTS, 0).unwrap();
    let mut chs: Vec<_> = (0..3).map(|i| channel(&region, i)).collect();
    let step_all = |chs: &mut Vec<WorkerChannel>| chs.iter_mut().for_each(step_until_idle);

    let mut rogue = ControlPort::attach(&path).unwrap();
    step_all(&mut chs);
    rogue
        .broadcast(&plan_commands(u64::MAX, &entries(u64::MAX)))
        .unwrap();
    step_all(&mut chs);
    rogue.activate(u64::MAX).unwrap();
    step_all(&mut chs);
    assert!(rogue.all_running(u64::MAX));
    let (a, b) = (0x5555_5555_5555_5555u64, 0xAAAA_AAAA_AAAA_AAAAu64);
    rogue.send(1, &plan_commands(a, &entries(a))).unwrap();
    rogue.send(2, &plan_commands(a, &entries(a))).unwrap();
    step_all(&mut chs);
    rogue.send(2, &plan_commands(b, &entries(b))).unwrap();
    step_all(&mut chs);
    let staged: Vec<u64> = (0..3)
        .map(|i| region.worker_state(i).unwrap().staged_epoch)
        .collect();
    assert_eq!(staged, [u64::MAX, a, b]);
    // In the rogue's session, whatever comes next is refused by some worker.
    let e = rogue.next_epoch();
    rogue.broadcast(&plan_commands(e, &entries(e))).unwrap();
    step_all(&mut chs);
    assert!(!rogue.all_staged(e), "no epoch is newer than all three");
    drop(rogue);

    // The real control attaches (a new session) and takes over at once.
    let mut ctl = ControlPort::attach(&path).unwrap();
    let e = ctl.next_epoch();
    ctl.broadcast(&plan_commands(e, &entries(e))).unwrap();
    step_all(&mut chs);
    assert!(ctl.all_staged(e), "every worker staged {e}");
    ctl.activate(e).unwrap();
    step_all(&mut chs);
    assert!(ctl.all_running(e));
    // Then plans follow each other as usual, and a replay of an older one
    // is refused.
    let e2 = ctl.next_epoch();
    assert_ne!(e2, e);
    ctl.broadcast(&plan_commands(e2, &entries(e2))).unwrap();
    step_all(&mut chs);
    ctl.activate(e2).unwrap();
    step_all(&mut chs);
    assert!(ctl.all_running(e2));
    ctl.broadcast(&plan_commands(e, &entries(e))).unwrap();
    step_all(&mut chs);
    assert!(!ctl.all_staged(e), "the replay is refused");
    for ch in &chs {
        assert_eq!(ch.plan().epoch, e2);
        assert!(consistent(ch.plan()));
    }
    drop(ctl);
    drop(chs);
    drop(region);
    assert!(!path.exists());
}

/// A gateway started with a plan in its site file (epoch 1, as the site
/// files have) runs it under that plan's epoch, and its control region starts with that epoch as the active word.
/// The worker's assembler starts from the same epoch: nothing is refused at
/// start, the control's first plan is numbered after it, and that plan
/// switches only when the control activates it, not as soon as it is
/// staged. Started from 0 instead (as before), the worker refuses the word
/// it does not hold, and the control's first plan carries that very epoch.
#[test]
fn a_file_plans_epoch_is_where_the_first_control_plan_starts() {
    let _serial = serial();
    for seeded in [true, false] {
        let path = tmp_path(if seeded { "seeded" } else { "unseeded" });
        let region = CtlRegion::create(&path, 1, SLOTS, 1).unwrap();
        let asm = PlanAssembler::new(shape(), 5_000_000_000);
        let asm = if seeded {
            asm.with_running_epoch(1)
        } else {
            asm
        };
        let mut ch = WorkerChannel::new(region.worker_port(0).unwrap(), asm);
        let first = ch.step(clock::now_ns(), 64, |_| {});
        let mut ctl = ControlPort::attach(&path).unwrap();
        assert_eq!(ctl.earlier_sessions(), 0, "the region's first control");
        let e = ctl.next_epoch();
        ctl.broadcast(&plan_commands(e, &entries(e))).unwrap();
        let mut switched_before_activation = false;
        for _ in 0..100 {
            let r = ch.step(clock::now_ns(), 64, |_| {});
            switched_before_activation |= r.switched.is_some();
            if r.received == 0 {
                break;
            }
        }
        if seeded {
            assert_eq!(first.refused, None);
            assert_eq!(e, 2, "after the file plan's epoch");
            assert!(!switched_before_activation, "switched before activation");
            assert!(ctl.all_staged(e) && !ctl.all_running(e));
            ctl.activate(e).unwrap();
            step_until_idle(&mut ch);
            assert!(ctl.all_running(e));
            assert_eq!(ch.assembler().counters().refused(), 0);
        } else {
            assert_eq!(first.refused, Some((1, Refusal::NotStaged)));
            assert_eq!(e, 1);
            assert!(switched_before_activation);
        }
        drop(ctl);
        let again = ControlPort::attach(&path).unwrap();
        assert_eq!(again.earlier_sessions(), 1, "a control ran before");
        drop(again);
        drop(ch);
        drop(region);
    }
}
