//! A shared, read-write mapping of a whole file: the one place where
//! mongate's shared-memory files (`.stats`, `.ctl`) are mapped and unmapped.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

/// `len` bytes of a file mapped `MAP_SHARED`, unmapped on drop.
pub struct FileMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is process-wide memory; all access to its contents
// goes through atomics or the ring protocol of the types built on it.
unsafe impl Send for FileMap {}
// SAFETY: as above.
unsafe impl Sync for FileMap {}

impl FileMap {
    /// Maps the first `len` bytes of `f` (opened read-write, at least `len`
    /// long: the caller checks with `set_len` or the file's metadata).
    pub fn map(f: &File, len: usize) -> std::io::Result<Self> {
        if len == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "empty mapping",
            ));
        }
        // SAFETY: a fresh shared mapping of an open file descriptor; no
        // existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(Self { base, len })
    }

    /// Start of the mapping (page-aligned).
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: mappings are not empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for FileMap {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`; references into it
        // borrow the owner of this value.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
