//! The control loop's log lines: one per plan sent, one per event; text or JSON lines
//! (`--json-log`, one object per line with a `type` of `plan` or `event`).

use std::fmt::Write as _;
use std::sync::Arc;

use mongate_dataplane::plan::{PlanClass, PlanDetour, PlanFlow};
use serde::Serialize;

use super::planner::Trigger;

/// A plan activated in the dataplane.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanLog {
    /// Monotonic clock, ms.
    pub ts_ms: u64,
    /// Epoch it was sent with.
    pub epoch: u64,
    /// PFO status (`optimal` / `time_limit`).
    pub status: String,
    /// Mission utility.
    pub objective: f64,
    /// Proven bound.
    pub bound: f64,
    /// Relative gap.
    pub gap: f64,
    /// Solve wall time, ms.
    pub solve_ms: f64,
    /// Why it was solved (trigger kinds).
    pub triggers: Vec<String>,
    /// Per class, in instance order.
    pub classes: Vec<PlanClass>,
    /// Per flow (per-session rate in Mbit/s, MONtra weight), in instance order.
    pub flows: Vec<PlanFlow>,
    /// What the plan leaves on each of this site's one-waypoint detours (Mbit/s; those
    /// whose links the instance has): a failover's room there until the next plan.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub detours: Vec<PlanDetour>,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventLog {
    /// Monotonic clock, ms.
    pub ts_ms: u64,
    /// Kind: a trigger kind (`initial`, `periodic`, `link_failed`, `capacity`, `demand`) or
    /// `waiting`, `attached`, `detached`, `resync`, `unchanged`, `send_error`,
    /// `staging_timeout`, `decode_errors`, `bad_records`, `unknown_link`, `solver`, `stopped`.
    pub event: String,
    /// Human-readable text.
    pub message: String,
    /// Epoch concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
    /// The trigger, for trigger events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogRecord {
    /// A plan was activated.
    Plan(PlanLog),
    /// An event.
    Event(EventLog),
}

impl LogRecord {
    /// An event record.
    pub fn event(ts_ms: u64, event: &str, message: impl Into<String>) -> Self {
        LogRecord::Event(EventLog {
            ts_ms,
            event: event.to_owned(),
            message: message.into(),
            epoch: None,
            trigger: None,
        })
    }

    /// The JSON line (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"type\":\"error\",\"message\":\"{e}\"}}"))
    }

    /// The text line (no newline).
    pub fn to_text(&self) -> String {
        match self {
            LogRecord::Plan(p) => {
                let mut s = format!(
                    "plan epoch={} status={} objective={:.6} bound={:.6} gap={:.2e} solve_ms={:.1} triggers={}",
                    p.epoch,
                    p.status,
                    p.objective,
                    p.bound,
                    p.gap,
                    p.solve_ms,
                    p.triggers.join(",")
                );
                for c in &p.classes {
                    let _ = write!(s, " class[{}]={}", c.id, c.sessions);
                }
                for f in &p.flows {
                    let _ = write!(
                        s,
                        " flow[{}]={:.3}Mbps/w={:.4}",
                        f.id, f.rate_mbps, f.weight
                    );
                }
                s
            }
            LogRecord::Event(e) => match e.epoch {
                Some(ep) => format!("event {} epoch={}: {}", e.event, ep, e.message),
                None => format!("event {}: {}", e.event, e.message),
            },
        }
    }
}

/// Where log records go.
pub type LogSink = Arc<dyn Fn(&LogRecord) + Send + Sync>;

/// The JSON line of `r` with the wall clock beside its monotonic `ts_ms`:
/// `unix_ms` (ms since the Unix epoch), for logs read on another machine.
pub fn json_with_wall_clock(r: &LogRecord, unix_ms: u64) -> String {
    match serde_json::to_value(r) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.insert("unix_ms".to_owned(), unix_ms.into());
            serde_json::Value::Object(m).to_string()
        }
        _ => r.to_json(),
    }
}

/// Prints every record on stdout, as JSON lines (with `unix_ms`) or text.
pub fn stdout_sink(json: bool) -> LogSink {
    Arc::new(move |r: &LogRecord| {
        // A log line that cannot be written (the reader went away) is
        // dropped: the control keeps running.
        let line = if json {
            let unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            json_with_wall_clock(r, unix_ms)
        } else {
            r.to_text()
        };
        mongate_dataplane::app::signals::print_line(&line);
    })
}
