//! What a reload may change in a running gateway, and what needs a restart
//! (`mongate reload`, SIGHUP; docs/deploy.md "Reload").
//!
//! A running gateway's shared files (counters, flows, the control channel)
//! and its ports are laid out from the site's interfaces, uplinks, peers,
//! classes and flows, and its sessions are keyed by them: those need a
//! restart. What a reload applies in place, whole, without dropping a packet:
//! the session idle timeout, the per-host session cap of a class that had
//! one at start, each class's overflow action, and the `[plan]` table of
//! a gateway that runs without a control process. `[montra]` is read into
//! every flow's controller and pacer at start: a change needs a restart.
//! `[metrics]` is read by
//! the exporter (`mongate metrics`) at its own start; a reload ignores it.
//!
//! [`reload_changes`] compares the running configuration with the new one
//! and returns either the changes to apply or every reason to refuse.

use super::{Config, Overflow};
use crate::plan::PlanTable;

/// What a reload applies to a running gateway.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveChanges {
    /// New session idle timeout, ns.
    pub idle_timeout_ns: Option<u64>,
    /// New per-host caps per class index (`u32::MAX`: no cap), when any changed.
    pub host_caps: Option<Vec<u32>>,
    /// New overflow action per class index, when any changed.
    pub overflow: Option<Vec<Overflow>>,
    /// A new plan from the file's `[plan]` table.
    pub plan: Option<PlanTable>,
}

impl LiveChanges {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// One line naming what changes (`nothing changed` when empty).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(ns) = self.idle_timeout_ns {
            parts.push(format!("session idle timeout {} s", ns / crate::sys::SEC));
        }
        if self.host_caps.is_some() {
            parts.push("per-host session caps".to_owned());
        }
        if self.overflow.is_some() {
            parts.push("overflow actions".to_owned());
        }
        if let Some(p) = &self.plan {
            parts.push(format!("plan epoch {}", p.epoch));
        }
        if parts.is_empty() {
            "nothing changed".to_owned()
        } else {
            format!("applied: {}", parts.join(", "))
        }
    }
}

/// Compares the running configuration `old` with `new` (both validated).
/// `plan_from_file`: the gateway runs the file's `[plan]` (no control
/// process); otherwise a changed `[plan]` is refused (plans come from the
/// control). `running_epoch`: the epoch of the plan in force.
///
/// # Errors
/// Every field that differs and needs a restart, and a file plan that is
/// not newer than the one in force, one reason per line.
pub fn reload_changes(
    old: &Config,
    new: &Config,
    plan_from_file: bool,
    running_epoch: u64,
) -> Result<LiveChanges, Vec<String>> {
    let mut why = Vec::new();
    let restart = "changed: needs a restart (systemctl restart mongate-dataplane@SITE)";
    let mut section = |name: &str, differs: bool| {
        if differs {
            why.push(format!("{name} {restart}"));
        }
    };
    section("[site] name", old.site.name != new.site.name);
    section("[site] vni", old.site.vni != new.site.vni);
    section(
        "[site] lan_interface",
        old.site.lan_interface != new.site.lan_interface,
    );
    section(
        "[site] lan_prefixes",
        old.site.lan_prefixes != new.site.lan_prefixes,
    );
    section("[security]", old.security != new.security);
    section("[[uplinks]]", old.uplinks != new.uplinks);
    section("[[peers]]", old.peers != new.peers);
    section("[[flows]]", old.flows != new.flows);
    section("[montra]", old.montra != new.montra);
    let same_classes = old.classes.len() == new.classes.len()
        && old.classes.iter().zip(&new.classes).all(|(a, b)| {
            a.id == b.id
                && a.source == b.source
                && a.destination == b.destination
                && a.kind == b.kind
                && a.rules == b.rules
        });
    section("[[classes]] (ids, sites, types or rules)", !same_classes);
    let mut live = LiveChanges::default();
    if old.site.session_idle_timeout_seconds != new.site.session_idle_timeout_seconds {
        live.idle_timeout_ns = Some(new.site.session_idle_timeout_ns());
    }
    if same_classes {
        let caps = |c: &Config| -> Vec<u32> {
            (0..c.classes.len())
                .map(|i| c.host_cap(i).unwrap_or(u32::MAX))
                .collect()
        };
        let (a, b) = (caps(old), caps(new));
        if a != b {
            // Admitted sessions are counted per host only in classes with a
            // cap (the table is sized at start, and only when a cap is set):
            // a class can change its cap, not gain or lose one.
            let toggled: Vec<&str> = a
                .iter()
                .zip(&b)
                .zip(&new.classes)
                .filter(|((x, y), _)| (**x == u32::MAX) != (**y == u32::MAX))
                .map(|(_, k)| k.id.as_str())
                .collect();
            if toggled.is_empty() {
                live.host_caps = Some(b);
            } else {
                why.push(format!(
                    "max_sessions_per_host set or removed for class {} {restart}",
                    toggled.join(", ")
                ));
            }
        }
        let ov = |c: &Config| -> Vec<Overflow> { c.classes.iter().map(|k| k.overflow).collect() };
        if ov(old) != ov(new) {
            live.overflow = Some(ov(new));
        }
    }
    if old.plan != new.plan {
        match (&new.plan, plan_from_file) {
            (_, false) => why.push(
                "[plan] changed, but this gateway takes its plans from its control process \
                 (the file's plan is used only with --no-control)"
                    .to_owned(),
            ),
            (None, true) => why.push(
                "[plan] removed: a gateway without a control process keeps a plan".to_owned(),
            ),
            (Some(p), true) if p.epoch <= running_epoch => why.push(format!(
                "[plan] epoch {} is not newer than the plan in force (epoch {running_epoch})",
                p.epoch
            )),
            (Some(p), true) => live.plan = Some(p.clone()),
        }
    }
    if why.is_empty() { Ok(live) } else { Err(why) }
}
