//! The process allocator of the dataplane binaries: the system allocator,
//! with large allocations advised onto transparent huge pages.
//!
//! A gateway's per-flow and per-session tables (the session table, the
//! pacing queues and timer wheels, the flows' records) are a few large
//! arrays read at random, one line per packet per table. On 4 KiB pages
//! each of those lines is also a TLB miss, and in a virtual machine a TLB
//! miss walks two page tables. Where transparent huge pages are in
//! `madvise` mode (Debian's default), memory the program does not advise
//! stays on 4 KiB pages. [`LargePages`] advises every allocation of at least
//! [`LARGE`] bytes (`madvise(MADV_HUGEPAGE)` over the 2 MiB-aligned part of
//! it); the rest of the allocator's behaviour is the system's.
//!
//! Measured (docs/benchmarks.md, "Pipeline without I/O"): `mongate-bench
//! pipeline --flows 1000000 --sessions 1000000` spends about a fifth less
//! per packet with its tables on huge pages.
//!
//! The advice is only advice: it changes no byte of the memory, and where
//! the kernel refuses it (THP `never`, an old kernel) the memory stays on
//! normal pages and the error is ignored.
//!
//! Large allocations also start on a cache line ([`LINE`]): glibc serves
//! them from their own mapping, 16 bytes into its first page, so an array
//! of 32-byte records (the pacing queues) had every second record across
//! two lines, and a 768-byte flow record spanned 13 lines instead of 12.
//! Each such record read at random cost one miss more.

use std::alloc::{GlobalAlloc, Layout, System};

/// Size from which an allocation is advised onto huge pages: 4 MiB, so at
/// least one whole 2 MiB page lies inside it wherever it starts.
pub const LARGE: usize = 4 << 20;

/// A transparent huge page on x86-64 and aarch64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// The alignment of allocations of [`LARGE`] bytes or more: a cache line.
pub const LINE: usize = 64;

/// The layout `layout` is served with: a large one aligned to at least a
/// line. The same function of the layout in alloc, dealloc and realloc, so
/// the system allocator always frees with the layout it allocated with.
fn placed(layout: Layout) -> Layout {
    if layout.size() >= LARGE && layout.align() < LINE {
        Layout::from_size_align(layout.size(), LINE).unwrap_or(layout)
    } else {
        layout
    }
}

/// The system allocator, with allocations of [`LARGE`] bytes or more advised
/// onto transparent huge pages. Declared by the binaries as
/// `#[global_allocator] static ALLOC: LargePages = LargePages;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LargePages;

/// The 2 MiB-aligned part of `[p, p + len)`, as (start, length); `None` when
/// no whole huge page lies inside.
fn huge_span(p: usize, len: usize) -> Option<(usize, usize)> {
    let start = p.checked_add(HUGE_PAGE - 1)? & !(HUGE_PAGE - 1);
    let end = p.checked_add(len)? & !(HUGE_PAGE - 1);
    (end > start).then(|| (start, end - start))
}

/// Advises the huge-page-aligned part of the `len` bytes at `p` (just
/// returned by the system allocator) onto transparent huge pages.
fn advise(p: *mut u8, len: usize) {
    if p.is_null() || len < LARGE {
        return;
    }
    if let Some((start, n)) = huge_span(p as usize, len) {
        // SAFETY: `[start, start + n)` lies inside the allocation just made
        // at `p` (huge_span), which this process owns. MADV_HUGEPAGE only
        // sets a flag on the mapping that contains it (and may split the
        // mapping's bookkeeping): it changes no contents and no protection,
        // so the allocator's and the caller's view of the memory is
        // unchanged. Its result is ignored: advice the kernel refuses
        // leaves normal pages.
        unsafe {
            libc::madvise(start as *mut libc::c_void, n, libc::MADV_HUGEPAGE);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and returns its result unchanged; `advise` only adds advice to
// memory `System` has just handed out (see there). So `LargePages` keeps
// every contract `System` keeps.
unsafe impl GlobalAlloc for LargePages {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System`'s; `placed`
        // keeps the size (non-zero) and only raises the alignment.
        let p = unsafe { System.alloc(placed(layout)) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(placed(layout)) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` (every allocation does) with
        // `placed(layout)` (the caller's contract: `layout` is the one it
        // was allocated or reallocated with, and `placed` is a function of
        // it).
        unsafe { System.dealloc(ptr, placed(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = placed(layout);
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = placed(new_layout);
        if new.align() == old.align() {
            // SAFETY: as `dealloc`, and the caller's contract on `new_size`;
            // the block keeps its alignment class.
            let p = unsafe { System.realloc(ptr, old, new_size) };
            advise(p, new_size);
            return p;
        }
        // Across `LARGE` the alignment changes: a new block, the contents
        // copied, the old one freed (what `System` does itself for
        // over-aligned blocks).
        // SAFETY: `new` has a non-zero size (the caller's contract).
        let p = unsafe { System.alloc(new) };
        if !p.is_null() {
            // SAFETY: both blocks are valid for the smaller of the sizes and
            // distinct; `ptr` was allocated with `old` (as `dealloc`).
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                System.dealloc(ptr, old);
            }
            advise(p, new_size);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_span_is_the_aligned_inside() {
        let m = HUGE_PAGE;
        assert_eq!(huge_span(0, 2 * m), Some((0, 2 * m)));
        assert_eq!(huge_span(16, 2 * m), Some((m, m)));
        assert_eq!(huge_span(16, 2 * m - 32), None);
        assert_eq!(huge_span(m - 1, m + 1), Some((m, m)));
        assert_eq!(huge_span(m - 1, m), None);
        assert_eq!(huge_span(usize::MAX - 8, LARGE), None);
        for (p, len) in [(4096 + 16, LARGE), (3 * m + 5, 7 * m + 3), (0, 1)] {
            if let Some((s, n)) = huge_span(p, len) {
                assert_eq!(s % m, 0);
                assert_eq!(n % m, 0);
                assert!(s >= p && s + n <= p + len);
                // The largest such span: less than a page lost at each end.
                assert!(s - p < m && p + len - (s + n) < m);
            }
        }
    }

    #[test]
    fn large_blocks_start_on_a_line_small_ones_keep_their_layout() {
        let a = LargePages;
        for (size, align) in [(LARGE, 8), (3 * LARGE + 8, 16), (LARGE, 4096), (100, 8)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero layout; freed below with it.
            let p = unsafe { a.alloc(layout) };
            assert!(!p.is_null());
            let want = if size >= LARGE {
                align.max(LINE)
            } else {
                align
            };
            assert_eq!(p as usize % want, 0, "{size} B aligned {align}");
            // SAFETY: `p` from `a` with `layout`.
            unsafe { a.dealloc(p, layout) };
        }
        // Growing across LARGE and shrinking back: contents kept, the
        // alignment of each block's class.
        let small = Layout::from_size_align(LARGE - 8, 8).unwrap();
        // SAFETY: a non-zero layout; reallocated and freed below.
        let p = unsafe { a.alloc(small) };
        assert!(!p.is_null());
        // SAFETY: `LARGE - 8` bytes at `p`, ours.
        unsafe { p.write_bytes(7, LARGE - 8) };
        // SAFETY: `p` from `a` with `small`; a non-zero new size.
        let q = unsafe { a.realloc(p, small, 2 * LARGE) };
        assert!(!q.is_null());
        assert_eq!(q as usize % LINE, 0);
        // SAFETY: the first `LARGE - 8` bytes of the grown block are the old ones.
        let t = unsafe { std::slice::from_raw_parts(q, LARGE - 8) };
        assert!(t.iter().all(|&b| b == 7));
        let big = Layout::from_size_align(2 * LARGE, 8).unwrap();
        // SAFETY: `q` from `a` with `big`; a non-zero new size.
        let r = unsafe { a.realloc(q, big, 1000) };
        assert!(!r.is_null());
        // SAFETY: the first 1 000 bytes of the shrunk block are the old ones.
        let t = unsafe { std::slice::from_raw_parts(r, 1000) };
        assert!(t.iter().all(|&b| b == 7));
        // SAFETY: `r` from `a` with the shrunk layout.
        unsafe { a.dealloc(r, Layout::from_size_align(1000, 8).unwrap()) };
    }

    #[test]
    fn allocations_through_it_keep_their_contents() {
        let a = LargePages;
        for size in [64, LARGE - 1, LARGE, 3 * LARGE + 4097] {
            let layout = Layout::from_size_align(size, 64).unwrap();
            // SAFETY: a non-zero layout; the memory is freed below with it.
            let p = unsafe { a.alloc_zeroed(layout) };
            assert!(!p.is_null());
            // SAFETY: `size` bytes at `p`, ours until freed.
            let s = unsafe { std::slice::from_raw_parts_mut(p, size) };
            assert!(s.iter().all(|&b| b == 0));
            s[0] = 1;
            s[size - 1] = 2;
            // SAFETY: `p` from `a` with `layout`; grown to twice the size.
            let q = unsafe { a.realloc(p, layout, 2 * size) };
            assert!(!q.is_null());
            // SAFETY: the first `size` bytes of the grown allocation are the old ones.
            let t = unsafe { std::slice::from_raw_parts(q, size) };
            assert_eq!((t[0], t[size - 1]), (1, 2));
            let grown = Layout::from_size_align(2 * size, 64).unwrap();
            // SAFETY: `q` from `a` with the grown layout.
            unsafe { a.dealloc(q, grown) };
        }
    }
}
