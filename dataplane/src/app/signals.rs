//! Signals of the binaries: SIGINT / SIGTERM as a stop flag for their run
//! loops, and SIGPIPE for the commands that print a report and exit.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Installs SIGINT and SIGTERM handlers that set the returned flag (and
/// nothing else); the caller's loop polls it.
pub fn stop_on_signals() -> &'static AtomicBool {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing an async-signal-safe handler (one atomic store).
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
    &STOP
}

static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hangup(_: libc::c_int) {
    RELOAD.store(true, Ordering::Relaxed);
}

/// Installs a SIGHUP handler that sets the returned flag (and nothing
/// else): the long-running processes re-read their configuration when they
/// see it set (swapping it back to `false`). Without it SIGHUP would end
/// the process.
pub fn reload_on_sighup() -> &'static AtomicBool {
    let handler: extern "C" fn(libc::c_int) = on_hangup;
    // SAFETY: installing an async-signal-safe handler (one atomic store).
    unsafe { libc::signal(libc::SIGHUP, handler as libc::sighandler_t) };
    &RELOAD
}

/// Restores SIGPIPE's default action (end the process quietly), for the
/// commands that print a report and exit (`mongate-control pfo`, `mongate
/// status`, `mongate-dataplane stats`, the benchmarks' reports, ...): piped
/// into `head`, they end like `cat` does instead of panicking on the
/// closed pipe (Rust starts every program with SIGPIPE ignored, so a write
/// to a closed pipe fails with EPIPE and `println!` panics on it).
///
/// Not for long-running processes (`mongate-dataplane run`, `mongate-control
/// run`, `mongate demo` before its summary): they keep SIGPIPE ignored, so a
/// log reader that goes away (a restarted journald, a closed terminal) cannot
/// kill a gateway; they write their lines with [`print_line`], which drops a
/// line it cannot write.
pub fn default_sigpipe() {
    // SAFETY: signal(2) with SIG_DFL installs no handler and touches no
    // memory of ours; called at start-up, before any thread that writes.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Writes `line` and a newline to stdout; a line that cannot be written
/// (closed pipe, full disk) is dropped instead of panicking like
/// `println!`. For the long-running processes' log and status lines.
pub fn print_line(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Sends SIGHUP to process `pid` (`mongate reload`). Errors as kill(2) does
/// (no such process, not permitted).
///
/// # Errors
/// kill(2) failed.
pub fn send_hangup(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a
    // positive pid names one process (never a group or every process).
    if unsafe { libc::kill(pid, libc::SIGHUP) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// SIGINT and SIGTERM blocked in the calling thread and every thread it
/// starts afterwards, to be taken by one thread with [`StopSignals::wait`]
/// (sigwait(2)) instead of a handler: the thread that takes one may then do
/// anything (run commands, exit), which a handler may not. For programs
/// that own resources outside the process (the demo's network namespaces)
/// and must release them on Ctrl-C or `kill`.
///
/// Call it before starting any thread. The mask survives fork and exec:
/// a child must clear it or it ignores SIGTERM too. The demo's children are
/// started by the testbed's `Netns::spawn`, which clears it (session 29: the
/// demo's gateways and controls had SIGINT and SIGTERM blocked; a stop
/// waited for the SIGKILL after the grace period).
pub struct StopSignals {
    set: libc::sigset_t,
}

impl StopSignals {
    /// Blocks SIGINT and SIGTERM in this thread (and so in the threads it
    /// starts from now on).
    ///
    /// # Errors
    /// pthread_sigmask(3) failed.
    pub fn block() -> std::io::Result<Self> {
        // SAFETY: an all-zero sigset_t is a valid value to hand to
        // sigemptyset, which initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable sigset_t owned by this frame;
        // sigemptyset/sigaddset only write into it.
        unsafe {
            libc::sigemptyset(&raw mut set);
            libc::sigaddset(&raw mut set, libc::SIGINT);
            libc::sigaddset(&raw mut set, libc::SIGTERM);
        }
        // SAFETY: `set` is initialised above; the old mask is not asked for
        // (null). pthread_sigmask changes this thread's mask only.
        let rc =
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(Self { set })
        } else {
            Err(std::io::Error::from_raw_os_error(rc))
        }
    }

    /// Waits until SIGINT or SIGTERM arrives and returns its number. Meant
    /// for a thread of its own, started after [`StopSignals::block`].
    ///
    /// # Errors
    /// sigwait(3) failed (an invalid set: `block` rules that out).
    pub fn wait(&self) -> std::io::Result<libc::c_int> {
        let mut sig: libc::c_int = 0;
        // SAFETY: `self.set` was initialised by `block`; `sig` is a valid,
        // writable c_int. sigwait only reads the set and writes `sig`.
        let rc = unsafe { libc::sigwait(&raw const self.set, &raw mut sig) };
        if rc == 0 {
            Ok(sig)
        } else {
            Err(std::io::Error::from_raw_os_error(rc))
        }
    }
}
