//! Security, the control's side (see `docs/security.md`): the gateway's static key, the Noise IK
//! handshake with every peer, cookies against handshake floods, and the driver that hands the
//! session keys to the dataplane and its handshake messages to the wire.
//!
//! Modules: [`keys`] (key files, `mongate keygen`), [`messages`] (the three handshake messages),
//! [`cookie`] (mac1, mac2, cookie replies), [`limit`] (load and per-source rate limit),
//! [`handshake`] (one peer's handshake and key timers), [`endpoint`] (all peers of a gateway,
//! the checks before a Diffie-Hellman), [`driver`] ([`SecureDriver`]: the endpoint on the
//! dataplane's ring), and [`sim`] (a model of the dataplane's key table for
//! deterministic tests).

pub mod cookie;
pub mod driver;
pub mod endpoint;
pub mod handshake;
pub mod keys;
pub mod limit;
pub mod messages;
#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use driver::{SecureDriver, SecureError};
pub use endpoint::{Endpoint, EndpointConfig, EndpointStats};
pub use handshake::{Entropy, Handshaker, OsEntropy, SeededEntropy, SessionKeys, Timers};
pub use keys::{PublicKey, StaticSecret};
