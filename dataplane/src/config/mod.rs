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
mod validate;

#[cfg(test)]
mod tests;

pub use error::ConfigError;
pub use key::{KEY_BASE64_LEN, decode_key, encode_key};
pub use model::{
    Backend, Config, DEFAULT_SESSION_IDLE_TIMEOUT_SECONDS, Flow, MAX_SESSION_IDLE_TIMEOUT_SECONDS,
    Overflow, Peer, PortRange, Rule, Security, SecurityMode, Site, TrafficClass, Uplink,
};
pub use prefix::{Prefix, PrefixError};

use error::Source;

/// Largest configuration file accepted (bytes): a guard against feeding the
/// parser something that is not a configuration.
pub const MAX_FILE_LEN: usize = 16 << 20;

impl Config {
    /// Parses and validates a configuration. `file` is used in error messages only.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Config, ConfigError> {
        let src = Source { file, text };
        if text.len() > MAX_FILE_LEN {
            return Err(src.error(
                &(0..0),
                "(file)",
                format!("larger than {MAX_FILE_LEN} bytes"),
            ));
        }
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        validate::build(&src, &raw)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            field: "(file)".to_owned(),
            message: e.to_string(),
        })?;
        Self::from_toml_str(&text, &file)
    }
}
