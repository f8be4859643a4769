//! Software prefetch: start loading a cache line without waiting for it.

/// Asks the CPU to load the cache line holding `p` into every cache level
/// (x86-64: `prefetcht0`; other targets: nothing). A hint with no effect on
/// memory or program state; any address is allowed.
#[inline(always)]
pub fn prefetch_read(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHh reads nothing architecturally and never faults,
    // whatever the address (Intel SDM vol. 2, PREFETCHh: "does not affect
    // program behavior"); SSE, which provides it, is in the x86-64
    // baseline, so the instruction exists on every x86-64 CPU.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch_read`] of every cache line of `*r` (a field of a larger
/// record: only the lines that field spans, not the whole record's).
#[inline(always)]
pub fn prefetch_lines<T>(r: *const T) {
    let start = r.cast::<u8>();
    let lead = start as usize & 63;
    let mut off = 0;
    while off < size_of::<T>() + lead {
        prefetch_read(start.wrapping_sub(lead).wrapping_add(off));
        off += 64;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_address_is_a_harmless_hint() {
        let v = [1u8, 2, 3];
        super::prefetch_read(v.as_ptr());
        super::prefetch_read(core::ptr::null());
        super::prefetch_read(usize::MAX as *const u8);
        super::prefetch_lines(&v);
        super::prefetch_lines(core::ptr::null::<[u64; 100]>());
        assert_eq!(v, [1, 2, 3]);
    }
}
