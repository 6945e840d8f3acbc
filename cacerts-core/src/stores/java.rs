//! Java trust stores: the system's `cacerts` and every JDK's own.
//!
//! Stores are looked for at the places distributions and vendor images put them, plus
//! `$JAVA_HOME/lib/security/cacerts` from the container's environment. Each physical file is
//! edited once, however many names lead to it (distributions link the JDK's file to the system
//! one). Certificates already in a store are skipped; the others are added as trusted-certificate
//! entries named `cacerts-hook-<name>`, in the store's own format (see [`super::keystore`]).

use std::path::{Path, PathBuf};

use super::keystore::{forget_checked, holdings, remember_checked, sniff, Format, Holdings, DEFAULT_PASSWORD};
use super::{distinct_files, list};
use crate::certs::{sanitize, CaCert};
use crate::error::{Error, Result};
use crate::plan::{Change, Edit};
use crate::rootfs::{ContainerRoot, FileKind};

/// Prefix of every alias this crate adds; uninstall removes exactly the aliases it added.
pub const ALIAS_PREFIX: &str = "cacerts-hook-";

/// Fixed places of Java trust stores.
pub const STORES: &[&str] = &[
    "/etc/ssl/certs/java/cacerts",
    "/etc/pki/ca-trust/extracted/java/cacerts",
    "/etc/pki/java/cacerts",
    "/var/lib/ca-certificates/java-cacerts",
    "/opt/java/openjdk/lib/security/cacerts",
];

/// Directory holding one directory per installed JDK.
const JVM_DIR: &str = "/usr/lib/jvm";
/// Most JDK directories looked at under [`JVM_DIR`].
const MAX_JDKS: usize = 256;

/// The alias for `cert`.
pub fn alias_for(cert: &CaCert) -> String {
    format!("{ALIAS_PREFIX}{}", sanitize(&cert.name))
}

/// Every Java trust store path to consider, in order, before de-duplication.
fn candidates(root: &ContainerRoot, env: &[String]) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = STORES.iter().map(PathBuf::from).collect();
    if let Some(jdks) = list(root, Path::new(JVM_DIR))? {
        for e in jdks.into_iter().take(MAX_JDKS) {
            if !matches!(e.kind, FileKind::Dir | FileKind::Symlink) {
                continue;
            }
            let jdk = Path::new(JVM_DIR).join(&e.name);
            out.push(jdk.join("lib/security/cacerts"));
            out.push(jdk.join("jre/lib/security/cacerts"));
        }
    }
    let java_home = env
        .iter()
        .rev()
        .find_map(|kv| kv.strip_prefix("JAVA_HOME="))
        .filter(|v| v.starts_with('/'));
    if let Some(home) = java_home {
        out.push(Path::new(home).join("lib/security/cacerts"));
        out.push(Path::new(home).join("jre/lib/security/cacerts"));
    }
    Ok(out)
}

/// Plans adding `certs` to every Java trust store in `root`.
///
/// A store whose integrity check fails with the default password (`changeit`), or that is
/// corrupt or in a form the codec refuses, is an error naming the file. Use [`plan_each`] to
/// go on with the other stores.
pub fn plan(root: &ContainerRoot, certs: &[CaCert], env: &[String]) -> Result<Vec<Change>> {
    plan_each(root, certs, env)?.into_iter().collect()
}

/// Like [`plan`], with one result per store that needs a change: a store that cannot be read
/// is an `Err` naming it, and the others are still planned. The outer error is a failure to
/// look for stores at all.
pub fn plan_each(root: &ContainerRoot, certs: &[CaCert], env: &[String]) -> Result<Vec<Result<Change>>> {
    let mut changes = Vec::new();
    forget_checked();
    if certs.is_empty() {
        return Ok(changes);
    }
    for physical in distinct_files(root, candidates(root, env)?)? {
        let bytes = root.read_file(&physical)?;
        if bytes.is_empty() || sniff(&bytes).is_none() {
            // Not a keystore (an empty placeholder before the distribution generated it).
            continue;
        }
        let store = match holdings(&bytes, DEFAULT_PASSWORD) {
            Ok(s) => s,
            Err(e) => {
                changes.push(Err(Error::Keystore {
                    path: physical,
                    reason: e.0,
                }));
                continue;
            }
        };
        let entries = new_entries(&store, certs);
        drop(store);
        if !entries.is_empty() {
            if sniff(&bytes) == Some(Format::Jks) {
                // Only a JKS store is changed in place, where the install can use the check.
                remember_checked(bytes, DEFAULT_PASSWORD);
            }
            changes.push(Ok(Change::EditFile {
                path: physical,
                edit: Edit::KeystoreAdd {
                    entries,
                    password: DEFAULT_PASSWORD.to_owned(),
                },
            }));
        }
    }
    Ok(changes)
}

/// The certificates `store` lacks, each with an alias no entry of the store uses.
fn new_entries(store: &Holdings<'_>, certs: &[CaCert]) -> Vec<(String, Vec<u8>)> {
    let mut taken = store.aliases.clone();
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for cert in certs {
        if store.contains_cert(&cert.der) || entries.iter().any(|(_, d)| d == &cert.der) {
            continue;
        }
        let base = alias_for(cert);
        let mut alias = base.clone();
        let mut n = 2;
        while taken.contains(&alias) {
            alias = format!("{base}-{n}");
            n += 1;
        }
        taken.insert(alias.clone());
        entries.push((alias, cert.der.clone()));
    }
    entries
}
