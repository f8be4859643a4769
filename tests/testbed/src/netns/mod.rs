//! [`Netns`]: an RAII network namespace that is always removed, together
//! with the processes started inside it.
//!
//! Names are `<prefix><pid>-<counter>[-<tag>]`, unique across parallel tests
//! (the counter) and parallel processes (the pid). The pid in the name lets
//! [`sweep_stale`] remove namespaces left behind by processes that died
//! without running destructors (SIGKILL, `panic = "abort"`).

mod child;
mod enter;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

pub use child::NsChild;

use crate::cmd;
use crate::error::{Error, Result};

/// Default namespace-name prefix.
pub const DEFAULT_PREFIX: &str = "mgt-";

/// Where iproute2 keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// How long a child gets between SIGTERM and SIGKILL when its namespace is
/// dropped.
pub const CHILD_GRACE: Duration = Duration::from_millis(500);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace, deleted on drop (also while unwinding from a
/// panic). Processes spawned with [`Netns::spawn`] are terminated first.
///
/// `Netns` is `Send + Sync`: topologies hand out `&Netns` freely.
pub struct Netns {
    name: String,
    children: Mutex<Vec<child::Slot>>,
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netns")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Netns {
    /// Creates `<prefix><pid>-<n>` and brings its `lo` up.
    pub fn new(prefix: &str) -> Result<Self> {
        Self::create(prefix, None)
    }

    /// Like [`Netns::new`] with a role suffix for readability
    /// (`mgt-4242-3-dut`). `tag` must be `[A-Za-z0-9_]`.
    pub fn with_tag(prefix: &str, tag: &str) -> Result<Self> {
        Self::create(prefix, Some(tag))
    }

    fn create(prefix: &str, tag: Option<&str>) -> Result<Self> {
        let word_ok = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Error::Invalid(format!("netns prefix {prefix:?}")));
        }
        if tag.is_some_and(|t| t.is_empty() || !word_ok(t)) {
            return Err(Error::Invalid(format!("netns tag {tag:?}")));
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut name = format!("{prefix}{}-{n}", std::process::id());
        if let Some(t) = tag {
            name.push('-');
            name.push_str(t);
        }
        cmd::run(&["ip", "netns", "add", &name])?;
        // From here on, Drop deletes the namespace if anything below fails.
        let ns = Self {
            name,
            children: Mutex::new(Vec::new()),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`: the bind mount that pins the namespace.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_RUN_DIR).join(&self.name)
    }

    /// Runs `argv` inside the namespace (`ip netns exec NAME argv...`) and
    /// waits for it. A non-zero exit is an error carrying stderr.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        cmd::run(&self.exec_argv(argv))
    }

    /// Like [`Netns::exec`] but returns the output whatever the exit status.
    pub fn exec_unchecked(&self, argv: &[&str]) -> Result<Output> {
        cmd::run_unchecked(&self.exec_argv(argv))
    }

    fn exec_argv<'a>(&'a self, argv: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["ip", "netns", "exec", self.name.as_str()];
        v.extend_from_slice(argv);
        v
    }

    /// `ip -n NAME args...` (no fork of a shell, no `exec` indirection).
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut v = vec!["ip", "-n", self.name.as_str()];
        v.extend_from_slice(args);
        cmd::run(&v)
    }

    /// `tc -n NAME args...`.
    pub fn tc(&self, args: &[&str]) -> Result<Output> {
        let mut v = vec!["tc", "-n", self.name.as_str()];
        v.extend_from_slice(args);
        cmd::run(&v)
    }

    /// Writes a sysctl inside the namespace, e.g.
    /// `sysctl("net.ipv4.ip_forward", "1")`. Done from a thread that entered
    /// the namespace (net sysctls resolve against the writer's netns), so it
    /// needs no `sysctl` binary.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        if key.is_empty() || key.contains("..") || key.contains('/') {
            return Err(Error::Invalid(format!("sysctl key {key:?}")));
        }
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        let value = value.to_owned();
        self.run_in(move || std::fs::write(&path, value.as_bytes()))?
            .map_err(|source| Error::Io {
                what: format!("sysctl {key} in {}", self.name),
                source,
            })
    }

    /// Reads a sysctl inside the namespace (trimmed).
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        if key.is_empty() || key.contains("..") || key.contains('/') {
            return Err(Error::Invalid(format!("sysctl key {key:?}")));
        }
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.run_in(move || std::fs::read_to_string(&path))?
            .map(|s| s.trim().to_owned())
            .map_err(|source| Error::Io {
                what: format!("read sysctl {key} in {}", self.name),
                source,
            })
    }

    fn track(&self, slot: child::Slot) {
        let mut v = self.children.lock().unwrap_or_else(PoisonError::into_inner);
        v.retain(|s| s.lock().unwrap_or_else(PoisonError::into_inner).is_some());
        v.push(slot);
    }

    fn stop_children(&self) {
        let slots: Vec<_> =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(PoisonError::into_inner));
        for s in &slots {
            if let Err(e) = child::stop_slot(s, CHILD_GRACE) {
                eprintln!("testbed: stopping child in {}: {e}", self.name);
            }
        }
        // Anything else still inside (grandchildren, `ip netns exec` users):
        // SIGKILL, never ourselves (threads that entered the ns share our pid).
        let _ = kill_pids_in(&self.name);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.stop_children();
        if let Err(e) = cmd::run(&["ip", "netns", "del", &self.name]) {
            eprintln!("testbed: deleting netns {}: {e}", self.name);
        }
    }
}

/// SIGKILLs every process whose network namespace is `name`, except us.
fn kill_pids_in(name: &str) -> Vec<libc::pid_t> {
    let mut killed = Vec::new();
    let Ok(out) = cmd::run(&["ip", "netns", "pids", name]) else {
        return killed;
    };
    let me = std::process::id();
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            continue;
        };
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        killed.push(pid);
    }
    killed
}

/// True when a process with this pid exists (EPERM still means it exists).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks for existence/permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Parses the owner pid out of `<prefix><pid>-...`; `None` when the name
/// does not follow the scheme.
pub fn owner_pid(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let (digits, tail) = rest.split_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || tail.is_empty() {
        return None;
    }
    digits.parse().ok()
}

/// Names of all namespaces in `/run/netns` starting with `prefix`.
pub fn list_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let dir = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                what: format!("reading {NETNS_RUN_DIR}"),
                source,
            });
        }
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    Ok(names)
}

/// Deletes namespaces named `<prefix><pid>-...` whose owner pid is dead
/// (killing whatever still runs inside). Returns how many were removed.
/// Topology builders call it first; it never touches live owners'
/// namespaces, so parallel test processes are safe.
pub fn sweep_stale(prefix: &str) -> Result<usize> {
    let me = std::process::id();
    let mut removed = 0;
    for name in list_with_prefix(prefix)? {
        let Some(pid) = owner_pid(prefix, &name) else {
            continue;
        };
        if pid == me || pid_alive(pid) {
            continue;
        }
        let _ = kill_pids_in(&name);
        cmd::run(&["ip", "netns", "del", &name])?;
        removed += 1;
    }
    Ok(removed)
}

/// Deletes the namespaces named `<prefix><pid>-...` of owner `pid`, live
/// or not, killing whatever runs inside each first. For a process's own
/// clean-up when it cannot run its destructors (the demo on SIGINT or
/// SIGTERM: its namespaces are owned by values on another thread's stack).
/// Returns how many were removed; a namespace that cannot be deleted is
/// skipped and reported in the error after the others were tried.
pub fn remove_owned(prefix: &str, pid: u32) -> Result<usize> {
    let mut removed = 0;
    let mut first_err = None;
    for name in list_with_prefix(prefix)? {
        if owner_pid(prefix, &name) != Some(pid) {
            continue;
        }
        for pid in kill_pids_in(&name) {
            // Reap our own children (the sites' processes the caller
            // started), so they are gone, not zombies, when this returns;
            // for anyone else's process waitpid fails at once (ECHILD).
            // SAFETY: waitpid(2) writes nothing through a null status.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
        match cmd::run(&["ip", "netns", "del", &name]) {
            Ok(_) => removed += 1,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(removed), Err)
}

/// Why namespace tests cannot run here, or `None` when they can: not root,
/// no `ip`/`tc`, or namespaces cannot be created. Tests print
/// `SKIP: <reason>` and return when this is `Some`.
pub fn unavailable_reason() -> Option<String> {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces)".into());
    }
    for prog in ["ip", "tc"] {
        if !cmd::have_program(prog) {
            return Some(format!("`{prog}` (iproute2) not found on PATH"));
        }
    }
    match Netns::new("mgtprobe-") {
        Ok(ns) => {
            drop(ns);
            None
        }
        Err(e) => Some(format!("cannot create a network namespace: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_our_scheme() {
        assert_eq!(owner_pid("mgt-", "mgt-123-0"), Some(123));
        assert_eq!(owner_pid("mgt-", "mgt-123-4-dut"), Some(123));
        assert_eq!(owner_pid("mgt-", "mgt-x-123-4"), None);
        assert_eq!(owner_pid("mgt-", "mgt-123"), None);
        assert_eq!(owner_pid("mgt-", "mgt--1"), None);
        assert_eq!(owner_pid("mgt-", "other-1-2"), None);
        assert_eq!(owner_pid("mgt-", "mgt-99999999999999999999-1"), None);
    }

    #[test]
    fn our_pid_is_alive() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
    }
}
