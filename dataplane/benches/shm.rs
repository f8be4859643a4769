//! Control channel throughput and one-way latency, between two threads and
//! between two processes (this binary re-executed as the control process).
//! Plain timed loops; percentiles from a sorted Vec.
//! `cargo bench -p mongate-dataplane --bench shm`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mongate_dataplane::shm::{Command, ControlPort, CtlRegion, Recv, SendError, Telemetry};
use mongate_dataplane::sys::clock;

const SLOTS: u32 = 1024;
const STREAM: u64 = 2_000_000;
const PINGS: u64 = 100_000;
const BATCH: usize = 32;
const CHILD_ENV: &str = "MONGATE_SHM_BENCH_CHILD";
const LIMIT: Duration = Duration::from_secs(120);

/// `path`: 0 stream, 1 ping, 2 stop; `interval_ns` carries the send time.
fn probe(id: u64, path: u32) -> Command {
    Command::Probe {
        id,
        path,
        count: 0,
        interval_ns: clock::now_ns(),
    }
}

/// The control side: streams `STREAM` messages in batches, then `PINGS`
/// messages one at a time (each waits for the worker's echo), then stop.
fn control(path: &Path) {
    let t = Instant::now();
    let mut ctl = loop {
        match ControlPort::attach(path) {
            Ok(c) => break c,
            Err(_) if t.elapsed() < LIMIT => std::thread::yield_now(),
            Err(e) => panic!("attach: {e}"),
        }
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut sent = 0u64;
    while sent < STREAM {
        assert!(t.elapsed() < LIMIT, "stream timed out");
        batch.clear();
        for k in 0..BATCH as u64 {
            batch.push(probe(sent + k, 0));
        }
        match ctl.send(0, &batch) {
            Ok(()) => sent += BATCH as u64,
            Err(SendError::Full) => std::hint::spin_loop(),
            Err(e) => panic!("send: {e}"),
        }
    }
    for i in 0..PINGS {
        while ctl.send(0, &[probe(i, 1)]).is_err() {
            assert!(t.elapsed() < LIMIT, "ping timed out");
        }
        loop {
            assert!(t.elapsed() < LIMIT, "echo timed out");
            if let Some(Ok(Telemetry::ProbeResult { id, .. })) = ctl.recv(0)
                && id == i
            {
                break;
            }
        }
    }
    while ctl.send(0, &[probe(0, 2)]).is_err() {
        assert!(t.elapsed() < LIMIT, "stop timed out");
    }
}

/// The worker side: returns (messages/s over the stream, one-way ping
/// latencies in ns).
fn worker(region: &CtlRegion) -> (f64, Vec<u64>) {
    let mut port = region.worker_port(0).unwrap();
    let mut lat = Vec::with_capacity(usize::try_from(PINGS).unwrap());
    let (mut first, mut last, mut streamed) = (0u64, 0u64, 0u64);
    let t = Instant::now();
    loop {
        assert!(t.elapsed() < LIMIT, "worker timed out");
        match port.recv() {
            Recv::Cmd(Command::Probe {
                id,
                path,
                interval_ns,
                ..
            }) => {
                let now = clock::now_ns();
                match path {
                    0 => {
                        if streamed == 0 {
                            first = interval_ns;
                        }
                        streamed += 1;
                        last = now;
                    }
                    1 => {
                        lat.push(now.saturating_sub(interval_ns));
                        port.release();
                        port.send(&Telemetry::ProbeResult {
                            id,
                            path,
                            sent: 0,
                            received: 0,
                            rtt_min_ns: 0,
                            rtt_mean_ns: 0,
                        });
                        port.flush();
                    }
                    _ => break,
                }
            }
            Recv::Empty => port.release(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(streamed, STREAM);
    let rate = streamed as f64 / ((last - first) as f64 / 1e9);
    (rate, lat)
}

fn report(what: &str, rate: f64, mut lat: Vec<u64>) {
    lat.sort_unstable();
    // Quantile in per-ten-thousand.
    let p = |q: usize| lat[(lat.len() - 1) * q / 10_000];
    println!(
        "{what}: {:.1} M msg/s (256 B, batches of {BATCH}); one-way latency ns: p50 {} p90 {} p99 {} p99.9 {} max {} (n={})",
        rate / 1e6,
        p(5_000),
        p(9_000),
        p(9_900),
        p(9_990),
        lat[lat.len() - 1],
        lat.len()
    );
}

fn tmp(tag: &str) -> PathBuf {
    // A private directory: a region is only created in one that only we
    // may write (see `sys::shm`).
    let dir = PathBuf::from(format!("/dev/shm/mongate-bench-{}", std::process::id()));
    let _ =
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&dir);
    dir.join(format!("{tag}.ctl"))
}

fn main() {
    if let Ok(p) = std::env::var(CHILD_ENV) {
        control(Path::new(&p));
        return;
    }
    // Two threads.
    let path = tmp("threads");
    let region = CtlRegion::create(&path, 1, SLOTS, 0).unwrap();
    let p2 = path.clone();
    let h = std::thread::spawn(move || control(&p2));
    let (rate, lat) = worker(&region);
    h.join().unwrap();
    report("two threads", rate, lat);
    drop(region);

    // Two processes.
    let path = tmp("procs");
    let region = CtlRegion::create(&path, 1, SLOTS, 0).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, &path)
        .spawn()
        .unwrap();
    let (rate, lat) = worker(&region);
    assert!(child.wait().unwrap().success());
    report("two processes", rate, lat);
}
