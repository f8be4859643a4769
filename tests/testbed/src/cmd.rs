//! Running iproute2 / ethtool commands and turning their exit codes and
//! stderr into [`Error`]s.

use std::process::{Command, Output};

use crate::error::{Error, Result};

/// Joins argv for error messages.
pub(crate) fn show(argv: &[&str]) -> String {
    argv.join(" ")
}

/// Runs `argv` to completion, returning its output; a non-zero exit is an
/// [`Error::Command`] carrying stderr.
pub(crate) fn run(argv: &[&str]) -> Result<Output> {
    let out = run_unchecked(argv)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            cmd: show(argv),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Runs `argv` to completion whatever its exit status; only failing to
/// start it is an error.
pub(crate) fn run_unchecked(argv: &[&str]) -> Result<Output> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| Error::Invalid("empty command".into()))?;
    Command::new(prog)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            cmd: show(argv),
            source,
        })
}

/// True when `prog` can be found on `PATH` (or is an existing path).
pub fn have_program(prog: &str) -> bool {
    if prog.contains('/') {
        return std::path::Path::new(prog).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(prog).is_file()))
}
