//! Debian, Ubuntu, distroless: `update-ca-certificates` from the ca-certificates package.
//!
//! Writes what that tool would for a local certificate: the anchor
//! `/usr/local/share/ca-certificates/cacerts-hook-<name>.crt` (PEM; a later run of the tool keeps
//! it), the link `/etc/ssl/certs/cacerts-hook-<name>.pem` to the anchor's absolute path, the hash
//! link `/etc/ssl/certs/HHHHHHHH.N -> cacerts-hook-<name>.pem` (`openssl rehash`: current subject
//! hash only, next free N, none when the same SHA-1 fingerprint is linked under that hash), and
//! the certificate appended to `/etc/ssl/certs/ca-certificates.crt`. A base image without a store
//! (no `/etc/ssl` at all) gets all of it, the bundle created.

use super::planner::{Form, Planner};
use super::{Family, Spec};
use crate::error::Result;

const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const CERTS: &str = "/etc/ssl/certs";
const LOCAL: &str = "/usr/local/share/ca-certificates";

pub(super) const SPEC: Spec = Spec {
    family: Family::Debian,
    ids: &["debian", "ubuntu", "distroless"],
    markers: &["/etc/debian_version", "/var/lib/dpkg/status"],
    signature: &["/etc/ca-certificates.conf", "/usr/share/ca-certificates"],
    stores: &[
        BUNDLE,
        CERTS,
        LOCAL,
        "/usr/share/ca-certificates",
        "/etc/ca-certificates.conf",
    ],
    plan,
};

fn plan(p: &mut Planner<'_>) -> Result<()> {
    let Some(todo) = p.todo(BUNDLE)? else {
        return Ok(());
    };
    for cert in &todo.certs {
        let name = p.free_name(cert, &[(LOCAL, "", ".crt"), (CERTS, "", ".pem")])?;
        let anchor = format!("{LOCAL}/{name}.crt");
        p.create_file(&anchor, cert.pem.clone().into_bytes());
        p.symlink(format!("{CERTS}/{name}.pem"), &anchor);
        p.hash_link(CERTS, cert, &format!("{name}.pem"), false)?;
    }
    if todo.bundle_exists {
        p.append(BUNDLE, &todo.certs, Form::Pem)?;
    } else {
        p.create_bundle(BUNDLE, &todo.certs, Form::Pem)?;
    }
    Ok(())
}
