//! Errors, each rendered as one line that says what to do.

use std::io;

/// Everything that can go wrong in discovery, planning or applying.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    /// The interface does not exist in this network namespace.
    #[error("{0}: no such interface (see `ip link`)")]
    NoSuchInterface(String),
    /// The name cannot be an interface name at all.
    #[error("{0:?}: not a valid interface name (1-15 chars, no '/', whitespace or NUL)")]
    BadInterfaceName(String),
    /// The operation needs privileges we lack.
    #[error("{what}: need {cap}: run as root")]
    NeedRoot {
        /// What we tried.
        what: String,
        /// The capability it takes (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`).
        cap: &'static str,
    },
    /// The driver does not implement an operation.
    #[error("{ifname}: driver does not support {what}")]
    NotSupported {
        /// Interface.
        ifname: String,
        /// The operation (e.g. `changing channel counts (ETHTOOL_SCHANNELS)`).
        what: String,
    },
    /// Any other I/O failure, with what we were doing.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing (`reading /sys/class/net/eth0/mtu`).
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// The plan cannot be made with these inputs (message says what to change).
    #[error("{0}")]
    Plan(String),
    /// A plan file could not be read or parsed.
    #[error("{path}: {msg}")]
    PlanFile {
        /// File path.
        path: String,
        /// What is wrong.
        msg: String,
    },
}

impl HwError {
    /// Wraps an I/O error, turning EPERM/EACCES into [`HwError::NeedRoot`]
    /// (needing CAP_NET_ADMIN) and ENODEV into [`HwError::NoSuchInterface`] for `ifname`.
    pub fn from_io(ifname: &str, what: impl Into<String>, e: io::Error) -> Self {
        Self::from_io_cap(ifname, what, "CAP_NET_ADMIN", e)
    }

    /// Like [`HwError::from_io`] with the capability the operation needs.
    pub fn from_io_cap(
        ifname: &str,
        what: impl Into<String>,
        cap: &'static str,
        e: io::Error,
    ) -> Self {
        match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Self::NeedRoot {
                what: what.into(),
                cap,
            },
            Some(libc::ENODEV) => Self::NoSuchInterface(ifname.to_owned()),
            Some(libc::EOPNOTSUPP) => Self::NotSupported {
                ifname: ifname.to_owned(),
                what: what.into(),
            },
            _ => Self::Io {
                what: what.into(),
                source: e,
            },
        }
    }
}
