//! Pure parsers for the text the kernel exposes in sysfs and procfs.
//!
//! Nothing here touches the OS: every function takes the file's text and
//! returns a value or a [`ParseError`]. None of them panic on any input
//! (property-tested in `tests`).

pub mod cpulist;
pub mod interrupts;
pub mod sysfs;

pub use cpulist::{format_cpulist, parse_cpulist};
pub use interrupts::{IrqLine, parse_interrupts, queue_of_irq_name};
pub use sysfs::{parse_hugepage_dir_name, parse_int, parse_numa_node, parse_u64};

/// Why a piece of sysfs/procfs text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A number was expected.
    #[error("expected a number, found {0:?}")]
    NotANumber(String),
    /// A range `a-b` with `a > b`.
    #[error("bad cpu range {0:?} (start after end)")]
    BadRange(String),
    /// A cpu list names more CPUs than [`cpulist::MAX_CPU`] allows.
    #[error("cpu id {0} is beyond the supported maximum {max}", max = cpulist::MAX_CPU)]
    CpuTooLarge(u64),
}
