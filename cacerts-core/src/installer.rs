//! From certificates and a detected root to a [`Plan`]: the one entry point the hook and build
//! engines call.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::certs::CaCert;
use crate::distro::{self, Detection, Family};
use crate::error::Result;
use crate::plan::{Change, Edit, Plan};
use crate::rootfs::ContainerRoot;

/// Where no trust store exists, the bundle created so Go, OpenSSL and static binaries find it.
pub const DEFAULT_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Settings that change what an install does.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Settings {
    /// Create [`DEFAULT_BUNDLE`] when the image has no trust store at all (default on).
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
pub fn plan(root: &ContainerRoot, certs: &[CaCert], settings: &Settings) -> Result<(Detection, Plan)> {
    let detection = distro::detect(root)?;
    let mut plan = Plan::new();
    match detection.family {
        Family::None => {
            if settings.create_store_when_none && !certs.is_empty() {
                plan.push(Change::CreateFile {
                    path: DEFAULT_BUNDLE.into(),
                    contents: certs.iter().flat_map(|c| c.pem.bytes()).collect(),
                    mode: 0o644,
                });
            }
        }
        _ => {
            // Each physical file once, however many names lead to it.
            let mut seen = HashSet::new();
            for store in &detection.stores {
                let physical: PathBuf = root.canonicalize(store)?;
                if !seen.insert(physical) {
                    continue;
                }
                let existing = root.read_file(store)?;
                let missing: Vec<u8> = certs
                    .iter()
                    .filter(|c| !contains(&existing, c.pem.as_bytes()))
                    .flat_map(|c| c.pem.bytes())
                    .collect();
                if !missing.is_empty() {
                    plan.push(Change::EditFile {
                        path: store.clone(),
                        edit: Edit::Append(missing),
                    });
                }
            }
        }
    }
    Ok((detection, plan))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
