//! Shared by the root integration tests: skip rules and serialisation of
//! network tests (they share the machine's two cores and must not overlap).

use std::sync::{Mutex, MutexGuard};

static NET: Mutex<()> = Mutex::new(());

/// Serialises network tests within one test binary.
pub fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why network tests cannot run here, if they cannot. Printed as a visible
/// SKIP line by the caller: never a silent pass.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces, XDP)".into());
    }
    mongate_testbed::unavailable_reason()
}

/// Prints the SKIP line and returns true when the test must be skipped.
pub fn skip(test: &str) -> bool {
    match skip_reason() {
        Some(r) => {
            println!("SKIP {test}: {r}");
            eprintln!("SKIP {test}: {r}");
            true
        }
        None => false,
    }
}

/// A deterministic pseudo-random payload of `n` bytes (xorshift from `seed`).
// Each test binary includes this module; not all of them transfer data.
#[allow(dead_code)]
pub fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}
