//! `mongate status`: the gateways running on this machine, from the counter
//! files they publish in the run directory (`<run dir>/NAME.stats`, and a
//! site gateway's `NAME.flows` with its gateway section; docs/shm.md,
//! docs/status.md). Thin I/O: find and read the files twice, `interval`
//! apart; [`view`] turns the two samples into the report and prints it.

pub mod metrics;
pub mod view;

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use mongate_control::run::{plan_status_path, read_plan_status};
use mongate_dataplane::stats::flows::{FlowStatsRegion, flows_path};
use mongate_dataplane::stats::{StatsRegion, stats_path};
use mongate_dataplane::sys::clock::now_ns;
use mongate_dataplane::sys::shm::run_dir;

use view::{FlowSample, GwSample, Sample};

/// What to show, how often.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only these instances (empty: every one in the run directory).
    pub names: Vec<String>,
    /// JSON instead of tables.
    pub json: bool,
    /// Time between the two samples the rates come from.
    pub interval: Duration,
    /// Redraw every interval.
    pub watch: bool,
    /// With `watch`, stop after this many reports.
    pub count: Option<u64>,
}

/// The instance names with a `.stats` file in `dir`, sorted.
fn instances(dir: &Path) -> anyhow::Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("run directory {}: {e}", dir.display()),
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            n.strip_suffix(".stats").map(str::to_string)
        })
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    Ok(names)
}

/// Whether process `pid` exists (on this machine's /proc).
fn alive(pid: u64) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// One gateway's files now; `Err` when its stats file cannot be read.
fn sample_one(name: &str) -> anyhow::Result<GwSample> {
    let stats = StatsRegion::open(&stats_path(name))?;
    let mut s = GwSample {
        name: name.to_string(),
        pid: stats.pid(),
        alive: alive(stats.pid()),
        workers: stats.snapshot(),
        ..GwSample::default()
    };
    match FlowStatsRegion::open(&flows_path(name)) {
        Ok(f) => {
            s.flows = f
                .totals()
                .into_iter()
                .enumerate()
                .map(|(i, (id, counters))| FlowSample {
                    id,
                    counters,
                    path: f.flow_path(i),
                    class: f.flow_class(i),
                })
                .collect();
            s.gw = f.gateway();
        }
        // A forwarder has no flows file.
        Err(mongate_dataplane::stats::StatsError::Io { err, .. })
            if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => s.flows_error = Some(e.to_string()),
    }
    // The control's last plan: optional (no control, or not written yet).
    if let Ok(p) = read_plan_status(&plan_status_path(name)) {
        s.plan_writer_alive = alive(u64::from(p.pid));
        s.plan = Some(p);
    }
    // The processes' last reloads (generation 0: started, none yet).
    for process in ["dataplane", "control"] {
        let at = mongate_dataplane::app::reload::outcome_path(name, process);
        if let Some(o) = mongate_dataplane::app::reload::ReloadOutcome::read(&at)
            && o.generation > 0
        {
            s.reloads.push(o);
        }
    }
    s.unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Ok(s)
}

/// Every selected gateway now. Named instances that cannot be read are
/// errors; in a listing of the directory they are reported on stderr and
/// skipped.
fn sample(o: &Options) -> anyhow::Result<Sample> {
    let listing = o.names.is_empty();
    let names = if listing {
        instances(&run_dir())?
    } else {
        o.names.clone()
    };
    let mut gateways = Vec::new();
    for n in &names {
        match sample_one(n) {
            Ok(s) => gateways.push(s),
            Err(e) if listing => eprintln!("mongate status: {n}: {e:#}"),
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "{e:#} (is a dataplane named {n:?} running? `mongate status` without --name lists them)"
                ));
            }
        }
    }
    Ok(Sample {
        at_ns: now_ns(),
        gateways,
    })
}

/// Runs `mongate status`.
pub fn run(o: &Options) -> anyhow::Result<()> {
    let dir = run_dir().display().to_string();
    let mut prev = sample(o)?;
    let mut shown = 0u64;
    let tty = std::io::stdout().is_terminal();
    loop {
        std::thread::sleep(o.interval);
        let next = sample(o)?;
        let r = view::report(&dir, &prev, &next);
        let mut out = std::io::stdout().lock();
        if o.watch && tty {
            // Home and clear: redraw in place.
            write!(out, "\x1b[H\x1b[2J")?;
        }
        if o.json {
            if o.watch {
                // One report a line (JSON Lines).
                writeln!(out, "{}", serde_json::to_string(&r)?)?;
            } else {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
            }
        } else {
            view::print_human(&r, &mut out)?;
        }
        out.flush()?;
        shown += 1;
        if !o.watch || o.count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
        prev = next;
    }
}

/// Runs `mongate metrics`: the report of [`run`] in the Prometheus text
/// format at `http://LISTEN/metrics`, refreshed every `o.interval` by a
/// sampling thread (a scrape serves the latest: the same figures as
/// `mongate status --json` over the same interval). One request at a time,
/// each bounded in size and time; runs until killed.
pub fn serve(listen: std::net::SocketAddr, o: &Options) -> anyhow::Result<()> {
    use std::io::Read as _;
    use std::sync::{Arc, Mutex};
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("metrics: cannot listen on {listen}: {e}"))?;
    eprintln!(
        "mongate metrics: serving http://{}/metrics (every {} ms)",
        listener.local_addr()?,
        o.interval.as_millis()
    );
    let dir = run_dir().display().to_string();
    let first = sample(o)?;
    let latest = Arc::new(Mutex::new(metrics::render(&view::report(
        &dir, &first, &first,
    ))));
    {
        let latest = latest.clone();
        let o = o.clone();
        std::thread::Builder::new()
            .name("mg-metrics-sample".into())
            .spawn(move || {
                let mut prev = first;
                loop {
                    std::thread::sleep(o.interval);
                    match sample(&o) {
                        Ok(next) => {
                            let text = metrics::render(&view::report(&dir, &prev, &next));
                            if let Ok(mut l) = latest.lock() {
                                *l = text;
                            }
                            prev = next;
                        }
                        Err(e) => eprintln!("mongate metrics: {e:#}"),
                    }
                }
            })?;
    }
    for conn in listener.incoming() {
        let Ok(mut c) = conn else { continue };
        let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
        // The request head: at most 8 KiB, up to the blank line, within 2 s
        // in all (a per-read timeout alone lets a client that sends a byte
        // a second hold this one-at-a-time server for hours).
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || c.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let line = String::from_utf8_lossy(&head);
        let first_line = line.lines().next().unwrap_or("");
        let mut parts = first_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, ctype, body) =
            if method == "GET" && (target == "/metrics" || target.starts_with("/metrics?")) {
                let body = latest.lock().map(|l| l.clone()).unwrap_or_default();
                ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
            } else {
                (
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    "mongate metrics: GET /metrics\n".to_string(),
                )
            };
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        // A scraper that went away is an error on its connection only.
        let _ = c.write_all(answer.as_bytes());
    }
    Ok(())
}
