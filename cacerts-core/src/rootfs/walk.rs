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
//!
//! With `openat2`, a walk first asks the kernel for the parent directory with
//! `RESOLVE_NO_SYMLINKS`: most paths asked for are canonical already, and then the parent is
//! reached in one call instead of one per component, and its path is the one given. Anything else
//! (a symlink or `..` on the way, a component missing or not a directory, a final symlink to
//! follow) is walked one component at a time as above, so the outcome and its errors are the
//! user-space walk's.

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
    /// Its path below the step before it (or the root): one component, or several for a
    /// directory the kernel reached in one `openat2` call. When the walk reached the path's last
    /// component, that step's is the component.
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
    Ok(names(path).collect())
}

/// The components of `path` as a walk takes them, in order: each name, and `..` as the name
/// `..`; the root and `.` are dropped.
fn names(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_owned()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

/// Walks `path` from `root`. See the module documentation.
///
/// `follow_final` decides whether a symlink in the last position is followed. With
/// `allow_missing`, the walk stops at the first component that does not exist and reports the
/// rest in [`Walked::missing`] (which must then be plain names). With `no_symlinks`, any symlink
/// on the way is an error.
pub(crate) fn walk(
    root: BorrowedFd<'_>,
    backend: Backend,
    path: &Path,
    follow_final: bool,
    allow_missing: bool,
    no_symlinks: bool,
) -> Result<Walked> {
    let mut pending = components(path)?;
    if backend == Backend::Openat2 {
        if let Some(w) = walk_canonical_parent(
            root,
            pending.make_contiguous(),
            follow_final,
            allow_missing,
            no_symlinks,
        ) {
            return Ok(w);
        }
    }
    walk_user_space(root, path, pending, follow_final, allow_missing, no_symlinks)
}

/// The `openat2` shortcut of [`walk`]: the parent of `components` opened with symlinks refused,
/// then the last component as the user-space walk takes it. `None` for anything that is not that
/// plain case, which the user-space walk then handles (and reports) from the start.
///
/// Two cases short of plain are still taken here, as the user-space walk would take them:
/// - a final symlink to follow (`/etc/os-release -> ../usr/lib/os-release`): its target is read
///   and walked the same way, the `..` at its start taken off the parent's path, which the kernel
///   has just shown to be free of symlinks (a `..` anywhere else goes to the user-space walk);
/// - with `allow_missing`, a parent that does not exist: shorter parents are asked for until one
///   does, and the component below it is checked to be missing.
fn walk_canonical_parent(
    root: BorrowedFd<'_>,
    components: &[OsString],
    follow_final: bool,
    allow_missing: bool,
    no_symlinks: bool,
) -> Option<Walked> {
    if components.iter().any(|c| c == "..") {
        return None;
    }
    let mut followed: Vec<OsString>;
    let mut components = components;
    for _ in 0..=MAX_SYMLINKS {
        let (last, parents) = components.split_last()?;
        let (mut steps, mut missing) = open_parent(root, parents, allow_missing)?;
        if !missing.is_empty() {
            missing.push(last.clone());
            return Some(Walked { steps, missing });
        }
        let dir = steps.last().map(|s| s.fd.as_fd()).unwrap_or(root);
        match openat(
            dir,
            last,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let meta = Meta::from_stat(&fstat(&fd).ok()?);
                if meta.kind == FileKind::Symlink && follow_final {
                    if no_symlinks {
                        return None;
                    }
                    followed = link_target(&fd, parents)?;
                    components = &followed;
                    continue;
                }
                steps.push(Step {
                    fd,
                    name: last.clone(),
                    meta,
                });
                return Some(Walked {
                    steps,
                    missing: Vec::new(),
                });
            }
            Err(Errno::NOENT) if allow_missing => {
                return Some(Walked {
                    steps,
                    missing: vec![last.clone()],
                })
            }
            Err(_) => return None,
        }
    }
    None
}

/// The directory `parents` (in-root components, no `..`) opened with symlinks refused, as the
/// walk's steps, with no missing components; or, with `allow_missing`, the longest of its
/// prefixes that exists, and the components below it, the first of which was seen to be missing.
/// `None` for anything else.
fn open_parent(root: BorrowedFd<'_>, parents: &[OsString], allow_missing: bool) -> Option<(Vec<Step>, Vec<OsString>)> {
    let how = in_root() | ResolveFlags::NO_SYMLINKS;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut upto = parents.len();
    while upto > 0 {
        let mut rel = PathBuf::with_capacity(parents[..upto].iter().map(|p| p.len() + 1).sum());
        rel.extend(&parents[..upto]);
        match openat2(root, &rel, flags, Mode::empty(), how) {
            Ok(fd) => {
                let meta = Meta::from_stat(&fstat(&fd).ok()?);
                let step = Step {
                    fd,
                    name: rel.into_os_string(),
                    meta,
                };
                if upto == parents.len() {
                    return Some((vec![step], Vec::new()));
                }
                // The kernel said a component below is missing; make sure of the first one (it
                // may have appeared since, or be what the error was about in another way).
                return absent(step.fd.as_fd(), &parents[upto]).then(|| (vec![step], parents[upto..].to_vec()));
            }
            Err(Errno::NOENT) if allow_missing => upto -= 1,
            Err(_) => return None,
        }
    }
    if parents.is_empty() {
        return Some((Vec::new(), Vec::new()));
    }
    absent(root, &parents[0]).then(|| (Vec::new(), parents.to_vec()))
}

/// Whether `name` is missing from `dir` (not followed, were it a symlink).
fn absent(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    matches!(openat(dir, name, flags, Mode::empty()), Err(Errno::NOENT))
}

/// The components a final symlink `link` in the directory `parents` leads to: its target after
/// `parents` (or from the root, for an absolute one). A `..` at the target's start takes a
/// component off `parents`, which the kernel has just reached with symlinks refused, so that is
/// where the `..` leads; `None` for a `..` after a name of the target's own (that name may be a
/// symlink), or an empty target.
fn link_target(link: &OwnedFd, parents: &[OsString]) -> Option<Vec<OsString>> {
    let target = readlinkat(link, "", Vec::new()).ok()?;
    let target = Path::new(OsStr::from_bytes(target.as_bytes()));
    if target.as_os_str().is_empty() {
        return None;
    }
    let mut out = if target.has_root() {
        Vec::new()
    } else {
        parents.to_vec()
    };
    let mut named = false;
    for name in names(target) {
        if name != ".." {
            named = true;
            out.push(name);
        } else if named {
            return None;
        } else {
            out.pop();
        }
    }
    Some(out)
}

/// The user-space walk of [`walk`], one component at a time.
fn walk_user_space(
    root: BorrowedFd<'_>,
    path: &Path,
    mut pending: VecDeque<OsString>,
    follow_final: bool,
    allow_missing: bool,
    no_symlinks: bool,
) -> Result<Walked> {
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
            let mut rest: VecDeque<OsString> = names(&target).collect();
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
            let mut w = walk(root, backend, path, false, false, true)?;
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
            let mut w = walk(root, backend, path, true, true, false)?;
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A tree with every kind of link a walk meets: relative and absolute, to files and to
    /// directories, out of the root with `..` and `/`, dangling, looping, and a file where a
    /// directory is expected.
    fn tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir_all(r.join("etc/ssl/certs")).unwrap();
        std::fs::create_dir_all(r.join("usr/share/ca-certificates")).unwrap();
        std::fs::write(r.join("etc/ssl/certs/ca.crt"), "ca").unwrap();
        std::fs::write(r.join("etc/file-as-dir"), "file").unwrap();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::write(r.join("usr/lib/os-release"), "ID=test").unwrap();
        for (link, target) in [
            ("etc/ssl/certs/link.pem", "ca.crt"),
            ("etc/ssl/certs/abs.pem", "/etc/ssl/certs/ca.crt"),
            ("etc/ssl/cert.pem", "certs/ca.crt"),
            ("etc/alt", "ssl"),
            ("etc/up", "../../../../etc"),
            ("etc/abs", "/"),
            ("etc/dangling", "/nonexistent/x"),
            ("etc/loop1", "loop2"),
            ("etc/loop2", "loop1"),
            ("etc/os-release", "../usr/lib/os-release"),
            ("etc/ssl/certs/up-and-back.pem", "../certs/ca.crt"),
            ("etc/ssl/certs/dots-inside.pem", "../../etc/ssl/x/../certs/ca.crt"),
            ("etc/ssl/certs/gone.pem", "not-there.crt"),
            ("etc/ssl/certs/gone-dir.pem", "../not-there/ca.crt"),
            ("etc/chain1", "chain2"),
            ("etc/chain2", "/etc/ssl/cert.pem"),
            ("etc/to-file-as-dir", "file-as-dir/x"),
        ] {
            symlink(target, r.join(link)).unwrap();
        }
        tmp
    }

    const PATHS: &[&str] = &[
        "/",
        "/etc",
        "/etc/ssl/certs/ca.crt",
        "/etc/ssl/certs/link.pem",
        "/etc/ssl/certs/abs.pem",
        "/etc/ssl/cert.pem",
        "/etc/alt",
        "/etc/alt/certs/ca.crt",
        "/etc/up/ssl/certs/ca.crt",
        "/etc/abs/etc/ssl/cert.pem",
        "/etc/dangling",
        "/etc/dangling/more",
        "/etc/loop1",
        "/etc/loop1/x",
        "/etc/file-as-dir",
        "/etc/file-as-dir/x",
        "/etc/ssl/certs/missing",
        "/etc/ssl/missing/a/b",
        "/missing",
        "/etc/../etc/ssl/certs/ca.crt",
        "/etc/missing/../x",
        "/etc/ssl/./certs/ca.crt",
        "/etc/ssl/certs/ca.crt/",
        "/usr/share/ca-certificates/new.crt",
        "/etc/os-release",
        "/etc/ssl/certs/up-and-back.pem",
        "/etc/ssl/certs/dots-inside.pem",
        "/etc/ssl/certs/gone.pem",
        "/etc/ssl/certs/gone-dir.pem",
        "/etc/chain1",
        "/etc/to-file-as-dir",
        "/usr/missing/deeper/new.crt",
        "/missing/deeper/new.crt",
        "/etc/file-as-dir/x/y",
        "relative/path",
    ];

    /// What a walk came to, as far as its callers can tell: the paths, the last entry reached
    /// and, when that is the path's last component, its name and the directory holding it.
    fn outcome(w: Result<Walked>) -> String {
        match w {
            Ok(w) => {
                let reached = w.missing.is_empty();
                let last = w.steps.last().map(|s| {
                    let name = if reached { Some(&s.name) } else { None };
                    format!("{name:?} {:?} {} {}", s.meta.kind, s.meta.ino, s.meta.mode)
                });
                let parent_ino = match w.steps.len().checked_sub(2) {
                    Some(i) if reached => Some(w.steps[i].meta.ino),
                    _ => None,
                };
                format!(
                    "{:?} {:?} {:?} last {last:?} parent {parent_ino:?}",
                    w.existing_path(),
                    w.full_path(),
                    w.missing
                )
            }
            Err(e) => format!("error: {e}"),
        }
    }

    /// The `openat2` shortcut changes how a walk is done, never what it comes to: every path, with
    /// every combination of flags, walks to the same place (or fails with the same error) with
    /// and without it.
    #[test]
    fn the_openat2_shortcut_walks_to_where_the_user_space_walk_does() {
        let tmp = tree();
        let root = rustix::fs::open(tmp.path(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
        assert_eq!(
            Backend::probe(root.as_fd()),
            Backend::Openat2,
            "this kernel has openat2"
        );
        let mut shortcuts = 0;
        for path in PATHS {
            for flags in 0..8 {
                let (follow_final, allow_missing, no_symlinks) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
                let path = Path::new(path);
                let both = [Backend::Openat2, Backend::Walk]
                    .map(|b| outcome(walk(root.as_fd(), b, path, follow_final, allow_missing, no_symlinks)));
                assert_eq!(
                    both[0], both[1],
                    "{path:?} follow_final {follow_final} allow_missing {allow_missing} no_symlinks {no_symlinks}"
                );
                let Ok(mut pending) = components(path) else {
                    continue;
                };
                if walk_canonical_parent(
                    root.as_fd(),
                    pending.make_contiguous(),
                    follow_final,
                    allow_missing,
                    no_symlinks,
                )
                .is_some()
                {
                    shortcuts += 1;
                }
            }
        }
        // The comparison is only worth something if the shortcut was taken, and not always.
        assert!(shortcuts >= 40, "the shortcut was taken {shortcuts} times");
        assert!(shortcuts < PATHS.len() * 8, "the shortcut was taken every time");
    }
}
