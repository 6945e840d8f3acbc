//! Which distribution family a root filesystem belongs to, and where its trust store lives.
//!
//! Detection reads `/etc/os-release` (else `/usr/lib/os-release`), marker files and, above all,
//! which trust-store files exist, all through the root handle. The result is data: the family,
//! version, stores found; [`crate::installer::plan`] turns it into the changes an install makes.
//!
//! A family is a [`Spec`]: the os-release IDs and marker files that name it, the trust-store
//! paths that are its own, and one planning function that writes what the family's own tool
//! (`update-ca-certificates`, `update-ca-trust`, `trust extract`) would. Each lives in its own
//! file; [`FAMILIES`] is the table detection walks. Adding a family is one file, one row and one
//! [`Family`] variant.

mod alpine;
mod arch;
mod debian;
pub(crate) mod generic;
pub mod os_release;
mod p11kit;
pub mod planner;
mod rhel;
mod suse;

use std::path::PathBuf;

use serde::Serialize;

use self::os_release::OsRelease;
pub use self::planner::Planner;
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

/// One family: how to recognise it and how to install into it.
pub struct Spec {
    /// The family.
    pub family: Family,
    /// os-release values naming it, matched against `ID`, then each `ID_LIKE` word. A trailing
    /// `*` matches any suffix.
    pub ids: &'static [&'static str],
    /// Files only this family has, for images without os-release.
    pub markers: &'static [&'static str],
    /// Trust-store paths only this family's tools make: when neither os-release nor a marker
    /// names a family, the first family with one of these present wins.
    pub signature: &'static [&'static str],
    /// Its trust-store paths (files or directories), reported when present.
    pub stores: &'static [&'static str],
    /// Plans the install of `planner.certs` into this family's store.
    pub plan: fn(&mut Planner<'_>) -> Result<()>,
}

/// Every family, in the order markers and store layouts are tried.
pub const FAMILIES: &[&Spec] = &[
    &debian::SPEC,
    &alpine::SPEC,
    &rhel::SPEC,
    &suse::SPEC,
    &arch::SPEC,
    &generic::GENERIC,
    &generic::NONE,
];

/// The spec of `family`.
pub fn spec(family: Family) -> &'static Spec {
    FAMILIES
        .iter()
        .find(|s| s.family == family)
        .expect("every family has a row in FAMILIES")
}

/// How the family was recognised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "value")]
#[non_exhaustive]
pub enum Evidence {
    /// os-release `ID`.
    Id(String),
    /// A word of os-release `ID_LIKE`.
    IdLike(String),
    /// A marker file.
    Marker(PathBuf),
    /// A trust-store path only this family uses.
    Store(PathBuf),
    /// One of the bundles Go looks for.
    GoBundle(PathBuf),
    /// Nothing at all.
    Nothing,
}

/// What detection found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// The family.
    pub family: Family,
    /// `ID` from os-release, if any.
    pub id: Option<String>,
    /// `ID_LIKE` from os-release, split into words.
    pub id_like: Vec<String>,
    /// `VERSION_ID` from os-release, if any.
    pub version: Option<String>,
    /// `PRETTY_NAME` from os-release, if any.
    pub name: Option<String>,
    /// The os-release file read, if any.
    pub os_release: Option<PathBuf>,
    /// How the family was recognised.
    pub evidence: Evidence,
    /// Trust-store files and directories found (the family's own, then Go's bundles), as the
    /// container sees them.
    pub stores: Vec<PathBuf>,
    /// Stores found but left alone by the plan, each with the reason (a Java key store in a form
    /// that cannot be edited safely, say). Filled in by [`crate::installer::plan`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// Largest os-release file read; anything bigger is not an os-release file.
const OS_RELEASE_MAX: u64 = 64 << 10;

/// Detects the family of `root`.
pub fn detect(root: &ContainerRoot) -> Result<Detection> {
    let (os, os_path) = read_os_release(root)?;
    let id = os.id();
    let id_like = os.id_like();

    let by_id = |word: &str| {
        FAMILIES
            .iter()
            .find(|s| s.ids.iter().any(|pat| matches_id(pat, word)))
            .map(|s| s.family)
    };
    let mut found = id
        .as_deref()
        .and_then(|w| by_id(w).map(|f| (f, Evidence::Id(w.to_owned()))));
    if found.is_none() {
        found = id_like
            .iter()
            .find_map(|w| by_id(w).map(|f| (f, Evidence::IdLike(w.clone()))));
    }
    if found.is_none() {
        'markers: for spec in FAMILIES {
            for m in spec.markers {
                if exists(root, m) {
                    found = Some((spec.family, Evidence::Marker(m.into())));
                    break 'markers;
                }
            }
        }
    }
    if found.is_none() {
        'stores: for spec in FAMILIES {
            for s in spec.signature {
                if exists(root, s) {
                    found = Some((spec.family, Evidence::Store(s.into())));
                    break 'stores;
                }
            }
        }
    }
    if found.is_none() {
        for b in GO_BUNDLES {
            if is_file(root, b) {
                found = Some((Family::Generic, Evidence::GoBundle(b.into())));
                break;
            }
        }
    }
    let (family, evidence) = found.unwrap_or((Family::None, Evidence::Nothing));

    let mut stores: Vec<PathBuf> = Vec::new();
    for s in spec(family).stores.iter().chain(GO_BUNDLES) {
        let p = PathBuf::from(s);
        if !stores.contains(&p) && exists(root, s) {
            stores.push(p);
        }
    }
    Ok(Detection {
        family,
        id,
        id_like,
        version: os.get("VERSION_ID").map(str::to_owned),
        name: os.get("PRETTY_NAME").map(str::to_owned),
        os_release: os_path,
        evidence,
        stores,
        skipped: Vec::new(),
    })
}

fn matches_id(pattern: &str, word: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => word.starts_with(prefix),
        None => pattern == word,
    }
}

/// Something exists at `path`, following symlinks inside the root. A path that cannot be
/// resolved (a symlink loop, a component that is not a directory) counts as absent: probes never
/// fail detection.
fn exists(root: &ContainerRoot, path: &str) -> bool {
    matches!(root.metadata(path), Ok(Some(_)))
}

fn is_file(root: &ContainerRoot, path: &str) -> bool {
    matches!(root.metadata(path), Ok(Some(m)) if m.kind == FileKind::File)
}

/// The first os-release file that is a regular file of sane size. One that cannot be read (a
/// FIFO, a link out of bounds, too big) counts as absent: detection then goes by markers and
/// stores.
fn read_os_release(root: &ContainerRoot) -> Result<(OsRelease, Option<PathBuf>)> {
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        match root.metadata(path) {
            Ok(Some(m)) if m.kind == FileKind::File && m.size <= OS_RELEASE_MAX => {}
            _ => continue,
        }
        if let Ok(bytes) = root.read_file(path) {
            if bytes.len() as u64 <= OS_RELEASE_MAX {
                return Ok((OsRelease::parse(&bytes), Some(path.into())));
            }
        }
    }
    Ok((OsRelease::default(), None))
}
