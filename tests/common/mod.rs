//! Shared by the root integration tests: skip rules and serialisation of
//! network tests (they share the machine's two cores and must not overlap).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::Duration;

static NET: Mutex<()> = Mutex::new(());

/// A network test holding the lock longer than this is hung: the longest
/// runs a few minutes. (A failover test hung once in 86 runs in its
/// teardown, session 24; in CI a hang would run into the job's limit.)
const HUNG_AFTER: Duration = Duration::from_secs(15 * 60);

/// The network lock held by a test, with its watchdog.
pub struct NetGuard {
    // Dropped first: the watchdog stands down before the lock is released.
    _watchdog: Watchdog,
    _lock: MutexGuard<'static, ()>,
}

/// Serialises network tests within one test binary, and watches the test
/// holding the lock: if it still holds it after [`HUNG_AFTER`] (the guard
/// is a test's first local, so this covers its teardown too), the stacks of
/// every thread of the process are printed (gdb) and the process aborts, a
/// failure with its evidence instead of a silent hang.
pub fn net_lock() -> NetGuard {
    workspace_binaries_fresh();
    let lock = NET.lock().unwrap_or_else(|e| e.into_inner());
    NetGuard {
        _watchdog: Watchdog::start(HUNG_AFTER),
        _lock: lock,
    }
}

/// Panics, saying what to build, when a workspace binary the network tests
/// run (`mongate-control`, `mongate-dataplane`, `mongate-bench` next to
/// this package's `mongate`) is missing or older than its sources:
/// `cargo test -p mongate` does not build them (`mongate_testbed::fresh`).
/// Checked once per test binary.
pub fn workspace_binaries_fresh() {
    static CHECKED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let r = CHECKED.get_or_init(|| {
        mongate_testbed::fresh::check_workspace_binaries(
            Path::new(env!("CARGO_BIN_EXE_mongate")),
            Path::new(env!("CARGO_MANIFEST_DIR")),
        )
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Aborts the process, with every thread's stack, unless dropped within its
/// limit.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching: `limit` from now.
    pub fn start(limit: Duration) -> Self {
        let (done, rx) = mpsc::channel::<()>();
        let test = std::thread::current()
            .name()
            .unwrap_or("a test")
            .to_string();
        let thread = std::thread::spawn(move || {
            // Disconnected (the guard dropped) ends the watch; only a timeout fires.
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!(
                    "WATCHDOG: {test} still holds the network lock after {} s: every thread's \
                     stack follows, then the process aborts",
                    limit.as_secs()
                );
                let pid = std::process::id().to_string();
                match std::process::Command::new("gdb")
                    .args(["-p", &pid, "-batch", "-ex", "thread apply all bt"])
                    .output()
                {
                    Ok(o) => {
                        eprintln!("{}", String::from_utf8_lossy(&o.stdout));
                        eprintln!("{}", String::from_utf8_lossy(&o.stderr));
                    }
                    Err(e) => eprintln!("WATCHDOG: gdb: {e}"),
                }
                std::process::abort();
            }
        });
        Self {
            done: Some(done),
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why network tests cannot run here, if they cannot. Printed as a visible
/// SKIP line by the caller: never a silent pass.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, XDP)".into());
    }
    mongate_testbed::unavailable_reason()
}

/// Prints the SKIP line and returns true when the test must be skipped.
pub fn skip(test: &str) -> bool {
    match skip_reason() {
        Some(r) => {
            println!("SKIP {test}: {r}");
            eprintln!("SKIP {test}: {r}");
            true
        }
        None => false,
    }
}

/// A deterministic pseudo-random payload of `n` bytes (xorshift from `seed`).
// Each test binary includes this module; not all of them transfer data.
#[allow(dead_code)]
pub fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Environment variable that keeps a test's [`TempDir`] (its path is printed).
#[allow(dead_code)]
pub const KEEP_TMP_ENV: &str = "MONGATE_KEEP_TMP";

/// A test's scratch directory `<tmp>/<prefix>-<pid>` (site files, keys,
/// control logs, captures): created empty, removed when dropped, also when
/// the test panics. On a panic the last lines of every `*.log` in it are
/// printed first, so a failure's logs end up in the test's output. Set
/// [`KEEP_TMP_ENV`] to keep the directory. Declare it before whatever writes
/// into it (gateways, control processes, captures): those drop first.
#[allow(dead_code)]
pub struct TempDir(PathBuf);

#[allow(dead_code)]
impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = std::fs::read_dir(&self.0).into_iter().flatten().flatten();
            for e in logs.filter(|e| e.path().extension().is_some_and(|x| x == "log")) {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("--- last lines of {}:", e.path().display());
                for l in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("{l}");
                }
            }
        }
        if std::env::var_os(KEEP_TMP_ENV).is_some() {
            eprintln!("kept {} ({KEEP_TMP_ENV})", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The sha256 of `data` as hex (`sha256sum`).
#[allow(dead_code)]
pub fn sha256(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A client in site `from`'s LAN host uploads `data` over TCP to a server
/// in site `to`'s LAN host (port `port`), which returns what it received;
/// and how long it took (bounded: 5 s to connect, 60 s per read or write).
#[allow(dead_code)]
pub fn upload(
    topo: &mongate_testbed::SitesTopology,
    from: &str,
    to: &str,
    port: u16,
    data: &[u8],
) -> (Vec<u8>, std::time::Duration) {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::{Duration, Instant};
    let dst = topo.site(to).unwrap().host_if().v4.unwrap().addr;
    let listener = topo
        .site(to)
        .unwrap()
        .lan_ns
        .run_in(move || TcpListener::bind((dst, port)))
        .unwrap()
        .expect("bind the server");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut v = Vec::new();
        s.read_to_end(&mut v).expect("receive");
        v
    });
    let to_send = data.to_vec();
    let t0 = Instant::now();
    topo.site(from)
        .unwrap()
        .lan_ns
        .run_in(move || {
            let mut s =
                TcpStream::connect_timeout(&SocketAddr::from((dst, port)), Duration::from_secs(5))?;
            s.set_write_timeout(Some(Duration::from_secs(60)))?;
            s.write_all(&to_send)?;
            s.shutdown(std::net::Shutdown::Write)?;
            // Wait for the server to close: everything was received.
            let mut rest = Vec::new();
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            s.read_to_end(&mut rest)?;
            Ok::<_, std::io::Error>(())
        })
        .unwrap()
        .expect("upload");
    let got = server.join().unwrap();
    (got, t0.elapsed())
}

/// Waits for `child` to exit for at most `limit` (polling every 10 ms): its status, or `None`
/// after `limit` (the child is then killed and reaped, so no test leaves one running).
#[allow(dead_code)]
pub fn wait_timeout(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        if let Some(s) = child.try_wait().ok().flatten() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}
