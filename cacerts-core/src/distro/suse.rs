//! openSUSE and SLES: `update-ca-certificates`, which runs p11-kit's `trust extract` from
//! `/etc/pki/trust` into `/var/lib/ca-certificates`.
//!
//! Writes: the anchor `/etc/pki/trust/anchors/cacerts-hook-<name>.pem`; the certificate appended
//! to `/var/lib/ca-certificates/ca-bundle.pem` (`/etc/ssl/ca-bundle.pem` links there); a file and
//! hash links in `/var/lib/ca-certificates/pem/` (which `/etc/ssl/certs` links to) and, as a
//! trusted certificate, in `/var/lib/ca-certificates/openssl/`, each where present. Without a
//! store, the bundle is created with the `/etc/ssl/ca-bundle.pem` link.

use super::p11kit::{self, Layout};
use super::planner::{Form, Planner};
use super::{Family, Spec};
use crate::error::Result;

const LAYOUT: Layout = Layout {
    anchors: "/etc/pki/trust/anchors",
    anchor_ext: ".pem",
    pem_bundles: &["/var/lib/ca-certificates/ca-bundle.pem"],
    trusted_bundles: &[],
    hash_dirs: &[
        ("/var/lib/ca-certificates/pem", Form::Pem),
        ("/var/lib/ca-certificates/openssl", Form::Trusted),
    ],
    links_when_created: &["/etc/ssl/ca-bundle.pem"],
};

pub(super) const SPEC: Spec = Spec {
    family: Family::Suse,
    ids: &["opensuse*", "sles*", "sled", "suse", "sle-micro", "sl-micro"],
    markers: &["/etc/SuSE-release", "/etc/SUSE-brand"],
    signature: &["/var/lib/ca-certificates", "/etc/pki/trust"],
    stores: &[
        "/etc/pki/trust/anchors",
        "/var/lib/ca-certificates/ca-bundle.pem",
        "/var/lib/ca-certificates/pem",
        "/var/lib/ca-certificates/openssl",
        "/var/lib/ca-certificates",
    ],
    plan,
};

fn plan(p: &mut Planner<'_>) -> Result<()> {
    p11kit::plan(p, &LAYOUT)
}
