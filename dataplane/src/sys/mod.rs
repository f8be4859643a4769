//! The one place for small OS helpers: memory mappings, the monotonic clock,
//! shared-memory files, and the seeded random generator every simulation and
//! pacer draws from.
//!
//! - [`mmap`]: [`Mmap`], an owned mapping unmapped on drop: anonymous (the
//!   frame arena, with a huge-page attempt; io_uring buffer rings), a shared
//!   file (stats, flows, control region) or a kernel object at an offset
//!   (AF_XDP rings).
//! - [`alloc`]: [`LargePages`], the binaries' allocator: the system's, with
//!   large tables advised onto transparent huge pages.
//! - [`clock`]: [`Nanos`] and [`now_ns`], CLOCK_MONOTONIC in nanoseconds,
//!   the same clock in every mongate process.
//! - [`shm`]: [`ShmFile`], a mapped file in the run directory: its path, its
//!   open flags and its removal in one spot.
//! - [`rng`]: [`Rng`], xoshiro256++ seeded through SplitMix64 (pure).
//! - [`keyfile`]: [`check_private_key_file`], the refusal of a private key
//!   file that others could read or swap.

pub mod alloc;
pub mod clock;
pub mod keyfile;
pub mod mmap;
pub mod prefetch;
pub mod rng;
pub mod shm;

pub use alloc::LargePages;
pub use clock::{MS, Nanos, SEC, now_ns};
pub use keyfile::{KeyFileError, check_private_key_file};
pub use mmap::Mmap;
pub use prefetch::{prefetch_lines, prefetch_read};
pub use rng::Rng;
pub use shm::ShmFile;
