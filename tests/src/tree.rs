//! Declarative test trees: a list of [`Node`]s built under a directory.
//!
//! Paths are relative to the tree's root; missing parents are created as directories (0755).
//! Nodes are built in order, so a [`Node::Chmod`] at the end can make a directory read-only after
//! its contents exist. [`age`] then gives every entry an old timestamp with a non-zero nanosecond
//! part, so that "times restored to the nanosecond" is actually tested.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

/// One entry of a declarative tree.
#[derive(Clone, Debug)]
pub enum Node {
    /// A directory with a mode.
    Dir(String, u32),
    /// A regular file with contents and a mode.
    File(String, Vec<u8>, u32),
    /// A symbolic link and its target, stored verbatim.
    Symlink(String, String),
    /// A hard link to an existing entry of the tree (an absolute path: to any host file).
    Hardlink(String, String),
    /// A named pipe.
    Fifo(String),
    /// A Unix socket (bound, then the listener dropped; the node stays).
    Socket(String),
    /// A character device node (major, minor), e.g. (1, 5) for `/dev/zero`.
    CharDevice(String, u32, u32),
    /// A sparse regular file of this size.
    Sparse(String, u64),
    /// Change the mode of an entry built earlier.
    Chmod(String, u32),
}

impl Node {
    /// A directory, mode 0755.
    pub fn dir(path: &str) -> Node {
        Node::Dir(path.into(), 0o755)
    }

    /// A regular file, mode 0644.
    pub fn file(path: &str, contents: impl AsRef<[u8]>) -> Node {
        Node::File(path.into(), contents.as_ref().to_vec(), 0o644)
    }

    /// A symbolic link.
    pub fn symlink(path: &str, target: &str) -> Node {
        Node::Symlink(path.into(), target.into())
    }

    /// The path this node creates or changes, relative to the tree's root.
    pub fn path(&self) -> &str {
        match self {
            Node::Dir(p, _)
            | Node::File(p, _, _)
            | Node::Symlink(p, _)
            | Node::Hardlink(p, _)
            | Node::Fifo(p)
            | Node::Socket(p)
            | Node::CharDevice(p, _, _)
            | Node::Sparse(p, _)
            | Node::Chmod(p, _) => p,
        }
    }

    /// The same node with each `(name, value)` pair substituted in its path and in a link's
    /// target, for trees that refer to places only known at run time (a temporary directory).
    pub fn with_vars(&self, vars: &[(&str, &str)]) -> Node {
        let sub = |s: &String| {
            vars.iter()
                .fold(s.clone(), |acc, (name, value)| acc.replace(name, value))
        };
        match self {
            Node::Dir(p, mode) => Node::Dir(sub(p), *mode),
            Node::File(p, contents, mode) => Node::File(sub(p), contents.clone(), *mode),
            Node::Symlink(p, target) => Node::Symlink(sub(p), sub(target)),
            Node::Hardlink(p, existing) => Node::Hardlink(sub(p), sub(existing)),
            Node::Fifo(p) => Node::Fifo(sub(p)),
            Node::Socket(p) => Node::Socket(sub(p)),
            Node::CharDevice(p, major, minor) => Node::CharDevice(sub(p), *major, *minor),
            Node::Sparse(p, size) => Node::Sparse(sub(p), *size),
            Node::Chmod(p, mode) => Node::Chmod(sub(p), *mode),
        }
    }
}

/// Builds `nodes` under `root` (which must exist).
pub fn build(root: &Path, nodes: &[Node]) {
    for node in nodes {
        let (path, parent_needed) = match node {
            Node::Dir(p, _)
            | Node::File(p, _, _)
            | Node::Symlink(p, _)
            | Node::Hardlink(p, _)
            | Node::Fifo(p)
            | Node::Socket(p)
            | Node::CharDevice(p, _, _)
            | Node::Sparse(p, _) => (root.join(p), true),
            Node::Chmod(p, _) => (root.join(p), false),
        };
        if parent_needed {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("create parents");
        }
        let ctx = |what: &str| format!("build {what} {}", path.display());
        match node {
            Node::Dir(_, mode) => {
                std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", ctx("dir")));
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).expect("chmod");
            }
            Node::File(_, contents, mode) => {
                std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", ctx("file")));
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).expect("chmod");
            }
            Node::Symlink(_, target) => symlink(target, &path).unwrap_or_else(|e| panic!("{}: {e}", ctx("symlink"))),
            Node::Hardlink(_, existing) => {
                std::fs::hard_link(root.join(existing), &path).unwrap_or_else(|e| panic!("{}: {e}", ctx("hardlink")))
            }
            Node::Fifo(_) => rustix::fs::mknodat(CWD, &path, FileType::Fifo, Mode::from_raw_mode(0o644), 0)
                .unwrap_or_else(|e| panic!("{}: {e}", ctx("fifo"))),
            Node::Socket(_) => {
                drop(std::os::unix::net::UnixListener::bind(&path).unwrap_or_else(|e| panic!("{}: {e}", ctx("socket"))))
            }
            Node::CharDevice(_, major, minor) => rustix::fs::mknodat(
                CWD,
                &path,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o666),
                rustix::fs::makedev(*major, *minor),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", ctx("device"))),
            Node::Sparse(_, size) => {
                let f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", ctx("sparse")));
                f.set_len(*size).expect("set_len");
            }
            Node::Chmod(_, mode) => {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).expect("chmod")
            }
        }
    }
}

/// Sets every entry's atime and mtime (symlinks included, not followed) to an old time with a
/// non-zero nanosecond part, children before parents so directory times stick.
pub fn age(root: &Path) {
    fn visit(path: &Path) {
        let meta = std::fs::symlink_metadata(path).expect("lstat");
        if meta.is_dir() {
            for e in std::fs::read_dir(path).expect("read_dir") {
                visit(&e.expect("entry").path());
            }
        }
        let ts = Timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 123_456_789,
        };
        let times = Timestamps {
            last_access: ts,
            last_modification: ts,
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).expect("utimensat");
    }
    visit(root);
}

/// The host path of `path` inside the tree at `root`, with symlinks resolved as the container
/// would see them (absolute targets start at `root`, `..` stops at it). For test inspection of
/// trees the tests made; at most 40 links are followed.
pub fn resolve(root: &Path, path: impl AsRef<Path>) -> std::path::PathBuf {
    use std::path::{Component, PathBuf};
    let mut pending: Vec<std::ffi::OsString> = path
        .as_ref()
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut done: Vec<std::ffi::OsString> = Vec::new();
    let mut hops = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            done.pop();
            continue;
        }
        let host: PathBuf = done.iter().fold(root.to_owned(), |p, n| p.join(n)).join(&name);
        match std::fs::read_link(&host) {
            Ok(target) => {
                hops += 1;
                assert!(hops <= 40, "too many links resolving {}", path.as_ref().display());
                if target.is_absolute() {
                    done.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(n.to_owned()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            Err(_) => done.push(name),
        }
    }
    done.iter().fold(root.to_owned(), |p, n| p.join(n))
}
