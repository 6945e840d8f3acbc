//! The layout p11-kit's `trust extract` writes, shared by the families whose tool is built on it
//! (RHEL's `update-ca-trust`, openSUSE's `update-ca-certificates`, Arch's `update-ca-trust`).
//!
//! What `trust extract` would produce for a new anchor with no purpose restrictions (p11-kit
//! gives such an anchor every purpose):
//! - `--format=pem-bundle`: the certificate appended to every PEM bundle (server-auth, email and
//!   code-signing bundles alike);
//! - `--format=openssl-bundle`: the certificate as a `TRUSTED CERTIFICATE` block carrying only
//!   its alias (see [`Form::Trusted`]);
//! - `--format=pem-directory-hash` / `openssl-directory`: a read-only file `<label>.pem` in the
//!   directory and hash links `HHHHHHHH.N -> <label>.pem` under both the current and the old
//!   (MD5) subject hash.

use std::path::Path;

use super::planner::{encode, Form, Planner};
use crate::error::Result;

/// Mode of the files `trust extract` writes.
const EXTRACTED_MODE: u32 = 0o444;

/// Where one family keeps its p11-kit store.
pub struct Layout {
    /// The anchors directory the family's tool reads (`source/anchors`).
    pub anchors: &'static str,
    /// File name extension for anchors we create there.
    pub anchor_ext: &'static str,
    /// PEM bundles; the first is the server-auth bundle, the one that decides whether a
    /// certificate is already trusted.
    pub pem_bundles: &'static [&'static str],
    /// Bundles of `TRUSTED CERTIFICATE` blocks.
    pub trusted_bundles: &'static [&'static str],
    /// Hash directories and the form of the files in them.
    pub hash_dirs: &'static [(&'static str, Form)],
    /// Where the server-auth bundle does not exist (and creating a store is allowed): links made
    /// to the bundle created in its place, where the family's package would have them.
    pub links_when_created: &'static [&'static str],
}

/// Plans an install into a p11-kit layout.
pub fn plan(p: &mut Planner<'_>, l: &Layout) -> Result<()> {
    let primary = l.pem_bundles[0];
    let Some(todo) = p.todo(primary)? else {
        return Ok(());
    };
    let mut hash_dirs = Vec::new();
    for (dir, form) in l.hash_dirs {
        if p.is_dir(dir) {
            hash_dirs.push((*dir, *form));
        }
    }
    let mut places = vec![(l.anchors, "", l.anchor_ext)];
    places.extend(hash_dirs.iter().map(|(d, _)| (*d, "", ".pem")));
    for cert in &todo.certs {
        let name = p.free_name(cert, &places)?;
        p.create_file(
            Path::new(l.anchors).join(format!("{name}{}", l.anchor_ext)),
            cert.pem.clone().into_bytes(),
        );
        for (dir, form) in &hash_dirs {
            let file = format!("{name}.pem");
            p.create_file_mode(
                Path::new(dir).join(&file),
                encode(cert, *form).into_bytes(),
                EXTRACTED_MODE,
            );
            p.hash_link(dir, cert, &file, true)?;
        }
    }
    if todo.bundle_exists {
        for b in l.pem_bundles {
            p.append(b, &todo.certs, Form::Pem)?;
        }
        for b in l.trusted_bundles {
            p.append(b, &todo.certs, Form::Trusted)?;
        }
    } else {
        p.create_bundle(primary, &todo.certs, Form::Pem)?;
        for link in l.links_when_created {
            p.link_if_free(link, primary)?;
        }
    }
    Ok(())
}
