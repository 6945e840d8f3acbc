//! `gc`: repair what a missed `poststop` left behind.
//!
//! `poststop` is not guaranteed (killed engine, host crash, retried delete). For every
//! `<id>.journal` in the state directory, the container is taken to be gone when
//!
//! - the rootfs recorded in the journal no longer exists, or
//! - the bundle record `<id>.json` written at createRuntime names a bundle directory that no
//!   longer exists.
//!
//! A gone container's journal is rolled back (when its rootfs still exists, e.g. a podman
//! `--rootfs` directory) or discarded (when the rootfs is gone too), and its record removed.
//! Anything else is kept: a journal without a record whose rootfs exists belongs to a container
//! that may still run. A bundle record without a journal is removed once its bundle is gone.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Result};

use crate::hook::{exists, journal_path, read_record, record_path, remove_if_exists, undo_journal};
use crate::oci::valid_id;

/// What one gc pass did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Journals rolled back or discarded.
    pub collected: usize,
    /// Journals kept (container still there).
    pub kept: usize,
    /// Errors, one per journal that could not be handled.
    pub errors: Vec<String>,
}

/// Runs one pass over `state_dir`, printing one line per journal to `out`.
pub fn run(state_dir: &Path, out: &mut impl Write) -> Result<Summary> {
    let mut summary = Summary::default();
    if !exists(state_dir) {
        return Ok(summary);
    }
    let _lock = crate::hook::lock_state_dir(state_dir)?;
    let entries = match std::fs::read_dir(state_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(summary),
        Err(e) => return Err(anyhow!("cannot list state directory {}: {e}", state_dir.display())),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in &names {
        if let Some(id) = name.strip_suffix(".journal").filter(|id| valid_id(id)) {
            let journal = journal_path(state_dir, id);
            let record_file = record_path(state_dir, id);
            let record = read_record(&record_file);
            let rootfs = match cacerts_core::journal::recorded_rootfs(&journal) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    let msg = format!("{id}: {e}");
                    let _ = writeln!(out, "error {msg}");
                    summary.errors.push(msg);
                    continue;
                }
            };
            let reason = if !exists(&rootfs) {
                Some(format!("rootfs {} is gone", rootfs.display()))
            } else {
                record
                    .as_ref()
                    .filter(|r| !exists(&r.bundle))
                    .map(|r| format!("bundle {} is gone", r.bundle.display()))
            };
            let Some(reason) = reason else {
                summary.kept += 1;
                let _ = writeln!(out, "kept {id}: container still exists");
                continue;
            };
            match undo_journal(&journal).and_then(|_| remove_if_exists(&record_file)) {
                Ok(()) => {
                    summary.collected += 1;
                    let _ = writeln!(out, "collected {id}: {reason}");
                }
                Err(e) => {
                    let msg = format!("{id}: {e:#}");
                    let _ = writeln!(out, "error {msg}");
                    summary.errors.push(msg);
                }
            }
        } else if name.strip_suffix(".lock").is_some_and(valid_id) {
            // Left by a stage that was killed: no stage holds a lock while gc holds the
            // directory's exclusive lock.
            remove_if_exists(&state_dir.join(name))?;
        } else if let Some(id) = name.strip_suffix(".json").filter(|id| valid_id(id)) {
            if exists(&journal_path(state_dir, id)) {
                continue;
            }
            let record_file = record_path(state_dir, id);
            if read_record(&record_file).is_some_and(|r| !exists(&r.bundle)) {
                remove_if_exists(&record_file)?;
            }
        }
    }
    Ok(summary)
}
