//! The command line as an operator meets it: `--version`, and reports that
//! end quietly when their reader goes away (`mongate-control pfo --json |
//! head -1`). No network, no root.

#![cfg(feature = "solver")]

use std::process::Command;

use mongate_testbed::cli::{
    assert_generates, assert_quiet_on_closed_pipe, assert_version, run_with_closed_stdout,
};

const BIN: &str = env!("CARGO_BIN_EXE_mongate-control");

fn instance() -> String {
    format!(
        "{}/../docs/examples/triangle/instance.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn version() {
    assert_version(BIN, "mongate-control", env!("CARGO_PKG_VERSION"));
}

/// Completions and man pages from `--generate` (docs/deploy.md); without
/// arguments, the usage error as before.
#[test]
fn generate_completions_and_man_pages() {
    assert_generates(BIN, "mongate-control", &["pfo", "run"]);
}

#[test]
fn pfo_ends_quietly_on_a_closed_pipe() {
    for json in [true, false] {
        let mut cmd = Command::new(BIN);
        cmd.args(["pfo", "--instance", &instance()]);
        if json {
            cmd.arg("--json");
        }
        let out = run_with_closed_stdout(cmd);
        assert_quiet_on_closed_pipe(&format!("pfo (json: {json})"), &out);
    }
}
