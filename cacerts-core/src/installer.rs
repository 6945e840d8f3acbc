//! From certificates and a detected root to a [`Plan`]: the one entry point the hook and build
//! engines call.

use std::path::Path;

use crate::certs::CaCert;
use crate::distro::{self, generic, Detection, Planner};
use crate::error::Result;
use crate::plan::Plan;
use crate::rootfs::ContainerRoot;
use crate::stores::{certifi, java};
use crate::txn::{self, Options, Report};

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
    // Planning only looks, and looks at the same places several times (see `memoized`).
    root.memoized(|| plan_now(root, certs, settings))
}

fn plan_now(root: &ContainerRoot, certs: &[CaCert], settings: &Settings) -> Result<(Detection, Plan)> {
    let mut detection = distro::detect(root)?;
    let mut planner = Planner::new(root, certs, settings.create_store_when_none);
    if !certs.is_empty() {
        (distro::spec(detection.family).plan)(&mut planner)?;
        generic::go_bundles(&mut planner)?;
        // Language-runtime stores, after the system store. One store that cannot be edited
        // safely (a key store in a form the codec refuses) must not cost the container its
        // system trust: it is reported in the detection and the others go ahead.
        for change in java::plan_each(root, certs, &settings.env)? {
            match change {
                Ok(change) => planner.push(change),
                Err(e) => detection.skipped.push(e.to_string()),
            }
        }
        for change in certifi::plan(root, certs, &settings.env)? {
            planner.push(change);
        }
    }
    Ok((detection, planner.into_plan()))
}

/// Installs `certs` into `root`, journaling to `journal`: the whole job in one call.
///
/// Any earlier install recorded in `journal` (a restart, a missed uninstall, a crash) is rolled
/// back *before* planning. The order matters: a plan made on a tree that still holds our earlier
/// changes finds the certificates present and plans nothing, and [`txn::install`]'s own recovery
/// would then take them out, leaving the root without them. Callers that plan by themselves must
/// call [`txn::uninstall`] first for the same reason.
pub fn install_certs(
    root: &ContainerRoot,
    certs: &[CaCert],
    settings: &Settings,
    journal: &Path,
    options: &Options,
) -> Result<(Detection, Report)> {
    install_certs_reviewed(root, certs, settings, journal, options, |_, plan| Ok(plan))
}

/// [`install_certs`] with a review step: `review` sees the detection and the plan after the
/// roll-back and before any change, and returns the plan to apply (the hook drops changes a
/// mount covers, and records what `gc` needs when there is something to do). An error from it
/// stops the install with nothing changed.
pub fn install_certs_reviewed<E>(
    root: &ContainerRoot,
    certs: &[CaCert],
    settings: &Settings,
    journal: &Path,
    options: &Options,
    review: impl FnOnce(&Detection, Plan) -> std::result::Result<Plan, E>,
) -> std::result::Result<(Detection, Report), E>
where
    E: From<crate::Error>,
{
    let had_journal = std::fs::symlink_metadata(journal).is_ok();
    txn::uninstall_with(root, journal, options)?;
    let (detection, plan) = plan(root, certs, settings)?;
    let plan = review(&detection, plan)?;
    let mut report = txn::install(root, &plan, journal, options)?;
    report.recovered = had_journal;
    Ok((detection, report))
}
