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

use base64::Engine;

use super::probe;
use crate::certs::CaCert;
use crate::distro::planner::BASE64;
use crate::error::Result;
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
    if probe(root, lib)? != Some(FileKind::Dir) {
        return Ok(());
    }
    for e in root.read_dir(lib)? {
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
    if probe(root, Path::new(OPT))? != Some(FileKind::Dir) {
        return Ok(libs);
    }
    let mut visited = 0;
    let mut level = vec![PathBuf::from(OPT)];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for dir in &level {
            let entries = match root.read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.is_safety_violation() => continue,
                Err(e) => return Err(e),
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

/// The DER certificates in a PEM text; blocks that do not decode are ignored.
fn pem_ders(text: &[u8]) -> HashSet<Vec<u8>> {
    let mut out = HashSet::new();
    let mut body: Option<String> = None;
    for line in text.split(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            body = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(b64) = body.take() {
                if let Ok(der) = BASE64.decode(&b64) {
                    out.insert(der);
                }
            }
        } else if let Some(b) = &mut body {
            b.push_str(line);
        }
    }
    out
}

/// Plans appending `certs` to every certifi bundle in `root` that lacks them.
pub fn plan(root: &ContainerRoot, certs: &[CaCert], _env: &[String]) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    if certs.is_empty() {
        return Ok(changes);
    }
    let mut seen = HashSet::new();
    for path in candidates(root)? {
        if probe(root, &path)? != Some(FileKind::File) {
            continue;
        }
        let physical = root.canonicalize(&path)?;
        if !physical.ends_with("certifi/cacert.pem") {
            // A link to another bundle (the system's): not ours to edit as certifi.
            continue;
        }
        if !seen.insert(physical.clone()) {
            continue;
        }
        let present = pem_ders(&root.read_file(&physical)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_decode_and_garbage_is_ignored() {
        let text = b"# c\n-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n\
                     -----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n";
        let ders = pem_ders(text);
        assert_eq!(ders.len(), 1);
        assert!(ders.contains(&vec![0, 1, 2, 3]));
    }
}
