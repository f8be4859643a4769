//! The command line as an operator meets it, for every binary's
//! `tests/cli.rs`: `BIN --version`, and reports that end quietly when their
//! reader goes away (`... --json | head -1`). No network, no root.

use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Output, Stdio};

/// Runs `cmd` with its stdout a pipe whose read end is already closed, so
/// its first write to stdout fails (EPIPE or SIGPIPE), as under `| head -0`.
#[allow(unsafe_code)]
pub fn run_with_closed_stdout(mut cmd: Command) -> Output {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two new descriptors into the two-element array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created by pipe2 and nothing else
    // owns them.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read_end);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped());
    cmd.output().expect("spawn")
}

/// The command ended quietly on its closed stdout: no panic message, and
/// either success or the default action of SIGPIPE.
pub fn assert_quiet_on_closed_pipe(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{what}: {:?}, stderr: {stderr}",
        out.status
    );
}

/// `bin --version` prints `name version` (the calling crate's
/// `env!("CARGO_PKG_VERSION")`).
pub fn assert_version(bin: &str, name: &str, version: &str) {
    let out = Command::new(bin).arg("--version").output().expect("spawn");
    assert!(out.status.success(), "{name} --version: {:?}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{name} {version}")
    );
}
