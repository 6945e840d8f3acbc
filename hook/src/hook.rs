//! Hook mode: the two OCI stages.
//!
//! `createRuntime` reads the state and the bundle's `config.json`, plans the install for the
//! rootfs, drops what a mount covers, records the bundle beside the journal (for `gc`) and
//! installs. `poststop` needs only the container id: the journal records the rootfs.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cacerts_core::installer::{self, Settings};
use cacerts_core::{Change, ContainerRoot, Options, Plan, Report};
use serde::{Deserialize, Serialize};

use crate::config::{Config, OPT_OUT_ANNOTATION};
use crate::oci::{self, normalize_in_root, Spec, State};

/// How long the runtime gets to write the state and close our stdin.
pub const STDIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The two stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// `createRuntime` (or the deprecated `prestart`).
    CreateRuntime,
    /// `poststop`.
    Poststop,
}

impl Stage {
    /// The stage's name in the OCI spec.
    pub fn name(self) -> &'static str {
        match self {
            Stage::CreateRuntime => "createRuntime",
            Stage::Poststop => "poststop",
        }
    }
}

/// What an invocation did, for its log line; filled in as it goes, so that a deadline or an
/// error still logs what was known.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Container id.
    pub id: Option<String>,
    /// Detected family.
    pub family: Option<String>,
    /// Certificates loaded.
    pub certs: usize,
    /// Inputs skipped while loading certificates, with the reason.
    pub skipped: Vec<String>,
    /// Changes applied (createRuntime) or undone (poststop).
    pub changes: usize,
    /// Planned changes dropped because a mount covers them.
    pub dropped: usize,
    /// Whether a journal left by an earlier run was rolled back first.
    pub recovered: bool,
    /// Why nothing was done, when nothing was.
    pub note: Option<&'static str>,
}

/// Shared outcome between the worker and the thread that enforces the deadline.
pub type SharedOutcome = Arc<Mutex<Outcome>>;

fn set(out: &SharedOutcome, f: impl FnOnce(&mut Outcome)) {
    if let Ok(mut o) = out.lock() {
        f(&mut o);
    }
}

/// Runs one stage, reading the state from `stdin`.
pub fn run(stage: Stage, config: &Config, stdin: impl std::os::fd::AsFd, out: &SharedOutcome) -> Result<()> {
    let bytes = oci::read_with_timeout(stdin, oci::MAX_STATE, STDIN_TIMEOUT)?;
    let state = oci::parse_state(&bytes)?;
    set(out, |o| o.id = Some(state.id.clone()));
    let lock = ContainerLock::take(&config.state_dir, &state.id)?;
    let result = match stage {
        Stage::CreateRuntime => create_runtime(config, &state, out),
        Stage::Poststop => poststop(config, &state.id, out),
    };
    lock.release();
    result
}

/// One container's stage in progress: the state directory locked shared (so that `gc`, which
/// locks it exclusively, waits) and the container's own lock file `<id>.lock` exclusively (so
/// that two stages of one container never work on its journal at once: a runtime retrying
/// `delete` while the engine runs poststop, say). Stages of different containers run in
/// parallel.
pub struct ContainerLock {
    _dir: std::os::fd::OwnedFd,
    file: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl ContainerLock {
    /// Takes the locks for container `id` (which must be valid), creating the state directory
    /// (mode 0700) if needed. Each holder takes milliseconds; the invocation deadline bounds the
    /// wait.
    pub fn take(state_dir: &Path, id: &str) -> Result<ContainerLock> {
        use rustix::fs::{flock, fstat, open, stat, FlockOperation, Mode, OFlags};
        let dir = open_state_dir(state_dir)?;
        flock(&dir, FlockOperation::LockShared)
            .with_context(|| format!("cannot lock state directory {}", state_dir.display()))?;
        let path = state_dir.join(format!("{id}.lock"));
        loop {
            let file = open(
                &path,
                OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
            flock(&file, FlockOperation::LockExclusive).with_context(|| format!("cannot lock {}", path.display()))?;
            // The holder before us removes the file when it is done; a lock on a removed file
            // is no lock, so it must still be the file at that name.
            let held = fstat(&file).with_context(|| format!("cannot stat {}", path.display()))?;
            match stat(&path) {
                Ok(now) if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino) => {
                    return Ok(ContainerLock { _dir: dir, file, path });
                }
                Ok(_) | Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
            }
        }
    }

    /// Removes the lock file, then lets the locks go.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// Takes an exclusive lock on the state directory (creating it, mode 0700, if needed), held until
/// the returned descriptor is dropped: no stage of any container runs meanwhile (`gc`).
pub fn lock_state_dir(state_dir: &Path) -> Result<std::os::fd::OwnedFd> {
    use rustix::fs::{flock, FlockOperation};
    let fd = open_state_dir(state_dir)?;
    flock(&fd, FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock state directory {}", state_dir.display()))?;
    Ok(fd)
}

fn open_state_dir(state_dir: &Path) -> Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
    rustix::fs::open(
        state_dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("cannot open state directory {}", state_dir.display()))
}

/// Journal path of container `id` (which must be valid).
pub fn journal_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join(format!("{id}.journal"))
}

/// Bundle record path of container `id` (which must be valid).
pub fn record_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join(format!("{id}.json"))
}

/// What is recorded beside a journal so that `gc` can tell whether its container still exists.
#[derive(Debug, Serialize, Deserialize)]
pub struct BundleRecord {
    /// Container id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The rootfs.
    pub rootfs: PathBuf,
}

fn create_runtime(config: &Config, state: &State, out: &SharedOutcome) -> Result<()> {
    let bundle = state
        .bundle
        .as_deref()
        .ok_or_else(|| anyhow!("the container state has no bundle"))?;
    if !bundle.is_absolute() {
        bail!("bundle {} is not an absolute path", bundle.display());
    }
    let spec = oci::read_spec(bundle)?;
    if opted_out(state.annotations.as_ref()) || opted_out(spec.annotations.as_ref()) {
        set(out, |o| o.note = Some("skipped: annotation cacerts-hook.dev/skip=true"));
        return Ok(());
    }
    let rootfs = spec
        .rootfs(bundle)
        .or_else(|| state.root.clone())
        .ok_or_else(|| anyhow!("{}/config.json has no root.path", bundle.display()))?;

    let loaded = cacerts_core::certs::load(&config.certs);
    set(out, |o| {
        o.certs = loaded.certs.len();
        o.skipped = loaded
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.source.display(), s.reason))
            .collect();
    });

    let root = ContainerRoot::open(&rootfs)?;
    let journal = journal_path(&config.state_dir, &state.id);
    let mut settings = Settings::default();
    settings.create_store_when_none = config.create_store_when_none;
    settings.env = spec.process.as_ref().and_then(|p| p.env.clone()).unwrap_or_default();
    let record = record_path(&config.state_dir, &state.id);
    let (_, report) = installer::install_certs_reviewed(
        &root,
        &loaded.certs,
        &settings,
        &journal,
        &options_for(&journal),
        |detection, plan| -> Result<Plan> {
            set(out, |o| {
                o.family = Some(family_name(&detection.family));
                o.skipped.extend(detection.skipped.iter().cloned());
            });
            let (plan, dropped) = drop_covered_by_mounts(&root, plan, &mount_destinations(&spec));
            set(out, |o| o.dropped = dropped.len());
            if !plan.is_empty() {
                write_record(
                    &record,
                    &BundleRecord {
                        id: state.id.clone(),
                        bundle: bundle.to_owned(),
                        rootfs: root.host_path_for_display().to_owned(),
                    },
                )?;
            }
            Ok(plan)
        },
    )?;
    set(out, |o| {
        o.changes = report.created.len() + report.edited.len();
        o.recovered = report.recovered;
    });
    if !journal.exists() {
        remove_if_exists(&record)?;
    }
    if loaded.certs.is_empty() {
        bail!(
            "no usable CA certificate in {}",
            config
                .certs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

fn poststop(config: &Config, id: &str, out: &SharedOutcome) -> Result<()> {
    let journal = journal_path(&config.state_dir, id);
    match undo_journal(&journal)? {
        None => set(out, |o| o.note = Some("no journal: nothing to undo")),
        Some(report) => set(out, |o| {
            o.changes = report.removed.len() + report.restored.len() + report.stripped.len();
        }),
    }
    remove_if_exists(&record_path(&config.state_dir, id))
}

/// Undoes the journal at `path` on the rootfs it records, or discards it when that rootfs no
/// longer exists. `None` when there is no journal.
pub fn undo_journal(path: &Path) -> Result<Option<Report>> {
    Ok(cacerts_core::uninstall_recorded(path, &options_for(path), |rootfs| {
        !exists(rootfs)
    })?)
}

/// The options for an install or uninstall journaled at `journal`: files written into the root
/// are flushed before they are renamed into place (`durable`) unless the journal is on a tmpfs.
///
/// A host crash loses a journal on a tmpfs (`/run`, the default state directory), and with it
/// any way to undo or even find the changes; flushing the root's files first would make them
/// survive the crash, which only leaves more behind. So there it buys nothing, and it costs a
/// disk flush per file. Elsewhere the journal survives a crash, and so must the files it
/// describes. The journal itself is flushed before every change either way.
pub fn options_for(journal: &Path) -> Options {
    let mut options = Options::default();
    options.durable = !on_tmpfs(journal);
    options
}

/// `TMPFS_MAGIC` from `linux/magic.h`.
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// Whether the nearest existing directory above `path` is on a tmpfs. Unknown counts as not.
fn on_tmpfs(path: &Path) -> bool {
    let Ok(path) = std::path::absolute(path) else {
        return false;
    };
    path.ancestors()
        .skip(1)
        .find_map(|dir| rustix::fs::statfs(dir).ok())
        .is_some_and(|s| s.f_type as u64 == TMPFS_MAGIC)
}

/// Whether `path` exists; an error other than "not found" counts as existing (keep, not delete).
pub fn exists(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

fn opted_out(annotations: Option<&HashMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(OPT_OUT_ANNOTATION))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The family as it is spelled in JSON output.
pub fn family_name<T: Serialize>(family: &T) -> String {
    match serde_json::to_value(family) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_owned(),
    }
}

fn mount_destinations(spec: &Spec) -> Vec<PathBuf> {
    spec.mounts
        .iter()
        .flatten()
        .map(|m| normalize_in_root(&m.destination))
        .collect()
}

/// Splits `plan` into the changes no mount covers and those one does. A change is covered when
/// its path, lexically or resolved through the root's symlinks, is at or under a mount
/// destination (itself taken lexically and resolved). Writing there would change the layer
/// under the mount, which the container never sees, or worse the mount's source.
pub fn drop_covered_by_mounts(root: &ContainerRoot, plan: Plan, mounts: &[PathBuf]) -> (Plan, Vec<Change>) {
    if mounts.is_empty() {
        return (plan, Vec::new());
    }
    let mut covers: Vec<PathBuf> = Vec::new();
    for m in mounts {
        covers.push(m.clone());
        if let Ok(c) = root.canonicalize(m) {
            covers.push(c);
        }
    }
    let mut kept = Plan::new();
    let mut dropped = Vec::new();
    // The tree does not change while a plan is filtered: resolve each path once (a thousand
    // anchors in one directory share their parent).
    let mut resolved = HashMap::new();
    let mut canonical = |p: &Path| -> Option<PathBuf> {
        resolved
            .entry(p.to_owned())
            .or_insert_with(|| root.canonicalize(p).ok())
            .clone()
    };
    for change in plan.changes {
        let candidates = change_paths(&mut canonical, &change);
        if candidates.iter().any(|p| covers.iter().any(|m| p.starts_with(m))) {
            dropped.push(change);
        } else {
            kept.push(change);
        }
    }
    (kept, dropped)
}

/// The paths a change writes: as given, and resolved inside the root (an edit follows the final
/// symlink; a create does not).
fn change_paths(canonical: &mut impl FnMut(&Path) -> Option<PathBuf>, change: &Change) -> Vec<PathBuf> {
    let (path, follow_last) = match change {
        Change::CreateDir { path } => (path, false),
        Change::CreateFile { path, .. } => (path, false),
        Change::CreateSymlink { path, .. } => (path, false),
        Change::EditFile { path, .. } => (path, true),
        _ => return Vec::new(),
    };
    let lexical = normalize_in_root(path);
    let mut out = vec![lexical.clone()];
    let resolved = if follow_last {
        canonical(&lexical)
    } else {
        match (lexical.parent(), lexical.file_name()) {
            (Some(parent), Some(name)) => canonical(parent).map(|p| p.join(name)),
            _ => None,
        }
    };
    out.extend(resolved);
    out
}

/// Writes the bundle record beside the journal, in the state directory the stage's
/// [`ContainerLock`] made and holds.
fn write_record(path: &Path, record: &BundleRecord) -> Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".new-{}", std::process::id()));
    let temp = PathBuf::from(temp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&temp)?;
        f.write_all(&serde_json::to_vec(record).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&temp, path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a bundle record; `None` when there is none or it cannot be parsed.
pub fn read_record(path: &Path) -> Option<BundleRecord> {
    let bytes = cacerts_core::host::read_file(path, 1 << 16).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Removes a file; a missing one is fine.
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on another thread; whether it finished within `wait`, and a way to join it.
    fn finishes_within(wait: Duration, f: impl FnOnce() + Send + 'static) -> (bool, std::thread::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        (rx.recv_timeout(wait).is_ok(), handle)
    }

    #[test]
    fn container_locks_exclude_the_same_container_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = ContainerLock::take(&state, "a").unwrap();
        assert!(state.join("a.lock").exists());

        // Another container's stage goes ahead.
        let s = state.clone();
        let (done, t) = finishes_within(Duration::from_secs(5), move || {
            ContainerLock::take(&s, "b").unwrap().release();
        });
        assert!(done, "a stage of another container waited");
        t.join().unwrap();

        // A second stage of the same container, and gc, wait until the first is done.
        let s = state.clone();
        let (same_done, same) = finishes_within(Duration::from_millis(300), move || {
            ContainerLock::take(&s, "a").unwrap().release();
        });
        let s = state.clone();
        let (gc_done, gc) = finishes_within(Duration::from_millis(300), move || {
            drop(lock_state_dir(&s).unwrap());
        });
        assert!(!same_done, "two stages of one container at once");
        assert!(!gc_done, "gc ran during a stage");
        a.release();
        same.join().unwrap();
        gc.join().unwrap();
        let left: Vec<_> = std::fs::read_dir(&state).unwrap().collect();
        assert!(left.is_empty(), "lock files left: {left:?}");
    }

    #[test]
    fn a_stage_waits_for_gc() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let gc = lock_state_dir(&state).unwrap();
        let s = state.clone();
        let (done, t) = finishes_within(Duration::from_millis(300), move || {
            ContainerLock::take(&s, "a").unwrap().release();
        });
        assert!(!done, "a stage ran during gc");
        drop(gc);
        t.join().unwrap();
    }

    #[test]
    fn durable_unless_the_journal_is_on_a_tmpfs() {
        // /dev/shm is a tmpfs on every Linux host this runs on; the sources are not.
        assert!(!options_for(Path::new("/dev/shm/no-such-dir/c1.journal")).durable);
        assert!(options_for(&Path::new(env!("CARGO_MANIFEST_DIR")).join("target-x/c1.journal")).durable);
    }
}
