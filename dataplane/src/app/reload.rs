//! Reloading a running gateway's configuration (SIGHUP, `mongate reload`):
//! the hand-over of checked live changes from the process's main thread to
//! the worker, and the outcome file both processes write for `mongate
//! reload` (`<run dir>/NAME.dataplane.reload`, `NAME.control.reload`).
//!
//! The main thread reads and checks the new file ([`crate::config::reload_changes`]);
//! a refused reload never reaches the worker. An accepted one is staged in
//! a [`ReloadSlot`]; the worker takes it in its housekeeping step (one
//! relaxed-acquire load per step when nothing is staged; the lock is taken
//! only when something is, and only with `try_lock`) and confirms it by
//! bumping a generation the main thread waits on.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{Config, LiveChanges};

/// A reload's changes on their way from the main thread to the worker.
#[derive(Debug, Default)]
pub struct ReloadSlot {
    pending: AtomicBool,
    staged: Mutex<Option<(LiveChanges, Box<Config>)>>,
    staged_gen: AtomicU64,
    applied_gen: AtomicU64,
}

impl ReloadSlot {
    /// Stages `live` (with the new configuration) for the worker; returns
    /// the generation [`ReloadSlot::wait_applied`] waits for.
    pub fn stage(&self, live: LiveChanges, cfg: Config) -> u64 {
        let mut g = self
            .staged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = Some((live, Box::new(cfg)));
        let gen_ = self.staged_gen.fetch_add(1, Ordering::AcqRel) + 1;
        drop(g);
        self.pending.store(true, Ordering::Release);
        gen_
    }

    /// The worker's side: the staged changes, if any (never blocks: a
    /// staging in progress is taken at the next step). Call
    /// [`ReloadSlot::applied`] once they are in force.
    pub fn take(&self) -> Option<(LiveChanges, Box<Config>, u64)> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        let mut g = self.staged.try_lock().ok()?;
        let v = g.take();
        let gen_ = self.staged_gen.load(Ordering::Acquire);
        self.pending.store(false, Ordering::Release);
        v.map(|(l, c)| (l, c, gen_))
    }

    /// The worker applied generation `gen_`.
    pub fn applied(&self, gen_: u64) {
        self.applied_gen.fetch_max(gen_, Ordering::AcqRel);
    }

    /// Waits (polling every millisecond, at most `timeout`) until the worker
    /// applied generation `gen_`; true when it did.
    pub fn wait_applied(&self, gen_: u64, timeout: Duration) -> bool {
        let t0 = Instant::now();
        loop {
            if self.applied_gen.load(Ordering::Acquire) >= gen_ {
                return true;
            }
            if t0.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// What a process did with a reload request: the outcome file's contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadOutcome {
    /// `dataplane` or `control`.
    pub process: String,
    /// The writer's pid.
    pub pid: u32,
    /// Reload requests this process handled (1 for its first).
    pub generation: u64,
    /// Applied (`true`) or refused whole (`false`).
    pub applied: bool,
    /// What was applied, or every reason it was refused, one per line.
    pub message: String,
    /// When (Unix time, ms).
    pub unix_ms: u64,
}

/// Largest outcome file a reader accepts, bytes.
pub const MAX_OUTCOME_FILE: u64 = 1 << 16;

/// The outcome file of `process` (`dataplane`, `control`) of instance `name`.
pub fn outcome_path(name: &str, process: &str) -> PathBuf {
    crate::sys::shm::shm_path(name, &format!("{process}.reload"))
}

impl ReloadOutcome {
    /// A new outcome of this process, stamped now.
    pub fn new(process: &str, generation: u64, applied: bool, message: String) -> Self {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            process: process.to_owned(),
            pid: std::process::id(),
            generation,
            applied,
            message,
            unix_ms,
        }
    }

    /// Writes the file whole (temporary file, then rename; mode 0640).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("reload.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Reads an outcome file (`None`: absent, too large or not an outcome).
    pub fn read(path: &Path) -> Option<Self> {
        let f = std::fs::File::open(path).ok()?;
        if f.metadata().ok()?.len() > MAX_OUTCOME_FILE {
            return None;
        }
        serde_json::from_reader(std::io::BufReader::new(f)).ok()
    }
}

/// Joins refusal reasons into one message, each prefixed by `file`.
pub fn refusal_message(file: &Path, reasons: &[String]) -> String {
    reasons
        .iter()
        .map(|r| {
            if r.starts_with(&file.display().to_string()) {
                r.clone()
            } else {
                format!("{}: {r}", file.display())
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The main thread's side of a running gateway's reloads: the configuration
/// in force and the slot to each of its workers.
pub struct GatewayReloader {
    pub(super) slots: Vec<std::sync::Arc<ReloadSlot>>,
    pub(super) config: Config,
    pub(super) plan_from_file: bool,
    pub(super) flows: std::sync::Arc<crate::stats::flows::FlowStatsRegion>,
    pub(super) generation: u64,
}

impl GatewayReloader {
    /// Reads `path`, checks it whole against the configuration in force and
    /// either hands the live changes to the worker and waits (at most 2 s)
    /// for it to apply them, or refuses with every reason; the running
    /// gateway is untouched by a refusal. Returns the outcome to report.
    pub fn reload(&mut self, path: &Path) -> ReloadOutcome {
        self.generation += 1;
        let gen_ = self.generation;
        let refuse = |reasons: Vec<String>| {
            ReloadOutcome::new("dataplane", gen_, false, refusal_message(path, &reasons))
        };
        let new = match Config::check_file(path) {
            Ok(c) => c,
            Err(errs) => return refuse(errs.iter().map(ToString::to_string).collect()),
        };
        let epoch = self
            .flows
            .gateway_header()
            .map_or(0, |h| h.epoch.load(Ordering::Relaxed));
        let live =
            match crate::config::reload_changes(&self.config, &new, self.plan_from_file, epoch) {
                Ok(l) => l,
                Err(why) => return refuse(why),
            };
        let mut what = live.describe();
        if !live.is_empty() {
            let staged: Vec<u64> = self
                .slots
                .iter()
                .map(|s| s.stage(live.clone(), new.clone()))
                .collect();
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            let late = self.slots.iter().zip(&staged).any(|(s, &g)| {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                !s.wait_applied(g, left)
            });
            if late {
                // Staged: the workers apply it at their next step.
                what.push_str(" (a worker had not confirmed it within 2 s)");
            }
        }
        self.config = new;
        ReloadOutcome::new("dataplane", gen_, true, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_reload_is_taken_once_and_confirmed() {
        let slot = ReloadSlot::default();
        assert!(slot.take().is_none(), "nothing staged");
        let live = LiveChanges {
            idle_timeout_ns: Some(5),
            ..LiveChanges::default()
        };
        let cfg = Config::from_toml_str(
            include_str!("../../../docs/examples/site-a.toml"),
            "site-a.toml",
        )
        .expect("example");
        let g = slot.stage(live.clone(), cfg);
        assert!(!slot.wait_applied(g, Duration::ZERO), "not applied yet");
        let (l, _, taken) = slot.take().expect("staged");
        assert_eq!((l, taken), (live, g));
        assert!(slot.take().is_none(), "taken once");
        slot.applied(taken);
        assert!(slot.wait_applied(g, Duration::ZERO));
    }

    #[test]
    fn outcome_files_round_trip_and_refusals_name_the_file() {
        let dir = std::env::temp_dir().join(format!("mgt-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let at = dir.join("x.dataplane.reload");
        let o = ReloadOutcome::new("dataplane", 3, false, "why".to_owned());
        o.write(&at).unwrap();
        assert_eq!(ReloadOutcome::read(&at), Some(o));
        std::fs::write(&at, b"not json").unwrap();
        assert_eq!(ReloadOutcome::read(&at), None);
        let _ = std::fs::remove_dir_all(&dir);
        let m = refusal_message(
            Path::new("/etc/s.toml"),
            &[
                "/etc/s.toml:3:1: site.vni: bad".to_owned(),
                "[[peers]] changed".to_owned(),
            ],
        );
        assert_eq!(
            m,
            "/etc/s.toml:3:1: site.vni: bad\n/etc/s.toml: [[peers]] changed"
        );
    }
}
