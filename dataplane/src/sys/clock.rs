//! The monotonic clock: one reader, one time type.

/// Time in nanoseconds on CLOCK_MONOTONIC (or any monotonic origin a pure
/// caller chooses).
pub type Nanos = u64;

/// One millisecond in [`Nanos`].
pub const MS: Nanos = 1_000_000;
/// One second in [`Nanos`].
pub const SEC: Nanos = 1_000_000_000;

/// Reads CLOCK_MONOTONIC in nanoseconds. The only clock mongate's processes
/// read: the same in the dataplane's workers and the control process, so
/// heartbeats and packet timestamps compare across them. Pure code takes the
/// value as an argument.
pub fn now_ns() -> Nanos {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(SEC)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// Reads CLOCK_REALTIME in nanoseconds since the Unix epoch: only to stamp
/// what leaves mongate for other tools (a capture's pcap records, as an
/// offset from [`now_ns`] taken once); never to measure time.
pub fn wall_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(SEC)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_plausible() {
        let a = now_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = now_ns();
        assert!(a > 0);
        assert!(b >= a + 2 * MS, "{a} -> {b}");
        assert_eq!(SEC, 1000 * MS);
    }
}
