//! The command line as an operator meets it: `--version`, and reports that
//! end quietly when their reader goes away (`mongate-dataplane stats |
//! head -1`). No network, no root: the stats file is made here, in a run
//! directory of the test's own.

use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, Output, Stdio};

use mongate_dataplane::stats::StatsRegion;

const BIN: &str = env!("CARGO_BIN_EXE_mongate-dataplane");

#[test]
fn version() {
    assert_version(BIN, "mongate-dataplane");
}

#[test]
fn stats_ends_quietly_on_a_closed_pipe() {
    let dir = std::env::temp_dir().join(format!("mongate-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let region = StatsRegion::create(&dir.join("clitest.stats"), 4).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env("MONGATE_RUN_DIR", &dir)
        .args(["stats", "--name", "clitest"]);
    let out = run_with_closed_stdout(cmd);
    assert_quiet_on_closed_pipe("stats", &out);
    // The same command with an open stdout prints the four workers.
    let shown = Command::new(BIN)
        .env("MONGATE_RUN_DIR", &dir)
        .args(["stats", "--name", "clitest"])
        .output()
        .unwrap();
    assert!(shown.status.success(), "{shown:?}");
    drop(region);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `cmd` with its stdout a pipe whose read end is already closed, so
/// its first write to stdout fails (EPIPE or SIGPIPE), as under `| head -0`.
fn run_with_closed_stdout(mut cmd: Command) -> Output {
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
fn assert_quiet_on_closed_pipe(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{what}: {:?}, stderr: {stderr}",
        out.status
    );
}

/// `BIN --version` prints `NAME VERSION` (the crate's version).
fn assert_version(bin: &str, name: &str) {
    let out = Command::new(bin).arg("--version").output().expect("spawn");
    assert!(out.status.success(), "{name} --version: {:?}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{name} {}", env!("CARGO_PKG_VERSION"))
    );
}
