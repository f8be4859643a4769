//! SIGINT / SIGTERM as a stop flag for the binaries' run loops.

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
