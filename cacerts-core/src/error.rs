//! The library's error type.
//!
//! Every variant names the operation that failed and the path it failed on: a path inside the
//! container root is written as the container sees it (`/etc/ssl/certs/...`), a host path (the
//! journal, the rootfs directory itself) as the host sees it.
//!
//! A message holds its cause (`journal J: No space left on device (os error 28)`), so the cause
//! is a field (`cause`), not also [`std::error::Error::source`]: a printer of the error chain
//! (`anyhow`'s `{:#}`) says it once.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while opening a root, installing or uninstalling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The root filesystem directory could not be opened.
    #[error("cannot open root filesystem {path}: {cause}; pass the container's rootfs directory")]
    OpenRoot {
        /// Host path given for the rootfs.
        path: PathBuf,
        /// Cause.
        cause: io::Error,
    },

    /// The root filesystem path is not a directory.
    #[error("root filesystem {path} is not a directory; pass the container's rootfs directory")]
    RootNotDirectory {
        /// Host path given for the rootfs.
        path: PathBuf,
    },

    /// A system call on a path inside the container root failed.
    #[error("{op} {path} (inside the container root): {cause}")]
    Io {
        /// The operation, for example `open` or `rename`.
        op: &'static str,
        /// Path as the container sees it.
        path: PathBuf,
        /// Cause.
        cause: io::Error,
    },

    /// The tree does not have the shape an operation needs, or changed shape while we worked on it.
    ///
    /// This is what symlink tricks, swapped path components, FIFOs or devices where a file is
    /// expected, and similar hostile layouts turn into. Nothing was changed for this path.
    #[error("refusing {path} (inside the container root): {reason}")]
    SafetyViolation {
        /// Path as the container sees it.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// A file is larger than the read limit.
    #[error("refusing to read {path} (inside the container root): {size} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Path as the container sees it.
        path: PathBuf,
        /// Size reported by fstat (or read so far).
        size: u64,
        /// The limit in force.
        limit: u64,
    },

    /// Something already exists where an entry was to be created.
    #[error("cannot create {path} (inside the container root): it already exists")]
    AlreadyExists {
        /// Path as the container sees it.
        path: PathBuf,
    },

    /// A path given by the caller is not usable (relative, empty, or naming the root itself).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The journal file could not be read or written.
    #[error("journal {path}: {cause}")]
    JournalIo {
        /// Host path of the journal.
        path: PathBuf,
        /// Cause.
        cause: io::Error,
    },

    /// The journal exists but is not one we can use.
    #[error("journal {path}: {reason}; {hint}")]
    JournalInvalid {
        /// Host path of the journal.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// What the operator can do about it.
        hint: &'static str,
    },

    /// The journal records changes to another root filesystem.
    #[error(
        "journal {journal} records changes to {recorded}, not to {given}; \
         pass the rootfs the journal was written for, or another journal path"
    )]
    JournalForAnotherRoot {
        /// Host path of the journal.
        journal: PathBuf,
        /// Rootfs recorded in the journal.
        recorded: PathBuf,
        /// Rootfs given now.
        given: PathBuf,
    },

    /// An install failed and undoing its partial work failed too; the journal was kept.
    #[error("{cause}; rolling back also failed: {rollback}; the journal was kept: run uninstall with it once the cause is fixed")]
    RollbackFailed {
        /// Why the install failed.
        cause: Box<Error>,
        /// Why the rollback failed.
        rollback: Box<Error>,
    },

    /// A Java keystore could not be read or changed: corrupt, a wrong password, or a form that
    /// is not supported. The file was left as it was.
    #[error("keystore {path} (inside the container root): {reason}; the file was left unchanged")]
    Keystore {
        /// Path as the container sees it.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A test-only failure injected at a mutation point (feature `failpoints`).
    #[error("injected failure at mutation point {0}")]
    Injected(usize),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            op,
            path: path.into(),
            cause: source.into(),
        }
    }

    pub(crate) fn unsafe_tree(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::SafetyViolation {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// True for errors caused by the shape of the tree (hostile or unexpected layouts), as opposed
    /// to I/O failures or bad arguments.
    pub fn is_safety_violation(&self) -> bool {
        matches!(self, Error::SafetyViolation { .. } | Error::TooLarge { .. })
    }
}
