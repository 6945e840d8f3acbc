//! The container root handle.
//!
//! [`ContainerRoot`] is opened once on the rootfs directory; every later access to the container
//! filesystem is a method on it, and every path is resolved inside it (see the `walk` module for how). The
//! read side is public. The write side is crate-private and only reachable through
//! [`crate::install`], so that nothing mutates the tree without a journal record first.
//!
//! Mutations work on a directory descriptor plus one final name (`DirHandle`), never on a path
//! string the kernel would resolve again: the directory is reached once, by canonical path with
//! symlinks refused, and every `*at` call names a single component with `O_NOFOLLOW` semantics.

mod meta;
pub(crate) mod walk;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rustix::fs::{
    fchmod, fchown, fstat, futimens, mkdirat, openat, renameat_with, statat, symlinkat, unlinkat, AtFlags, Mode,
    OFlags, RenameFlags, Timestamps,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

pub use self::meta::{FileKind, Identity, Meta, Time};
pub use self::walk::Backend;
use crate::error::{Error, Result};
use crate::failpoint;

/// Default upper bound on the size of a file read from the container (64 MiB): far above any real
/// trust bundle (15,000 certificates is about 21 MB), far below what would hurt the host.
pub const DEFAULT_READ_LIMIT: u64 = 64 << 20;

/// The extended attribute holding a file's SELinux label.
const SELINUX_XATTR: &str = "security.selinux";

/// An open container root filesystem. See the module documentation.
#[derive(Debug)]
pub struct ContainerRoot {
    fd: OwnedFd,
    host_path: PathBuf,
    backend: Backend,
    read_limit: u64,
    /// Path lookups remembered while [`ContainerRoot::memoized`] runs; `None` otherwise.
    memo: Mutex<Option<Memo>>,
}

/// What lookups by path found, kept for the span of one [`ContainerRoot::memoized`] call. Only
/// answers are kept, no descriptors, and never a failure.
#[derive(Debug, Default)]
struct Memo {
    metadata: HashMap<PathBuf, Option<Meta>>,
    symlink_metadata: HashMap<PathBuf, Option<Meta>>,
    canonical: HashMap<PathBuf, PathBuf>,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name.
    pub name: OsString,
    /// Its type (not following symlinks).
    pub kind: FileKind,
}

impl ContainerRoot {
    /// Opens the root filesystem at `path` (a host path, the container's rootfs directory) with
    /// the best resolution mechanism the kernel offers.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_inner(path.as_ref(), None)
    }

    /// Opens the root filesystem with a chosen resolution mechanism (tests run every backend).
    pub fn open_with_backend(path: impl AsRef<Path>, backend: Backend) -> Result<Self> {
        Self::open_inner(path.as_ref(), Some(backend))
    }

    fn open_inner(path: &Path, backend: Option<Backend>) -> Result<Self> {
        let open_err = |source: std::io::Error| Error::OpenRoot {
            path: path.to_owned(),
            cause: source,
        };
        let host_path = std::fs::canonicalize(path).map_err(open_err)?;
        let fd = rustix::fs::open(&host_path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| open_err(e.into()))?;
        let st = fstat(&fd).map_err(|e| open_err(e.into()))?;
        if Meta::from_stat(&st).kind != FileKind::Dir {
            return Err(Error::RootNotDirectory { path: path.to_owned() });
        }
        let backend = backend.unwrap_or_else(|| Backend::probe(fd.as_fd()));
        Ok(ContainerRoot {
            fd,
            host_path,
            backend,
            read_limit: DEFAULT_READ_LIMIT,
            memo: Mutex::new(None),
        })
    }

    /// Runs `f` with lookups by path remembered: within it, [`ContainerRoot::metadata`],
    /// [`ContainerRoot::symlink_metadata`] and [`ContainerRoot::canonicalize`] resolve each path
    /// once, and later calls for it get the first answer.
    ///
    /// For making a plan, which looks at the same places several times over (the detection, then
    /// the family's layout, then Go's list of bundles) and changes nothing: a plan is only ever a
    /// proposal, and the install checks every entry again as it changes it. Nothing that
    /// mutates the tree may run inside `f`: the transaction canonicalizes paths too, and must see
    /// the tree as it is. Crate-private for that reason, and only `installer::plan` calls it.
    /// Nested calls share the outer call's memo.
    pub(crate) fn memoized<T>(&self, f: impl FnOnce() -> T) -> T {
        let outer = {
            let mut memo = self.memo();
            let outer = memo.is_some();
            if !outer {
                *memo = Some(Memo::default());
            }
            outer
        };
        // Cleared on the way out even if `f` unwinds.
        struct Clear<'a>(&'a ContainerRoot, bool);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    *self.0.memo() = None;
                }
            }
        }
        let _clear = Clear(self, outer);
        f()
    }

    fn memo(&self) -> MutexGuard<'_, Option<Memo>> {
        // A panic while the lock was held left at worst a partial memo of true answers.
        self.memo.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `lookup` of `path`, from `table` of the memo when one is kept and it holds `path`.
    fn remembered<T: Clone>(
        &self,
        path: &Path,
        table: fn(&mut Memo) -> &mut HashMap<PathBuf, T>,
        lookup: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        if let Some(memo) = self.memo().as_mut() {
            if let Some(found) = table(memo).get(path) {
                return Ok(found.clone());
            }
        } else {
            return lookup();
        }
        // Looked up without the lock held: `lookup` may itself ask for other paths.
        let found = lookup()?;
        if let Some(memo) = self.memo().as_mut() {
            table(memo).insert(path.to_owned(), found.clone());
        }
        Ok(found)
    }

    /// Sets the largest file [`ContainerRoot::read_file`] accepts.
    pub fn with_read_limit(mut self, limit: u64) -> Self {
        self.read_limit = limit;
        self
    }

    /// The largest file read from the container.
    pub fn read_limit(&self) -> u64 {
        self.read_limit
    }

    /// The resolution mechanism in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The canonical host path the root was opened at. For messages and for matching a journal to
    /// its root only: nothing may build a path into the container from it.
    pub fn host_path_for_display(&self) -> &Path {
        &self.host_path
    }

    /// Metadata of the root directory itself.
    pub fn root_meta(&self) -> Result<Meta> {
        Ok(Meta::from_stat(
            &fstat(&self.fd).map_err(|e| Error::io("stat", "/", e))?,
        ))
    }

    /// Metadata of `path`, following symlinks inside the root. `None` if it does not exist.
    pub fn metadata(&self, path: impl AsRef<Path>) -> Result<Option<Meta>> {
        let path = path.as_ref();
        self.remembered(path, |m| &mut m.metadata, || self.metadata_now(path))
    }

    fn metadata_now(&self, path: &Path) -> Result<Option<Meta>> {
        match walk::open_follow(self.fd.as_fd(), self.backend, path)? {
            Some(fd) => Ok(Some(Meta::from_stat(
                &fstat(&fd).map_err(|e| Error::io("stat", path, e))?,
            ))),
            None => Ok(None),
        }
    }

    /// Metadata of `path` itself (a final symlink is not followed). `None` if it does not exist.
    pub fn symlink_metadata(&self, path: impl AsRef<Path>) -> Result<Option<Meta>> {
        let path = path.as_ref();
        self.remembered(path, |m| &mut m.symlink_metadata, || self.symlink_metadata_now(path))
    }

    fn symlink_metadata_now(&self, path: &Path) -> Result<Option<Meta>> {
        let w = walk::walk(self.fd.as_fd(), self.backend, path, false, true, false)?;
        if !w.missing.is_empty() {
            return Ok(None);
        }
        Ok(Some(match w.steps.last() {
            Some(s) => s.meta,
            None => self.root_meta()?,
        }))
    }

    /// The canonical form of `path` inside the root: symlinks resolved as the container would,
    /// no `.` or `..`. Trailing components that do not exist yet are kept as given.
    pub fn canonicalize(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let path = path.as_ref();
        self.remembered(
            path,
            |m| &mut m.canonical,
            || Ok(walk::walk(self.fd.as_fd(), self.backend, path, true, true, false)?.full_path()),
        )
    }

    /// Reads the target of the symlink at `path`.
    pub fn read_link(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let path = path.as_ref();
        let w = walk::walk(self.fd.as_fd(), self.backend, path, false, false, false)?;
        match w.steps.last() {
            Some(s) if s.meta.kind == FileKind::Symlink => {
                let t = rustix::fs::readlinkat(&s.fd, "", Vec::new()).map_err(|e| Error::io("readlink", path, e))?;
                Ok(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
            }
            _ => Err(Error::unsafe_tree(path, "not a symbolic link")),
        }
    }

    /// Reads a regular file, following symlinks inside the root, up to the read limit.
    ///
    /// Anything but a regular file (FIFO, socket, device, directory) is refused before it is
    /// opened for reading, so nothing blocks and no device is touched; the read itself stops at the
    /// limit whatever the file's reported size.
    pub fn read_file(&self, path: impl AsRef<Path>) -> Result<Vec<u8>> {
        let path = path.as_ref();
        self.with_regular(path, |parent, name, meta| {
            read_regular(parent, name, meta, path, self.read_limit).map(|(bytes, _)| bytes)
        })
    }

    /// Resolves `path` to a regular file's parent directory, name and metadata, for `f`.
    fn with_regular<T>(&self, path: &Path, f: impl FnOnce(BorrowedFd<'_>, &OsStr, &Meta) -> Result<T>) -> Result<T> {
        let w = walk::walk(self.fd.as_fd(), self.backend, path, true, false, false)?;
        let Some(step) = w.steps.last() else {
            return Err(Error::unsafe_tree(
                path,
                "expected a regular file, found the root directory",
            ));
        };
        let parent = w
            .steps
            .len()
            .checked_sub(2)
            .map(|i| w.steps[i].fd.as_fd())
            .unwrap_or(self.fd.as_fd());
        f(parent, &step.name, &step.meta)
    }

    /// Reads a regular file like [`ContainerRoot::read_file`], handing it to `f` in chunks
    /// instead of holding it whole. Returns its length.
    pub fn read_file_chunks(&self, path: impl AsRef<Path>, f: impl FnMut(&[u8])) -> Result<u64> {
        let path = path.as_ref();
        let (fd, _) = self.with_regular(path, |parent, name, meta| {
            open_regular(parent, name, meta, path, self.read_limit)
        })?;
        stream(&std::fs::File::from(fd), self.read_limit, path, f)
    }

    /// Lists a directory (following symlinks inside the root to reach it), sorted by name.
    pub fn read_dir(&self, path: impl AsRef<Path>) -> Result<Vec<DirEntry>> {
        let path = path.as_ref();
        let fd = walk::open_follow(self.fd.as_fd(), self.backend, path)?
            .ok_or_else(|| Error::io("open directory", path, Errno::NOENT))?;
        let dir = openat(&fd, ".", LIST_FLAGS, Mode::empty()).map_err(|e| Error::io("open directory", path, e))?;
        list(&fd, dir, path)
    }

    /// [`ContainerRoot::read_dir`] where a directory may or may not be: `Ok(None)` when nothing
    /// is at `path` or it is not a directory (symlinks followed inside the root). The path is
    /// resolved once, not looked at and then listed.
    pub fn read_dir_if_dir(&self, path: impl AsRef<Path>) -> Result<Option<Vec<DirEntry>>> {
        let path = path.as_ref();
        let Some(fd) = walk::open_follow(self.fd.as_fd(), self.backend, path)? else {
            return Ok(None);
        };
        match openat(&fd, ".", LIST_FLAGS, Mode::empty()) {
            Ok(dir) => list(&fd, dir, path).map(Some),
            Err(Errno::NOTDIR) => Ok(None),
            Err(e) => Err(Error::io("open directory", path, e)),
        }
    }

    /// Resolves the parent directory of `path` for creating entries: symlinks on the way are
    /// followed inside the root, components that do not exist are reported, not created.
    pub(crate) fn plan_parent(&self, path: &Path) -> Result<(PathBuf, Vec<OsString>, Meta)> {
        let w = walk::walk(self.fd.as_fd(), self.backend, path, true, true, false)?;
        let meta = match w.steps.last() {
            Some(s) => s.meta,
            None => self.root_meta()?,
        };
        if meta.kind != FileKind::Dir {
            return Err(Error::unsafe_tree(
                w.existing_path(),
                format!("expected a directory, found {}", meta.kind.describe()),
            ));
        }
        Ok((w.existing_path(), w.missing, meta))
    }

    /// Opens a directory by canonical in-root path for mutation. Symlinks anywhere are refused.
    pub(crate) fn dir(&self, path: &Path) -> Result<DirHandle> {
        let (fd, meta) = walk::open_canonical_dir(self.fd.as_fd(), self.backend, path)?;
        Ok(DirHandle {
            fd,
            path: path.to_owned(),
            meta,
        })
    }

    /// Like [`ContainerRoot::dir`], but `Ok(None)` when the directory (or a parent) is gone.
    pub(crate) fn dir_if_exists(&self, path: &Path) -> Result<Option<DirHandle>> {
        match self.dir(path) {
            Ok(d) => Ok(Some(d)),
            Err(Error::Io { cause, .. }) if cause.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Opens `name` in `parent` for reading if it is the regular file `expected` describes, and reads
/// it up to `limit` bytes.
fn read_regular(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    expected: &Meta,
    display: &Path,
    limit: u64,
) -> Result<(Vec<u8>, OwnedFd)> {
    let (fd, now) = open_regular(parent, name, expected, display, limit)?;
    let file = std::fs::File::from(fd);
    // The size fstat reported (checked against the limit), in one read: the end is not read
    // for. Nothing writes to it meanwhile (the container is not running); a file that grew would
    // be read to that size, one cut short to its end.
    let mut buf = vec![0u8; now.size as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match (&file).read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", display, e)),
        }
    }
    buf.truncate(filled);
    Ok((buf, OwnedFd::from(file)))
}

/// Opens `name` in `parent` for reading if it is the regular file `expected` describes and not
/// larger than `limit`.
fn open_regular(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    expected: &Meta,
    display: &Path,
    limit: u64,
) -> Result<(OwnedFd, Meta)> {
    if expected.kind != FileKind::File {
        return Err(Error::unsafe_tree(
            display,
            format!("expected a regular file, found {}", expected.kind.describe()),
        ));
    }
    if expected.size > limit {
        return Err(Error::TooLarge {
            path: display.to_owned(),
            size: expected.size,
            limit,
        });
    }
    // O_NONBLOCK and O_NOCTTY: should the entry have been swapped for a FIFO or a terminal since
    // it was checked, opening it neither blocks nor acquires it; the identity check then refuses.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = openat(parent, name, flags, Mode::empty()).map_err(|e| Error::io("open", display, e))?;
    let now = Meta::from_stat(&fstat(&fd).map_err(|e| Error::io("stat", display, e))?);
    if !expected.identity().matches(&now, true) {
        return Err(Error::unsafe_tree(
            display,
            "the file was replaced while it was being opened",
        ));
    }
    if now.size > limit {
        return Err(Error::TooLarge {
            path: display.to_owned(),
            size: now.size,
            limit,
        });
    }
    Ok((fd, now))
}

/// A directory inside the root, reached by canonical path, on which entries are created and
/// removed by single names.
#[derive(Debug)]
pub(crate) struct DirHandle {
    fd: OwnedFd,
    path: PathBuf,
    meta: Meta,
}

/// Extended attributes of one entry, as (name, value) pairs.
pub(crate) type Xattrs = Vec<(OsString, Vec<u8>)>;

/// Ownership, mode and attributes to give a new entry.
#[derive(Clone, Debug)]
pub(crate) struct NewAttrs {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub xattrs: Xattrs,
    pub times: Option<(Time, Time)>,
}

impl NewAttrs {
    /// The owner, group and mode of `meta`, with `xattrs` and `times` (`None`: the new entry's
    /// own): for a file that takes the place of the one `meta` describes.
    pub fn like(meta: &Meta, xattrs: Xattrs, times: Option<(Time, Time)>) -> NewAttrs {
        NewAttrs {
            uid: meta.uid,
            gid: meta.gid,
            mode: meta.mode,
            xattrs,
            times,
        }
    }
}

impl DirHandle {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Whether the directory is on an overlay file system (`fstatfs`, which an `O_PATH`
    /// descriptor allows; false when it fails).
    pub fn on_overlayfs(&self) -> bool {
        /// `OVERLAYFS_SUPER_MAGIC` from `linux/magic.h`.
        const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;
        rustix::fs::fstatfs(&self.fd).is_ok_and(|s| s.f_type as u64 == OVERLAYFS_SUPER_MAGIC)
    }

    fn child(&self, name: &OsStr) -> PathBuf {
        join_name(&self.path, name)
    }

    /// Metadata of `name` in this directory, not following symlinks.
    pub fn lstat(&self, name: &OsStr) -> Result<Option<Meta>> {
        match Meta::statx_at(self.fd.as_fd(), name) {
            Ok(meta) => Ok(Some(meta)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::io("stat", self.child(name), e)),
        }
    }

    /// Reads the regular file `name` (no symlink followed) up to `limit` bytes, with its metadata
    /// and extended attributes.
    pub fn read(&self, name: &OsStr, limit: u64) -> Result<(Vec<u8>, Meta, Xattrs)> {
        let display = self.child(name);
        let meta = self
            .lstat(name)?
            .ok_or_else(|| Error::io("open", display.clone(), Errno::NOENT))?;
        let (bytes, fd) = read_regular(self.fd.as_fd(), name, &meta, &display, limit)?;
        let xattrs = read_xattrs(fd.as_fd(), &display)?;
        Ok((bytes, meta, xattrs))
    }

    /// Opens the regular file `name` (no symlink followed) for changing it in place, with its
    /// metadata taken from the open descriptor. `Ok(None)` when it must not be written through:
    /// it has other names (a hard link may lead out of the root, into the host or into an image
    /// store shared with other containers), it is a mount point (a file bind-mounted from
    /// elsewhere), or it cannot be opened for writing although its directory might allow a
    /// replacement. The caller then replaces the file instead, which never writes to an existing
    /// inode.
    pub fn open_in_place(&self, name: &OsStr) -> Result<Option<InPlace>> {
        self.open_single(name, OFlags::RDWR)
    }

    /// Opens the regular file `name` (no symlink followed) read-only: to read and check it, or as
    /// the source of a copy that replaces it ([`DirHandle::create_file_from`]). Writing through it
    /// fails; setting its times does not (that takes owning the file, not write access). On an
    /// overlay file system this leaves a file of the image's layers where it is, where opening
    /// it for writing would copy it up. `Ok(None)` when the file has other names or is a mount
    /// point, as for [`DirHandle::open_in_place`].
    pub fn open_to_copy(&self, name: &OsStr) -> Result<Option<InPlace>> {
        self.open_single(name, OFlags::RDONLY)
    }

    /// [`DirHandle::open_in_place`] and [`DirHandle::open_to_copy`], opening with `access`.
    fn open_single(&self, name: &OsStr, access: OFlags) -> Result<Option<InPlace>> {
        let display = self.child(name);
        let before = self
            .lstat(name)?
            .ok_or_else(|| Error::io("open", display.clone(), Errno::NOENT))?;
        if before.kind != FileKind::File {
            return Err(Error::unsafe_tree(
                &display,
                format!("expected a regular file, found {}", before.kind.describe()),
            ));
        }
        if before.nlink != 1 {
            return Ok(None);
        }
        let flags = access | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = match openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ACCESS | Errno::PERM | Errno::TXTBSY) if access != OFlags::RDONLY => return Ok(None),
            Err(e) => return Err(Error::io("open", display, e)),
        };
        let meta = Meta::statx_at(fd.as_fd(), OsStr::new("")).map_err(|e| Error::io("stat", &display, e))?;
        // Compared with the name as it is now, after the open: on an overlay file system the
        // open itself may have copied the file up.
        let now = self.lstat(name)?;
        if meta.kind != FileKind::File || !now.is_some_and(|n| n.identity().matches(&meta, true)) {
            return Err(Error::unsafe_tree(
                &display,
                "the file was replaced while it was being opened",
            ));
        }
        let same_mount = match (mount_id(fd.as_fd()), mount_id(self.fd.as_fd())) {
            (Some(file), Some(dir)) => file == dir,
            _ => false,
        };
        if meta.nlink != 1 || !same_mount {
            return Ok(None);
        }
        Ok(Some(InPlace {
            file: std::fs::File::from(fd),
            meta,
            display,
        }))
    }

    /// Reads the regular file `name` (no symlink followed), which `expected` describes, up to
    /// `limit` bytes; an error when it is another entry by the time it is opened.
    pub fn read_contents(&self, name: &OsStr, expected: &Meta, limit: u64) -> Result<Vec<u8>> {
        read_regular(self.fd.as_fd(), name, expected, &self.child(name), limit).map(|(bytes, _)| bytes)
    }

    /// The target of the symlink `name` in this directory.
    pub fn read_link(&self, name: &OsStr) -> Result<PathBuf> {
        let t = rustix::fs::readlinkat(&self.fd, name, Vec::new())
            .map_err(|e| Error::io("readlink", self.child(name), e))?;
        Ok(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
    }

    /// The directory's own extended attributes.
    pub fn xattrs(&self) -> Result<Xattrs> {
        let fd = self.reopen_rdonly()?;
        read_xattrs(fd.as_fd(), &self.path)
    }

    /// Attributes a new entry in this directory inherits: owner, group and SELinux label.
    pub fn inherited(&self, mode: u32) -> Result<NewAttrs> {
        let label = self.xattrs()?.into_iter().filter(|(n, _)| n == SELINUX_XATTR).collect();
        Ok(NewAttrs {
            uid: self.meta.uid,
            gid: self.meta.gid,
            mode,
            xattrs: label,
            times: None,
        })
    }

    fn reopen_rdonly(&self) -> Result<OwnedFd> {
        openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open directory", &self.path, e))
    }

    /// Creates the regular file `name` exclusively (never through an existing entry), writes
    /// `contents`, then applies owner, mode, attributes and times. Returns the new file's metadata.
    pub fn create_file(&self, name: &OsStr, contents: &[u8], attrs: &NewAttrs, durable: bool) -> Result<Meta> {
        self.create_file_with(name, attrs, durable, |file, display| {
            std::io::Write::write_all(&mut &*file, contents).map_err(|e| Error::io("write", display, e))
        })
    }

    /// Creates the regular file `name` exclusively, like [`DirHandle::create_file`], holding the
    /// first `len` bytes of `source` (copied in the kernel where the file system can) with each
    /// of `overwrite` (offset, bytes) written over it, before the attributes and times are set.
    pub fn create_file_from(
        &self,
        name: &OsStr,
        source: &InPlace,
        len: u64,
        overwrite: &[(u64, &[u8])],
        attrs: &NewAttrs,
        durable: bool,
    ) -> Result<Meta> {
        self.create_file_with(name, attrs, durable, |file, display| {
            source.copy_prefix(file, len, display)?;
            for (at, bytes) in overwrite {
                std::os::unix::fs::FileExt::write_all_at(file, bytes, *at)
                    .map_err(|e| Error::io("write", display, e))?;
            }
            Ok(())
        })
    }

    /// Creates `name` exclusively, lets `fill` write it, then applies the attributes and, when
    /// `durable`, flushes it.
    fn create_file_with(
        &self,
        name: &OsStr,
        attrs: &NewAttrs,
        durable: bool,
        fill: impl FnOnce(&std::fs::File, &Path) -> Result<()>,
    ) -> Result<Meta> {
        failpoint::hit()?;
        let display = self.child(name);
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // Created with its final permission bits (less the umask, which the mode change below
        // then undoes): the name is a random temporary one, the contents are certificates.
        let fd = openat(&self.fd, name, flags, Mode::from_raw_mode(attrs.mode & 0o777)).map_err(|e| match e {
            Errno::EXIST => Error::AlreadyExists { path: display.clone() },
            e => Error::io("create", display.clone(), e),
        })?;
        let file = std::fs::File::from(fd);
        fill(&file, &display)?;
        let made = Meta::statx_at(file.as_fd(), OsStr::new("")).map_err(|e| Error::io("stat", &display, e))?;
        let made = apply_attrs(file.as_fd(), attrs, &display, made)?;
        if durable {
            rustix::fs::fsync(&file).map_err(|e| Error::io("fsync", &display, e))?;
        }
        Ok(made)
    }

    /// Creates the symlink `name` pointing at `target`, owned as `attrs` says.
    pub fn create_symlink(&self, name: &OsStr, target: &OsStr, attrs: &NewAttrs) -> Result<Meta> {
        failpoint::hit()?;
        let display = self.child(name);
        symlinkat(target, &self.fd, name).map_err(|e| match e {
            Errno::EXIST => Error::AlreadyExists { path: display.clone() },
            e => Error::io("symlink", display.clone(), e),
        })?;
        rustix::fs::chownat(
            &self.fd,
            name,
            Some(Uid::from_raw(attrs.uid)),
            Some(Gid::from_raw(attrs.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::io("chown", &display, e))?;
        self.lstat(name)?
            .ok_or_else(|| Error::unsafe_tree(&display, "the new symbolic link disappeared"))
    }

    /// Creates the directory `name` with the given attributes.
    pub fn create_dir(&self, name: &OsStr, attrs: &NewAttrs) -> Result<Meta> {
        failpoint::hit()?;
        let display = self.child(name);
        mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)).map_err(|e| match e {
            Errno::EXIST => Error::AlreadyExists { path: display.clone() },
            e => Error::io("mkdir", display.clone(), e),
        })?;
        let fd = openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io("open directory", &display, e))?;
        let made = Meta::statx_at(fd.as_fd(), OsStr::new("")).map_err(|e| Error::io("stat", &display, e))?;
        apply_attrs(fd.as_fd(), attrs, &display, made)
    }

    /// Renames `from` to `to` within this directory. With `noreplace`, fails if `to` exists.
    pub fn rename(&self, from: &OsStr, to: &OsStr, noreplace: bool) -> Result<()> {
        failpoint::hit()?;
        let flags = if noreplace {
            RenameFlags::NOREPLACE
        } else {
            RenameFlags::empty()
        };
        renameat_with(&self.fd, from, &self.fd, to, flags).map_err(|e| match e {
            Errno::EXIST => Error::AlreadyExists { path: self.child(to) },
            e => Error::io("rename", self.child(to), e),
        })
    }

    /// Removes the non-directory `name`, which the caller has just checked by opening it.
    /// Returns whether it was there.
    pub fn remove_file(&self, name: &OsStr) -> Result<bool> {
        failpoint::hit()?;
        match unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io("remove", self.child(name), e)),
        }
    }

    /// Removes `name` if it is still the entry `expected` identifies. Returns whether it was
    /// removed; a directory that is not empty is left (and `false` returned).
    pub fn remove_if(&self, name: &OsStr, expected: impl Fn(&Meta) -> bool) -> Result<bool> {
        let Some(meta) = self.lstat(name)? else {
            return Ok(false);
        };
        if !expected(&meta) {
            return Ok(false);
        }
        failpoint::hit()?;
        let flags = if meta.kind == FileKind::Dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match unlinkat(&self.fd, name, flags) {
            Ok(()) => Ok(true),
            Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOENT) => Ok(false),
            Err(e) => Err(Error::io("remove", self.child(name), e)),
        }
    }

    /// Sets the access and modification times of this directory itself.
    pub fn set_own_times(&self, atime: Time, mtime: Time) -> Result<()> {
        failpoint::hit()?;
        let fd = self.reopen_rdonly()?;
        set_times(fd.as_fd(), atime, mtime, &self.path)
    }
}

/// Reads `file` from its start in chunks handed to `f`, up to `limit` bytes (an error past that).
/// Returns the number of bytes read.
fn stream(file: &std::fs::File, limit: u64, display: &Path, mut f: impl FnMut(&[u8])) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut chunk = ChunkBuf::take();
    let buf: &mut [u8] = &mut chunk.0;
    let mut at = 0u64;
    loop {
        let n = match file.read_at(&mut *buf, at) {
            Ok(0) => return Ok(at),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", display, e)),
        };
        at += n as u64;
        if at > limit {
            return Err(Error::TooLarge {
                path: display.to_owned(),
                size: at,
                limit,
            });
        }
        f(&buf[..n]);
    }
}

/// The mount a descriptor is on (`statx`'s `stx_mnt_id`); `None` where the kernel does not say.
fn mount_id(fd: BorrowedFd<'_>) -> Option<u64> {
    let st = rustix::fs::statx(fd, "", AtFlags::EMPTY_PATH, rustix::fs::StatxFlags::MNT_ID).ok()?;
    (st.stx_mask & rustix::fs::StatxFlags::MNT_ID.bits() != 0).then_some(st.stx_mnt_id)
}

/// A regular file inside the root with a single name, open for reading and writing in place
/// ([`DirHandle::open_in_place`]) or only for reading, to be copied ([`DirHandle::open_to_copy`]).
#[derive(Debug)]
pub(crate) struct InPlace {
    file: std::fs::File,
    /// Its metadata when it was opened.
    pub meta: Meta,
    display: PathBuf,
}

/// Size of the chunks files are read in for hashing and scanning. Below glibc's mmap threshold
/// (128 KiB), so that with glibc's allocator the buffer comes from the heap, whose pages earlier
/// allocations have often touched already, instead of a mapping of its own, faulted in page by
/// page and unmapped at exit (the musl build's dlmalloc takes every block from its heap); and
/// large enough that a 17 MB bundle is read in a few hundred calls. Of 16, 32, 64 and
/// 128 KiB, 32 and 64 KiB were within a few percent of each other on one-CA installs, and 64 KiB
/// ahead of the others on a 15,000-certificate bundle.
const CHUNK: usize = 64 << 10;

thread_local! {
    /// The chunk buffer of the last [`stream`] on this thread, kept for the next one.
    static SPARE_CHUNK: std::cell::Cell<Option<Box<[u8]>>> = const { std::cell::Cell::new(None) };
}

/// A [`CHUNK`]-sized read buffer, reused from one [`stream`] to the next on a thread. A fresh
/// one costs a page fault per 4 KiB page at its first fill (a hook streams the bundle and key
/// stores three or four times per call, and each fault costs about as much as copying the page);
/// a reused one costs nothing. A nested stream, finding none spare, gets a new one.
struct ChunkBuf(Box<[u8]>);

impl ChunkBuf {
    fn take() -> ChunkBuf {
        ChunkBuf(
            SPARE_CHUNK
                .take()
                .unwrap_or_else(|| vec![0u8; CHUNK].into_boxed_slice()),
        )
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        SPARE_CHUNK.set(Some(std::mem::take(&mut self.0)));
    }
}

impl InPlace {
    /// Reads the file from its start in chunks handed to `f`, up to `limit` bytes (an error past
    /// that). Returns the number of bytes read.
    pub fn stream(&self, limit: u64, f: impl FnMut(&[u8])) -> Result<u64> {
        stream(&self.file, limit, &self.display, f)
    }

    /// Reads `len` bytes at `offset` (fewer at the end of the file).
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut out = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match self.file.read_at(&mut out[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read", &self.display, e)),
            }
        }
        out.truncate(filled);
        Ok(out)
    }

    /// Writes `bytes` at `offset`, flushed to stable storage when `durable`.
    pub fn write_at(&self, offset: u64, bytes: &[u8], durable: bool) -> Result<()> {
        use std::os::unix::fs::FileExt;
        failpoint::hit()?;
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| Error::io("write", &self.display, e))?;
        if durable {
            rustix::fs::fdatasync(&self.file).map_err(|e| Error::io("fsync", &self.display, e))?;
        }
        Ok(())
    }

    /// Its extended attributes.
    pub fn xattrs(&self) -> Result<Xattrs> {
        read_xattrs(self.file.as_fd(), &self.display)
    }

    /// Copies its first `len` bytes to the start of `dest` (`copy_file_range`, or reads and
    /// writes where the file systems do not support it).
    fn copy_prefix(&self, dest: &std::fs::File, len: u64, display: &Path) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let (mut from, mut to) = (0u64, 0u64);
        while from < len {
            let chunk = (len - from).min(1 << 30) as usize;
            match rustix::fs::copy_file_range(&self.file, Some(&mut from), dest, Some(&mut to), chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(Errno::INTR) => {}
                Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) => {
                    let mut buf = vec![0u8; CHUNK];
                    while from < len {
                        let want = (len - from).min(CHUNK as u64) as usize;
                        let n = self
                            .file
                            .read_at(&mut buf[..want], from)
                            .map_err(|e| Error::io("read", &self.display, e))?;
                        if n == 0 {
                            break;
                        }
                        dest.write_all_at(&buf[..n], to)
                            .map_err(|e| Error::io("write", display, e))?;
                        from += n as u64;
                        to += n as u64;
                    }
                }
                Err(e) => return Err(Error::io("copy", display, e)),
            }
        }
        if from < len {
            return Err(Error::unsafe_tree(
                &self.display,
                "the file was cut short while it was copied",
            ));
        }
        Ok(())
    }

    /// Sets the file's access and modification times.
    pub fn set_times(&self, atime: Time, mtime: Time) -> Result<()> {
        failpoint::hit()?;
        set_times(self.file.as_fd(), atime, mtime, &self.display)
    }
}

fn set_times(fd: BorrowedFd<'_>, atime: Time, mtime: Time, display: &Path) -> Result<()> {
    let ts = Timestamps {
        last_access: atime.to_timespec(),
        last_modification: mtime.to_timespec(),
    };
    futimens(fd, &ts).map_err(|e| Error::io("set times of", display, e))
}

/// Gives the entry `now` describes the owner, mode, attributes and times `attrs` asks for:
/// owner first (chown clears set-id bits), then mode, attributes, and times last; an owner or
/// mode it has already is not set again. Returns its metadata afterwards.
fn apply_attrs(fd: BorrowedFd<'_>, attrs: &NewAttrs, display: &Path, mut now: Meta) -> Result<Meta> {
    if (now.uid, now.gid) != (attrs.uid, attrs.gid) {
        fchown(fd, Some(Uid::from_raw(attrs.uid)), Some(Gid::from_raw(attrs.gid)))
            .map_err(|e| Error::io("chown", display, e))?;
        (now.uid, now.gid) = (attrs.uid, attrs.gid);
        // Forces the mode below: the change of owner may have cleared set-id bits.
        now.mode = u32::MAX;
    }
    if now.mode != attrs.mode {
        fchmod(fd, Mode::from_raw_mode(attrs.mode)).map_err(|e| Error::io("chmod", display, e))?;
        now.mode = attrs.mode;
    }
    for (name, value) in &attrs.xattrs {
        rustix::fs::fsetxattr(fd, name.as_os_str(), value, rustix::fs::XattrFlags::empty())
            .map_err(|e| Error::io("set extended attribute on", display, e))?;
    }
    if let Some((atime, mtime)) = attrs.times {
        set_times(fd, atime, mtime, display)?;
        (now.atime, now.mtime) = (atime, mtime);
    }
    Ok(now)
}

/// All extended attributes of an open (non-`O_PATH`) descriptor, sorted by name.
pub(crate) fn read_xattrs(fd: BorrowedFd<'_>, display: &Path) -> Result<Xattrs> {
    let err = |e| Error::io("read extended attributes of", display, e);
    let mut names = vec![0u8; 1024];
    let len = loop {
        match rustix::fs::flistxattr(fd, &mut names[..]) {
            Ok(len) => break len,
            Err(Errno::RANGE) if names.len() < (1 << 20) => names.resize(names.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        }
    };
    let mut out = Vec::new();
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let mut value = vec![0u8; 256];
        let vlen = loop {
            match rustix::fs::fgetxattr(fd, name, &mut value[..]) {
                Ok(l) => break l,
                Err(Errno::RANGE) if value.len() < (1 << 20) => value.resize(value.len() * 4, 0),
                Err(Errno::NODATA) => break usize::MAX,
                Err(e) => return Err(err(e)),
            }
        };
        if vlen != usize::MAX {
            value.truncate(vlen);
            out.push((name.to_owned(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// `base` joined with `name`, one component (never absolute), as `Path::join` would, in one
/// allocation: `join` copies `base` and then grows the copy. Paths are made for every CA
/// installed.
pub(crate) fn join_name(base: &Path, name: impl AsRef<OsStr>) -> PathBuf {
    let (base, name) = (base.as_os_str(), name.as_ref());
    debug_assert!(!name.as_bytes().starts_with(b"/"), "{name:?} is absolute");
    let mut out = std::ffi::OsString::with_capacity(base.len() + 1 + name.len());
    out.push(base);
    if !base.is_empty() && !base.as_bytes().ends_with(b"/") {
        out.push("/");
    }
    out.push(name);
    PathBuf::from(out)
}

/// How a directory is opened to be listed.
const LIST_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

/// The entries of the directory `dir`, opened for reading from `fd` (its `O_PATH` descriptor, for
/// the entries whose type getdents does not report), sorted by name; `path` names it in errors.
fn list(fd: &OwnedFd, dir: OwnedFd, path: &Path) -> Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    // `Dir::new` reads from this descriptor, which is ours alone; `read_from` would open the
    // directory once more, for a file position of its own.
    for entry in rustix::fs::Dir::new(dir).map_err(|e| Error::io("read directory", path, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", path, e))?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name == "." || name == ".." {
            continue;
        }
        // The entry's type as getdents reports it; only file systems that do not report
        // it cost a stat.
        let kind = match FileKind::from_type(entry.file_type()) {
            FileKind::Unknown => match statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Meta::from_stat(&st).kind,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(Error::io("stat", path.join(name), e)),
            },
            kind => kind,
        };
        out.push(DirEntry {
            name: name.to_owned(),
            kind,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inside `memoized`, a path is looked up once and its first answer stands; outside it, and
    /// after it, every call looks again. Errors are not remembered.
    /// As `Path::join` for one component, whatever the base ends with.
    #[test]
    fn join_name_joins_as_join_does() {
        for base in ["", "/", "/etc", "/etc/", "etc/ssl", "."] {
            for name in ["a.pem", ".hidden", "x y"] {
                assert_eq!(
                    join_name(Path::new(base), name),
                    Path::new(base).join(name),
                    "{base:?} {name:?}"
                );
            }
        }
    }

    #[test]
    fn lookups_are_remembered_only_while_memoized() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("etc/ssl")).unwrap();
        std::fs::write(r.join("etc/ssl/a.pem"), "a").unwrap();
        std::os::unix::fs::symlink("a.pem", r.join("etc/ssl/cert.pem")).unwrap();
        let root = ContainerRoot::open(r).unwrap();
        let kind = |p: &str| root.metadata(p).unwrap().map(|m| m.kind);
        let link_kind = |p: &str| root.symlink_metadata(p).unwrap().map(|m| m.kind);

        root.memoized(|| {
            assert_eq!(kind("/etc/ssl/cert.pem"), Some(FileKind::File));
            assert_eq!(link_kind("/etc/ssl/cert.pem"), Some(FileKind::Symlink));
            assert_eq!(
                root.canonicalize("/etc/ssl/cert.pem").unwrap(),
                Path::new("/etc/ssl/a.pem")
            );
            assert_eq!(kind("/etc/ssl/new.pem"), None);
            assert!(root.metadata("relative").is_err());

            std::fs::remove_file(r.join("etc/ssl/cert.pem")).unwrap();
            std::fs::write(r.join("etc/ssl/b.pem"), "b").unwrap();
            std::os::unix::fs::symlink("b.pem", r.join("etc/ssl/cert.pem")).unwrap();
            std::fs::write(r.join("etc/ssl/new.pem"), "new").unwrap();
            std::fs::write(r.join("etc/other.pem"), "other").unwrap();

            // The first answers stand, nested calls included; a path not asked for yet is
            // looked up.
            root.memoized(|| {
                assert_eq!(
                    root.canonicalize("/etc/ssl/cert.pem").unwrap(),
                    Path::new("/etc/ssl/a.pem")
                );
            });
            assert_eq!(
                root.canonicalize("/etc/ssl/cert.pem").unwrap(),
                Path::new("/etc/ssl/a.pem")
            );
            assert_eq!(kind("/etc/ssl/new.pem"), None);
            assert_eq!(kind("/etc/other.pem"), Some(FileKind::File));
            assert!(root.metadata("relative").is_err());
        });

        // After it, the tree as it is.
        assert_eq!(
            root.canonicalize("/etc/ssl/cert.pem").unwrap(),
            Path::new("/etc/ssl/b.pem")
        );
        assert_eq!(kind("/etc/ssl/new.pem"), Some(FileKind::File));
        std::fs::remove_file(r.join("etc/ssl/new.pem")).unwrap();
        assert_eq!(kind("/etc/ssl/new.pem"), None);
        assert!(root.memo().is_none());
    }
}
