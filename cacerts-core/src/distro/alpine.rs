//! Alpine, Wolfi, postmarketOS.
//!
//! Base images carry only `ca-certificates-bundle`: the regular file
//! `/etc/ssl/certs/ca-certificates.crt` (with `/etc/ssl/cert.pem` and, on Wolfi,
//! `ca-bundle.crt` names linking to it) and no update tool. Writes: the certificate appended to
//! that bundle (through whatever links lead to it); the anchor
//! `/usr/local/share/ca-certificates/cacerts-hook-<name>.crt`, so that a later
//! `apk add ca-certificates` (whose trigger regenerates the bundle) keeps it. When the full
//! package is present (`ca-cert-*.pem` or hash links in `/etc/ssl/certs`), also what its
//! `update-ca-certificates` makes: `/etc/ssl/certs/ca-cert-cacerts-hook-<name>.pem` linking to
//! the anchor's absolute path, and the hash link `HHHHHHHH.N` to that name. Without a store, the
//! bundle is created with the `/etc/ssl/cert.pem -> certs/ca-certificates.crt` link.

use super::planner::{Form, Planner};
use super::{Family, Spec};
use crate::error::Result;

const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const CERTS: &str = "/etc/ssl/certs";
const LOCAL: &str = "/usr/local/share/ca-certificates";

pub(super) const SPEC: Spec = Spec {
    family: Family::Alpine,
    ids: &["alpine", "wolfi", "postmarketos", "chainguard"],
    markers: &[
        "/etc/alpine-release",
        "/lib/apk/db/installed",
        "/usr/lib/apk/db/installed",
    ],
    signature: &[],
    stores: &[BUNDLE, "/etc/ssl/cert.pem", CERTS, LOCAL],
    plan,
};

fn plan(p: &mut Planner<'_>) -> Result<()> {
    let Some(todo) = p.todo(BUNDLE)? else {
        return Ok(());
    };
    let full = full_package(p)?;
    for cert in &todo.certs {
        let mut places = vec![(LOCAL, "", ".crt")];
        if full {
            places.push((CERTS, "ca-cert-", ".pem"));
        }
        let name = p.free_name(cert, &places)?;
        let anchor = format!("{LOCAL}/{name}.crt");
        p.create_file(&anchor, cert.pem.clone().into_bytes());
        if full {
            let link = format!("ca-cert-{name}.pem");
            p.symlink(format!("{CERTS}/{link}"), &anchor);
            p.hash_link(CERTS, cert, &link, false)?;
        }
    }
    if todo.bundle_exists {
        p.append(BUNDLE, &todo.certs, Form::Pem)?;
    } else {
        p.create_bundle(BUNDLE, &todo.certs, Form::Pem)?;
        p.link_if_free("/etc/ssl/cert.pem", "certs/ca-certificates.crt")?;
    }
    Ok(())
}

/// The full ca-certificates package has run its trigger: per-certificate links exist.
fn full_package(p: &Planner<'_>) -> Result<bool> {
    if !p.is_dir(CERTS) {
        return Ok(false);
    }
    Ok(p.root.read_dir(CERTS)?.iter().any(|e| {
        let n = e.name.to_string_lossy();
        (n.starts_with("ca-cert-") && n.ends_with(".pem")) || is_hash_name(&n)
    }))
}

/// `HHHHHHHH.N`.
fn is_hash_name(n: &str) -> bool {
    match n.split_once('.') {
        Some((h, d)) => {
            h.len() == 8
                && h.bytes().all(|b| b.is_ascii_hexdigit())
                && !d.is_empty()
                && d.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}
