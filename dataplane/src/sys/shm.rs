//! Shared files: `<run dir>/<name>.<kind>`, the files a dataplane publishes
//! (`.stats`, `.flows`, `.ctl`, `.mirror`). Their directory, path, open flags, modes,
//! ownership checks and removal are decided here and nowhere else.
//!
//! - The run directory is `$MONGATE_RUN_DIR`, else `/run/mongate`. A writer
//!   creates it (mode 0750) when missing and refuses it unless it is a real
//!   directory (not a symlink) owned by the writer's effective uid and not
//!   writable by group or others. Readers refuse a directory writable by
//!   group or others, or a symlink.
//! - A writer creates its file with `O_CREAT|O_EXCL|O_NOFOLLOW` relative to
//!   the directory it checked (`openat`), mode exactly [`REGION_MODE`] (the
//!   control region) or [`COUNTERS_MODE`] (stats, flows), whatever the umask.
//!   A file left at the path by an earlier run is removed first, and only
//!   when it is a regular file owned by us; anything else there (a symlink,
//!   another user's file, a directory) makes the creation fail. The owner
//!   removes its file when done, and only if the path still names that file.
//! - Readers open with `O_NOFOLLOW` and accept only a regular file owned by
//!   the directory's owner and not writable by group or others (so nobody
//!   else can truncate it under their mapping); its length comes from
//!   `fstat` on the same descriptor before mapping. Read-only users open
//!   `O_RDONLY` and map `PROT_READ`.
//!
//! What stays open: the files' owner (or root) can still truncate a file
//! another process maps, which gives that process SIGBUS on its next access.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use super::mmap::Mmap;

/// Environment variable naming the run directory (tests, several
/// independent deployments on one host).
pub const RUN_DIR_ENV: &str = "MONGATE_RUN_DIR";
/// The run directory when [`RUN_DIR_ENV`] is not set.
pub const DEFAULT_RUN_DIR: &str = "/run/mongate";
/// Mode of a run directory created by a writer.
pub const DIR_MODE: u32 = 0o750;
/// Mode of the control and mirror regions (commands, packet contents: the
/// owner only).
pub const REGION_MODE: u32 = 0o600;
/// Mode of the stats and flows files (the owner's group may read them).
pub const COUNTERS_MODE: u32 = 0o640;
/// Longest instance name kept in a file name.
const MAX_NAME: usize = 200;

/// The run directory: `$MONGATE_RUN_DIR`, else [`DEFAULT_RUN_DIR`].
pub fn run_dir() -> PathBuf {
    std::env::var_os(RUN_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_RUN_DIR), PathBuf::from)
}

/// The file name of instance `name`'s file of kind `kind`: `name.kind`,
/// with every byte of `name` outside `[A-Za-z0-9._-]` (and a leading `.`)
/// replaced by `_`, at most [`MAX_NAME`] bytes of it: always one path
/// component inside the run directory.
pub fn file_name(name: &str, kind: &str) -> String {
    let mut s: String = name
        .chars()
        .take(MAX_NAME)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        s.insert(0, '_');
    }
    format!("{s}.{kind}")
}

/// The path of instance `name`'s shared file of kind `kind` (`stats`,
/// `flows`, `ctl`): `<run dir>/<name>.<kind>` ([`run_dir`], [`file_name`]).
pub fn shm_path(name: &str, kind: &str) -> PathBuf {
    run_dir().join(file_name(name, kind))
}

/// How an existing shared file is opened and mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `O_RDONLY`, `PROT_READ` (status readers).
    ReadOnly,
    /// `O_RDWR`, `PROT_READ|PROT_WRITE` (the control process on its region).
    ReadWrite,
}

fn err(kind: io::ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, msg)
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| err(io::ErrorKind::InvalidInput, "NUL in a path".into()))
}

/// Our effective uid.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// `fstat` of an open descriptor.
fn fstat(fd: &impl AsRawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we hold open; `st` is a valid, writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `None` when nothing is there.
fn lstat_at(dir: &OwnedFd, name: &CString) -> io::Result<Option<libc::stat>> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open directory, `name` a NUL-terminated string
    // alive for the call, `st` a valid, writable stat.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &raw mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r == 0 {
        return Ok(Some(st));
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::NotFound {
        Ok(None)
    } else {
        Err(e)
    }
}

fn unlink_at(dir: &OwnedFd, name: &CString) -> io::Result<()> {
    // SAFETY: `dir` is an open directory, `name` a NUL-terminated string
    // alive for the call; unlinkat never follows a symlink it removes.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn open_at(dir: &OwnedFd, name: &CString, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is an open directory, `name` a NUL-terminated string
    // alive for the call; the mode is passed as the variadic third argument
    // open(2) expects.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by openat, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_type(st: &libc::stat, t: libc::mode_t) -> bool {
    st.st_mode & libc::S_IFMT == t
}

/// Whether group or others may write (mode bits 0o022).
fn shared_writable(st: &libc::stat) -> bool {
    st.st_mode & 0o022 != 0
}

/// The checked run directory: an open descriptor and its owner.
struct Dir {
    fd: OwnedFd,
    uid: u32,
}

/// Opens (a writer: creates when missing, mode [`DIR_MODE`]) and checks the
/// directory `path`: a directory, not a symlink, not writable by group or
/// others; a writer's must be owned by its effective uid.
fn open_dir(path: &Path, writer: bool) -> io::Result<Dir> {
    let shown = path.display();
    if writer {
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(err(e.kind(), format!("creating {shown}: {e}"))),
        }
    }
    let c = cstr(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a NUL-terminated path alive for the call.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
        return Err(match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR) if link => err(
                io::ErrorKind::PermissionDenied,
                format!("{shown} is a symlink: refused as run directory"),
            ),
            Some(libc::ENOTDIR) => err(
                io::ErrorKind::PermissionDenied,
                format!("{shown} is not a directory"),
            ),
            _ => err(e.kind(), format!("{shown}: {e}")),
        });
    }
    // SAFETY: a fresh descriptor returned by open, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let st = fstat(&fd)?;
    if !is_type(&st, libc::S_IFDIR) {
        return Err(err(
            io::ErrorKind::PermissionDenied,
            format!("{shown} is not a directory"),
        ));
    }
    if writer && st.st_uid != euid() {
        return Err(err(
            io::ErrorKind::PermissionDenied,
            format!(
                "{shown} is owned by uid {}, not by us (uid {}): refused as run directory",
                st.st_uid,
                euid()
            ),
        ));
    }
    if shared_writable(&st) {
        return Err(err(
            io::ErrorKind::PermissionDenied,
            format!(
                "{shown} is writable by group or others (mode {:o}): refused as run directory",
                st.st_mode & 0o7777
            ),
        ));
    }
    Ok(Dir { fd, uid: st.st_uid })
}

/// The directory and the file name of `path`.
fn split(path: &Path) -> io::Result<(&Path, CString)> {
    let name = path.file_name().ok_or_else(|| {
        err(
            io::ErrorKind::InvalidInput,
            format!("{}: no file name", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok((dir, cstr(name.as_bytes())?))
}

/// Opens the existing shared file `path` for `access` after checking its
/// directory and the file itself (see the module documentation); returns
/// it with its length (`fstat` of the descriptor).
pub fn open_existing(path: &Path, access: Access) -> io::Result<(File, u64)> {
    let (dir_path, name) = split(path)?;
    let dir = open_dir(dir_path, false)?;
    let rw = match access {
        Access::ReadOnly => libc::O_RDONLY,
        Access::ReadWrite => libc::O_RDWR,
    };
    let fd = open_at(
        &dir.fd,
        &name,
        rw | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY,
        0,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => err(
            io::ErrorKind::PermissionDenied,
            format!("{} is a symlink: refused", path.display()),
        ),
        _ => e,
    })?;
    let st = fstat(&fd)?;
    let refuse = |why: &str| {
        Err(err(
            io::ErrorKind::PermissionDenied,
            format!("{}: {why}: refused", path.display()),
        ))
    };
    if !is_type(&st, libc::S_IFREG) {
        return refuse("not a regular file");
    }
    if st.st_uid != dir.uid {
        return refuse("not owned by the run directory's owner");
    }
    if shared_writable(&st) {
        return refuse("writable by group or others");
    }
    let len = u64::try_from(st.st_size).unwrap_or(0);
    Ok((File::from(fd), len))
}

/// `(device, inode)` of an open file.
pub fn file_id(f: &File) -> io::Result<(u64, u64)> {
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// `(device, inode)` of what `path` names (not following a symlink).
pub fn path_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::symlink_metadata(path)?;
    Ok((m.dev(), m.ino()))
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

/// What the creator of a file keeps to remove it (and only it) later.
#[derive(Debug)]
struct Owner {
    dir: OwnedFd,
    name: CString,
    id: (u64, u64),
}

/// A shared file mapped read-write or read-only. The process that created
/// it removes the file when the value drops, before the unmap, if the path
/// still names it.
#[derive(Debug)]
pub struct ShmFile {
    map: Mmap,
    path: PathBuf,
    writable: bool,
    owner: Option<Owner>,
}

impl ShmFile {
    /// Creates `path` (see the module documentation: checked directory,
    /// stale file of ours removed, `O_CREAT|O_EXCL|O_NOFOLLOW`, exactly
    /// `mode`), `len` bytes of zeros, mapped read-write; the file is removed
    /// when the value drops.
    pub fn create(path: &Path, len: usize, mode: u32) -> io::Result<Self> {
        let (dir_path, name) = split(path)?;
        let dir = open_dir(dir_path, true)?;
        if let Some(st) = lstat_at(&dir.fd, &name)? {
            if is_type(&st, libc::S_IFREG) && st.st_uid == euid() {
                unlink_at(&dir.fd, &name)?;
            } else {
                return Err(err(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a regular file of ours (a symlink, a directory or another user's file): refusing to replace it",
                        path.display()
                    ),
                ));
            }
        }
        let fd = open_at(
            &dir.fd,
            &name,
            libc::O_RDWR
                | libc::O_CREAT
                | libc::O_EXCL
                | libc::O_NOFOLLOW
                | libc::O_CLOEXEC
                | libc::O_NOCTTY,
            mode,
        )?;
        // SAFETY: a descriptor we own; fchmod has no memory arguments.
        if unsafe { libc::fchmod(fd.as_raw_fd(), mode) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let f = File::from(fd);
        f.set_len(len as u64)?;
        let id = file_id(&f)?;
        Ok(Self {
            map: Mmap::file(&f, len)?,
            path: path.to_path_buf(),
            writable: true,
            owner: Some(Owner {
                dir: dir.fd,
                name,
                id,
            }),
        })
    }

    /// Opens and maps the whole existing file `path` ([`open_existing`]).
    pub fn open(path: &Path, access: Access) -> io::Result<Self> {
        let (f, len) = open_existing(path, access)?;
        let len = usize::try_from(len)
            .map_err(|_| err(io::ErrorKind::InvalidData, "file too large".into()))?;
        Self::map(&f, len, path, access)
    }

    /// Maps the first `len` bytes of `f` (opened by [`open_existing`] at
    /// `path` with `access`, at least `len` long by its `fstat`). The file
    /// is not removed on drop.
    pub fn map(f: &File, len: usize, path: &Path, access: Access) -> io::Result<Self> {
        let map = match access {
            Access::ReadOnly => Mmap::file_read_only(f, len)?,
            Access::ReadWrite => Mmap::file(f, len)?,
        };
        Ok(Self {
            map,
            path: path.to_path_buf(),
            writable: access == Access::ReadWrite,
            owner: None,
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
        self.owner.is_some()
    }

    /// Whether the mapping is writable (created, or opened read-write). In
    /// a read-only mapping, values from [`Self::get`] may only be loaded.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Whether `len` bytes at `off` lie inside the mapping.
    fn inside(&self, off: usize, len: usize) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.len())
    }

    /// The `T` at byte `off`, if it lies inside the mapping and `off` is a
    /// multiple of `T`'s alignment (the mapping is page-aligned). In a
    /// read-only mapping ([`Self::is_writable`] false) it may only be read.
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
    /// fit or the mapping is read-only. For contents written once before
    /// they are published (e.g. by a magic number stored last): `&mut self`
    /// excludes every other reference of this process.
    pub fn write(&mut self, off: usize, src: &[u8]) -> bool {
        if !self.writable || !self.inside(off, src.len()) {
            return false;
        }
        // SAFETY: in bounds (checked above), mapped writable; `&mut self`:
        // no reference into the mapping is alive in this process; plain bytes.
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
        // after this. Only the file we created is removed: a newer instance
        // may have replaced it at the same path.
        if let Some(o) = &self.owner
            && let Ok(Some(st)) = lstat_at(&o.dir, &o.name)
            && (st.st_dev, st.st_ino) == o.id
        {
            let _ = unlink_at(&o.dir, &o.name);
        }
    }
}

/// A private directory for tests (mode 0700, removed on drop).
#[cfg(test)]
pub(crate) struct TestDir(pub PathBuf);

#[cfg(test)]
impl TestDir {
    pub(crate) fn new(tag: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "mongate-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::DirBuilder::new().mode(0o700).create(&p).unwrap();
        Self(p)
    }
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

#[cfg(test)]
impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether `found` is another format version of the file family of `want`
/// (the same first six bytes of the magic, e.g. `MGFLOW`, then two ASCII
/// digits): the two magics as text, for an error saying the writer and the
/// reader come from different builds. `None` for anything else.
pub fn other_version(found: u64, want: u64) -> Option<(String, String)> {
    let (f, w) = (found.to_le_bytes(), want.to_le_bytes());
    (f[..6] == w[..6] && f[6..].iter().all(u8::is_ascii_digit)).then(|| {
        (
            String::from_utf8_lossy(&f).into_owned(),
            String::from_utf8_lossy(&w).into_owned(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[repr(C, align(64))]
    struct Line {
        a: AtomicU64,
        b: AtomicU64,
    }
    // SAFETY: atomics only; any bit pattern is valid.
    unsafe impl ShmShared for Line {}

    fn mode_of(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn names_stay_in_the_run_directory() {
        assert_eq!(file_name("site-a", "stats"), "site-a.stats");
        assert_eq!(
            file_name("../../etc/passwd", "ctl"),
            "_.._.._etc_passwd.ctl"
        );
        assert_eq!(file_name(".hidden", "ctl"), "_.hidden.ctl");
        assert_eq!(file_name("", "flows"), "_.flows");
        assert_eq!(file_name("a b/c", "ctl"), "a_b_c.ctl");
        assert_eq!(file_name(&"x".repeat(500), "ctl").len(), MAX_NAME + 4);
        let p = shm_path("../x", "stats");
        assert_eq!(p.parent().unwrap(), run_dir());
        assert_eq!(p.file_name().unwrap(), "_.._x.stats");
    }

    #[test]
    fn create_write_reopen_read_drop() {
        let d = TestDir::new("shm");
        let path = d.file("a.stats");
        let mut w = ShmFile::create(&path, 4096, COUNTERS_MODE).unwrap();
        assert!(w.is_owner() && w.is_writable());
        assert_eq!(mode_of(&path), COUNTERS_MODE);
        assert_eq!(w.len(), 4096);
        assert!(w.write(128, b"flow-a"));
        assert!(!w.write(4093, b"four"));
        w.get::<Line>(64).unwrap().b.store(7, Ordering::Relaxed);
        assert!(w.get::<Line>(65).is_none(), "misaligned");
        assert!(w.get::<Line>(4096 - 32).is_none(), "out of range");

        let mut r = ShmFile::open(&path, Access::ReadOnly).unwrap();
        assert!(!r.is_owner() && !r.is_writable());
        assert_eq!(r.len(), 4096);
        let mut b = [0u8; 6];
        assert!(r.read(128, &mut b));
        assert_eq!(&b, b"flow-a");
        assert!(!r.read(4095, &mut b));
        assert!(!r.write(0, b"x"), "read-only mapping");
        assert_eq!(r.get::<Line>(64).unwrap().b.load(Ordering::Relaxed), 7);
        assert_eq!(r.get::<Line>(0).unwrap().a.load(Ordering::Relaxed), 0);
        drop(r);
        assert!(path.exists(), "a reader does not remove the file");
        drop(w);
        assert!(!path.exists(), "the owner does");
        assert!(ShmFile::open(&path, Access::ReadOnly).is_err());
    }

    #[test]
    fn modes_are_exact_whatever_the_umask() {
        let d = TestDir::new("shm-mode");
        // SAFETY: umask has no memory arguments; restored below.
        let old = unsafe { libc::umask(0) };
        let a = ShmFile::create(&d.file("r.ctl"), 4096, REGION_MODE);
        let b = ShmFile::create(&d.file("c.flows"), 4096, COUNTERS_MODE);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let (a, _b) = (a.unwrap(), b.unwrap());
        assert_eq!(mode_of(&d.file("r.ctl")), 0o600);
        assert_eq!(mode_of(&d.file("c.flows")), 0o640);
        drop(a);
    }

    #[test]
    fn run_directory_is_created_0750_and_checked() {
        let d = TestDir::new("shm-dir");
        let run = d.file("run");
        let f = ShmFile::create(&run.join("x.ctl"), 4096, REGION_MODE).unwrap();
        let m = std::fs::metadata(&run).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.permissions().mode() & 0o777 & !0o022, DIR_MODE & !0o022);
        drop(f);
        // Writable by others: refused by writers and readers.
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = ShmFile::create(&run.join("y.ctl"), 4096, REGION_MODE).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        assert!(!run.join("y.ctl").exists());
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o750)).unwrap();
        // A symlink to a good directory: refused.
        let link = d.file("link");
        std::os::unix::fs::symlink(&run, &link).unwrap();
        let e = ShmFile::create(&link.join("z.ctl"), 4096, REGION_MODE).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert!(!run.join("z.ctl").exists());
        // A file where the directory should be.
        let file = d.file("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(ShmFile::create(&file.join("z.ctl"), 4096, REGION_MODE).is_err());
        // Owned by another user (root only can arrange it).
        if euid() == 0 {
            let other = d.file("other");
            std::fs::create_dir(&other).unwrap();
            std::os::unix::fs::chown(&other, Some(65534), None).unwrap();
            let e = ShmFile::create(&other.join("z.ctl"), 4096, REGION_MODE).unwrap_err();
            assert!(e.to_string().contains("not by us"), "{e}");
        }
    }

    #[test]
    fn stale_file_of_ours_is_replaced_anything_else_refused() {
        let d = TestDir::new("shm-stale");
        let path = d.file("s.stats");
        std::fs::write(&path, b"old run").unwrap();
        let w = ShmFile::create(&path, 4096, COUNTERS_MODE).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096);
        drop(w);
        // A symlink planted at the path: never followed, never removed.
        let target = d.file("victim");
        std::fs::write(&target, b"precious").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = ShmFile::create(&path, 4096, COUNTERS_MODE).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_symlink());
        // Readers do not follow it either.
        let e = ShmFile::open(&path, Access::ReadOnly).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        std::fs::remove_file(&path).unwrap();
        // A dangling symlink (the classic: root creates the target).
        let dangling = d.file("created-through-link");
        std::os::unix::fs::symlink(&dangling, &path).unwrap();
        assert!(ShmFile::create(&path, 4096, COUNTERS_MODE).is_err());
        assert!(!dangling.exists());
        std::fs::remove_file(&path).unwrap();
        // A directory at the path.
        std::fs::create_dir(&path).unwrap();
        assert!(ShmFile::create(&path, 4096, COUNTERS_MODE).is_err());
        std::fs::remove_dir(&path).unwrap();
        // Another user's file (root only can arrange it): left alone.
        if euid() == 0 {
            std::fs::write(&path, b"theirs").unwrap();
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            assert!(ShmFile::create(&path, 4096, COUNTERS_MODE).is_err());
            assert_eq!(std::fs::read(&path).unwrap(), b"theirs");
            // ... and not trusted by readers (owner differs from the directory's).
            assert!(ShmFile::open(&path, Access::ReadOnly).is_err());
        }
    }

    #[test]
    fn readers_refuse_files_others_could_truncate() {
        let d = TestDir::new("shm-read");
        let path = d.file("r.flows");
        let w = ShmFile::create(&path, 4096, COUNTERS_MODE).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = ShmFile::open(&path, Access::ReadOnly).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let (_, len) = open_existing(&path, Access::ReadWrite).unwrap();
        assert_eq!(len, 4096);
        // An empty file maps nothing: an error, not a fault.
        let f = open_existing(&path, Access::ReadOnly).unwrap().0;
        f.set_len(0).unwrap_err(); // read-only descriptor
        drop(f);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert!(ShmFile::open(&path, Access::ReadOnly).is_err());
        drop(w);
    }

    #[test]
    fn owner_does_not_remove_a_newer_file() {
        let d = TestDir::new("shm-newer");
        let path = d.file("n.ctl");
        let old = ShmFile::create(&path, 4096, REGION_MODE).unwrap();
        let new = ShmFile::create(&path, 8192, REGION_MODE).unwrap();
        drop(old);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
        assert_eq!(path_id(&path).unwrap(), {
            let (f, _) = open_existing(&path, Access::ReadOnly).unwrap();
            file_id(&f).unwrap()
        });
        drop(new);
        assert!(!path.exists());
    }
}
