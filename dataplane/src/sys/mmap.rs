//! Memory mappings: the one place mongate calls `mmap` and `munmap`.
//!
//! Three kinds, each with the flags its users had:
//! - [`Mmap::anonymous`]: private, zeroed, pre-faulted memory (the frame
//!   arena, optionally on 2 MiB huge pages; io_uring provided-buffer rings);
//! - [`Mmap::file`] / [`Mmap::file_read_only`]: a shared mapping of a whole
//!   file (the `.stats`, `.flows` and `.ctl` files; readers map read-only);
//! - [`Mmap::kernel`]: a shared, pre-faulted mapping of a kernel object at an
//!   offset (the four AF_XDP rings of a socket).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// `len` bytes mapped (read-write unless made by [`Mmap::file_read_only`]),
/// unmapped on drop.
///
/// The type only owns the address range: what lives there, and who may
/// write it when, is the business of the type built on it (atomics, the ring
/// protocol, `&mut` access through the owner).
#[derive(Debug)]
pub struct Mmap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is process-wide memory owned by this value alone;
// moving it to another thread moves that ownership.
unsafe impl Send for Mmap {}
// SAFETY: `Mmap` itself hands out only the base address; every access to
// the contents goes through the types built on it, which say how they
// synchronise (atomics, ring protocol, `&mut self`).
unsafe impl Sync for Mmap {}

/// Read-write protection.
fn rw() -> i32 {
    libc::PROT_READ | libc::PROT_WRITE
}

impl Mmap {
    /// `len` bytes of private, zeroed memory, pre-faulted.
    /// With `hugepages`, reserved 2 MiB huge pages are tried first
    /// (`MAP_HUGETLB`). Otherwise (or when none are reserved) the mapping is
    /// advised onto transparent huge pages (`MADV_HUGEPAGE`, which the
    /// kernel honours in THP's `madvise` mode, Debian's default) before it
    /// is faulted in (`MADV_POPULATE_WRITE`; `MAP_POPULATE` on kernels
    /// without it), so a large arena read at random costs fewer TLB misses.
    pub fn anonymous(len: usize, hugepages: bool) -> io::Result<Self> {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        if hugepages
            && let Ok(m) = Self::map(len, flags | libc::MAP_POPULATE | libc::MAP_HUGETLB, None, 0)
        {
            return Ok(m);
        }
        let m = Self::map(len, flags, None, 0)?;
        // SAFETY: the whole of the fresh private mapping `m` owns. Advice
        // and pre-faulting change no contents (the pages stay zero) and no
        // protection; a refused advice leaves normal pages.
        let populated = unsafe {
            let base = m.base.as_ptr().cast::<libc::c_void>();
            libc::madvise(base, len, libc::MADV_HUGEPAGE);
            libc::madvise(base, len, libc::MADV_POPULATE_WRITE) == 0
        };
        if populated {
            return Ok(m);
        }
        drop(m);
        Self::map(len, flags | libc::MAP_POPULATE, None, 0)
    }

    /// The first `len` bytes of `f` (opened read-write, at least `len` long:
    /// the caller checks with `set_len` or the file's metadata), shared
    /// (`MAP_SHARED`) with every process mapping the file.
    pub fn file(f: &File, len: usize) -> io::Result<Self> {
        Self::map_prot(rw(), len, libc::MAP_SHARED, Some(f.as_fd()), 0)
    }

    /// As [`Self::file`], mapped read-only (`PROT_READ`; `f` may be opened
    /// read-only). Stores into it fault: its users only load.
    pub fn file_read_only(f: &File, len: usize) -> io::Result<Self> {
        Self::map_prot(libc::PROT_READ, len, libc::MAP_SHARED, Some(f.as_fd()), 0)
    }

    /// `len` bytes of the kernel object behind `fd` at `offset` (e.g. an
    /// AF_XDP ring at its `XDP_PGOFF_*`), shared and pre-faulted. The kernel
    /// checks offset and length against the object it created.
    pub fn kernel(fd: BorrowedFd<'_>, offset: i64, len: usize) -> io::Result<Self> {
        Self::map(len, libc::MAP_SHARED | libc::MAP_POPULATE, Some(fd), offset)
    }

    fn map(len: usize, flags: i32, fd: Option<BorrowedFd<'_>>, offset: i64) -> io::Result<Self> {
        Self::map_prot(rw(), len, flags, fd, offset)
    }

    fn map_prot(
        prot: i32,
        len: usize,
        flags: i32,
        fd: Option<BorrowedFd<'_>>,
        offset: i64,
    ) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        // SAFETY: a fresh mapping at an address the kernel chooses (no hint,
        // no MAP_FIXED): no existing memory is affected. A file descriptor,
        // if any, is open for the duration of the call (borrowed).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                flags,
                fd.map_or(-1, |fd| fd.as_raw_fd()),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { base, len })
    }

    /// Start of the mapping (page-aligned).
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length in bytes, as requested.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: empty mappings are refused.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`; references into it
        // borrow the owner of this value, so none outlives it. Owners that
        // share the memory with the kernel (AF_XDP, io_uring) stop the
        // kernel's use first (socket closed, ring unregistered).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_is_zeroed_writable_and_unmapped() {
        for huge in [false, true] {
            let m = Mmap::anonymous(3 * 4096 + 5, huge).unwrap();
            assert_eq!(m.len(), 3 * 4096 + 5);
            assert!(!m.is_empty());
            assert_eq!(m.base().as_ptr() as usize % 4096, 0);
            // SAFETY: the mapping is `len` bytes, read-write, and only this
            // test uses it.
            let s = unsafe { std::slice::from_raw_parts_mut(m.base().as_ptr(), m.len()) };
            assert!(s.iter().all(|&b| b == 0));
            s[0] = 1;
            s[m.len() - 1] = 2;
            assert_eq!(s[0] + s[m.len() - 1], 3);
            drop(m);
        }
        assert!(Mmap::anonymous(0, false).is_err());
    }

    #[test]
    fn file_mapping_is_shared_with_the_file() {
        use std::os::unix::fs::FileExt;
        let path = std::env::temp_dir().join(format!("mongate-mmap-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(8192).unwrap();
        let m = Mmap::file(&f, 8192).unwrap();
        // SAFETY: byte 100 of an 8192-byte read-write mapping only this test uses.
        unsafe { m.base().as_ptr().add(100).write(0xAB) };
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 100).unwrap();
        assert_eq!(b[0], 0xAB);
        // A second mapping of the same file sees the write, also after the
        // first is gone.
        let m2 = Mmap::file(&f, 4096).unwrap();
        drop(m);
        // SAFETY: byte 100 of a 4096-byte mapping.
        assert_eq!(unsafe { m2.base().as_ptr().add(100).read() }, 0xAB);
        drop(m2);
        assert!(Mmap::file(&f, 0).is_err());
        std::fs::remove_file(&path).unwrap();
    }
}
