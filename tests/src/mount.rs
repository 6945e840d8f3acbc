//! A file system mounted for one test, unmounted when dropped (also when an assertion fails),
//! before the scratch tree it sits in is removed. The tests run as root.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::containers::run;

/// A mount made by [`Mount::new`].
pub struct Mount(PathBuf);

impl Mount {
    /// Mounts a file system of `fstype` (`proc`, `tmpfs`) at `at`, which is created if missing,
    /// with `options` as `mount -o` takes them (empty for none).
    pub fn new(fstype: &str, at: &Path, options: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap_or_else(|e| panic!("create {}: {e}", at.display()));
        let mut cmd = Command::new("mount");
        cmd.args(["-t", fstype]);
        if !options.is_empty() {
            cmd.args(["-o", options]);
        }
        run(cmd.arg(fstype).arg(at));
        Mount(at.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}
