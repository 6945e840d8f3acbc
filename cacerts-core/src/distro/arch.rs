//! Arch Linux and derivatives: `update-ca-trust`, which runs p11-kit's `trust extract` from
//! `/etc/ca-certificates/trust-source` into `/etc/ca-certificates/extracted`.
//!
//! Writes: the anchor `/etc/ca-certificates/trust-source/anchors/cacerts-hook-<name>.crt`; the
//! certificate appended to `extracted/tls-ca-bundle.pem` (which `/etc/ssl/certs/ca-certificates.crt`
//! and `/etc/ssl/cert.pem` link to), and to `extracted/{email,objsign}-ca-bundle.pem` and, as a
//! trusted certificate, `extracted/ca-bundle.trust.crt` where present; a trusted-certificate file
//! and hash links in `extracted/cadir/` (an `openssl-directory` extract; unconfirmed for current
//! Arch) where present. Without a store, the tls bundle is created with the
//! `/etc/ssl/certs/ca-certificates.crt` link.

use super::p11kit::{self, Layout};
use super::planner::{Form, Planner};
use super::{Family, Spec};
use crate::error::Result;

const LAYOUT: Layout = Layout {
    anchors: "/etc/ca-certificates/trust-source/anchors",
    anchor_ext: ".crt",
    pem_bundles: &[
        "/etc/ca-certificates/extracted/tls-ca-bundle.pem",
        "/etc/ca-certificates/extracted/email-ca-bundle.pem",
        "/etc/ca-certificates/extracted/objsign-ca-bundle.pem",
    ],
    trusted_bundles: &["/etc/ca-certificates/extracted/ca-bundle.trust.crt"],
    hash_dirs: &[("/etc/ca-certificates/extracted/cadir", Form::Trusted)],
    links_when_created: &["/etc/ssl/certs/ca-certificates.crt"],
};

pub(super) const SPEC: Spec = Spec {
    family: Family::Arch,
    ids: &["arch", "archarm", "manjaro*", "endeavouros", "garuda", "artix"],
    markers: &["/etc/arch-release"],
    signature: &["/etc/ca-certificates/extracted", "/etc/ca-certificates/trust-source"],
    stores: &[
        "/etc/ca-certificates/trust-source/anchors",
        "/etc/ca-certificates/extracted/tls-ca-bundle.pem",
        "/etc/ca-certificates/extracted/cadir",
        "/etc/ca-certificates/extracted",
    ],
    plan,
};

fn plan(p: &mut Planner<'_>) -> Result<()> {
    p11kit::plan(p, &LAYOUT)
}
