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
use std::path::Path;

/// The type of what `path` leads to (following symlinks inside the root), for discovery: a path
/// that does not exist, or cannot be resolved safely (a loop, a file used as a directory), is
/// not a store and gives `None`; I/O errors are errors.
fn probe(root: &ContainerRoot, path: &Path) -> crate::Result<Option<FileKind>> {
    match root.metadata(path) {
        Ok(m) => Ok(m.map(|m| m.kind)),
        Err(e) if e.is_safety_violation() => Ok(None),
        Err(e) => Err(e),
    }
}
