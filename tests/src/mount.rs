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

/// A container's root as an engine mounts it: an overlay file system of a lower layer (the image)
/// and an upper layer of its own, in one directory (`lower`, `upper`, `work`, and the mount,
/// `merged`). [`Overlay::fresh`] empties the upper layer and mounts again, as for each new
/// container. Unmounted when dropped.
pub struct Overlay {
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    /// Where it is mounted: the root.
    pub merged: PathBuf,
    mount: std::cell::RefCell<Option<Mount>>,
}

impl Overlay {
    /// An overlay in `dir` whose lower layer is built from `nodes` and aged, the upper one empty.
    pub fn new(dir: &Path, nodes: &[crate::Node]) -> Overlay {
        let lower = dir.join("lower");
        std::fs::create_dir_all(&lower).unwrap_or_else(|e| panic!("create {}: {e}", lower.display()));
        crate::build(&lower, nodes);
        crate::age(&lower);
        Overlay::over(lower, dir)
    }

    /// An overlay in `dir` over the existing tree `lower`, which nothing else may change while it
    /// is mounted, the upper layer empty.
    pub fn over(lower: PathBuf, dir: &Path) -> Overlay {
        let [upper, work, merged] = ["upper", "work", "merged"].map(|d| dir.join(d));
        let overlay = Overlay {
            lower,
            upper,
            work,
            merged,
            mount: std::cell::RefCell::new(None),
        };
        overlay.fresh();
        overlay
    }

    /// Every entry of the upper layer that is not a directory (files copied up or created,
    /// symlinks, whiteouts), relative to it, sorted.
    pub fn upper_non_directories(&self) -> Vec<PathBuf> {
        crate::Snapshot::take(&self.upper)
            .0
            .into_iter()
            .filter(|(_, e)| e.kind != "dir")
            .map(|(p, _)| p.strip_prefix(".").map(Path::to_owned).unwrap_or(p))
            .collect()
    }

    /// Unmounts, empties the upper layer, and mounts again.
    pub fn fresh(&self) {
        let mut mount = self.mount.borrow_mut();
        drop(mount.take());
        for d in [&self.upper, &self.work] {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            self.upper.display(),
            self.work.display()
        );
        *mount = Some(Mount::new("overlay", &self.merged, &options));
    }
}
