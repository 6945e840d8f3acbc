//! The definition of "no trace": a snapshot of every entry of a tree, compared before and after.
//!
//! Each entry records its type, mode, owner, group, device number, size (not for directories),
//! modification time to the nanosecond, symlink target, every extended attribute and, for regular
//! files, a SHA-256 of the contents. Two snapshots are equal exactly when a build engine's differ
//! (docker/containerd/BuildKit) would see no change, and stricter: contents and directory times
//! are compared too.
//!
//! This walks a host directory with plain `lstat`; it is a test helper, run on trees the tests
//! made, never by the product.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One entry's recorded state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `file`, `dir`, `symlink`, `fifo`, `socket`, `char`, `block`.
    pub kind: &'static str,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number (device nodes).
    pub rdev: u64,
    /// Size in bytes; `None` for directories.
    pub size: Option<u64>,
    /// Modification time, (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Symlink target.
    pub target: Option<PathBuf>,
    /// Extended attributes, name to hex value.
    pub xattrs: BTreeMap<String, String>,
    /// SHA-256 of a regular file's contents.
    pub sha256: Option<String>,
}

/// Every entry under a root, by path relative to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<PathBuf, Entry>);

impl Snapshot {
    /// Takes a snapshot of `root` (the root directory itself included, as `.`).
    pub fn take(root: &Path) -> Snapshot {
        let mut map = BTreeMap::new();
        walk(root, Path::new("."), &mut map);
        Snapshot(map)
    }

    /// Human-readable differences from `self` to `after`; empty when equal.
    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (path, before) in &self.0 {
            match after.0.get(path) {
                None => out.push(format!("removed: {}", path.display())),
                Some(now) if now != before => out.push(format!(
                    "changed: {}\n  before: {before:?}\n  after:  {now:?}",
                    path.display()
                )),
                Some(_) => {}
            }
        }
        for path in after.0.keys() {
            if !self.0.contains_key(path) {
                out.push(format!("added: {}", path.display()));
            }
        }
        out
    }

    /// Panics with the differences unless `after` equals `self`.
    #[track_caller]
    pub fn assert_same(&self, after: &Snapshot, context: impl fmt::Display) {
        let diff = self.diff(after);
        assert!(diff.is_empty(), "{context}: the tree changed:\n{}", diff.join("\n"));
    }
}

fn walk(root: &Path, rel: &Path, map: &mut BTreeMap<PathBuf, Entry>) {
    let full = root.join(rel);
    let meta = std::fs::symlink_metadata(&full).unwrap_or_else(|e| panic!("lstat {}: {e}", full.display()));
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        "file"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "char"
    } else {
        "block"
    };
    let entry = Entry {
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: meta.rdev(),
        size: (!ft.is_dir()).then_some(meta.size()),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        target: ft.is_symlink().then(|| std::fs::read_link(&full).expect("readlink")),
        xattrs: xattrs(&full),
        sha256: ft.is_file().then(|| hash_file(&full)),
    };
    map.insert(rel.to_owned(), entry);
    if ft.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(&full)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", full.display()))
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        names.sort();
        for name in names {
            walk(root, &rel.join(name), map);
        }
    }
}

fn hash_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let size = f.metadata().expect("fstat").len();
    if rustix::fs::seek(&f, rustix::fs::SeekFrom::Hole(0)).is_ok_and(|hole| hole < size) {
        return hash_extents(&mut f, size);
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// The contents of a file with holes, as the offsets and bytes of its data extents: reading a
/// gigabyte of holes through the hash would dominate a test's run time, and the extents determine
/// the contents (holes read as zeros). Stricter than a hash of the bytes, as it also tells apart
/// two files with the same bytes but different holes; dense files are hashed by their bytes.
fn hash_extents(f: &mut std::fs::File, size: u64) -> String {
    use std::io::{Seek, SeekFrom};
    let mut h = Sha256::new();
    h.update(size.to_le_bytes());
    let mut pos = 0;
    while pos < size {
        let start = match rustix::fs::seek(&*f, rustix::fs::SeekFrom::Data(pos)) {
            Ok(start) => start,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => panic!("SEEK_DATA: {e}"),
        };
        let end = rustix::fs::seek(&*f, rustix::fs::SeekFrom::Hole(start)).expect("SEEK_HOLE");
        h.update(start.to_le_bytes());
        h.update(end.to_le_bytes());
        f.seek(SeekFrom::Start(start)).expect("seek");
        let mut data = Vec::new();
        (&*f).take(end - start).read_to_end(&mut data).expect("read");
        h.update(&data);
        pos = end;
    }
    format!("extents:{}", hex::encode(h.finalize()))
}

fn xattrs(path: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 64 << 10];
    let len = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return out,
        Err(e) => panic!("llistxattr {}: {e}", path.display()),
    };
    for name in names[..len].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let mut value = vec![0u8; 64 << 10];
        let n = rustix::fs::lgetxattr(path, name, &mut value[..]).expect("lgetxattr");
        out.insert(name.to_string_lossy().into_owned(), hex::encode(&value[..n]));
    }
    out
}
