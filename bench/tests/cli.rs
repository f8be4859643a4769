//! The command line as an operator meets it: `--version`, and reports that
//! end quietly when their reader goes away (`mongate-bench pacing --json |
//! head -1`). No network, no root.

use std::process::Command;

use mongate_testbed::cli::{
    assert_generates, assert_quiet_on_closed_pipe, assert_version, run_with_closed_stdout,
};

const BIN: &str = env!("CARGO_BIN_EXE_mongate-bench");

#[test]
fn version() {
    assert_version(BIN, "mongate-bench", env!("CARGO_PKG_VERSION"));
}

/// Completions and man pages from `--generate` (docs/deploy.md); without
/// arguments, the usage error as before.
#[test]
fn generate_completions_and_man_pages() {
    assert_generates(
        BIN,
        "mongate-bench",
        &[
            "forward", "gateway", "pacing", "pipeline", "linkem", "attack",
        ],
    );
}

#[test]
fn a_report_ends_quietly_on_a_closed_pipe() {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "pacing",
        "--rates",
        "1000",
        "--seconds",
        "0.05",
        "--ks-samples",
        "20",
        "--json",
    ]);
    let out = run_with_closed_stdout(cmd);
    assert_quiet_on_closed_pipe("pacing --json", &out);
}
