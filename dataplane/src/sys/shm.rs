//! Shared-memory files: `/dev/shm/mongate-<name>.<kind>`, the files a
//! dataplane publishes (`.stats`, `.flows`, `.ctl`). Their path, the flags
//! they are opened with and their removal are decided here and nowhere else.
//!
//! Files are opened read-write and created with the process's default mode
//! (0o666 less the umask).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use super::mmap::Mmap;

/// The path of instance `name`'s shared-memory file of kind `kind` (`stats`,
/// `flows`, `ctl`).
pub fn shm_path(name: &str, kind: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/mongate-{name}.{kind}"))
}

/// How [`open_file`] opens a shared-memory file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create it, or truncate an existing one to empty (stats, flows).
    Fresh,
    /// Create it, or open an existing one as it is (the control region,
    /// re-created in place: a reader may still map the old length).
    InPlace,
    /// Open an existing file only (readers).
    Existing,
}

/// Opens `path` read-write as `mode` says.
pub fn open_file(path: &Path, mode: OpenMode) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    match mode {
        OpenMode::Fresh => o.create(true).truncate(true),
        OpenMode::InPlace => o.create(true).truncate(false),
        OpenMode::Existing => &mut o,
    };
    o.open(path)
}

/// Types that may be viewed in place in a shared mapping ([`ShmFile::get`]).
///
/// # Safety
///
/// Every bit pattern must be a valid value, and the type must be mutated
/// only through atomics (interior mutability that is sound across
/// processes), never through `&mut`: other processes write the same memory
/// while this one holds shared references into it.
pub unsafe trait ShmShared: Sync {}

/// A shared-memory file mapped read-write. The process that created it
/// (`owner`) removes the file when the value drops, before the unmap.
pub struct ShmFile {
    map: Mmap,
    path: PathBuf,
    owner: bool,
}

impl ShmFile {
    /// Creates `path` empty (truncating an older file), `len` bytes long,
    /// mapped; the file is removed when the value drops.
    pub fn create(path: &Path, len: usize) -> io::Result<Self> {
        let f = open_file(path, OpenMode::Fresh)?;
        f.set_len(len as u64)?;
        Self::map(&f, len, path, true)
    }

    /// Maps the first `len` bytes of `f` (opened with [`open_file`] at
    /// `path`, at least `len` long). With `owner`, the file is removed when
    /// the value drops.
    pub fn map(f: &File, len: usize, path: &Path, owner: bool) -> io::Result<Self> {
        Ok(Self {
            map: Mmap::file(f, len)?,
            path: path.to_path_buf(),
            owner,
        })
    }

    /// Start of the mapping (page-aligned).
    pub fn base(&self) -> NonNull<u8> {
        self.map.base()
    }

    /// Bytes mapped.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true: empty mappings are refused.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this process created the file (and removes it on drop).
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// Whether `len` bytes at `off` lie inside the mapping.
    fn inside(&self, off: usize, len: usize) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.len())
    }

    /// The `T` at byte `off`, if it lies inside the mapping and `off` is a
    /// multiple of `T`'s alignment (the mapping is page-aligned).
    #[inline]
    pub fn get<T: ShmShared>(&self, off: usize) -> Option<&T> {
        if !self.inside(off, std::mem::size_of::<T>())
            || !off.is_multiple_of(std::mem::align_of::<T>())
        {
            return None;
        }
        // SAFETY: in bounds and aligned (checked above); any bit pattern is
        // a valid `T` and it is only mutated through atomics (`ShmShared`);
        // the mapping lives as long as `&self`.
        Some(unsafe { self.map.base().add(off).cast::<T>().as_ref() })
    }

    /// Copies `out.len()` bytes from byte `off`; false (nothing copied) when
    /// they do not lie inside the mapping.
    pub fn read(&self, off: usize, out: &mut [u8]) -> bool {
        if !self.inside(off, out.len()) {
            return false;
        }
        // SAFETY: in bounds (checked above); `out` is a distinct, writable
        // buffer; plain bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.base().as_ptr().add(off),
                out.as_mut_ptr(),
                out.len(),
            );
        }
        true
    }

    /// Copies `src` to byte `off`; false (nothing copied) when it does not
    /// fit. For contents written once before they are published (e.g. by a
    /// magic number stored last): `&mut self` excludes every other
    /// reference of this process.
    pub fn write(&mut self, off: usize, src: &[u8]) -> bool {
        if !self.inside(off, src.len()) {
            return false;
        }
        // SAFETY: in bounds (checked above); `&mut self`: no reference into
        // the mapping is alive in this process; plain bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.map.base().as_ptr().add(off),
                src.len(),
            );
        }
        true
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        // The owner's own `Drop` (if any) ran before this; `map` unmaps
        // after this.
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[repr(C, align(64))]
    struct Line {
        a: AtomicU64,
        b: AtomicU64,
    }
    // SAFETY: atomics only; any bit pattern is valid.
    unsafe impl ShmShared for Line {}

    #[test]
    fn paths_and_modes() {
        assert_eq!(
            shm_path("site-a", "stats"),
            PathBuf::from("/dev/shm/mongate-site-a.stats")
        );
        let path = std::env::temp_dir().join(format!("mongate-shm-modes-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        assert!(open_file(&path, OpenMode::Existing).is_err());
        std::fs::write(&path, b"keep").unwrap();
        drop(open_file(&path, OpenMode::InPlace).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
        drop(open_file(&path, OpenMode::Existing).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
        drop(open_file(&path, OpenMode::Fresh).unwrap());
        assert!(std::fs::read(&path).unwrap().is_empty());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn create_write_reopen_read_drop() {
        let path = std::env::temp_dir().join(format!("mongate-shm-{}", std::process::id()));
        let mut w = ShmFile::create(&path, 4096).unwrap();
        assert!(w.is_owner());
        assert_eq!(w.len(), 4096);
        assert!(w.write(128, b"flow-a"));
        assert!(!w.write(4093, b"four"));
        w.get::<Line>(64).unwrap().b.store(7, Ordering::Relaxed);
        assert!(w.get::<Line>(65).is_none(), "misaligned");
        assert!(w.get::<Line>(4096 - 32).is_none(), "out of range");

        let f = open_file(&path, OpenMode::Existing).unwrap();
        let r = ShmFile::map(&f, 4096, &path, false).unwrap();
        assert!(!r.is_owner());
        let mut b = [0u8; 6];
        assert!(r.read(128, &mut b));
        assert_eq!(&b, b"flow-a");
        assert!(!r.read(4095, &mut b));
        assert_eq!(r.get::<Line>(64).unwrap().b.load(Ordering::Relaxed), 7);
        assert_eq!(r.get::<Line>(0).unwrap().a.load(Ordering::Relaxed), 0);
        drop(r);
        assert!(path.exists(), "a reader does not remove the file");
        drop(w);
        assert!(!path.exists(), "the owner does");
    }
}
