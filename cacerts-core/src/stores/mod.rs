//! Trust stores of language runtimes that ignore the system bundle.
//!
//! Each planner looks for its runtime's stores through the root handle and returns the changes
//! that add the missing certificates; like the distribution planners, none of them touches the
//! filesystem.
//!
//! - [`java`]: JKS and PKCS#12 `cacerts` files of the system and of every JDK, edited natively
//!   by the [`keystore`] codec (no `keytool`, nothing from the image is run).
//! - [`certifi`]: Python's `certifi/cacert.pem` bundles in site-packages, virtualenvs and pip's
//!   vendored copy.

pub mod certifi;
pub mod java;
pub mod keystore;

use crate::rootfs::{ContainerRoot, FileKind};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The entries of the directory at `path` (symlinks followed inside the root), for discovery: a
/// path that does not exist, is not a directory, or cannot be resolved safely (a loop, a file
/// used as a directory) gives `None`; I/O errors are errors.
fn list(root: &ContainerRoot, path: &Path) -> crate::Result<Option<Vec<crate::DirEntry>>> {
    match root.read_dir_if_dir(path) {
        Ok(entries) => Ok(entries),
        Err(e) if e.is_safety_violation() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The metadata of what `path` leads to (following symlinks inside the root), for discovery:
/// `None` where [`list`] gives `None` for a missing or unsafe path.
fn probe_meta(root: &ContainerRoot, path: &Path) -> crate::Result<Option<crate::Meta>> {
    match root.metadata(path) {
        Ok(m) => Ok(m),
        Err(e) if e.is_safety_violation() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The canonical paths of the regular files among `candidates`, in order, each once however
/// many names lead to it. Distributions link every JDK's store to the system's: a name that
/// leads to an inode already listed, which has no other hard link, is the same file and is not
/// resolved again (a hard-linked file is, and each of its names is its own file to change).
fn distinct_files(root: &ContainerRoot, candidates: Vec<PathBuf>) -> crate::Result<Vec<PathBuf>> {
    let (mut files, mut paths, mut inodes) = (Vec::new(), HashSet::new(), HashSet::new());
    for path in candidates {
        let Some(meta) = probe_meta(root, &path)? else {
            continue;
        };
        if meta.kind != FileKind::File || (meta.nlink == 1 && inodes.contains(&(meta.dev, meta.ino))) {
            continue;
        }
        let physical = root.canonicalize(&path)?;
        if paths.insert(physical.clone()) {
            inodes.insert((meta.dev, meta.ino));
            files.push(physical);
        }
    }
    Ok(files)
}
