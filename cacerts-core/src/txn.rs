//! Applying a plan with a write-ahead journal, and undoing it from the journal.
//!
//! [`install`] writes each step's intent to the journal, flushes it, and only then touches the
//! tree; should a step fail, everything done so far is undone before the error is returned.
//! [`uninstall`] is a function of the journal and the tree as it is now: what we created is
//! removed if it is still ours, what we replaced is put back byte for byte with its metadata if
//! nobody changed it since, or has only our part taken out if the container changed it, and every
//! directory we touched gets its times back to the nanosecond. Both are idempotent and both
//! recover from a crash at any point of the other.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{Error, Result};

use crate::journal::{
    self, random_suffix, sha256_hex, Append, Appended, ContentHasher, Create, DirTimes, Header, Journal, Made, Mkdir,
    NewEntry, Original, Patch, Record, Restore, Splice, Undo, Writer,
};
use crate::plan::{Change, Edit, Plan};
use crate::rootfs::{join_name, ContainerRoot, DirHandle, FileKind, Identity, InPlace, Meta, NewAttrs, Xattrs};
use crate::stores::keystore::{self, KeystoreError};

/// Prefix of every temporary name we create inside the root.
pub const TEMP_PREFIX: &str = ".cacerts-hook.";

/// Knobs for [`install`] and [`uninstall`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Options {
    /// Flush every file written into the root before renaming it into place (default on). Off
    /// trades crash durability of the container's files for speed, for roots that do not survive
    /// a host crash anyway.
    pub durable: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { durable: true }
    }
}

/// What an install or uninstall did, by in-root path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Entries created (install).
    pub created: Vec<PathBuf>,
    /// Files changed (install).
    pub edited: Vec<PathBuf>,
    /// Entries we had created, removed again (uninstall).
    pub removed: Vec<PathBuf>,
    /// Files put back exactly as they were (uninstall).
    pub restored: Vec<PathBuf>,
    /// Files the container changed after us, from which only our part was taken out (uninstall).
    pub stripped: Vec<PathBuf>,
    /// Entries left alone, and why: the container deleted, replaced or filled them.
    pub kept: Vec<(PathBuf, String)>,
    /// Whether install first rolled back a journal left by an earlier run.
    pub recovered: bool,
}

impl Report {
    /// True when nothing was changed.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.edited.is_empty()
            && self.removed.is_empty()
            && self.restored.is_empty()
            && self.stripped.is_empty()
    }
}

/// Applies `plan` to `root`, journaling to `journal` (a host path outside the root).
///
/// A journal already at that path (a previous run that was never uninstalled, or crashed) is
/// rolled back first, so installing twice is the same as installing once. Plan *after* that
/// roll-back, not before: a plan made on a tree still holding the earlier changes is wrong for
/// the tree the roll-back leaves. [`crate::installer::install_certs`] does it in that order. An empty plan writes no
/// journal. On error the partial work is undone and the journal removed before returning; should
/// that undo fail as well, [`Error::RollbackFailed`] is returned and the journal kept.
pub fn install(root: &ContainerRoot, plan: &Plan, journal_path: &Path, options: &Options) -> Result<Report> {
    let mut report = Report::default();
    check_outside(root, journal_path)?;
    if let Some(stale) = Journal::read(journal_path)? {
        undo(root, journal_path, stale, options)?;
        report.recovered = true;
    }
    if plan.is_empty() {
        return Ok(report);
    }
    let header = Header {
        format: journal::FORMAT.to_owned(),
        version: journal::VERSION,
        rootfs: root.host_path_for_display().to_owned(),
        root_dev: root.root_meta()?.dev,
    };
    let writer = Writer::create(journal_path, &header)?;
    let mut tx = Tx {
        root,
        writer,
        options: *options,
        next_id: 0,
        touched: HashSet::new(),
        dirs: HashMap::new(),
        report,
    };
    if let Err(cause) = tx.apply_all(&plan.changes) {
        drop(tx);
        return match uninstall_with(root, journal_path, options) {
            Ok(_) => Err(cause),
            Err(rollback) => Err(Error::RollbackFailed {
                cause: Box::new(cause),
                rollback: Box::new(rollback),
            }),
        };
    }
    Ok(tx.report)
}

/// Undoes what the journal at `journal_path` records, then deletes the journal.
///
/// No journal is a no-op, so running it twice is harmless.
pub fn uninstall(root: &ContainerRoot, journal_path: &Path) -> Result<Report> {
    uninstall_with(root, journal_path, &Options::default())
}

/// [`uninstall`] with options.
pub fn uninstall_with(root: &ContainerRoot, journal_path: &Path, options: &Options) -> Result<Report> {
    match Journal::read(journal_path)? {
        None => Ok(Report::default()),
        Some(j) => undo(root, journal_path, j, options),
    }
}

/// Undoes the journal at `journal_path` on the root filesystem its header records, reading the
/// journal once, then deletes it. When `gone` says that root filesystem no longer exists, there
/// is nothing left to undo: the journal and its backups are deleted and nothing else is done.
/// `Ok(None)` when there is no journal.
///
/// For a caller that knows only the journal (a runtime's poststop, a collector of journals left
/// behind): [`uninstall_with`] would read it a second time after the header was read to find
/// the root, which for a thousand CAs is a journal of some hundreds of kilobytes.
pub fn uninstall_recorded(
    journal_path: &Path,
    options: &Options,
    gone: impl FnOnce(&Path) -> bool,
) -> Result<Option<Report>> {
    let Some(j) = Journal::read(journal_path)? else {
        return Ok(None);
    };
    if gone(&j.header.rootfs) {
        Journal::delete(journal_path, &j.records)?;
        return Ok(Some(Report::default()));
    }
    let root = ContainerRoot::open(&j.header.rootfs)?;
    undo(&root, journal_path, j, options).map(Some)
}

/// The journal must live outside the root: the container could otherwise rewrite its own undo
/// instructions, and the journal itself would be a trace.
fn check_outside(root: &ContainerRoot, journal_path: &Path) -> Result<()> {
    let absolute = std::path::absolute(journal_path).map_err(|source| Error::JournalIo {
        path: journal_path.to_owned(),
        cause: source,
    })?;
    // Canonicalize the longest existing ancestor: the journal and its directory may not exist yet.
    let mut existing = absolute.as_path();
    let resolved = loop {
        match std::fs::canonicalize(existing) {
            Ok(p) => break p,
            Err(_) => match existing.parent() {
                Some(parent) => existing = parent,
                None => break absolute.clone(),
            },
        }
    };
    if resolved.starts_with(root.host_path_for_display()) {
        return Err(Error::JournalInvalid {
            path: journal_path.to_owned(),
            reason: format!("inside the root filesystem {}", root.host_path_for_display().display()),
            hint: "keep journals outside the container's root filesystem, e.g. under /run/cacerts-hook",
        });
    }
    Ok(())
}

fn check_root(root: &ContainerRoot, journal_path: &Path, header: &Header) -> Result<()> {
    if header.rootfs != root.host_path_for_display() {
        return Err(Error::JournalForAnotherRoot {
            journal: journal_path.to_owned(),
            recorded: header.rootfs.clone(),
            given: root.host_path_for_display().to_owned(),
        });
    }
    Ok(())
}

/// Splits an in-root path into its parent and a final plain name.
fn split(path: &Path) -> Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if path.has_root() => Ok((parent, name)),
        _ => Err(Error::InvalidPath {
            path: path.to_owned(),
            reason: "must be an absolute path naming an entry below the root",
        }),
    }
}

/// A temporary name no image can predict: random per process, numbered within it.
fn temp_name() -> OsString {
    static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    OsString::from(format!("{TEMP_PREFIX}{}-{n}", PROCESS.get_or_init(random_suffix)))
}

/// An install in progress.
struct Tx<'r> {
    root: &'r ContainerRoot,
    writer: Writer,
    options: Options,
    next_id: u32,
    touched: HashSet<PathBuf>,
    /// Directories opened so far, by canonical path, with the attributes their new entries
    /// inherit: each is reached once per install, not once per entry.
    dirs: HashMap<PathBuf, Rc<(DirHandle, NewAttrs)>>,
    report: Report,
}

impl Tx<'_> {
    fn id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Applies the changes in order; runs of entries to create are made together (see
    /// [`Tx::create_all`]).
    fn apply_all(&mut self, changes: &[Change]) -> Result<()> {
        let mut rest = changes;
        while let Some(first) = rest.first() {
            let creates = rest
                .iter()
                .take_while(|c| matches!(c, Change::CreateFile { .. } | Change::CreateSymlink { .. }))
                .count();
            if creates > 0 {
                self.create_all(&rest[..creates])?;
                rest = &rest[creates..];
                continue;
            }
            match first {
                Change::CreateDir { path } => {
                    self.ensure_dir(path)?;
                }
                Change::EditFile { path, edit } => {
                    let canonical = self.root.canonicalize(path)?;
                    if canonical.parent().is_none() {
                        return Err(Error::unsafe_tree(
                            path,
                            "expected a regular file, found the root directory",
                        ));
                    }
                    let (parent, name) = split(&canonical)?;
                    self.edit(parent, name, edit)?;
                }
                Change::CreateFile { .. } | Change::CreateSymlink { .. } => unreachable!("taken above"),
            }
            rest = &rest[1..];
        }
        Ok(())
    }

    /// Records a directory's times before its first change in this install.
    fn touch(&mut self, dir: &DirHandle) -> Result<()> {
        if !self.touched.contains(dir.path()) {
            self.touched.insert(dir.path().to_owned());
            let m = dir.meta();
            self.writer.append(&Record::DirTimes(DirTimes {
                path: dir.path().to_owned(),
                identity: m.identity(),
                atime: m.atime,
                mtime: m.mtime,
            }))?;
        }
        Ok(())
    }

    /// The directory at canonical path `path`, and what its new entries inherit.
    fn dir(&mut self, path: &Path) -> Result<Rc<(DirHandle, NewAttrs)>> {
        if let Some(d) = self.dirs.get(path) {
            return Ok(Rc::clone(d));
        }
        let dir = self.root.dir(path)?;
        let attrs = dir.inherited(0)?;
        let d = Rc::new((dir, attrs));
        self.dirs.insert(path.to_owned(), Rc::clone(&d));
        Ok(d)
    }

    /// `mkdir -p`: returns the canonical path of the directory, creating what is missing.
    fn ensure_dir(&mut self, path: &Path) -> Result<PathBuf> {
        if self.dirs.contains_key(path) {
            return Ok(path.to_owned());
        }
        let (mut current, missing, _) = self.root.plan_parent(path)?;
        for name in missing {
            let d = self.dir(&current)?;
            let (dir, inherited) = &*d;
            self.touch(dir)?;
            let id = self.id();
            let new = join_name(&current, &name);
            self.writer.append(&Record::Mkdir(Mkdir { id, path: new.clone() }))?;
            let attrs = NewAttrs {
                mode: 0o755,
                ..inherited.clone()
            };
            let made = dir.create_dir(&name, &attrs)?;
            self.writer.append(&Record::Made(Made {
                id,
                identity: made.identity(),
            }))?;
            self.report.created.push(new.clone());
            current = new;
        }
        Ok(current)
    }

    /// Creates entries (files and symlinks, never over anything), each under a journaled
    /// temporary name renamed into place, the way one is: first every intent (one journal write),
    /// then the temporary entries, then what was made (one journal write), then the renames. An
    /// interruption anywhere leaves what a single creation would: temporary names the journal
    /// knows, or entries whose identities it holds. A thousand CAs cost two journal flushes, not
    /// two thousand.
    fn create_all(&mut self, changes: &[Change]) -> Result<()> {
        struct Item<'c> {
            dir: Rc<(DirHandle, NewAttrs)>,
            name: &'c OsStr,
            path: PathBuf,
            temp: OsString,
            entry: NewEntry,
            contents: &'c [u8],
            mode: u32,
            id: u32,
        }
        let mut items = Vec::with_capacity(changes.len());
        for change in changes {
            let (path, entry, contents, mode) = match change {
                Change::CreateFile { path, contents, mode } => (
                    path,
                    NewEntry::File {
                        sha256: sha256_hex(contents),
                    },
                    contents.as_slice(),
                    *mode,
                ),
                Change::CreateSymlink { path, target } => {
                    (path, NewEntry::Symlink { target: target.clone() }, &[][..], 0o777)
                }
                _ => unreachable!("only entries to create"),
            };
            let (parent, name) = split(path)?;
            let dir_path = self.ensure_dir(parent)?;
            let dir = self.dir(&dir_path)?;
            // The plan chose a free name; should something be there by now, the rename (which
            // never replaces) fails and the install is rolled back.
            let path = join_name(&dir_path, name);
            self.touch(&dir.0)?;
            items.push(Item {
                dir,
                name,
                path,
                temp: temp_name(),
                entry,
                contents,
                mode,
                id: self.id(),
            });
        }
        let intents: Vec<Record> = items
            .iter()
            .map(|i| {
                Record::Create(Create {
                    id: i.id,
                    path: i.path.clone(),
                    temp: i.temp.to_string_lossy().into_owned(),
                    entry: i.entry.clone(),
                })
            })
            .collect();
        self.writer.append_all(&intents)?;
        let mut made = Vec::with_capacity(items.len());
        for i in &items {
            let (dir, inherited) = &*i.dir;
            let attrs = NewAttrs {
                mode: i.mode,
                ..inherited.clone()
            };
            let meta = match &i.entry {
                NewEntry::File { .. } => dir.create_file(&i.temp, i.contents, &attrs, self.options.durable)?,
                NewEntry::Symlink { target } => dir.create_symlink(&i.temp, target.as_os_str(), &attrs)?,
            };
            made.push(Record::Made(Made {
                id: i.id,
                identity: meta.identity(),
            }));
        }
        self.writer.append_all(&made)?;
        for i in items {
            i.dir.0.rename(&i.temp, i.name, true)?;
            self.report.created.push(i.path);
        }
        Ok(())
    }

    fn edit(&mut self, dir_path: &Path, name: &OsStr, edit: &Edit) -> Result<()> {
        let d = self.dir(dir_path)?;
        let dir = &d.0;
        let path = dir_path.join(name);
        // On an overlay file system a change in place is made in a copy that replaces the file:
        // opening a file of the image's layers for writing would copy it up whole and flush it.
        let by_copy = dir.on_overlayfs();
        let file = if by_copy {
            dir.open_to_copy(name)?
        } else {
            dir.open_in_place(name)?
        };
        if let Some(file) = file {
            let copy_over = by_copy.then_some(name);
            match edit {
                Edit::Append(extra) => return self.append(dir, path, &file, extra, copy_over),
                Edit::KeystoreAdd { entries, password } => {
                    if self.keystore_in_place(dir, &path, &file, entries, password, copy_over)? {
                        return Ok(());
                    }
                }
            }
        }
        let (bytes, meta, xattrs) = dir.read(name, self.root.read_limit())?;
        let (new, undo) = edit.apply(&path, &bytes)?;
        self.touch(dir)?;
        let id = self.id();
        let temp = temp_name();
        let backup = format!("orig-{id}-{}", random_suffix());
        self.writer.append(&Record::Edit(journal::Edit {
            id,
            path: path.clone(),
            temp: temp.to_string_lossy().into_owned(),
            original: Box::new(Original {
                identity: meta.identity(),
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
                size: meta.size,
                nlink: meta.nlink,
                atime: meta.atime,
                mtime: meta.mtime,
                xattrs: xattrs.clone(),
                sha256: sha256_hex(&bytes),
                backup: backup.clone(),
            }),
            new_sha256: sha256_hex(&new),
            undo,
        }))?;
        self.writer.write_backup(&backup, &bytes)?;
        let attrs = NewAttrs::like(&meta, xattrs, None);
        let made = dir.create_file(&temp, &new, &attrs, self.options.durable)?;
        self.put_in_place(dir, id, &made, &temp, name, path)
    }

    /// Journals `temp`, which holds the new contents of the file `name`, as record `id`'s
    /// replacement (`made`: its metadata), then renames it over `name`.
    fn put_in_place(
        &mut self,
        dir: &DirHandle,
        id: u32,
        made: &Meta,
        temp: &OsStr,
        name: &OsStr,
        path: PathBuf,
    ) -> Result<()> {
        self.writer.append(&Record::Made(Made {
            id,
            identity: made.identity(),
        }))?;
        dir.rename(temp, name, false)?;
        self.report.edited.push(path);
        Ok(())
    }
}

impl Tx<'_> {
    /// Appends in place: one pass over the file to hash it and find its last byte, one journal
    /// record, one write. Nothing is copied, and the inode keeps its owner, mode, attributes,
    /// links and birth time. With `copy_over` (its name, on an overlay file system, where
    /// writing to a file of the image's layers would first copy it up and flush the copy) the
    /// file is instead copied in the kernel with our fragment at its end, and the copy renamed
    /// over it: journaled as the same append, with the `Made` record of the copy, which
    /// uninstall puts the original back from as from a file appended to in place.
    fn append(
        &mut self,
        dir: &DirHandle,
        path: PathBuf,
        file: &InPlace,
        extra: &[u8],
        copy_over: Option<&OsStr>,
    ) -> Result<()> {
        let (size, hasher, fragment) = self.read_for_append(file, extra)?;
        // Read before anything is journaled: a failure here changes nothing.
        let xattrs = copy_over.map(|_| file.xattrs()).transpose()?;
        self.touch(dir)?;
        let id = self.id();
        let record = Record::Append(Append {
            id,
            path,
            original: original_of(file, size, hasher),
            fragment,
        });
        if let (Some(name), Some(xattrs)) = (copy_over, xattrs) {
            let attrs = NewAttrs::like(&file.meta, xattrs, None);
            let (temp, record) = self.journal_copy(id, record)?;
            let Record::Append(Append { path, fragment, .. }) = record else {
                unreachable!("the record built above")
            };
            let made = dir.create_file_from(&temp, file, size, &[(size, &fragment)], &attrs, self.options.durable)?;
            return self.put_in_place(dir, id, &made, &temp, name, path);
        }
        self.writer.append(&record)?;
        // The record's own copy is what is written: a thousand certificates are most of a
        // megabyte, not to be held twice.
        let Record::Append(Append { path, fragment, .. }) = record else {
            unreachable!("the record built above")
        };
        file.write_at(size, &fragment, self.options.durable)?;
        self.report.edited.push(path);
        Ok(())
    }

    /// Journals `record`, record `id`'s change, with the temporary name of the copy it is made in
    /// (a restore record: any uninstall removes a leftover one). Returns the name and the record.
    fn journal_copy(&mut self, id: u32, record: Record) -> Result<(OsString, Record)> {
        let temp = temp_name();
        let records = [
            record,
            Record::Restore(Restore {
                id,
                temp: temp.to_string_lossy().into_owned(),
            }),
        ];
        self.writer.append_all(&records)?;
        let [record, _] = records;
        Ok((temp, record))
    }

    /// Reads `file` for appending `extra` to it: its size, its hash, and what to append (`extra`,
    /// after a newline when the file does not end in one).
    fn read_for_append(&self, file: &InPlace, extra: &[u8]) -> Result<(u64, ContentHasher, Vec<u8>)> {
        let mut hasher = ContentHasher::new();
        let mut last = None;
        let size = file.stream(self.root.read_limit(), |chunk| {
            hasher.update(chunk);
            last = chunk.last().copied();
        })?;
        let mut fragment = Vec::with_capacity(extra.len() + 1);
        if last.is_some_and(|b| b != b'\n') {
            fragment.push(b'\n');
        }
        fragment.extend_from_slice(extra);
        Ok((size, hasher, fragment))
    }

    /// Adds entries to a JKS key store in place: the new entries and integrity hash are written
    /// over the old hash, then the entry count is patched; the rest of the file, often most of
    /// it, is neither copied nor backed up. With `copy_over` (its name, on an overlay file
    /// system, as for [`Tx::append`]) the same writes go into a copy of the store's first
    /// bytes, which then replaces it. Returns false, having changed nothing, when the store is not
    /// JKS (PKCS#12 is rewritten whole).
    fn keystore_in_place(
        &mut self,
        dir: &DirHandle,
        path: &Path,
        file: &InPlace,
        entries: &[(String, Vec<u8>)],
        password: &str,
        copy_over: Option<&OsStr>,
    ) -> Result<bool> {
        // The contents the planner checked, when it read a store of this size: every byte read
        // is compared with them, and only a file that holds exactly them skips the check.
        let checked = keystore::take_checked(file.meta.size, password);
        let known: &[u8] = checked.as_deref().unwrap_or_default();
        let mut same = checked.is_some();
        let mut matched = 0;
        let mut bytes = Vec::new();
        let mut hasher = ContentHasher::new();
        file.stream(self.root.read_limit(), |chunk| {
            hasher.update(chunk);
            if same {
                if known.get(matched..matched + chunk.len()) == Some(chunk) {
                    matched += chunk.len();
                    return;
                }
                same = false;
                bytes.extend_from_slice(&known[..matched]);
            }
            bytes.extend_from_slice(chunk);
        })?;
        if same && matched != known.len() {
            // Shorter than what was checked.
            same = false;
            bytes.extend_from_slice(&known[..matched]);
        }
        let data = if same { known } else { &bytes[..] };
        let size = data.len() as u64;
        let keystore_error = |e: KeystoreError| Error::Keystore {
            path: path.to_owned(),
            reason: e.0,
        };
        let Some(add) = keystore::jks_append(data, password, entries, same).map_err(keystore_error)? else {
            return Ok(false);
        };
        if add.added.is_empty() {
            return Ok(true);
        }
        let xattrs = copy_over.map(|_| file.xattrs()).transpose()?;
        self.touch(dir)?;
        let id = self.id();
        let record = Record::Patch(Patch {
            id,
            path: path.to_owned(),
            original: original_of(file, size, hasher),
            keep: add.keep,
            old_tail: add.old_digest.to_vec(),
            tail: add.tail.clone(),
            patches: vec![Splice {
                at: add.count_at,
                old: add.old_count.to_vec(),
                new: add.new_count.to_vec(),
            }],
            undo: Undo::RemoveKeystoreEntries {
                aliases: add.added,
                password: password.to_owned(),
            },
        });
        if let (Some(name), Some(xattrs)) = (copy_over, xattrs) {
            let attrs = NewAttrs::like(&file.meta, xattrs, None);
            let (temp, _) = self.journal_copy(id, record)?;
            let writes = [(add.count_at, &add.new_count[..]), (add.keep, &add.tail[..])];
            let made = dir.create_file_from(&temp, file, add.keep, &writes, &attrs, self.options.durable)?;
            self.put_in_place(dir, id, &made, &temp, name, path.to_owned())?;
            return Ok(true);
        }
        self.writer.append(&record)?;
        // Any mix of these two writes reaching the disk is undone from the record alone.
        file.write_at(add.keep, &add.tail, false)?;
        file.write_at(add.count_at, &add.new_count, self.options.durable)?;
        self.report.edited.push(path.to_owned());
        Ok(true)
    }
}

/// What the journal keeps of a file about to be changed in place: the identity and times of
/// `file` as opened, the `size` and digest (`hasher`, fed every byte) of its contents.
fn original_of(file: &InPlace, size: u64, hasher: ContentHasher) -> Box<Appended> {
    let meta = &file.meta;
    Box::new(Appended {
        identity: meta.identity(),
        size,
        atime: meta.atime,
        mtime: meta.mtime,
        digest: hasher.finish(),
    })
}

/// A change made to a file in place, as its journal record describes it: `tail` written from
/// `keep` over the original's last bytes `old_tail`, and `patches` within the first `keep`
/// bytes. An append overwrote nothing: `keep` is the original size, no old tail, no patches.
struct InPlaceChange<'a> {
    original: &'a Appended,
    keep: u64,
    old_tail: &'a [u8],
    tail: &'a [u8],
    patches: &'a [Splice],
}

/// What a file changed in place holds now.
enum InPlaceState {
    Original,
    Ours,
    Changed,
}

/// An uninstall in progress.
struct Undoer<'r> {
    root: &'r ContainerRoot,
    journal_path: &'r Path,
    writer: Writer,
    options: Options,
    same_mount: bool,
    made: HashMap<u32, Identity>,
    restores: HashMap<u32, Vec<String>>,
    /// Directories opened so far, by canonical path.
    dirs: HashMap<PathBuf, Rc<DirHandle>>,
    report: Report,
}

/// Undoes journal `j`, read from `journal_path`, on `root`, once its header shows that it was
/// written for that root; then deletes it.
fn undo(root: &ContainerRoot, journal_path: &Path, j: Journal, options: &Options) -> Result<Report> {
    check_root(root, journal_path, &j.header)?;
    let mut made = HashMap::with_capacity(j.records.len() / 2);
    let mut restores: HashMap<u32, Vec<String>> = HashMap::new();
    for r in &j.records {
        match r {
            Record::Made(Made { id, identity }) => {
                made.insert(*id, *identity);
            }
            Record::Restore(Restore { id, temp }) => restores.entry(*id).or_default().push(temp.clone()),
            _ => {}
        }
    }
    let mut u = Undoer {
        root,
        journal_path,
        writer: journal::reopen(journal_path)?,
        options: *options,
        same_mount: root.root_meta()?.dev == j.header.root_dev,
        made,
        restores,
        dirs: HashMap::new(),
        report: Report::default(),
    };
    for r in j.records.iter().rev() {
        let (path, result) = match r {
            Record::Mkdir(Mkdir { id, path }) => (path, u.undo_mkdir(*id, path)),
            Record::Create(Create { id, path, temp, entry }) => (path, u.undo_create(*id, path, temp, entry)),
            Record::Edit(journal::Edit {
                id,
                path,
                temp,
                original,
                new_sha256,
                undo,
            }) => (path, u.undo_edit(*id, path, temp, original, new_sha256, undo)),
            Record::Append(Append {
                id,
                path,
                original,
                fragment,
            }) => {
                let change = InPlaceChange {
                    original,
                    keep: original.size,
                    old_tail: &[],
                    tail: fragment,
                    patches: &[],
                };
                // Built only when the container changed the file: the fragment may be large.
                let undo = || Undo::RemoveFragments(vec![fragment.clone()]);
                (path, u.undo_in_place(*id, path, &change, undo))
            }
            Record::Patch(Patch {
                id,
                path,
                original,
                keep,
                old_tail,
                tail,
                patches,
                undo,
            }) => {
                let change = InPlaceChange {
                    original,
                    keep: *keep,
                    old_tail,
                    tail,
                    patches,
                };
                (path, u.undo_in_place(*id, path, &change, || undo.clone()))
            }
            _ => continue,
        };
        u.settle(path, result)?;
    }
    for r in j.records.iter().rev() {
        if let Record::DirTimes(DirTimes {
            path,
            identity,
            atime,
            mtime,
        }) = r
        {
            let result = match root.dir_if_exists(path) {
                Ok(Some(dir)) if identity.matches(dir.meta(), u.same_mount) => dir.set_own_times(*atime, *mtime),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            u.settle(path, result)?;
        }
    }
    Journal::delete(journal_path, &j.records)?;
    Ok(u.report)
}

impl Undoer<'_> {
    /// A path the tree no longer lets us reach safely (a directory became a symlink, say) is left
    /// as it is and reported; any other error stops the uninstall with the journal kept.
    fn settle(&mut self, path: &Path, result: Result<()>) -> Result<()> {
        match result {
            Err(e) if e.is_safety_violation() => {
                self.report.kept.push((path.to_owned(), e.to_string()));
                Ok(())
            }
            other => other,
        }
    }

    /// The directory holding `path` (opened once per uninstall), and the final name.
    fn parent(&mut self, path: &Path) -> Result<Option<(Rc<DirHandle>, OsString)>> {
        let (parent, name) = split(path)?;
        if let Some(dir) = self.dirs.get(parent) {
            return Ok(Some((Rc::clone(dir), name.to_owned())));
        }
        let Some(dir) = self.root.dir_if_exists(parent)? else {
            return Ok(None);
        };
        let dir = Rc::new(dir);
        self.dirs.insert(parent.to_owned(), Rc::clone(&dir));
        Ok(Some((dir, name.to_owned())))
    }

    fn is_ours(&self, id: u32, meta: &Meta) -> bool {
        self.made.get(&id).is_some_and(|i| i.matches(meta, self.same_mount))
    }

    /// Removes temporary files an interrupted step may have left. Their names are random and
    /// journaled before creation, so an entry of that name and a file type is ours.
    fn remove_temps(&self, dir: &DirHandle, id: u32, temp: Option<&str>) -> Result<()> {
        let made = self.made.get(&id).copied();
        if let Some(temp) = temp {
            let temp = OsStr::new(temp);
            dir.remove_if(temp, |m| match made {
                Some(i) => i.matches(m, self.same_mount),
                None => matches!(m.kind, FileKind::File | FileKind::Symlink),
            })?;
        }
        for t in self.restores.get(&id).into_iter().flatten() {
            dir.remove_if(OsStr::new(t), |m| m.kind == FileKind::File)?;
        }
        Ok(())
    }

    /// Whether an entry with our inode still holds what we wrote. The inode number alone is not
    /// enough: once the container deletes our file, the file system may hand the same number to
    /// the file it creates next.
    fn still_as_made(&self, dir: &DirHandle, name: &OsStr, meta: &Meta, entry: &NewEntry) -> Result<bool> {
        match entry {
            NewEntry::File { sha256 } => {
                let bytes = dir.read_contents(name, meta, self.root.read_limit())?;
                Ok(sha256_hex(&bytes) == *sha256)
            }
            NewEntry::Symlink { target } => Ok(dir.read_link(name)? == *target),
        }
    }

    fn undo_mkdir(&mut self, id: u32, path: &Path) -> Result<()> {
        let Some((dir, name)) = self.parent(path)? else {
            return Ok(());
        };
        let Some(meta) = dir.lstat(&name)? else {
            return Ok(());
        };
        // Without a `Made` record the install stopped between mkdir and journaling it: the name
        // did not exist when the intent was written, so an empty directory there is ours.
        let ours = meta.kind == FileKind::Dir && (self.is_ours(id, &meta) || !self.made.contains_key(&id));
        if !ours {
            self.report
                .kept
                .push((path.to_owned(), "replaced since install; left as is".into()));
        } else if dir.remove_if(&name, |m| m.identity() == meta.identity())? {
            self.dirs.remove(path);
            self.report.removed.push(path.to_owned());
        } else {
            self.report.kept.push((
                path.to_owned(),
                "directory is not empty: the container added to it".into(),
            ));
        }
        Ok(())
    }

    fn undo_create(&mut self, id: u32, path: &Path, temp: &str, entry: &NewEntry) -> Result<()> {
        let Some((dir, name)) = self.parent(path)? else {
            return Ok(());
        };
        if !self.made.contains_key(&id) {
            // Never renamed into place: whatever is at `path` is not ours.
            return self.remove_temps(&dir, id, Some(temp));
        }
        let current = dir.lstat(&name)?;
        if !current.is_some_and(|m| self.is_ours(id, &m)) {
            // Not renamed into place (or replaced since): the temporary file may be left.
            self.remove_temps(&dir, id, Some(temp))?;
        }
        match current {
            None => {}
            Some(m) if self.is_ours(id, &m) && self.still_as_made(&dir, &name, &m, entry)? => {
                let removed = match entry {
                    // still_as_made opened it by name and checked it is this inode.
                    NewEntry::File { .. } => dir.remove_file(&name)?,
                    NewEntry::Symlink { .. } => dir.remove_if(&name, |now| now.identity() == m.identity())?,
                };
                if removed {
                    self.report.removed.push(path.to_owned());
                }
            }
            Some(m) if self.is_ours(id, &m) => self.report.kept.push((
                path.to_owned(),
                "contents changed by the container since install; left as is".into(),
            )),
            Some(_) => self.report.kept.push((
                path.to_owned(),
                "replaced by the container since install; left as is".into(),
            )),
        }
        Ok(())
    }

    fn undo_edit(
        &mut self,
        id: u32,
        path: &Path,
        temp: &str,
        original: &Original,
        new_sha256: &str,
        undo: &journal::Undo,
    ) -> Result<()> {
        let Some((dir, name)) = self.parent(path)? else {
            return Ok(());
        };
        self.remove_temps(&dir, id, Some(temp))?;
        if !self.made.contains_key(&id) {
            // The replacement was never renamed into place: the file is the original.
            return Ok(());
        }
        if self.still_a_file(&dir, &name, path)?.is_none() {
            return Ok(());
        }
        let (bytes, meta, xattrs) = dir.read(&name, self.root.read_limit())?;
        let hash = sha256_hex(&bytes);
        if self.is_ours(id, &meta) && hash == new_sha256 {
            // Untouched since install: put the original back, bytes and metadata.
            let backup_path = Journal::backup_path(self.journal_path, &original.backup);
            let orig = std::fs::read(&backup_path).map_err(|source| Error::JournalIo {
                path: backup_path.clone(),
                cause: source,
            })?;
            if sha256_hex(&orig) != original.sha256 {
                return Err(Error::JournalInvalid {
                    path: backup_path,
                    reason: "backup does not match the hash the journal recorded".into(),
                    hint: "the original cannot be restored automatically; restore it by hand, then delete the journal",
                });
            }
            let attrs = NewAttrs {
                uid: original.uid,
                gid: original.gid,
                mode: original.mode,
                xattrs: original.xattrs.clone(),
                times: Some((original.atime, original.mtime)),
            };
            self.replace(id, &dir, &name, &orig, &attrs)?;
            self.report.restored.push(path.to_owned());
        } else if hash != original.sha256 {
            // Changed by the container (or already restored, in which case it hashes as the
            // original and is left alone): take out only what we added, keep the rest and its times.
            self.strip(id, &dir, &name, path, (bytes, meta, xattrs), undo)?;
        }
        Ok(())
    }

    /// Puts back a file we changed in place (appended to, or patched; on an overlay file system,
    /// replaced by a copy so changed), bytes and times, when it holds the original with nothing
    /// but (part of) our writes on it; otherwise, when the container changed it, takes out only
    /// our part with `undo()`, as for a replaced file.
    ///
    /// The original comes back as a copy of the file's first bytes, with what we overwrote
    /// written back, renamed over the file; not by cutting the file short: a pipe can still hold
    /// the file's last page after the container is gone (`cat` and friends splice a file into a
    /// pipe, and whoever reads the container's output may not have read it yet), and truncating
    /// would zero our bytes in that page under the reader.
    fn undo_in_place(
        &mut self,
        id: u32,
        path: &Path,
        change: &InPlaceChange<'_>,
        undo: impl FnOnce() -> Undo,
    ) -> Result<()> {
        let original = change.original;
        let Some((dir, name)) = self.parent(path)? else {
            return Ok(());
        };
        self.remove_temps(&dir, id, None)?;
        let Some(current) = self.still_a_file(&dir, &name, path)? else {
            return Ok(());
        };
        // The file we changed: the original, or the copy that replaced it on an overlay.
        let copy = self.made.get(&id).copied();
        let ours = |m: &Meta| {
            original.identity.matches(m, self.same_mount) || copy.is_some_and(|c| c.matches(m, self.same_mount))
        };
        if ours(&current) {
            // Read-only: what is left of the change is put back by a copy, and on an overlay an
            // original that the install never replaced must stay in the image's layer.
            if let Some(file) = dir.open_to_copy(&name)? {
                if ours(&file.meta) {
                    match self.in_place_state(&file, change)? {
                        InPlaceState::Original => {
                            // Nothing of ours is left (the install stopped before writing, or
                            // this uninstall was interrupted after cutting): only the times.
                            if (file.meta.atime, file.meta.mtime) != (original.atime, original.mtime) {
                                file.set_times(original.atime, original.mtime)?;
                            }
                            return Ok(());
                        }
                        InPlaceState::Ours => {
                            let times = Some((original.atime, original.mtime));
                            let attrs = NewAttrs::like(&file.meta, file.xattrs()?, times);
                            let mut overwritten: Vec<(u64, &[u8])> =
                                change.patches.iter().map(|p| (p.at, p.old.as_slice())).collect();
                            if !change.old_tail.is_empty() {
                                overwritten.push((change.keep, change.old_tail));
                            }
                            let temp = self.restore_temp(id)?;
                            dir.create_file_from(
                                &temp,
                                &file,
                                change.keep,
                                &overwritten,
                                &attrs,
                                self.options.durable,
                            )?;
                            dir.rename(&temp, &name, false)?;
                            self.report.restored.push(path.to_owned());
                            return Ok(());
                        }
                        InPlaceState::Changed => {}
                    }
                }
            }
        }
        let current = dir.read(&name, self.root.read_limit())?;
        self.strip(id, &dir, &name, path, current, &undo())
    }

    /// The metadata of `name` when it is still a regular file; otherwise records why it is
    /// left alone and returns `None`.
    fn still_a_file(&mut self, dir: &DirHandle, name: &OsStr, path: &Path) -> Result<Option<Meta>> {
        let reason = match dir.lstat(name)? {
            Some(m) if m.kind == FileKind::File => return Ok(Some(m)),
            Some(m) => format!("replaced by {} since install; left as is", m.kind.describe()),
            None => "deleted by the container; not recreated".into(),
        };
        self.report.kept.push((path.to_owned(), reason));
        Ok(None)
    }

    /// Takes our part out of the file `name` the container changed since install (`current`:
    /// its bytes, metadata and attributes as read), and writes the rest back with the file's
    /// owner, mode, attributes and times.
    fn strip(
        &mut self,
        id: u32,
        dir: &DirHandle,
        name: &OsStr,
        path: &Path,
        current: (Vec<u8>, Meta, Xattrs),
        undo: &Undo,
    ) -> Result<()> {
        let (bytes, meta, xattrs) = current;
        if let Some(stripped) = undo.revert(&bytes) {
            let attrs = NewAttrs::like(&meta, xattrs, Some((meta.atime, meta.mtime)));
            self.replace(id, dir, name, &stripped, &attrs)?;
            self.report.stripped.push(path.to_owned());
        }
        Ok(())
    }

    /// Whether `file` is the original, the original with our writes on it (or part of them, if
    /// the install stopped while writing: every byte we may have written holds either its old or
    /// its new value), or something else.
    fn in_place_state(&self, file: &InPlace, change: &InPlaceChange<'_>) -> Result<InPlaceState> {
        let size = file.meta.size;
        let original_size = change.original.size;
        let written_end = change.keep + change.tail.len() as u64;
        if original_size != change.keep + change.old_tail.len() as u64
            || size < original_size
            || size > original_size.max(written_end)
            || change
                .patches
                .iter()
                .any(|p| p.old.len() != p.new.len() || p.at + p.old.len() as u64 > change.keep)
        {
            return Ok(InPlaceState::Changed);
        }
        // Every patched byte holds its old or its new value.
        let mut patched = false;
        for p in change.patches {
            let now = file.read_at(p.at, p.old.len())?;
            if now.len() != p.old.len()
                || !now
                    .iter()
                    .zip(p.old.iter().zip(&p.new))
                    .all(|(b, (o, n))| b == o || b == n)
            {
                return Ok(InPlaceState::Changed);
            }
            patched |= now != p.old;
        }
        // The first `keep` bytes, with what the patches overwrote put back, then the old tail,
        // must hash as the original did.
        let mut hasher = ContentHasher::like(&change.original.digest);
        let mut at = 0u64;
        let mut buf = Vec::new();
        // What is past `keep` now, kept from the same pass (at most our tail's length, checked
        // above).
        let mut now = Vec::new();
        file.stream(size, |chunk| {
            let take = chunk.len().min(change.keep.saturating_sub(at) as usize);
            now.extend_from_slice(&chunk[take..]);
            let end = at + take as u64;
            let mut piece = &chunk[..take];
            if change
                .patches
                .iter()
                .any(|p| p.at < end && p.at + p.old.len() as u64 > at)
            {
                buf.clear();
                buf.extend_from_slice(piece);
                for p in change.patches {
                    for (i, &old) in p.old.iter().enumerate() {
                        let pos = p.at + i as u64;
                        if (at..end).contains(&pos) {
                            buf[(pos - at) as usize] = old;
                        }
                    }
                }
                piece = &buf;
            }
            hasher.update(piece);
            at = end;
        })?;
        if at != change.keep {
            return Ok(InPlaceState::Changed);
        }
        hasher.update(change.old_tail);
        if hasher.finish() != change.original.digest || now.len() as u64 != size - change.keep {
            return Ok(InPlaceState::Changed);
        }
        // Byte by byte only when neither whole tail agrees: a thousand certificates appended are
        // most of a megabyte.
        let agrees = |with: &[u8]| with.get(..now.len()) == Some(&now[..]);
        let ours_or_old = agrees(change.tail)
            || agrees(change.old_tail)
            || now
                .iter()
                .enumerate()
                .all(|(i, b)| change.tail.get(i) == Some(b) || change.old_tail.get(i) == Some(b));
        Ok(if !ours_or_old {
            InPlaceState::Changed
        } else if now == change.old_tail && !patched {
            InPlaceState::Original
        } else {
            InPlaceState::Ours
        })
    }

    /// Writes `bytes` under a journaled temporary name and renames it over `name`.
    fn replace(&mut self, id: u32, dir: &DirHandle, name: &OsStr, bytes: &[u8], attrs: &NewAttrs) -> Result<()> {
        let temp = self.restore_temp(id)?;
        dir.create_file(&temp, bytes, attrs, self.options.durable)?;
        dir.rename(&temp, name, false)
    }

    /// A temporary name for putting back the file of record `id`, journaled before it is used.
    fn restore_temp(&mut self, id: u32) -> Result<OsString> {
        let temp = temp_name();
        let temp_str = temp.to_string_lossy().into_owned();
        self.writer.append(&Record::Restore(Restore {
            id,
            temp: temp_str.clone(),
        }))?;
        self.restores.entry(id).or_default().push(temp_str);
        Ok(temp)
    }
}
