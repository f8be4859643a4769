//! The command line as an operator meets it: `--version`, and reports that
//! end quietly when their reader goes away (`mongate-dataplane stats |
//! head -1`). No network, no root: the stats file is made here, in a run
//! directory of the test's own.

use std::process::Command;

use mongate_testbed::cli::{
    assert_generates, assert_quiet_on_closed_pipe, assert_version, run_with_closed_stdout,
};

use mongate_dataplane::stats::StatsRegion;

const BIN: &str = env!("CARGO_BIN_EXE_mongate-dataplane");

#[test]
fn version() {
    assert_version(BIN, "mongate-dataplane", env!("CARGO_PKG_VERSION"));
}

/// Completions and man pages from `--generate` (docs/deploy.md); without
/// arguments, the usage error as before.
#[test]
fn generate_completions_and_man_pages() {
    assert_generates(
        BIN,
        "mongate-dataplane",
        &["forward", "relay", "run", "stats"],
    );
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
