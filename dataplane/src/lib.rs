//! mongate dataplane: pinned per-core workers moving packets between AF_XDP or
//! io_uring ports through a pipeline of stages (classification, pacing,
//! encapsulation).
//!
//! Layout, one folder per concept:
//! - [`engine`]: the packet descriptor, the frame arena, and the `Port` / `Stage` traits.
//! - [`ring`]: the one single-producer/single-consumer ring primitive, used both for
//!   AF_XDP rings (shared with the kernel) and control <-> dataplane shared-memory rings.
//! - [`bpf`]: a minimal eBPF assembler and loader (no clang, no libbpf) for the XDP
//!   redirect program.
//! - [`afxdp`]: AF_XDP sockets and UMEM on top of [`ring`] and [`bpf`].
//! - [`uring`]: io_uring UDP ports (provided buffer rings, multishot receive).
//! - [`worker`]: the per-core run loop, pinning, batching.
//! - [`stats`]: per-worker counters in shared memory, readable without locks.
//! - [`plan`]: the plan (sessions per class, rate and weight per flow) in its one
//!   resolved form, from the control's plan source to the workers.
//! - [`secure`]: session keys, AEAD sealing/opening and the replay window of
//!   the overlay between gateways.
//! - [`sys`]: the OS helpers (mmap, the monotonic clock, shared-memory files) and the RNG.
//! - Pure parts (no `unsafe`, no OS, time passed in): [`wire`] packet views,
//!   [`pacing`] Poisson pacers and timer wheel, [`montra`] rate controllers.

#![deny(unsafe_code)]

// `unsafe` lives only in the modules marked `#[allow(unsafe_code)]` below
// (system calls, mmap, shared memory, the ring); every block has a `// SAFETY:`.
#[allow(unsafe_code)]
pub mod afxdp;
#[allow(unsafe_code)]
pub mod app;
#[allow(unsafe_code)]
pub mod bpf;
pub mod classify;
pub mod config;
#[allow(unsafe_code)]
pub mod engine;
pub mod forward;
pub mod fuzz;
#[allow(unsafe_code)]
pub mod mirror;
pub mod montra;
pub mod overlay;
pub mod pacing;
pub mod plan;
#[allow(unsafe_code)]
pub mod ring;
pub mod secure;
#[allow(unsafe_code)]
pub mod shm;
#[allow(unsafe_code)]
pub mod stats;
#[allow(unsafe_code)]
pub mod sys;
#[allow(unsafe_code)]
pub mod uring;
pub mod wire;
pub mod worker;
