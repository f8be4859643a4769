//! `mongate reload --name NAME`: asks a running gateway's processes (its
//! dataplane and, when one runs, its control) to re-read their files
//! (SIGHUP), waits for each one's outcome and reports it: applied whole, or
//! refused whole with every reason (the running gateway untouched). Exit
//! status 1 when a process refused or did not answer.
//!
//! Each process announces itself in `<run dir>/NAME.{dataplane,control}.reload`
//! (generation 0 at start) and rewrites the file after every reload.

use std::time::{Duration, Instant};

use mongate_dataplane::app::reload::{ReloadOutcome, outcome_path};

/// One process's answer.
#[derive(Debug, serde::Serialize)]
struct Answer {
    process: &'static str,
    pid: u32,
    applied: bool,
    message: String,
}

/// The process's command name (`/proc/PID/comm`, at most 15 bytes).
fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// True when `pid` runs a binary whose name starts like `binary` (comm is
/// cut to 15 bytes): an announcement left by a crashed process, whose pid
/// another program now has, is not signalled.
fn runs(pid: u32, binary: &str) -> bool {
    comm(pid).is_some_and(|c| !c.is_empty() && binary.starts_with(&c))
}

/// Runs `mongate reload`; `Ok(false)` when a process refused or did not answer.
pub fn run(name: &str, timeout: Duration, json: bool) -> anyhow::Result<bool> {
    let mut targets = Vec::new();
    for (process, binary) in [
        ("dataplane", "mongate-dataplane"),
        ("control", "mongate-control"),
    ] {
        let at = outcome_path(name, process);
        match ReloadOutcome::read(&at) {
            Some(o) if runs(o.pid, binary) => targets.push((process, o, at)),
            _ if process == "dataplane" => anyhow::bail!(
                "no gateway {name:?} running here ({} absent or stale; see `mongate status`)",
                at.display()
            ),
            _ => {}
        }
    }
    for (process, o, _) in &targets {
        mongate_dataplane::app::signals::send_hangup(o.pid)
            .map_err(|e| anyhow::anyhow!("cannot signal the {process} (pid {}): {e}", o.pid))?;
    }
    let t0 = Instant::now();
    let mut answers = Vec::new();
    for (process, before, at) in &targets {
        let answer = loop {
            match ReloadOutcome::read(at) {
                Some(o) if o.pid == before.pid && o.generation > before.generation => {
                    break Answer {
                        process,
                        pid: o.pid,
                        applied: o.applied,
                        message: o.message,
                    };
                }
                _ if t0.elapsed() >= timeout => {
                    break Answer {
                        process,
                        pid: before.pid,
                        applied: false,
                        message: format!("no answer within {} ms", timeout.as_millis()),
                    };
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        answers.push(answer);
    }
    if !targets.iter().any(|(p, _, _)| *p == "control") && !json {
        println!("control: none running for {name:?} (the dataplane runs its file's plan)");
    }
    let ok = answers.iter().all(|a| a.applied);
    if json {
        println!(
            "{}",
            serde_json::json!({ "name": name, "applied": ok, "processes": answers })
        );
    } else {
        for a in &answers {
            let verdict = if a.applied { "ok" } else { "REFUSED" };
            let mut lines = a.message.lines();
            println!(
                "{} (pid {}): {verdict}: {}",
                a.process,
                a.pid,
                lines.next().unwrap_or("")
            );
            for l in lines {
                println!("    {l}");
            }
        }
        if !ok {
            println!("the running gateway keeps the configuration it had");
        }
    }
    Ok(ok)
}
