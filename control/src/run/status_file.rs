//! The control's last plan as a file for `mongate status` and the metrics
//! exporter: `<run dir>/<name>.plan` (JSON, mode 0640), rewritten whole
//! (temporary file, then rename) each time a plan is activated. It carries
//! what only the control knows: PFO's status, objective (the mission
//! utility of the plan), bound, gap and solve time, and per class the
//! admitted sessions, the planned rate and the utility the instance's
//! function gives them.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::log::PlanLog;
use crate::pfo::Instance;

/// Largest plan file a reader accepts, bytes.
pub const MAX_PLAN_FILE: u64 = 1 << 20;

/// One class of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassPlan {
    /// Class id.
    pub id: String,
    /// Admitted sessions.
    pub sessions: u32,
    /// Aggregate planned rate of its flows, Mbit/s.
    pub rate_mbps: f64,
    /// Its utility at that plan: `sessions * U(rate / sessions)`.
    pub utility: f64,
    /// Its utility function `U` (per session, of the per-session rate), so
    /// that readers can evaluate the utility at the rate achieved
    /// (`mongate status`); absent in files of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utility_fn: Option<crate::pfo::UtilitySpec>,
}

/// The plan file's contents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanStatus {
    /// The writer's pid.
    pub pid: u32,
    /// When activated (CLOCK_MONOTONIC, ms).
    pub ts_ms: u64,
    /// Epoch.
    pub epoch: u64,
    /// PFO status (`optimal` / `time_limit`).
    pub status: String,
    /// Mission utility of the plan (PFO's objective).
    pub objective: f64,
    /// Proven bound.
    pub bound: f64,
    /// Relative gap.
    pub gap: f64,
    /// Solve wall time, ms.
    pub solve_ms: f64,
    /// Why it was solved.
    pub triggers: Vec<String>,
    /// Per class of the instance.
    pub classes: Vec<ClassPlan>,
    /// What the plan leaves on each of the site's one-waypoint detours, Mbit/s.
    #[serde(default)]
    pub detours: Vec<mongate_dataplane::plan::PlanDetour>,
}

/// The plan file of instance `name` (`sys::shm::shm_path(name, "plan")`).
pub fn plan_status_path(name: &str) -> PathBuf {
    mongate_dataplane::sys::shm::shm_path(name, "plan")
}

/// The file's contents for the activated plan `p` of `inst`. Pure.
pub fn plan_status(p: &PlanLog, inst: &Instance, pid: u32) -> PlanStatus {
    let classes = inst
        .classes
        .iter()
        .map(|c| {
            let sessions = p
                .classes
                .iter()
                .find(|x| x.id == c.id)
                .map_or(0, |x| x.sessions);
            // Flow rates in the log are per session.
            let per_session: f64 = c
                .flows
                .iter()
                .filter_map(|&f| inst.flows.get(f))
                .filter_map(|f| p.flows.iter().find(|x| x.id == f.id))
                .map(|x| x.rate_mbps)
                .sum();
            let n = f64::from(sessions);
            ClassPlan {
                id: c.id.clone(),
                sessions,
                rate_mbps: per_session * n,
                utility: if sessions == 0 {
                    0.0
                } else {
                    n * c.utility.eval(per_session)
                },
                utility_fn: Some(c.utility.clone()),
            }
        })
        .collect();
    PlanStatus {
        pid,
        ts_ms: p.ts_ms,
        epoch: p.epoch,
        status: p.status.clone(),
        objective: p.objective,
        bound: p.bound,
        gap: p.gap,
        solve_ms: p.solve_ms,
        triggers: p.triggers.clone(),
        classes,
        detours: p.detours.clone(),
    }
}

/// Writes `s` to `path` whole: a temporary file beside it (`O_NOFOLLOW`,
/// mode 0640), then renamed over it.
pub fn write_plan_status(path: &Path, s: &PlanStatus) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    f.write_all(
        serde_json::to_string(s)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )?;
    f.write_all(b"\n")?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Reads a plan file (`O_NOFOLLOW`, at most [`MAX_PLAN_FILE`] bytes).
pub fn read_plan_status(path: &Path) -> std::io::Result<PlanStatus> {
    use std::io::Read as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut text = String::new();
    f.take(MAX_PLAN_FILE).read_to_string(&mut text)?;
    serde_json::from_str(&text).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongate_dataplane::plan::{PlanClass, PlanFlow};

    #[test]
    fn class_utilities_of_a_plan_and_the_file_round_trip() {
        let inst = Instance::from_json(include_str!(
            "../../../docs/examples/triangle/instance.json"
        ))
        .expect("example instance");
        let c0 = &inst.classes[0];
        let f0 = &inst.flows[c0.flows[0]];
        let log = PlanLog {
            ts_ms: 5,
            epoch: 3,
            status: "optimal".into(),
            objective: 1.5,
            bound: 1.5,
            gap: 0.0,
            solve_ms: 12.0,
            triggers: vec!["initial".into()],
            classes: vec![PlanClass {
                id: c0.id.clone(),
                sessions: 2,
            }],
            flows: vec![PlanFlow {
                id: f0.id.clone(),
                rate_mbps: 3.0,
                weight: 1.0,
                floored: false,
            }],
            detours: vec![mongate_dataplane::plan::PlanDetour {
                peer: "C".into(),
                via: "B".into(),
                mbps: 0.5,
            }],
        };
        let s = plan_status(&log, &inst, 42);
        assert_eq!(s.detours, log.detours);
        let c = &s.classes[0];
        assert_eq!((c.sessions, c.rate_mbps), (2, 6.0));
        assert_eq!(c.utility, 2.0 * c0.utility.eval(3.0));
        // A class with no session has no utility.
        assert!(
            s.classes[1..]
                .iter()
                .all(|c| c.sessions == 0 && c.utility == 0.0)
        );
        let dir = std::env::temp_dir().join(format!("mg-plan-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.plan");
        write_plan_status(&path, &s).unwrap();
        write_plan_status(&path, &s).unwrap();
        assert_eq!(read_plan_status(&path).unwrap(), s);
        // A symlink is not followed.
        let link = dir.join("l.plan");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(read_plan_status(&link).is_err());
        std::fs::write(&path, b"{not json").unwrap();
        assert!(read_plan_status(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
