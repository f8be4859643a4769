//! Processes started inside a namespace, stopped when their handle or their
//! namespace goes away (SIGTERM, bounded wait, SIGKILL, reap).

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{CHILD_GRACE, Netns};
use crate::error::{Error, Result};

/// Shared between the [`NsChild`] handle and its [`Netns`]: whichever is
/// dropped first stops the process; `None` once stopped/reaped.
pub(super) type Slot = Arc<Mutex<Option<Child>>>;

/// Poll period while waiting for a child to exit.
const POLL: Duration = Duration::from_millis(5);

/// A process running inside a [`Netns`]. Dropping it stops the process
/// (SIGTERM, then SIGKILL after [`CHILD_GRACE`]); so does dropping the
/// namespace.
pub struct NsChild {
    pid: u32,
    ns: String,
    slot: Slot,
}

impl std::fmt::Debug for NsChild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsChild")
            .field("pid", &self.pid)
            .field("ns", &self.ns)
            .finish()
    }
}

impl Netns {
    /// Spawns `cmd` inside the namespace. The child `setns()`s into it
    /// between fork and exec, so any `Command` configuration (stdio, env,
    /// cwd) is kept. Unlike `ip netns exec`, `/sys` is not remounted: tools
    /// that read `/sys/class/net` see the parent's view (netlink/ioctl
    /// based tools are fine).
    pub fn spawn(&self, mut cmd: Command) -> Result<NsChild> {
        let file = std::fs::File::open(self.path()).map_err(|source| Error::Io {
            what: format!("open {}", self.path().display()),
            source,
        })?;
        let fd = file.as_raw_fd();
        // SAFETY: the hook only calls sigemptyset(3), sigprocmask(2) and
        // setns(2), which are async-signal-safe, on a set on its own stack,
        // and reads `fd`, which stays open in the parent (`file` lives until
        // after `spawn` returns) and is therefore inherited by the fork.
        unsafe {
            cmd.pre_exec(move || {
                // No signal blocked in the child: a parent that takes SIGINT
                // and SIGTERM with sigwait (the demo's `StopSignals`) blocks
                // them in all its threads, the mask survives fork and exec,
                // and its gateways and controls then ignored SIGTERM (a stop
                // waited for the SIGKILL after the grace period; a demo
                // killed hard left them running).
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&raw mut none);
                if libc::sigprocmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut()) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            cmd: format!("{cmd:?} in netns {}", self.name()),
            source,
        })?;
        drop(file);
        let pid = child.id();
        let slot: Slot = Arc::new(Mutex::new(Some(child)));
        self.track(Arc::clone(&slot));
        Ok(NsChild {
            pid,
            ns: self.name().to_owned(),
            slot,
        })
    }
}

impl NsChild {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn with<R>(&self, f: impl FnOnce(&mut Child) -> R) -> Option<R> {
        let mut g = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        g.as_mut().map(f)
    }

    /// Takes the child's stdin pipe (if it was configured as piped).
    pub fn take_stdin(&self) -> Option<ChildStdin> {
        self.with(|c| c.stdin.take()).flatten()
    }

    /// Takes the child's stdout pipe (if it was configured as piped).
    pub fn take_stdout(&self) -> Option<ChildStdout> {
        self.with(|c| c.stdout.take()).flatten()
    }

    /// Takes the child's stderr pipe (if it was configured as piped).
    pub fn take_stderr(&self) -> Option<ChildStderr> {
        self.with(|c| c.stderr.take()).flatten()
    }

    /// Exit status if it has exited; `None` while running (or once stopped
    /// through the namespace).
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.with(|c| c.try_wait())
            .transpose()
            .map(Option::flatten)
            .map_err(|source| Error::Io {
                what: format!("waiting for pid {}", self.pid),
                source,
            })
    }

    /// Waits at most `timeout` for the process to exit on its own.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; always reaps. Returns the
    /// exit status (`None` if it had already been stopped).
    pub fn stop(&self, grace: Duration) -> Result<Option<ExitStatus>> {
        stop_slot(&self.slot, grace)
    }
}

impl Drop for NsChild {
    fn drop(&mut self) {
        if let Err(e) = stop_slot(&self.slot, CHILD_GRACE) {
            eprintln!("testbed: stopping pid {} in {}: {e}", self.pid, self.ns);
        }
    }
}

/// Stops and reaps the child in `slot`, leaving `None` behind.
pub(super) fn stop_slot(slot: &Slot, grace: Duration) -> Result<Option<ExitStatus>> {
    let mut g = slot.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(mut child) = g.take() else {
        return Ok(None);
    };
    let pid = child.id();
    let io = |what: &str, source| Error::Io {
        what: format!("{what} pid {pid}"),
        source,
    };
    if let Some(st) = child.try_wait().map_err(|e| io("waiting for", e))? {
        return Ok(Some(st));
    }
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
        // un-reaped child, so it cannot have been recycled.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().map_err(|e| io("waiting for", e))? {
            return Ok(Some(st));
        }
        std::thread::sleep(POLL);
    }
    // Still alive after the grace period: SIGKILL cannot be ignored.
    let _ = child.kill();
    child.wait().map(Some).map_err(|e| io("reaping", e))
}
