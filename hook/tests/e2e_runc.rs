//! End to end under real runtimes: a Debian bookworm rootfs, a loopback TLS server whose
//! certificate is signed by a throwaway CA, and `curl` in the container. With the hook, curl
//! trusts the server; without it, curl fails with exit 60 (certificate problem). After the
//! container is gone (poststop ran), the rootfs is exactly as before.
//!
//! Needs root, runc, podman, mmdebstrap and openssl (`scripts/setup` installs them), and Debian's
//! package mirror the first time (root filesystems are cached under `target/test-rootfs/`).
//! In the hook crate so that Cargo hands it the binary's path.

use std::path::Path;

use cacerts_testkit::containers::{
    hook_binary, hook_config, hooks_dir, pki, podman_run, runc_bundle, runc_run, scratch, Server,
};
use cacerts_testkit::rootfs::debian_rootfs;
use cacerts_testkit::Snapshot;

const BIN: &str = env!("CARGO_BIN_EXE_cacerts-hook");
const PACKAGES: &[&str] = &["ca-certificates", "curl", "openssl"];

/// The binary under test (see [`hook_binary`]).
fn bin() -> &'static Path {
    hook_binary(BIN)
}

#[test]
fn runc_container_trusts_the_ca_only_with_the_hook_and_keeps_no_trace() {
    let work = scratch();
    let rootfs = work.path().join("rootfs");
    debian_rootfs(&rootfs, "bookworm", PACKAGES);
    let pki = pki(work.path());
    let server = Server::start(&pki);
    let config = hook_config(work.path(), &pki.ca);
    let curl = ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", &server.url()];
    let runc_root = work.path().join("runc");

    // Control: without the hook, curl does not trust the server.
    let plain = runc_bundle(bin(), work.path(), &rootfs, &curl, None);
    let (code, text) = runc_run(&runc_root, &plain, &format!("cacerts-e2e-plain-{}", std::process::id()));
    assert_eq!(code, 60, "curl without the CA: {text}");

    let before = Snapshot::take(&rootfs);
    let hooked = runc_bundle(bin(), work.path(), &rootfs, &curl, Some(&config));
    let id = format!("cacerts-e2e-hook-{}", std::process::id());
    let (code, text) = runc_run(&runc_root, &hooked, &id);
    let log = std::fs::read_to_string(work.path().join("hook.log")).unwrap_or_default();
    assert_eq!(code, 0, "curl with the hook: {text}\nhook log:\n{log}");
    assert!(log.contains(&format!("stage=createRuntime id={id} ")), "{log}");
    assert!(log.contains(&format!("stage=poststop id={id} ")), "{log}");
    assert!(!log.contains("result=error"), "{log}");

    before.assert_same(&Snapshot::take(&rootfs), "rootfs after runc run with the hook");
    let left: Vec<_> = std::fs::read_dir(work.path().join("state"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "state left behind: {left:?}");
}

#[test]
fn podman_container_trusts_the_ca_only_with_the_hook() {
    let work = scratch();
    let rootfs = work.path().join("rootfs");
    debian_rootfs(&rootfs, "bookworm", PACKAGES);
    let pki = pki(work.path());
    let server = Server::start(&pki);
    let config = hook_config(work.path(), &pki.ca);
    let curl = ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", &server.url()];

    let empty = work.path().join("no-hooks.d");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, text) = podman_run(&empty, &rootfs, &curl);
    assert_eq!(code, 60, "curl without the hook: {text}");

    let bundle_file = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    let bundle_before = std::fs::read(&bundle_file).unwrap();
    let hooks = hooks_dir(bin(), work.path(), &config);
    let (code, text) = podman_run(&hooks, &rootfs, &curl);
    let log = std::fs::read_to_string(work.path().join("hook.log")).unwrap_or_default();
    assert_eq!(code, 0, "curl with the hook: {text}\nhook log:\n{log}");
    assert!(log.contains("stage=createRuntime"), "{log}");
    assert!(log.contains("stage=poststop"), "{log}");
    assert!(!log.contains("result=error"), "{log}");
    assert_eq!(
        std::fs::read(&bundle_file).unwrap(),
        bundle_before,
        "poststop took the CA back out"
    );
}
