//! Path resolution inside the container root.
//!
//! Two mechanisms, picked when the root is opened:
//!
//! - `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` (and `RESOLVE_NO_SYMLINKS` for
//!   paths that must already be canonical): the kernel does the walk and guarantees that neither
//!   `..` nor a symlink (absolute or relative) leaves the root.
//! - a user-space walk, one component at a time, each step an `openat(O_PATH | O_NOFOLLOW)` on the
//!   directory descriptor reached so far. Symlinks are read with `readlinkat` on the link's own
//!   descriptor and their components pushed back onto the queue; an absolute target restarts from
//!   the root descriptor, and `..` pops the stack of directories walked, never above the root. No
//!   step ever asks the kernel to follow anything, so a component swapped for a symlink while we
//!   walk is seen as a symlink and handled inside the root, never followed on the host.
//!
//! The walk also yields the canonical in-root path, which is what the journal records; the
//! `openat2` mechanism then re-resolves journaled paths with `RESOLVE_NO_SYMLINKS`, so a path that
//! gained a symlink since it was recorded is refused rather than followed.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{fstat, openat, openat2, readlinkat, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::meta::{FileKind, Meta};
use crate::error::{Error, Result};

/// The most symlinks followed in one resolution, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// How paths are resolved inside the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// `openat2(2)` with `RESOLVE_IN_ROOT` (Linux 5.6 and later).
    Openat2,
    /// A user-space walk, one `O_PATH | O_NOFOLLOW` component at a time; used where `openat2` is
    /// missing (older kernels, seccomp profiles that block it).
    Walk,
}

impl Backend {
    /// The best mechanism the running kernel offers, probed on `root`.
    pub(crate) fn probe(root: BorrowedFd<'_>) -> Backend {
        match openat2(root, ".", OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), in_root()) {
            Ok(_) => Backend::Openat2,
            Err(_) => Backend::Walk,
        }
    }
}

fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// One entry reached by a walk.
pub(crate) struct Step {
    pub fd: OwnedFd,
    pub name: OsString,
    pub meta: Meta,
}

/// The outcome of a walk: the entries from the root down to the last one that exists.
pub(crate) struct Walked {
    /// Entries below the root, in order. Empty when the path is the root itself.
    pub steps: Vec<Step>,
    /// Trailing components that do not exist (only when the walk allowed it), plain names.
    pub missing: Vec<OsString>,
}

impl Walked {
    /// The canonical in-root path of the last existing entry.
    pub fn existing_path(&self) -> PathBuf {
        let mut p = PathBuf::from("/");
        for s in &self.steps {
            p.push(&s.name);
        }
        p
    }

    /// The canonical in-root path including the missing components.
    pub fn full_path(&self) -> PathBuf {
        let mut p = self.existing_path();
        for m in &self.missing {
            p.push(m);
        }
        p
    }
}

/// Splits an in-root path into components. It must be absolute; `.` is dropped, `..` kept.
pub(crate) fn components(path: &Path) -> Result<VecDeque<OsString>> {
    if !path.has_root() {
        return Err(Error::InvalidPath {
            path: path.to_owned(),
            reason: "paths inside the container root must be absolute",
        });
    }
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(Error::InvalidPath {
            path: path.to_owned(),
            reason: "contains a NUL byte",
        });
    }
    Ok(path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect())
}

/// Walks `path` from `root` in user space. See the module documentation.
///
/// `follow_final` decides whether a symlink in the last position is followed. With
/// `allow_missing`, the walk stops at the first component that does not exist and reports the
/// rest in [`Walked::missing`] (which must then be plain names). With `no_symlinks`, any symlink
/// on the way is an error.
pub(crate) fn walk(
    root: BorrowedFd<'_>,
    path: &Path,
    follow_final: bool,
    allow_missing: bool,
    no_symlinks: bool,
) -> Result<Walked> {
    let mut pending = components(path)?;
    let mut steps: Vec<Step> = Vec::new();
    let mut links = 0usize;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            steps.pop();
            continue;
        }
        let here = || {
            let mut p = PathBuf::from("/");
            for s in &steps {
                p.push(&s.name);
            }
            p.push(&name);
            p
        };
        let dir = steps.last().map(|s| s.fd.as_fd()).unwrap_or(root);
        if let Some(last) = steps.last() {
            if last.meta.kind != FileKind::Dir {
                return Err(Error::unsafe_tree(
                    here(),
                    format!("a path component is {}, not a directory", last.meta.kind.describe()),
                ));
            }
        }
        let fd = match openat(
            dir,
            &name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if allow_missing => {
                let at = here();
                let mut missing = vec![name];
                missing.extend(pending);
                if missing.iter().any(|m| m == "..") {
                    if links > 0 {
                        // The `..` came from a link target: the tree's doing, not the caller's.
                        return Err(Error::unsafe_tree(
                            at,
                            "a symbolic link leads into a directory that does not exist and back out with `..`",
                        ));
                    }
                    return Err(Error::InvalidPath {
                        path: path.to_owned(),
                        reason: "`..` after a component that does not exist",
                    });
                }
                return Ok(Walked { steps, missing });
            }
            Err(e) => return Err(Error::io("resolve", here(), e)),
        };
        let meta = Meta::from_stat(&fstat(&fd).map_err(|e| Error::io("stat", here(), e))?);
        let is_last = pending.is_empty();
        if meta.kind == FileKind::Symlink && (!is_last || follow_final) {
            if no_symlinks {
                return Err(Error::unsafe_tree(here(), "a path component is a symbolic link"));
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Error::unsafe_tree(here(), "too many levels of symbolic links"));
            }
            let target = readlinkat(&fd, "", Vec::new()).map_err(|e| Error::io("readlink", here(), e))?;
            let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
            if target.as_os_str().is_empty() {
                return Err(Error::unsafe_tree(here(), "empty symbolic link"));
            }
            if target.has_root() {
                steps.clear();
            }
            let mut rest: VecDeque<OsString> = target
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_owned()),
                    Component::ParentDir => Some(OsString::from("..")),
                    _ => None,
                })
                .collect();
            rest.extend(pending);
            pending = rest;
            continue;
        }
        steps.push(Step { fd, name, meta });
    }
    Ok(Walked {
        steps,
        missing: Vec::new(),
    })
}

/// Opens a directory by its canonical in-root path, refusing any symlink on the way.
pub(crate) fn open_canonical_dir(root: BorrowedFd<'_>, backend: Backend, path: &Path) -> Result<(OwnedFd, Meta)> {
    let fd = match backend {
        Backend::Openat2 => {
            components(path)?;
            let how = in_root() | ResolveFlags::NO_SYMLINKS;
            let rel = path.strip_prefix("/").unwrap_or(path);
            let rel = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            };
            match openat2(
                root,
                rel,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                how,
            ) {
                Ok(fd) => fd,
                Err(Errno::LOOP) => {
                    return Err(Error::unsafe_tree(path, "a path component is a symbolic link"));
                }
                Err(Errno::NOTDIR) => {
                    return Err(Error::unsafe_tree(path, "a path component is not a directory"));
                }
                Err(e) => return Err(Error::io("resolve", path, e)),
            }
        }
        Backend::Walk => {
            let mut w = walk(root, path, false, false, true)?;
            match w.steps.pop() {
                Some(s) => s.fd,
                None => rustix::io::fcntl_dupfd_cloexec(root, 0).map_err(|e| Error::io("dup", path, e))?,
            }
        }
    };
    let meta = Meta::from_stat(&fstat(&fd).map_err(|e| Error::io("stat", path, e))?);
    if meta.kind != FileKind::Dir {
        return Err(Error::unsafe_tree(
            path,
            format!("expected a directory, found {}", meta.kind.describe()),
        ));
    }
    Ok((fd, meta))
}

/// Resolves `path` following symlinks inside the root and opens the result with `O_PATH`.
///
/// Returns the descriptor; used where only the final object matters (reading, stat).
pub(crate) fn open_follow(root: BorrowedFd<'_>, backend: Backend, path: &Path) -> Result<Option<OwnedFd>> {
    match backend {
        Backend::Openat2 => {
            components(path)?;
            let rel = path.strip_prefix("/").unwrap_or(path);
            let rel = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel
            };
            match openat2(root, rel, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), in_root()) {
                Ok(fd) => Ok(Some(fd)),
                Err(Errno::NOENT) => Ok(None),
                Err(Errno::LOOP) => Err(Error::unsafe_tree(path, "too many levels of symbolic links")),
                Err(Errno::NOTDIR) => Err(Error::unsafe_tree(path, "a path component is not a directory")),
                Err(Errno::XDEV) => Err(Error::unsafe_tree(path, "resolution tried to leave the root")),
                Err(e) => Err(Error::io("resolve", path, e)),
            }
        }
        Backend::Walk => {
            let mut w = walk(root, path, true, true, false)?;
            if !w.missing.is_empty() {
                return Ok(None);
            }
            match w.steps.pop() {
                Some(s) => Ok(Some(s.fd)),
                None => Ok(Some(
                    rustix::io::fcntl_dupfd_cloexec(root, 0).map_err(|e| Error::io("dup", path, e))?,
                )),
            }
        }
    }
}
