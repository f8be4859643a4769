//! The plan: what the control process (PFO + mapping) decides and the
//! dataplane applies: admitted sessions per class, target rate and MONtra
//! weight per flow, tagged with an epoch. Usable on its own (the control
//! process sends plans to running dataplanes) and checked against a
//! [`Config`] with [`Plan::validate`].

use core::ops::Range;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::error::{ConfigError, Source};
use super::model::Config;
use super::raw::RawPlan;

/// A plan for one overlay. Classes and flows not listed get zero sessions and
/// zero rate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Plan generation; a dataplane ignores plans older than the one it runs.
    pub epoch: u64,
    /// Per class: admitted sessions.
    #[serde(default)]
    pub classes: Vec<ClassPlan>,
    /// Per flow: target rate and MONtra weight.
    #[serde(default)]
    pub flows: Vec<FlowPlan>,
}

/// Admitted sessions of one class (`n_c`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassPlan {
    /// Class id.
    pub id: String,
    /// Sessions admitted.
    pub sessions: u32,
}

/// Target of one flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowPlan {
    /// Flow id.
    pub id: String,
    /// Target rate `x_f` of EACH admitted session on this flow, Mbit/s (>= 0).
    pub rate_mbps: f64,
    /// MONtra weight `w_f` (>= 0).
    pub weight: f64,
}

/// Which plan field an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanField {
    /// `epoch`.
    Epoch,
    /// `classes[i].<field>`.
    Class(usize, &'static str),
    /// `flows[i].<field>`.
    Flow(usize, &'static str),
}

/// A plan that does not fit its configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", self.field(""))]
pub struct PlanError {
    /// The offending field.
    pub at: PlanField,
    /// What is wrong.
    pub message: String,
}

impl PlanError {
    fn new(at: PlanField, message: impl Into<String>) -> Self {
        Self {
            at,
            message: message.into(),
        }
    }
    /// Dotted path of the field, under `prefix` (e.g. `"plan."`).
    pub fn field(&self, prefix: &str) -> String {
        match self.at {
            PlanField::Epoch => format!("{prefix}epoch"),
            PlanField::Class(i, f) => format!("{prefix}classes[{i}].{f}"),
            PlanField::Flow(i, f) => format!("{prefix}flows[{i}].{f}"),
        }
    }
}

impl Plan {
    /// Sessions admitted for class `id` (0 when not listed).
    pub fn sessions(&self, id: &str) -> u32 {
        self.classes
            .iter()
            .find(|c| c.id == id)
            .map_or(0, |c| c.sessions)
    }
    /// The entry of flow `id`, if listed.
    pub fn flow(&self, id: &str) -> Option<&FlowPlan> {
        self.flows.iter().find(|f| f.id == id)
    }

    /// Checks the plan against a configuration: known and unique class and
    /// flow ids, finite non-negative rates and weights, and every class with
    /// admitted sessions has at least one flow with a positive rate.
    pub fn validate(&self, cfg: &Config) -> Result<(), PlanError> {
        let mut seen = HashSet::new();
        for (i, c) in self.classes.iter().enumerate() {
            if cfg.class_index(&c.id).is_none() {
                return Err(PlanError::new(
                    PlanField::Class(i, "id"),
                    format!("unknown class `{}`", c.id),
                ));
            }
            if !seen.insert(c.id.as_str()) {
                return Err(PlanError::new(
                    PlanField::Class(i, "id"),
                    format!("duplicate class `{}`", c.id),
                ));
            }
        }
        let mut seen = HashSet::new();
        for (i, f) in self.flows.iter().enumerate() {
            if cfg.flow_index(&f.id).is_none() {
                return Err(PlanError::new(
                    PlanField::Flow(i, "id"),
                    format!("unknown flow `{}`", f.id),
                ));
            }
            if !seen.insert(f.id.as_str()) {
                return Err(PlanError::new(
                    PlanField::Flow(i, "id"),
                    format!("duplicate flow `{}`", f.id),
                ));
            }
            if !(f.rate_mbps.is_finite() && f.rate_mbps >= 0.0) {
                return Err(PlanError::new(
                    PlanField::Flow(i, "rate_mbps"),
                    "must be finite and >= 0",
                ));
            }
            if !(f.weight.is_finite() && f.weight >= 0.0) {
                return Err(PlanError::new(
                    PlanField::Flow(i, "weight"),
                    "must be finite and >= 0",
                ));
            }
        }
        for (i, c) in self.classes.iter().enumerate() {
            let carried = cfg
                .flows
                .iter()
                .filter(|f| f.class == c.id)
                .any(|f| self.flow(&f.id).is_some_and(|p| p.rate_mbps > 0.0));
            if c.sessions > 0 && !carried {
                return Err(PlanError::new(
                    PlanField::Class(i, "sessions"),
                    format!(
                        "class `{}` admits sessions but none of its flows has a positive rate",
                        c.id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Parses a stand-alone plan file (the `[plan]` table's keys at top
    /// level). Checks types and ranges only; call [`Plan::validate`] against
    /// the running configuration before applying it.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Plan, ConfigError> {
        let src = Source { file, text };
        let raw: RawPlan = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        from_raw(&src, &raw, "")
    }
}

/// Converts a spanned plan, checking integer ranges.
pub(crate) fn from_raw(src: &Source<'_>, raw: &RawPlan, prefix: &str) -> Result<Plan, ConfigError> {
    let epoch = u64::try_from(*raw.epoch.get_ref())
        .map_err(|_| src.error(&raw.epoch.span(), format!("{prefix}epoch"), "must be >= 0"))?;
    let mut classes = Vec::with_capacity(raw.classes.len());
    for (i, c) in raw.classes.iter().enumerate() {
        let c = c.get_ref();
        let sessions = u32::try_from(*c.sessions.get_ref()).map_err(|_| {
            src.error(
                &c.sessions.span(),
                format!("{prefix}classes[{i}].sessions"),
                "must be in 0..=4294967295",
            )
        })?;
        classes.push(ClassPlan {
            id: c.id.get_ref().clone(),
            sessions,
        });
    }
    let flows = raw
        .flows
        .iter()
        .map(|f| {
            let f = f.get_ref();
            FlowPlan {
                id: f.id.get_ref().clone(),
                rate_mbps: *f.rate_mbps.get_ref(),
                weight: *f.weight.get_ref(),
            }
        })
        .collect();
    Ok(Plan {
        epoch,
        classes,
        flows,
    })
}

/// The span of the field a [`PlanError`] is about.
pub(crate) fn error_span(raw: &RawPlan, e: &PlanError) -> Range<usize> {
    match e.at {
        PlanField::Epoch => raw.epoch.span(),
        PlanField::Class(i, f) => raw.classes.get(i).map_or(0..0, |c| {
            let c = c.get_ref();
            if f == "sessions" {
                c.sessions.span()
            } else {
                c.id.span()
            }
        }),
        PlanField::Flow(i, f) => raw.flows.get(i).map_or(0..0, |p| {
            let p = p.get_ref();
            match f {
                "rate_mbps" => p.rate_mbps.span(),
                "weight" => p.weight.span(),
                _ => p.id.span(),
            }
        }),
    }
}
