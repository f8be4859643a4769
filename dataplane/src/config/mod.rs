//! The site configuration: one TOML file per site (its LAN, uplinks, peer
//! sites, traffic classes, flows and optionally the current plan), loaded
//! into a validated [`Config`]. Every error names the file, line and field
//! (`site-a.toml:42:13: flows[2].route[0]: route must start at ...`).
//!
//! - [`Prefix`]: strict IP prefixes.
//! - [`Config`] and its parts: the validated model (serializes back to TOML).
//! - [`Security`]: the `[security]` table (keys, or explicitly `mode = "off"`);
//!   peers' public keys in base64 ([`decode_key`]).
//! - The `[plan]` table: read as a [`crate::plan::PlanFile`] and resolved
//!   into the [`crate::plan::PlanTable`] of [`Config::plan`] at load.
//!
//! The format is documented, with a complete example, in `docs/config.md`.

mod error;
mod key;
mod model;
mod plan;
mod prefix;
mod raw;
mod reload;
mod validate;

#[cfg(test)]
mod tests;

pub use error::ConfigError;
pub use key::{KEY_BASE64_LEN, decode_key, encode_key};
pub use model::{
    Backend, Config, DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS, Flow, MAX_SESSION_IDLE_TIMEOUT_SECONDS,
    MONTRA_BEST_EFFORT_MBPS, MONTRA_CAP_FACTOR, MONTRA_NEAR_TARGET_GAIN, MONTRA_RAMP, Metrics,
    Montra, Overflow, Peer, PortRange, Rule, Security, SecurityMode, Site, TrafficClass, Uplink,
};
pub use prefix::{Prefix, PrefixError};
pub use reload::{LiveChanges, reload_changes};

use error::Source;

/// Where a configuration's entries are (see [`Config::entry_lines`]): the
/// (line, column) of fields by their dotted path (`site.vni`,
/// `site.lan_prefixes[0]`, `uplinks[i].local_address`, `peers[i].name`,
/// `peers[i].prefixes[j]`, `peers[i].gateways[j]`, `classes[i].id`,
/// `.source`, `.destination`, `flows[i].id`, `.class`, `.route`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryLines {
    at: std::collections::HashMap<String, (usize, usize)>,
}

impl EntryLines {
    /// The 1-based (line, column) of `field`, or (0, 0) if not known.
    pub fn of(&self, field: &str) -> (usize, usize) {
        self.at.get(field).copied().unwrap_or((0, 0))
    }

    /// A problem about `field` of `file`, at its position.
    pub fn error(&self, file: &str, field: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = self.of(field);
        ConfigError {
            file: file.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Largest configuration file accepted (bytes): a guard against feeding the
/// parser something that is not a configuration.
pub const MAX_FILE_LEN: usize = 16 << 20;

impl Config {
    /// Parses and validates a configuration. `file` is used in error messages
    /// only. The error is the first problem of [`Config::check_toml_str`].
    pub fn from_toml_str(text: &str, file: &str) -> Result<Config, ConfigError> {
        Self::check_toml_str(text, file).map_err(|mut v| v.swap_remove(0))
    }

    /// Parses and validates a configuration, reporting every problem (in
    /// file order; never an empty list). A file that is not TOML of the
    /// expected shape (a syntax error, a value of the wrong type, an unknown
    /// or missing key) is reported at its first such error only: the rest
    /// of the file cannot be read reliably.
    pub fn check_toml_str(text: &str, file: &str) -> Result<Config, Vec<ConfigError>> {
        let src = Source { file, text };
        if text.len() > MAX_FILE_LEN {
            return Err(vec![src.error(
                &(0..0),
                "(file)",
                format!("larger than {MAX_FILE_LEN} bytes"),
            )]);
        }
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| vec![src.toml_error(&e)])?;
        validate::build(&src, &raw)
    }

    /// Where the entries other files refer to are in a configuration's
    /// text (see [`EntryLines`]), for `mongate check`'s messages about
    /// several files. `None` if the text is not TOML of the expected shape.
    pub fn entry_lines(text: &str) -> Option<EntryLines> {
        let src = Source { file: "", text };
        let raw: raw::RawConfig = toml::from_str(text).ok()?;
        let mut at = std::collections::HashMap::new();
        let mut put = |k: String, s: core::ops::Range<usize>| {
            at.insert(k, src.line_col(s.start));
        };
        let site = raw.site.get_ref();
        put("site".into(), raw.site.span());
        put("site.name".into(), site.name.span());
        put("site.vni".into(), site.vni.span());
        for (i, p) in site.lan_prefixes.iter().enumerate() {
            put(format!("site.lan_prefixes[{i}]"), p.span());
        }
        for (i, u) in raw.uplinks.iter().enumerate() {
            put(
                format!("uplinks[{i}].local_address"),
                u.get_ref().local_address.span(),
            );
        }
        for (i, p) in raw.peers.iter().enumerate() {
            let p = p.get_ref();
            put(format!("peers[{i}].name"), p.name.span());
            for (j, x) in p.prefixes.iter().enumerate() {
                put(format!("peers[{i}].prefixes[{j}]"), x.span());
            }
            for (j, g) in p
                .gateways
                .iter()
                .flat_map(|g| g.get_ref().iter())
                .enumerate()
            {
                put(format!("peers[{i}].gateways[{j}]"), g.span());
            }
        }
        for (i, c) in raw.classes.iter().enumerate() {
            let c = c.get_ref();
            put(format!("classes[{i}].id"), c.id.span());
            put(format!("classes[{i}].source"), c.source.span());
            put(format!("classes[{i}].destination"), c.destination.span());
        }
        for (i, f) in raw.flows.iter().enumerate() {
            let f = f.get_ref();
            put(format!("flows[{i}].id"), f.id.span());
            put(format!("flows[{i}].class"), f.class.span());
            put(format!("flows[{i}].route"), f.route.span());
        }
        Some(EntryLines { at })
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        Self::check_file(path).map_err(|mut v| v.swap_remove(0))
    }

    /// Reads, parses and validates a configuration file, reporting every
    /// problem ([`Config::check_toml_str`]).
    pub fn check_file(path: &std::path::Path) -> Result<Config, Vec<ConfigError>> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                file: file.clone(),
                line: 0,
                column: 0,
                field: "(file)".to_owned(),
                message: e.to_string(),
            }]
        })?;
        Self::check_toml_str(&text, &file)
    }
}
