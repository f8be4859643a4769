//! The one single-producer / single-consumer ring primitive of mongate.
//!
//! A ring is `size` (a power of two) slots of a plain-data type `T` plus two
//! free-running `u32` indices: `producer` (slots written) and `consumer` (slots
//! read). The producer owns the slots in `[consumer + size - ..)` not yet
//! published, the consumer owns the published slots `[consumer, producer)`.
//! This is exactly the layout the kernel uses for AF_XDP rings (fill,
//! completion, rx, tx), so the same code drives those rings (the kernel is the
//! other side) and the control <-> dataplane shared-memory rings (another
//! process is the other side).
//!
//! Each side keeps a cached copy of the other side's index and reads the shared
//! one (Acquire) only when the cache says the ring is full/empty; it publishes
//! its own index with one Release store per batch. The other side is not
//! trusted: an index that claims more than `size` slots is treated as a
//! corrupted ring (`Corrupt`), never as a reason to read outside the slots.

mod cursor;
mod shm;

pub use cursor::{Consumer, Pod, Producer, RingError, RingPtrs};
pub use shm::ShmRingError;
pub use shm::{SHM_RING_MAGIC, ShmRing, ShmRingHeader};

#[cfg(test)]
mod tests;
