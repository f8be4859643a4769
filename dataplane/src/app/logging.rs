//! Structured logs of the long-running processes (`mongate-dataplane run`,
//! `mongate-control run`): `tracing` events on stderr, one line each, with
//! wall-clock timestamps (RFC 3339, UTC), as text or as JSON lines
//! (`--log-format json`). Journald, a file or a log shipper takes them as
//! they are. stdout keeps what scripts read: the dataplane's `ready:` line
//! and final counters, the control's plan and event records.

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-12-05T04:20:00.123456Z  INFO plan in force epoch=3`.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `message` and the
    /// event's fields.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("{s:?}: expected text or json")),
        }
    }
}

/// Installs the process's log subscriber (INFO and above, stderr). A second
/// call does nothing.
pub fn init(format: LogFormat) {
    let b = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().flatten_event(true).try_init(),
    };
}
