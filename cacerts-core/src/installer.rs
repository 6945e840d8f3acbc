//! From certificates and a detected root to a [`Plan`]: the one entry point the hook and build
//! engines call.

use crate::certs::CaCert;
use crate::distro::{self, generic, Detection, Planner};
use crate::error::Result;
use crate::plan::Plan;
use crate::rootfs::ContainerRoot;

/// Where no trust store exists, the bundle created so Go, OpenSSL and static binaries find it.
pub const DEFAULT_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Settings that change what an install does.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settings {
    /// Create a trust store when the image has none (default on): the family's own bundle where
    /// the family is known, [`DEFAULT_BUNDLE`] otherwise.
    pub create_store_when_none: bool,
    /// The container's environment (`KEY=value`), for `JAVA_HOME` and similar.
    pub env: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            create_store_when_none: true,
            env: Vec::new(),
        }
    }
}

/// Detects `root` and plans the install of `certs`.
///
/// The plan is the family's own layout (see [`distro`]), then every bundle of Go's list the
/// family did not cover, then the language-runtime stores. Only certificates a file does not
/// hold yet are added to it, so planning again after an install yields an empty plan.
pub fn plan(root: &ContainerRoot, certs: &[CaCert], settings: &Settings) -> Result<(Detection, Plan)> {
    let detection = distro::detect(root)?;
    let mut planner = Planner::new(root, certs, settings.create_store_when_none);
    if !certs.is_empty() {
        (distro::spec(detection.family).plan)(&mut planner)?;
        generic::go_bundles(&mut planner)?;
        // Language-runtime stores (Java keystores, Python certifi bundles) are planned here, after
        // the system store, each appending its changes with `planner.push(..)`.
    }
    Ok((detection, planner.into_plan()))
}
