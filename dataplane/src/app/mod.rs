//! Ready-to-run dataplane applications built from the engine: the thin
//! layer between a CLI/config and the workers. Each `start_*` returns once
//! every socket is bound and every worker thread runs (the dataplane is
//! ready: no sleep needed by callers), and the handle stops it.

mod forward;
mod gateway;
pub mod logging;
pub mod netinfo;
mod relay;
pub mod reload;
pub mod signals;

pub use forward::{ForwardConfig, RunningDataplane, StageKind, start_forward};
pub use gateway::{GatewayConfig, start_gateway};
pub use relay::{DEFAULT_RX_QUEUE, RelayConfig, start_relay};
