//! Real root filesystems for tests, built once and cached.
//!
//! `mmdebstrap --variant=minbase --include=PACKAGES SUITE` writes a tarball under
//! `target/test-rootfs/` named after the suite and the sorted package list, so that every test
//! run (and every test of a run) after the first reuses it; each test extracts its own copy.
//! Concurrent builders of the same key are serialised with a lock file.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where cached root filesystems live: `$CARGO_TARGET_DIR/test-rootfs`, else the workspace's
/// `target/test-rootfs`.
pub fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-rootfs")
}

/// The cached tarball of a minbase `suite` with `packages`, built with mmdebstrap if missing.
pub fn debian_tarball(suite: &str, packages: &[&str]) -> PathBuf {
    let mut pkgs: Vec<&str> = packages.to_vec();
    pkgs.sort_unstable();
    pkgs.dedup();
    let key = format!("{suite}-minbase-{}", pkgs.join("+"));
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).expect("create rootfs cache");
    let tarball = dir.join(format!("{key}.tar"));
    let lock = std::fs::File::create(dir.join(format!("{key}.lock"))).expect("lock file");
    rustix::fs::flock(lock.as_fd(), rustix::fs::FlockOperation::LockExclusive).expect("flock");
    if !tarball.exists() {
        // mmdebstrap picks its output format from the target's extension: keep `.tar` last, and
        // say it explicitly as well.
        let tmp = dir.join(format!("{key}.tmp-{}.tar", std::process::id()));
        let mut cmd = Command::new("mmdebstrap");
        cmd.arg("--variant=minbase").arg("--format=tar").arg("--quiet");
        if !pkgs.is_empty() {
            cmd.arg(format!("--include={}", pkgs.join(",")));
        }
        let out = cmd.arg(suite).arg(&tmp).output().expect("run mmdebstrap");
        assert!(
            out.status.success(),
            "mmdebstrap {suite} {pkgs:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&tmp, &tarball).expect("rename tarball into the cache");
    }
    tarball
}

/// Extracts the cached minbase `suite` with `packages` into `dir` (created if missing), owners
/// and modes preserved.
pub fn debian_rootfs(dir: &Path, suite: &str, packages: &[&str]) {
    let tarball = debian_tarball(suite, packages);
    std::fs::create_dir_all(dir).expect("create rootfs dir");
    let out = Command::new("tar")
        .args(["-x", "-p", "--numeric-owner", "-f"])
        .arg(&tarball)
        .arg("-C")
        .arg(dir)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "extracting {}: {}",
        tarball.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
