//! Fedora, RHEL and rebuilds, Oracle Linux, Amazon Linux: `update-ca-trust`, which runs p11-kit's
//! `trust extract` from `/etc/pki/ca-trust/source` into `/etc/pki/ca-trust/extracted`.
//!
//! Writes: the anchor `/etc/pki/ca-trust/source/anchors/cacerts-hook-<name>.pem` (read directly
//! by p11-kit-based libraries, and kept by a later `update-ca-trust`); the certificate appended
//! to `extracted/pem/{tls,email,objsign}-ca-bundle.pem` where present, and as a trusted
//! certificate to `extracted/openssl/ca-bundle.trust.crt` where present; a file and hash links in
//! `extracted/pem/directory-hash/` where that exists. `/etc/pki/tls/certs/ca-bundle.crt`,
//! `/etc/pki/tls/cert.pem` and `/etc/ssl/cert.pem` are links to the tls bundle and follow.
//! ubi-micro has no store: the tls bundle is created, with the `ca-bundle.crt` and `cert.pem`
//! links the ca-certificates package would add. `java/cacerts` belongs to the Java store.

use super::p11kit::{self, Layout};
use super::planner::{Form, Planner};
use super::{Family, Spec};
use crate::error::Result;

const LAYOUT: Layout = Layout {
    anchors: "/etc/pki/ca-trust/source/anchors",
    anchor_ext: ".pem",
    pem_bundles: &[
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/pki/ca-trust/extracted/pem/email-ca-bundle.pem",
        "/etc/pki/ca-trust/extracted/pem/objsign-ca-bundle.pem",
    ],
    trusted_bundles: &["/etc/pki/ca-trust/extracted/openssl/ca-bundle.trust.crt"],
    hash_dirs: &[("/etc/pki/ca-trust/extracted/pem/directory-hash", Form::Pem)],
    links_when_created: &["/etc/pki/tls/certs/ca-bundle.crt", "/etc/pki/tls/cert.pem"],
};

pub(super) const SPEC: Spec = Spec {
    family: Family::Rhel,
    ids: &["fedora", "rhel", "centos", "rocky", "almalinux", "ol", "amzn", "redhat"],
    markers: &["/etc/redhat-release", "/etc/system-release", "/etc/fedora-release"],
    signature: &["/etc/pki/ca-trust"],
    stores: &[
        "/etc/pki/ca-trust/source/anchors",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/pki/ca-trust/extracted/pem/email-ca-bundle.pem",
        "/etc/pki/ca-trust/extracted/pem/objsign-ca-bundle.pem",
        "/etc/pki/ca-trust/extracted/pem/directory-hash",
        "/etc/pki/ca-trust/extracted/openssl/ca-bundle.trust.crt",
        "/etc/pki/ca-trust",
    ],
    plan,
};

fn plan(p: &mut Planner<'_>) -> Result<()> {
    p11kit::plan(p, &LAYOUT)
}
