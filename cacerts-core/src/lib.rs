//! Symlink-safe, journaled installation of CA certificates into container root filesystems.
//!
//! The hook runs as host root on a tree the image author controls, so this crate is built around
//! three rules:
//!
//! 1. **Every access goes through the root handle.** [`ContainerRoot`] is opened once on the
//!    rootfs directory; paths are resolved inside it with `openat2(RESOLVE_IN_ROOT)` or an
//!    equivalent user-space walk, and changes are made on directory descriptors with single
//!    names, never on host path strings.
//! 2. **Every change is journaled before it is made.** Callers describe changes as a [`Plan`];
//!    [`install`] records each step in a [`journal`] file outside the root, flushes it, and only
//!    then performs it.
//! 3. **Uninstall is a function of the journal and the tree as it is now.** [`uninstall`] removes
//!    what is still ours, restores what nobody touched since to the byte and the nanosecond, takes
//!    only our part out of what the container changed, and never recreates what it deleted.
//!
//! # A build engine's use
//!
//! Install before a build step runs, keep the journal, and uninstall after the step, possibly from
//! another process:
//!
//! ```
//! use cacerts_core::{install, uninstall, Change, ContainerRoot, Edit, Options, Plan};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! # let rootfs = tmp.path().join("rootfs");
//! # std::fs::create_dir_all(rootfs.join("etc/ssl/certs"))?;
//! # std::fs::write(rootfs.join("etc/ssl/certs/ca-certificates.crt"), "-----BEGIN CERTIFICATE-----\n...\n")?;
//! # let journal = tmp.path().join("state/step-1.journal");
//! # let pem = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n".to_vec();
//! // Before the step: open the step's root filesystem and apply a plan.
//! let root = ContainerRoot::open(&rootfs)?;
//! let mut plan = Plan::new();
//! plan.push(Change::CreateFile {
//!     path: "/usr/local/share/ca-certificates/corp-root.crt".into(),
//!     contents: pem.clone(),
//!     mode: 0o644,
//! });
//! plan.push(Change::EditFile {
//!     path: "/etc/ssl/certs/ca-certificates.crt".into(),
//!     edit: Edit::Append(pem),
//! });
//! let report = install(&root, &plan, &journal, &Options::default())?;
//! // Created: /usr, /usr/local, /usr/local/share, .../ca-certificates and the file.
//! assert_eq!(report.created.len(), 5);
//! assert_eq!(report.edited.len(), 1);
//! drop(root);
//!
//! // After the step, in this process or another: only the journal path is needed.
//! let root = ContainerRoot::open(&rootfs)?;
//! let report = uninstall(&root, &journal)?;
//! assert!(report.kept.is_empty());
//! assert!(!journal.exists());
//! # Ok(())
//! # }
//! ```

pub mod certs;
mod der;
pub mod distro;
pub mod error;
pub mod failpoint;
pub mod host;
pub mod installer;
pub mod journal;
pub mod pem;
pub mod plan;
pub mod rootfs;
pub mod stores;
pub mod subject_hash;
pub mod txn;

pub use crate::error::{Error, Result};
pub use crate::plan::{Change, Edit, Plan};
pub use crate::rootfs::{Backend, ContainerRoot, DirEntry, FileKind, Meta, Time};
pub use crate::txn::{install, uninstall, uninstall_recorded, uninstall_with, Options, Report};
