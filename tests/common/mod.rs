//! Shared by the root integration tests: skip rules and serialisation of
//! network tests (they share the machine's two cores and must not overlap).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

static NET: Mutex<()> = Mutex::new(());

/// Serialises network tests within one test binary.
pub fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
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
