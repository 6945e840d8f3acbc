//! Python's certifi bundles: `certifi/cacert.pem` in site-packages and dist-packages, in
//! virtualenvs under `/opt`, and pip's vendored `pip/_vendor/certifi/cacert.pem`.
//!
//! A bundle that is a symlink to another file (Debian's packaged certifi points at
//! `/etc/ssl/certs/ca-certificates.crt`) is left to whoever handles that file: only a file whose
//! canonical path is itself a `certifi/cacert.pem` is edited, each physical file once. Missing
//! certificates are appended, each after a `# Label:` line as in certifi's own file.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::{distinct_files, list};
use crate::certs::CaCert;
use crate::error::Result;
use crate::pem::Scanner;
use crate::plan::{Change, Edit};
use crate::rootfs::{ContainerRoot, FileKind};

/// Directories whose `python3*` children are Python installations.
const LIB_DIRS: &[&str] = &["/usr/lib", "/usr/local/lib"];
/// Where virtualenvs and vendored Pythons are searched for.
const OPT: &str = "/opt";
/// How deep under [`OPT`] a `lib` directory is looked for (`/opt/a/b/c/d/e/lib`).
const MAX_DEPTH: usize = 6;
/// Most directory entries looked at under [`OPT`] in all.
const MAX_VISITED: usize = 20_000;

/// Bundles below one `python3*` directory.
const BUNDLES: &[&str] = &[
    "site-packages/certifi/cacert.pem",
    "dist-packages/certifi/cacert.pem",
    "site-packages/pip/_vendor/certifi/cacert.pem",
    "dist-packages/pip/_vendor/certifi/cacert.pem",
];

fn is_python_dir(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b"python3")
}

/// The `python3*` directories in `lib`.
fn pythons_in(root: &ContainerRoot, lib: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in list(root, lib)?.unwrap_or_default() {
        if is_python_dir(&e.name) && matches!(e.kind, FileKind::Dir | FileKind::Symlink) {
            out.push(lib.join(&e.name));
        }
    }
    Ok(())
}

/// `lib` directories under `/opt`, breadth first, bounded in depth and entries visited. Symlinked
/// directories are not descended into (no loops); a `lib` that is a symlink is still looked in.
fn opt_libs(root: &ContainerRoot) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    let mut visited = 0;
    let mut level = vec![PathBuf::from(OPT)];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for dir in &level {
            let Some(entries) = list(root, dir)? else {
                continue;
            };
            for e in entries {
                visited += 1;
                if visited > MAX_VISITED {
                    return Ok(libs);
                }
                let path = dir.join(&e.name);
                if e.name == "lib" && matches!(e.kind, FileKind::Dir | FileKind::Symlink) {
                    libs.push(path);
                } else if e.kind == FileKind::Dir && !is_python_dir(&e.name) && e.name != "node_modules" {
                    next.push(path);
                }
            }
        }
        level = next;
    }
    Ok(libs)
}

/// Every certifi bundle path to consider, before de-duplication.
fn candidates(root: &ContainerRoot) -> Result<Vec<PathBuf>> {
    let mut pythons = Vec::new();
    for lib in LIB_DIRS {
        pythons_in(root, Path::new(lib), &mut pythons)?;
    }
    for lib in opt_libs(root)? {
        pythons_in(root, &lib, &mut pythons)?;
    }
    Ok(pythons
        .iter()
        .flat_map(|p| BUNDLES.iter().map(move |b| p.join(b)))
        .collect())
}

/// Plans appending `certs` to every certifi bundle in `root` that lacks them.
pub fn plan(root: &ContainerRoot, certs: &[CaCert], _env: &[String]) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    if certs.is_empty() {
        return Ok(changes);
    }
    for physical in distinct_files(root, candidates(root)?)? {
        if !physical.ends_with("certifi/cacert.pem") {
            // A link to another bundle (the system's): not ours to edit as certifi.
            continue;
        }
        let mut scanner = Scanner::looking_for(certs.iter().map(|c| c.der.len()));
        root.read_file_chunks(&physical, |chunk| scanner.feed(chunk))?;
        let present: HashSet<Vec<u8>> = scanner.finish().into_iter().collect();
        let mut text = String::new();
        for cert in certs.iter().filter(|c| !present.contains(&c.der)) {
            text.push_str(&format!(
                "\n# Label: \"cacerts-hook-{}\"\n# Subject: {}\n{}",
                cert.name,
                cert.subject.replace('\n', " "),
                cert.pem
            ));
        }
        if !text.is_empty() {
            changes.push(Change::EditFile {
                path: physical,
                edit: Edit::Append(text.into_bytes()),
            });
        }
    }
    Ok(changes)
}
