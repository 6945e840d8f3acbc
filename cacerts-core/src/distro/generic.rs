//! The fallbacks: an unknown distribution that has one of the bundles Go looks for, and an image
//! with no trust store at all (busybox, scratch, static binaries).

use super::planner::{Form, Planner};
use super::{Family, Spec, GO_BUNDLES};
use crate::error::Result;
use crate::installer::DEFAULT_BUNDLE;

/// Unknown distribution with a bundle: the certificates are appended to every bundle of Go's
/// list that exists, each physical file once (that step runs for every family, see
/// [`go_bundles`]), nothing else is written.
pub(super) const GENERIC: Spec = Spec {
    family: Family::Generic,
    ids: &[],
    markers: &[],
    signature: &[],
    stores: &[],
    plan: |_| Ok(()),
};

/// No store: [`DEFAULT_BUNDLE`] is created (the first file Go, and OpenSSL as built by most
/// distributions, look for), unless creating a store is turned off.
pub(super) const NONE: Spec = Spec {
    family: Family::None,
    ids: &[],
    markers: &[],
    signature: &[],
    stores: &[],
    plan: plan_none,
};

fn plan_none(p: &mut Planner<'_>) -> Result<()> {
    if p.create_store {
        let certs: Vec<_> = p.certs.iter().collect();
        p.create_bundle(DEFAULT_BUNDLE, &certs, Form::Pem)?;
    }
    Ok(())
}

/// Appends the certificates to every bundle of Go's list that exists and that the family's
/// planner did not handle already (an extra bundle an image added, or the only store of an
/// unknown distribution).
pub fn go_bundles(p: &mut Planner<'_>) -> Result<()> {
    let all: Vec<_> = p.certs.iter().collect();
    for b in GO_BUNDLES {
        if p.is_file(b) {
            p.append(b, &all, Form::Pem)?;
        }
    }
    Ok(())
}
