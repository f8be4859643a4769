//! The TOML side of a plan by id ([`PlanFile`]): the `[plan]` table of a site
//! file and stand-alone plan files, with errors that name the line. The plan
//! types and their checks are in [`crate::plan`].

use core::ops::Range;

use super::error::{ConfigError, Source};
use super::raw::RawPlan;
use crate::plan::{PlanClass, PlanError, PlanField, PlanFile, PlanFlow};

impl PlanFile {
    /// Parses a stand-alone plan file (the `[plan]` table's keys at top
    /// level). Checks types and ranges only; [`PlanFile::resolve`] checks it
    /// against the running configuration.
    pub fn from_toml_str(text: &str, file: &str) -> Result<PlanFile, ConfigError> {
        let src = Source { file, text };
        let raw: RawPlan = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        from_raw(&src, &raw, "")
    }
}

/// Converts a spanned plan, checking integer ranges.
pub(crate) fn from_raw(
    src: &Source<'_>,
    raw: &RawPlan,
    prefix: &str,
) -> Result<PlanFile, ConfigError> {
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
        classes.push(PlanClass {
            id: c.id.get_ref().clone(),
            sessions,
        });
    }
    let flows = raw
        .flows
        .iter()
        .map(|f| {
            let f = f.get_ref();
            PlanFlow {
                id: f.id.get_ref().clone(),
                rate_mbps: *f.rate_mbps.get_ref(),
                weight: *f.weight.get_ref(),
                floored: f.floored.as_ref().is_some_and(|b| *b.get_ref()),
            }
        })
        .collect();
    Ok(PlanFile {
        epoch,
        classes,
        flows,
        detours: Vec::new(),
    })
}

/// The span of the field a [`PlanError`] is about.
pub(crate) fn error_span(raw: &RawPlan, e: &PlanError) -> Range<usize> {
    match e.at {
        // The TOML `[plan]` has no detours.
        PlanField::Epoch | PlanField::Shape | PlanField::Detour(..) => raw.epoch.span(),
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
