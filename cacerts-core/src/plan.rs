//! What an installer asks for: a list of changes, described, not performed.
//!
//! Installers (one per distribution family, per language runtime) only ever build a [`Plan`];
//! [`crate::install`] is the one place that turns it into journaled filesystem operations.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::journal::Undo;
use crate::stores::keystore::Keystore;

/// One change to the container filesystem. Paths are absolute, as the container sees them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Create directory `path` and any missing parents (mode 0755). Existing directories are kept.
    CreateDir {
        /// Directory to create.
        path: PathBuf,
    },
    /// Create a regular file, and any missing parent directories. Fails if anything (even a
    /// dangling symlink) already exists at `path`.
    CreateFile {
        /// Where.
        path: PathBuf,
        /// Its bytes.
        contents: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// Create a symbolic link, and any missing parent directories.
    CreateSymlink {
        /// Where.
        path: PathBuf,
        /// What it points to, stored as given (resolved inside the root by whoever follows it).
        target: PathBuf,
    },
    /// Change an existing regular file. Symlinks to it are followed inside the root. An append,
    /// and entries added to a JKS key store, are written in place when the file is the only name
    /// of its inode and on the root's own mount (uninstall puts back a copy of its first bytes
    /// with the few bytes overwritten restored: the original); otherwise, and for other edits
    /// (a PKCS#12 key store), the file is replaced by a new one renamed over it, with the
    /// original's owner, mode and attributes, and its bytes are backed up beside the journal.
    EditFile {
        /// The file, or a symlink leading to it.
        path: PathBuf,
        /// How its contents change.
        edit: Edit,
    },
}

/// How an [`Change::EditFile`] changes a file's contents.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Edit {
    /// Append these bytes; a newline is inserted first when the file does not end with one.
    /// Should the file change again later, uninstall takes out exactly the appended text.
    Append(Vec<u8>),
    /// Add trusted-certificate entries to a Java keystore (JKS or PKCS#12, kept in its format),
    /// skipping certificates it already holds. The store's integrity is checked with `password`
    /// first: a corrupt store or a wrong password is an error and the file is left alone.
    /// Uninstall removes exactly these aliases, even from a store the container rewrote since.
    KeystoreAdd {
        /// Alias and DER certificate of each entry.
        entries: Vec<(String, Vec<u8>)>,
        /// The store password (`changeit` for Java's trust stores).
        password: String,
    },
}

impl Change {
    /// One line describing the change, for logs and `detect` output.
    pub fn summary(&self) -> String {
        match self {
            Change::CreateDir { path } => format!("create directory {}", path.display()),
            Change::CreateFile { path, contents, .. } => {
                format!("create file {} ({} bytes)", path.display(), contents.len())
            }
            Change::CreateSymlink { path, target } => {
                format!("create symlink {} -> {}", path.display(), target.display())
            }
            Change::EditFile { path, edit } => match edit {
                Edit::Append(bytes) => format!("append {} bytes to {}", bytes.len(), path.display()),
                Edit::KeystoreAdd { entries, .. } => {
                    let aliases: Vec<&str> = entries.iter().map(|(a, _)| a.as_str()).collect();
                    format!("add {} to keystore {}", aliases.join(", "), path.display())
                }
            },
        }
    }
}

impl Edit {
    /// The new contents for `original` (the file at `path`), and how to take the change back out
    /// of a later version. Fails when the file cannot be changed as asked (a corrupt keystore).
    pub(crate) fn apply(&self, path: &Path, original: &[u8]) -> Result<(Vec<u8>, Undo)> {
        match self {
            Edit::Append(extra) => {
                let mut fragment = Vec::with_capacity(extra.len() + 1);
                if !original.is_empty() && !original.ends_with(b"\n") {
                    fragment.push(b'\n');
                }
                fragment.extend_from_slice(extra);
                let mut out = Vec::with_capacity(original.len() + fragment.len());
                out.extend_from_slice(original);
                out.extend_from_slice(&fragment);
                Ok((out, Undo::RemoveFragments(vec![fragment])))
            }
            Edit::KeystoreAdd { entries, password } => {
                let keystore_error = |e: crate::stores::keystore::KeystoreError| Error::Keystore {
                    path: path.to_owned(),
                    reason: e.0,
                };
                let mut store = Keystore::parse(original, password).map_err(keystore_error)?;
                let mut added = Vec::new();
                for (alias, der) in entries {
                    if !store.contains_cert(der) {
                        store.add_trusted(alias, der);
                        added.push(alias.to_ascii_lowercase());
                    }
                }
                let new = if added.is_empty() {
                    original.to_vec()
                } else {
                    store.to_bytes(password).map_err(keystore_error)?
                };
                Ok((
                    new,
                    Undo::RemoveKeystoreEntries {
                        aliases: added,
                        password: password.clone(),
                    },
                ))
            }
        }
    }
}

impl Undo {
    /// Takes our change back out of `current`; `None` when there is nothing of ours in it.
    pub(crate) fn revert(&self, current: &[u8]) -> Option<Vec<u8>> {
        match self {
            Undo::RemoveFragments(fragments) => {
                let mut out = current.to_vec();
                let mut changed = false;
                for f in fragments.iter().filter(|f| !f.is_empty()) {
                    // Where we appended a separator newline, the fragment still at the very end
                    // goes with it; elsewhere (the container rewrote the file) only the text
                    // itself, where it starts a line, is ours.
                    let body = match f.strip_prefix(b"\n") {
                        Some(body) if !body.is_empty() => {
                            if out.ends_with(f) {
                                out.truncate(out.len() - f.len());
                                changed = true;
                            }
                            body
                        }
                        _ => f.as_slice(),
                    };
                    let mut from = 0;
                    while let Some(at) = find(&out[from..], body).map(|i| i + from) {
                        if at == 0 || out[at - 1] == b'\n' {
                            out.drain(at..at + body.len());
                            changed = true;
                            from = at;
                        } else {
                            from = at + 1;
                        }
                    }
                }
                changed.then_some(out)
            }
            Undo::RemoveKeystoreEntries { aliases, password } => {
                // A store we cannot read (rewritten with another password, corrupted) is left
                // as it is.
                let mut store = Keystore::parse(current, password).ok()?;
                if aliases.is_empty() || store.remove_trusted(aliases) == 0 {
                    return None;
                }
                store.to_bytes(password).ok()
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An ordered list of changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The changes, applied in order and undone in reverse.
    pub changes: Vec<Change>,
}

impl Plan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a change.
    pub fn push(&mut self, change: Change) -> &mut Self {
        self.changes.push(change);
        self
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_adds_separator_and_reverts_exactly() {
        let (new, undo) = Edit::Append(b"B\n".to_vec()).apply(Path::new("/f"), b"A").unwrap();
        assert_eq!(new, b"A\nB\n");
        assert_eq!(undo.revert(&new).unwrap(), b"A");
        let (new, undo) = Edit::Append(b"B\n".to_vec()).apply(Path::new("/f"), b"A\n").unwrap();
        assert_eq!(new, b"A\nB\n");
        assert_eq!(undo.revert(&new).unwrap(), b"A\n");
    }

    #[test]
    fn revert_keeps_other_changes_and_finds_moved_fragments() {
        let (_, undo) = Edit::Append(b"OURS\n".to_vec()).apply(Path::new("/f"), b"A").unwrap();
        // The container regenerated the file: ours in the middle, without the separator.
        assert_eq!(undo.revert(b"X\nOURS\nY\n").unwrap(), b"X\nY\n");
        assert_eq!(undo.revert(b"nothing of ours\n"), None);
    }

    #[test]
    fn keystore_add_reverts_by_alias_and_journals_additively() {
        let mut image = Keystore::empty_jks();
        image.add_trusted("image", b"image-cert");
        let original = image.to_bytes("changeit").unwrap();
        let edit = Edit::KeystoreAdd {
            entries: vec![
                ("cacerts-hook-a".into(), b"our-cert".to_vec()),
                ("cacerts-hook-dup".into(), b"image-cert".to_vec()),
            ],
            password: "changeit".into(),
        };
        let (new, undo) = edit.apply(Path::new("/ks"), &original).unwrap();
        // Already present under another alias: not added, not in the undo.
        assert_eq!(
            undo,
            Undo::RemoveKeystoreEntries {
                aliases: vec!["cacerts-hook-a".into()],
                password: "changeit".into()
            }
        );
        let json = serde_json::to_string(&undo).unwrap();
        assert_eq!(
            json,
            r#"{"remove_keystore_entries":{"aliases":["cacerts-hook-a"],"password":"changeit"}}"#
        );
        assert_eq!(serde_json::from_str::<Undo>(&json).unwrap(), undo);

        assert_eq!(undo.revert(&new).unwrap(), original, "JKS entries keep their bytes");
        assert_eq!(undo.revert(&original), None);
        assert_eq!(undo.revert(b"not a keystore"), None);
        // A corrupt store or a wrong password is an error naming the file.
        let e = edit
            .apply(Path::new("/ks"), &original[..original.len() - 1])
            .unwrap_err();
        assert!(e.to_string().contains("/ks"), "{e}");
        let wrong = Edit::KeystoreAdd {
            entries: vec![],
            password: "other".into(),
        };
        assert!(matches!(
            wrong.apply(Path::new("/ks"), &original),
            Err(Error::Keystore { .. })
        ));
    }
}
