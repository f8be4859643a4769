//! The testbed's error type: every failing command carries its argv,
//! exit status and stderr so a broken topology explains itself.

use std::process::ExitStatus;

/// Result alias used throughout the testbed.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong while building or driving a testbed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command could not be started at all (binary missing, EPERM, ...).
    #[error("cannot run `{cmd}`: {source}")]
    Spawn {
        /// The command line, space-joined.
        cmd: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A command ran but exited unsuccessfully.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        /// The command line, space-joined.
        cmd: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// Any other OS-level failure (setns, opening /run/netns/..., kill).
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A caller-supplied parameter is out of range or inconsistent
    /// (interface name too long, unknown site, too many links, ...).
    #[error("invalid testbed parameter: {0}")]
    Invalid(String),
    /// A closure run inside a namespace thread panicked.
    #[error("thread inside namespace {0} panicked")]
    ThreadPanicked(String),
}

impl Error {
    /// Builds an [`Error::Io`] from the last OS error.
    pub(crate) fn last_os(what: impl Into<String>) -> Self {
        Self::Io {
            what: what.into(),
            source: std::io::Error::last_os_error(),
        }
    }
}
