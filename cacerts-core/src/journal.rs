//! The write-ahead journal.
//!
//! A journal is a host file outside the container root, mode 0600, in JSON lines: a header naming
//! the format, its version and the root it belongs to, then one record per step. It is created
//! atomically (written under a temporary name, flushed, renamed into place, directory flushed) and
//! then only appended to; every append is flushed (`fdatasync`) before the change it describes is
//! made. A crash can only tear the last line, which a reader ignores; a bad line anywhere else
//! makes the journal corrupt.
//!
//! Records say *what is about to happen* (an intent: the path, the temporary name used, the hash
//! of the bytes to be written, for a file about to be replaced its original metadata and a
//! backup of its bytes beside the journal, for a file about to be changed in place its size,
//! times and hash, the bytes to be written and the few bytes they overwrite) and then *what was
//! made* (the identity of the new inode). Uninstall needs nothing else: it is a function of these
//! records and the tree as it is.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::failpoint;
use crate::rootfs::{Identity, Time};

/// The `format` value in every journal header.
pub const FORMAT: &str = "cacerts-hook-journal";
/// The journal format version this build writes; it reads every version up to this one.
///
/// Raised whenever a journal this build writes may hold what an earlier build cannot read, so
/// that an earlier build refuses it by its header, saying which version it is, rather than as a
/// corrupt line: 2 from the build that records XXH3-128 digests (version 1 journals hold SHA-256
/// or BLAKE3 digests, and read as before).
pub const VERSION: u32 = 2;

/// First line of a journal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    pub format: String,
    pub version: u32,
    /// Canonical host path of the rootfs the journal belongs to.
    #[serde(with = "path_bytes")]
    pub rootfs: PathBuf,
    /// Device number of the rootfs directory when the journal was written.
    pub root_dev: u64,
}

/// Metadata of a file before we replaced it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Original {
    pub identity: Identity,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    pub atime: Time,
    pub mtime: Time,
    #[serde(with = "hex_pairs")]
    pub xattrs: Vec<(std::ffi::OsString, Vec<u8>)>,
    pub sha256: String,
    /// Backup of the original bytes, a file name beside the journal.
    pub backup: String,
}

/// A file before we changed it in place (appended to it, or patched it): enough to tell whether
/// it is still the original plus our bytes, and to put the original back and give it its times
/// again. No backup is needed: the original is the file's first bytes with the few bytes we
/// overwrote, which the record holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Appended {
    pub identity: Identity,
    pub size: u64,
    pub atime: Time,
    pub mtime: Time,
    /// Digest of the original bytes.
    #[serde(flatten)]
    pub digest: ContentDigest,
}

/// A digest of a file's contents, named by its algorithm in the record: `"xxh3_128": "<hex>"` as
/// this build writes it; `"blake3": "<hex>"` and `"sha256": "<hex>"` as builds before it did
/// (still read, and checked with their own algorithm).
///
/// What it decides: whether the first bytes of a file changed in place are still the original's
/// at uninstall. If they are, the file is put back from those same bytes, with the original's
/// times; if not, only our bytes are taken out of it. So it stands between the container and
/// the container's own file only. A container that forged a collision would get its changed
/// file back with the original's times, never another file or anything outside the root, which
/// it could as well have done itself; by accident, two contents collide with a probability of
/// 2^-128. That is why a fast hash that is not cryptographic is enough here, and it is hashed
/// over a bundle and a key store at every install and every uninstall. (Files we create are
/// recognised by SHA-256 of their contents, which are small.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ContentDigest {
    Sha256(String),
    Blake3(String),
    #[serde(rename = "xxh3_128")]
    Xxh3(String),
}

/// Hashes contents into a [`ContentDigest`] of one algorithm.
pub(crate) enum ContentHasher {
    Sha256(Sha256),
    Blake3(Box<blake3::Hasher>),
    Xxh3(Box<xxhash_rust::xxh3::Xxh3>),
}

impl ContentHasher {
    /// The algorithm new records use: XXH3-128, which hashes a 222 KB bundle in 10 µs where
    /// BLAKE3 takes 64 µs and SHA-256 with the SHA extensions about 125 µs here; its portable
    /// SSE2 code also asks the CPU nothing at run time (BLAKE3's detection executes `cpuid`,
    /// which a hypervisor traps).
    pub fn new() -> ContentHasher {
        ContentHasher::Xxh3(Box::default())
    }

    /// The algorithm of `digest`, to check contents against it.
    pub fn like(digest: &ContentDigest) -> ContentHasher {
        match digest {
            ContentDigest::Sha256(_) => ContentHasher::Sha256(Sha256::new()),
            ContentDigest::Blake3(_) => ContentHasher::Blake3(Box::default()),
            ContentDigest::Xxh3(_) => ContentHasher::new(),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            ContentHasher::Sha256(h) => h.update(bytes),
            ContentHasher::Blake3(h) => {
                h.update(bytes);
            }
            ContentHasher::Xxh3(h) => h.update(bytes),
        }
    }

    pub fn finish(self) -> ContentDigest {
        match self {
            ContentHasher::Sha256(h) => ContentDigest::Sha256(hex::encode(h.finalize())),
            ContentHasher::Blake3(h) => ContentDigest::Blake3(h.finalize().to_hex().to_string()),
            // XXH128's canonical form: the high 64 bits first.
            ContentHasher::Xxh3(h) => ContentDigest::Xxh3(hex::encode(h.digest128().to_be_bytes())),
        }
    }
}

/// Bytes of a file overwritten in place, at `at`: what was there and what we wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Splice {
    pub at: u64,
    #[serde(with = "base64_bytes")]
    pub old: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub new: Vec<u8>,
}

/// How to take our change back out of a file someone else has changed since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Undo {
    /// Remove every occurrence of each of these byte strings.
    RemoveFragments(#[serde(with = "hex_list")] Vec<Vec<u8>>),
    /// Remove the trusted-certificate entries with these aliases from a Java keystore, which
    /// is read and written back with `password`.
    RemoveKeystoreEntries { aliases: Vec<String>, password: String },
}

/// What kind of entry a create record makes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NewEntry {
    File {
        sha256: String,
    },
    Symlink {
        #[serde(with = "path_bytes")]
        target: PathBuf,
    },
}

/// One journal record: an object whose `op` names its kind, then the kind's fields.
///
/// Written by serde's derive (the tag first); read by hand, the tag first too, so that the rest
/// of a line goes straight into its record. The derive would first buffer every line whole,
/// and a batch of a thousand records is a few hundred kilobytes.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Record {
    DirTimes(DirTimes),
    Mkdir(Mkdir),
    Create(Create),
    Edit(Edit),
    Append(Append),
    Patch(Patch),
    Made(Made),
    Restore(Restore),
    Batch(Batch),
}

/// A directory whose entries are about to change, with its times before any change.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DirTimes {
    #[serde(with = "path_bytes")]
    pub path: PathBuf,
    pub identity: Identity,
    pub atime: Time,
    pub mtime: Time,
}

/// About to create directory `path`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Mkdir {
    pub id: u32,
    #[serde(with = "path_bytes")]
    pub path: PathBuf,
}

/// About to create `temp` beside `path` and rename it to `path` (never replacing anything).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Create {
    pub id: u32,
    #[serde(with = "path_bytes")]
    pub path: PathBuf,
    pub temp: String,
    pub entry: NewEntry,
}

/// About to replace the regular file `path` by `temp`, renamed over it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Edit {
    pub id: u32,
    #[serde(with = "path_bytes")]
    pub path: PathBuf,
    pub temp: String,
    pub original: Box<Original>,
    pub new_sha256: String,
    pub undo: Undo,
}

/// About to write `fragment` at the end of the regular file `path`, in place (the file has no
/// other name and is not a mount point).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Append {
    pub id: u32,
    #[serde(with = "path_bytes")]
    pub path: PathBuf,
    pub original: Box<Appended>,
    #[serde(with = "base64_bytes")]
    pub fragment: Vec<u8>,
}

/// About to change the regular file `path` in place (it has no other name and is not a mount
/// point): write `tail` from offset `keep`, over the original's last bytes `old_tail`, then each
/// of `patches`, all within the original's first `keep` bytes. An [`Append`] is the case with no
/// patches and no old tail; a Java key store gaining entries patches its entry count and writes
/// the new entries over its old integrity hash.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Patch {
    pub id: u32,
    #[serde(with = "path_bytes")]
    pub path: PathBuf,
    pub original: Box<Appended>,
    pub keep: u64,
    #[serde(with = "base64_bytes")]
    pub old_tail: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub tail: Vec<u8>,
    pub patches: Vec<Splice>,
    /// How to take our change out should the container change the file afterwards.
    pub undo: Undo,
}

/// The entry of record `id` now exists with this identity (for [`Create`] and [`Edit`], the
/// temporary file, before it is renamed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Made {
    pub id: u32,
    pub identity: Identity,
}

/// Uninstall is about to write `temp` to put back or clean the file of record `id`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Restore {
    pub id: u32,
    pub temp: String,
}

/// Several records written as one line: all of them are in the journal, or none.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Batch {
    pub records: Vec<Record>,
}

/// The kinds of record, as `op` names them.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Op {
    DirTimes,
    Mkdir,
    Create,
    Edit,
    Append,
    Patch,
    Made,
    Restore,
    Batch,
}

impl Record {
    /// The record of kind `op` whose other fields `fields` holds.
    fn of_kind<'de, D: Deserializer<'de>>(op: Op, fields: D) -> std::result::Result<Record, D::Error> {
        Ok(match op {
            Op::DirTimes => Record::DirTimes(DirTimes::deserialize(fields)?),
            Op::Mkdir => Record::Mkdir(Mkdir::deserialize(fields)?),
            Op::Create => Record::Create(Create::deserialize(fields)?),
            Op::Edit => Record::Edit(Edit::deserialize(fields)?),
            Op::Append => Record::Append(Append::deserialize(fields)?),
            Op::Patch => Record::Patch(Patch::deserialize(fields)?),
            Op::Made => Record::Made(Made::deserialize(fields)?),
            Op::Restore => Record::Restore(Restore::deserialize(fields)?),
            Op::Batch => Record::Batch(Batch::deserialize(fields)?),
        })
    }
}

impl<'de> Deserialize<'de> for Record {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Record, D::Error> {
        d.deserialize_map(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a journal record (an object with an \"op\")")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Record, A::Error> {
        let first = map.next_key::<FieldName>()?;
        if matches!(first, Some(FieldName::Op)) {
            let op = map.next_value()?;
            return Record::of_kind(op, MapAccessDeserializer::new(map));
        }
        // `op` elsewhere (not as this build writes it): the fields are gathered first.
        let mut fields = serde_json::Map::new();
        if let Some(FieldName::Other(name)) = first {
            fields.insert(name, map.next_value()?);
            while let Some((name, value)) = map.next_entry::<String, serde_json::Value>()? {
                fields.insert(name, value);
            }
        }
        let op = fields.remove("op").ok_or_else(|| de::Error::missing_field("op"))?;
        let op = Op::deserialize(op).map_err(de::Error::custom)?;
        Record::of_kind(op, serde_json::Value::Object(fields)).map_err(de::Error::custom)
    }
}

/// A record's field name: `op`, told apart without a copy, or another.
enum FieldName {
    Op,
    Other(String),
}

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<FieldName, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = FieldName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> std::result::Result<FieldName, E> {
                Ok(if name == "op" {
                    FieldName::Op
                } else {
                    FieldName::Other(name.to_owned())
                })
            }
        }
        d.deserialize_identifier(Name)
    }
}

/// A journal read back from disk.
#[derive(Debug)]
pub(crate) struct Journal {
    pub header: Header,
    pub records: Vec<Record>,
}

/// Hex digest of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn invalid(path: &Path, reason: impl Into<String>, hint: &'static str) -> Error {
    Error::JournalInvalid {
        path: path.to_owned(),
        reason: reason.into(),
        hint,
    }
}

/// Largest journal read: far above what any install writes (a thousand CAs make a journal of
/// a few hundred kilobytes), and a bound on what a mistaken path can make us allocate.
const MAX_JOURNAL: u64 = 1 << 30;

const CORRUPT_HINT: &str = "the changes it records cannot be undone automatically; \
     inspect the journal, repair the rootfs by hand if needed, then delete the journal";

impl Journal {
    /// Reads a journal; `Ok(None)` if there is none at `path`.
    pub fn read(path: &Path) -> Result<Option<Journal>> {
        // Read whole, in one call of its size: a line of a thousand records is a few hundred
        // kilobytes, which a line reader would grow into by doubling.
        let bytes = match crate::host::read_file(path, MAX_JOURNAL) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                return Err(invalid(path, "not a regular file", "pass the path of a journal file"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(invalid(path, e.to_string(), CORRUPT_HINT))
            }
            Err(source) => {
                return Err(Error::JournalIo {
                    path: path.to_owned(),
                    cause: source,
                })
            }
        };
        // Each line with its newline; the last one may lack it. Found with memchr's portable
        // search: its vector one first asks the CPU what it has, which costs a hypervisor's
        // trapped `cpuid` more than searching a journal of one CA takes.
        let mut lines: Vec<&[u8]> = Vec::new();
        let mut start = 0;
        for end in memchr::arch::all::memchr::One::new(b'\n').iter(&bytes) {
            lines.push(&bytes[start..=end]);
            start = end + 1;
        }
        if start < bytes.len() {
            lines.push(&bytes[start..]);
        }
        let Some(&first) = lines.first() else {
            return Err(invalid(path, "empty file", CORRUPT_HINT));
        };
        let header: Header = serde_json::from_slice(first)
            .map_err(|e| invalid(path, format!("not a cacerts-hook journal ({e})"), CORRUPT_HINT))?;
        if header.format != FORMAT {
            return Err(invalid(
                path,
                format!("format {:?} is not {FORMAT:?}", header.format),
                CORRUPT_HINT,
            ));
        }
        if !(1..=VERSION).contains(&header.version) {
            return Err(invalid(
                path,
                format!(
                    "journal version {} is not one this build reads (1 to {VERSION})",
                    header.version
                ),
                "uninstall with the cacerts-hook version that wrote it, or a later one",
            ));
        }
        let count = lines.len();
        let mut records = Vec::with_capacity(count - 1);
        for (i, &line) in lines.iter().enumerate().skip(1) {
            match serde_json::from_slice::<Record>(line) {
                Ok(Record::Batch(Batch { records: batch })) => records.extend(batch),
                Ok(r) => records.push(r),
                // A crash can tear the last line; it was never acted on, since the change it
                // describes only starts after the line is flushed.
                Err(_) if i + 1 == count && !line.ends_with(b"\n") => break,
                Err(e) => return Err(invalid(path, format!("line {} is corrupt ({e})", i + 1), CORRUPT_HINT)),
            }
        }
        Ok(Some(Journal { header, records }))
    }

    /// Path of a backup file named in a record.
    pub fn backup_path(journal: &Path, name: &str) -> PathBuf {
        let mut p = journal.as_os_str().to_owned();
        p.push(".");
        p.push(name);
        PathBuf::from(p)
    }

    /// Removes the journal and its backups, flushing the directory.
    pub fn delete(path: &Path, records: &[Record]) -> Result<()> {
        for r in records {
            if let Record::Edit(Edit { original, .. }) = r {
                failpoint::hit()?;
                remove_if_exists(&Journal::backup_path(path, &original.backup))?;
            }
        }
        failpoint::hit()?;
        remove_if_exists(path)?;
        sync_parent(path)
    }
}

/// The canonical host path of the root filesystem the journal at `path` was written for;
/// `Ok(None)` when there is no journal there. For deciding whether its container still exists.
pub fn recorded_rootfs(path: &Path) -> Result<Option<PathBuf>> {
    Ok(Journal::read(path)?.map(|j| j.header.rootfs))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::JournalIo {
            path: path.to_owned(),
            cause: source,
        }),
    }
}

fn sync_parent(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::JournalIo {
            path: dir.to_owned(),
            cause: source,
        })
}

/// Appends records to a new journal, flushing each before returning.
#[derive(Debug)]
pub(crate) struct Writer {
    path: PathBuf,
    file: File,
    /// Bytes in the journal: where the next line starts.
    len: u64,
}

/// Serializes as a [`Record::Batch`] does, borrowing the records instead of owning copies.
#[derive(Serialize)]
#[serde(tag = "op", rename = "batch")]
struct BatchRef<'a> {
    records: &'a [Record],
}

/// Counts the bytes written through it.
struct Counted<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The buffer a journal line is written out through: a line of one CA's records is one write; a
/// thousand certificates' append (most of a megabyte in base64) is never held whole.
const LINE_BUFFER: usize = 64 << 10;

impl Writer {
    /// Creates the journal at `path` (which must not exist) with `header`, atomically.
    pub fn create(path: &Path, header: &Header) -> Result<Writer> {
        let io = |source| Error::JournalIo {
            path: path.to_owned(),
            cause: source,
        };
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let temp = Journal::backup_path(path, &format!("new-{}", random_suffix()));
        let mut line = serde_json::to_vec(header).expect("journal header serializes");
        line.push(b'\n');
        failpoint::hit()?;
        // Appending, as a reopened journal is: a line cut off after a failed write (see
        // `append_all`) leaves the next one to start where the file now ends.
        let mut file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_cloexec())
            .open(&temp)
            .map_err(io)?;
        let result = file
            .write_all(&line)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::hard_link(&temp, path))
            .and_then(|()| std::fs::remove_file(&temp));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&temp);
            return Err(io(e));
        }
        sync_parent(path)?;
        Ok(Writer {
            path: path.to_owned(),
            file,
            len: line.len() as u64,
        })
    }

    /// Appends one record and flushes it to stable storage.
    pub fn append(&mut self, record: &Record) -> Result<()> {
        self.append_all(std::slice::from_ref(record))
    }

    /// Appends records as one line (a `batch` record when there are several) and one flush, so
    /// that a crash tears all of them or none: none of the changes they describe has started
    /// before this returns. A line that fails to be written whole is cut off again, so that the
    /// journal stays readable for the records that follow it (a rollback's own).
    pub fn append_all(&mut self, records: &[Record]) -> Result<()> {
        failpoint::hit()?;
        match self.write_line(records).and_then(|n| self.file.sync_data().map(|()| n)) {
            Ok(n) => {
                self.len += n;
                Ok(())
            }
            Err(source) => {
                let _ = self.file.set_len(self.len);
                Err(Error::JournalIo {
                    path: self.path.clone(),
                    cause: source,
                })
            }
        }
    }

    /// Writes one line of `records`; returns its length.
    fn write_line(&mut self, records: &[Record]) -> std::io::Result<u64> {
        let mut out = std::io::BufWriter::with_capacity(
            LINE_BUFFER,
            Counted {
                inner: &self.file,
                count: 0,
            },
        );
        match records {
            [one] => serde_json::to_writer(&mut out, one),
            many => serde_json::to_writer(&mut out, &BatchRef { records: many }),
        }
        .map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        let counted = out.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        Ok(counted.count)
    }

    /// Writes a backup of a file's original bytes beside the journal, flushed, mode 0600.
    pub fn write_backup(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = Journal::backup_path(&self.path, name);
        failpoint::hit()?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_cloexec())
            .open(&path)
            .map_err(|source| Error::JournalIo {
                path: path.clone(),
                cause: source,
            })?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|source| Error::JournalIo { path, cause: source })
    }
}

/// Reopens an existing journal for appending (uninstall records its own temporary files).
pub(crate) fn reopen(path: &Path) -> Result<Writer> {
    let file = OpenOptions::new()
        .append(true)
        .custom_flags(libc_cloexec())
        .open(path)
        .map_err(|source| Error::JournalIo {
            path: path.to_owned(),
            cause: source,
        })?;
    let len = file.metadata().map_err(|source| Error::JournalIo {
        path: path.to_owned(),
        cause: source,
    })?;
    Ok(Writer {
        path: path.to_owned(),
        file,
        len: len.len(),
    })
}

fn libc_cloexec() -> i32 {
    rustix::fs::OFlags::CLOEXEC.bits() as i32
}

/// 16 random hex digits, for temporary names no image can predict.
pub(crate) fn random_suffix() -> String {
    let mut buf = [0u8; 8];
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => {
                // No entropy source: fall back to time and pid, still unique per process.
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                buf = (t ^ (u64::from(std::process::id()) << 32)).to_le_bytes();
                break;
            }
        }
    }
    hex::encode(buf)
}

mod hex_list {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(hex::encode))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|h| hex::decode(h).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Paths inside the container (and the host path of its root) as JSON strings when they are
/// UTF-8, as in every journal before, and as `{"bytes": "<base64>"}` when they are not: a name in
/// an image may be any bytes but `/` and NUL, and such a path must be journaled like any other.
mod path_bytes {
    use std::ffi::OsString;
    use std::fmt;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use base64::Engine;
    use serde::de::{self, MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    const BYTES: &str = "bytes";

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        match p.to_str() {
            Some(text) => s.serialize_str(text),
            None => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(BYTES, &crate::pem::BASE64.encode(p.as_os_str().as_bytes()))?;
                m.end()
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        d.deserialize_any(PathVisitor)
    }

    struct PathVisitor;

    impl<'de> Visitor<'de> for PathVisitor {
        type Value = PathBuf;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a path: a string, or {"bytes": base64}"#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<PathBuf, E> {
            Ok(PathBuf::from(v))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PathBuf, A::Error> {
            let mut bytes = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key != BYTES || bytes.is_some() {
                    return Err(de::Error::custom(format!("unexpected key {key:?} in a path")));
                }
                let text = map.next_value::<std::borrow::Cow<'de, str>>()?;
                let raw = crate::pem::BASE64.decode(text.as_bytes()).map_err(de::Error::custom)?;
                bytes = Some(raw);
            }
            let raw = bytes.ok_or_else(|| de::Error::missing_field(BYTES))?;
            Ok(PathBuf::from(OsString::from_vec(raw)))
        }
    }
}

/// Bytes as base64: a fragment of a thousand certificates is most of a megabyte, which hex
/// would double and encode and decode several times slower.
mod base64_bytes {
    use std::fmt;

    use base64::Engine;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// Encoded as it is written out: serde_json's `collect_str` writes the text through, so no
    /// copy of it is held.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&base64::display::Base64Display::new(v, &crate::pem::BASE64))
    }

    /// Decoded from the text where it lies (borrowed from the journal's bytes when it has no
    /// escapes, as ours never has): no copy of the text is made.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_str(Base64Text)
    }

    struct Base64Text;

    impl Visitor<'_> for Base64Text {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a base64 string")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
            crate::pem::BASE64.decode(text.as_bytes()).map_err(E::custom)
        }
    }
}

mod hex_pairs {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[(OsString, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|(n, val)| (hex::encode(n.as_bytes()), hex::encode(val))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(OsString, Vec<u8>)>, D::Error> {
        Vec::<(String, String)>::deserialize(d)?
            .into_iter()
            .map(|(n, v)| {
                let n = hex::decode(n).map_err(serde::de::Error::custom)?;
                let v = hex::decode(v).map_err(serde::de::Error::custom)?;
                Ok((OsString::from_vec(n), v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    #[test]
    fn new_digests_are_xxh3_128_in_the_reference_form() {
        // The values `xxh128sum` (the reference implementation's tool) prints for "" and "abc".
        for (parts, want) in [
            (&[][..], "99aa06d3014798d86001c324468d497f"),
            (&[&b"a"[..], &b"bc"[..]][..], "06b05ab6733a618578af5f94892f3950"),
        ] {
            let mut h = ContentHasher::new();
            parts.iter().for_each(|p| h.update(p));
            let digest = h.finish();
            assert_eq!(digest, ContentDigest::Xxh3(want.to_owned()));
            // Recorded under its algorithm's name, and checked again with the same algorithm.
            let json = serde_json::to_string(&digest).unwrap();
            assert_eq!(json, format!("{{\"xxh3_128\":\"{want}\"}}"));
            let mut again = ContentHasher::like(&serde_json::from_str(&json).unwrap());
            parts.iter().for_each(|p| again.update(p));
            assert_eq!(again.finish(), digest);
        }
    }

    fn mkdir(path: &Path) -> Record {
        Record::Mkdir(Mkdir {
            id: 7,
            path: path.to_owned(),
        })
    }

    fn path_of(line: &str) -> PathBuf {
        match serde_json::from_str(line).expect("a record") {
            Record::Mkdir(Mkdir { path, .. }) => path,
            other => panic!("not a mkdir record: {other:?}"),
        }
    }

    /// A UTF-8 path is a plain string, as in every journal written before paths could be bytes,
    /// so that those are read as they were; any other path round-trips by its bytes.
    #[test]
    fn paths_are_strings_when_utf8_and_bytes_otherwise() {
        let plain = Path::new("/etc/ssl/certs/ca-certificates.crt");
        let line = serde_json::to_string(&mkdir(plain)).unwrap();
        assert_eq!(
            line,
            r#"{"op":"mkdir","id":7,"path":"/etc/ssl/certs/ca-certificates.crt"}"#
        );
        assert_eq!(path_of(&line), plain);

        let odd = Path::new(OsStr::from_bytes(b"/etc/ssl/c\xff/\x80\xfe.crt"));
        let line = serde_json::to_string(&mkdir(odd)).unwrap();
        assert!(line.contains(r#""path":{"bytes":""#), "{line}");
        assert_eq!(path_of(&line), odd);
    }

    /// A batch is written from borrowed records, and read back as the batch record it must be.
    #[test]
    fn a_borrowed_batch_is_written_as_a_batch_record() {
        let records = vec![mkdir(Path::new("/a")), mkdir(Path::new("/b"))];
        let borrowed = serde_json::to_string(&BatchRef { records: &records }).unwrap();
        let owned = serde_json::to_string(&Record::Batch(Batch {
            records: records.clone(),
        }))
        .unwrap();
        assert_eq!(borrowed, owned);
        match serde_json::from_str(&borrowed).unwrap() {
            Record::Batch(Batch { records: back }) => assert_eq!(back.len(), 2),
            other => panic!("not a batch: {other:?}"),
        }
    }

    /// Journal lines as the builds before the hand-written reader wrote them, one of every kind
    /// of record (a Debian install with its Java key store, and the kinds it does not make),
    /// then the `append` and `patch` of a Debian install by the build that changed their digests
    /// to XXH3-128: each is read, and written back byte for byte.
    #[test]
    fn every_kind_of_record_reads_and_writes_back_the_same() {
        let text = include_str!("../testdata/journal-v1.jsonl");
        let mut lines = text.lines();
        let header: Header = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header.format, FORMAT);
        let mut kinds = std::collections::BTreeSet::new();
        for line in lines {
            let record: Record = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(serde_json::to_string(&record).unwrap(), line);
            let mut all = vec![&record];
            if let Record::Batch(b) = &record {
                all.extend(&b.records);
            }
            for r in all {
                kinds.insert(match r {
                    Record::DirTimes(_) => "dir_times",
                    Record::Mkdir(_) => "mkdir",
                    Record::Create(c) if matches!(c.entry, NewEntry::Symlink { .. }) => "create symlink",
                    Record::Create(_) => "create file",
                    Record::Edit(_) => "edit",
                    Record::Append(_) => "append",
                    Record::Patch(_) => "patch",
                    Record::Made(_) => "made",
                    Record::Restore(_) => "restore",
                    Record::Batch(_) => "batch",
                });
            }
        }
        let want = [
            "append",
            "batch",
            "create file",
            "create symlink",
            "dir_times",
            "edit",
            "made",
            "mkdir",
            "patch",
            "restore",
        ];
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), want);
    }

    /// `op` is written first, and read first without gathering the fields; a record with it
    /// elsewhere (edited by hand, say) reads the same all the same.
    #[test]
    fn op_need_not_come_first() {
        let first = r#"{"op":"create","id":9,"path":"/etc/ssl/certs/0123abcd.0","temp":".t","entry":{"symlink":{"target":"a.pem"}}}"#;
        let later = r#"{"id":9,"path":"/etc/ssl/certs/0123abcd.0","op":"create","temp":".t","entry":{"symlink":{"target":"a.pem"}}}"#;
        let last = r#"{"id":9,"path":"/etc/ssl/certs/0123abcd.0","temp":".t","entry":{"symlink":{"target":"a.pem"}},"op":"create"}"#;
        for line in [later, last] {
            let record: Record = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(serde_json::to_string(&record).unwrap(), first);
        }
        let batch = format!(r#"{{"records":[{later},{first}],"op":"batch"}}"#);
        match serde_json::from_str(&batch).unwrap() {
            Record::Batch(Batch { records }) => assert_eq!(records.len(), 2),
            other => panic!("not a batch: {other:?}"),
        }
    }

    /// What is not a record is refused, saying why.
    #[test]
    fn a_record_without_a_known_op_is_an_error() {
        for (line, says) in [
            (r#"{"id":7,"path":"/a"}"#, "missing field `op`"),
            (r#"{}"#, "missing field `op`"),
            (r#"{"op":"rmdir","id":7,"path":"/a"}"#, "unknown variant `rmdir`"),
            (r#"{"id":7,"op":"rmdir","path":"/a"}"#, "unknown variant `rmdir`"),
            (r#"{"op":7,"id":7,"path":"/a"}"#, "expected value at line 1 column 7"),
            (r#"{"id":7,"op":7,"path":"/a"}"#, "invalid type: integer `7`"),
            (r#"{"op":"mkdir","path":"/a"}"#, "missing field `id`"),
            (r#"{"path":"/a","op":"mkdir"}"#, "missing field `id`"),
            (r#"["mkdir",7,"/a"]"#, "invalid type"),
        ] {
            let err = serde_json::from_str::<Record>(line).expect_err(line).to_string();
            assert!(err.contains(says), "{line}: {err}");
        }
    }

    /// A journal is read whole, so one far larger than any install writes is refused before
    /// anything is allocated for it, naming its size and the limit.
    #[test]
    fn a_journal_over_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_JOURNAL + 1).unwrap();
        let err = Journal::read(&path).expect_err("over the limit").to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains(&format!(
                "{} bytes is over the {MAX_JOURNAL}-byte limit",
                MAX_JOURNAL + 1
            )),
            "{err}"
        );
    }

    /// Lines are split where the newlines are, the last one with or without its own: a torn
    /// record at the end is passed over, a whole one without a newline is kept.
    #[test]
    fn the_last_line_needs_no_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let header = r#"{"format":"cacerts-hook-journal","version":1,"rootfs":"/r","root_dev":1}"#;
        let mkdir = r#"{"op":"mkdir","id":1,"path":"/a"}"#;
        for (text, records) in [
            (format!("{header}\n{mkdir}\n{mkdir}\n"), 2),
            (format!("{header}\n{mkdir}\n{mkdir}"), 2),
            (format!("{header}\n{mkdir}\n{{\"op\":\"mk"), 1),
            (format!("{header}\n"), 0),
            (header.to_owned(), 0),
        ] {
            std::fs::write(&path, &text).unwrap();
            let journal = Journal::read(&path).unwrap().expect("a journal");
            assert_eq!(journal.records.len(), records, "{text:?}");
        }
        std::fs::write(&path, format!("{header}\n{{\"op\":\"mk\n{mkdir}\n")).unwrap();
        let err = Journal::read(&path)
            .expect_err("a torn line before the last")
            .to_string();
        assert!(err.contains("line 2 is corrupt"), "{err}");
    }

    /// Journals of every version up to this build's are read; a later one is refused by its
    /// header, before any record is looked at.
    #[test]
    fn versions_up_to_this_builds_are_read_and_later_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let header =
            |v: u32| format!(r#"{{"format":"cacerts-hook-journal","version":{v},"rootfs":"/r","root_dev":1}}"#);
        let mkdir = r#"{"op":"mkdir","id":1,"path":"/a"}"#;
        for v in 1..=VERSION {
            std::fs::write(&path, format!("{}\n{mkdir}\n", header(v))).unwrap();
            let journal = Journal::read(&path).unwrap().expect("a journal");
            assert_eq!(journal.records.len(), 1, "version {v}");
        }
        for v in [0, VERSION + 1] {
            // A record this build does not know, after a header it does not read: the header
            // is what the message is about.
            std::fs::write(&path, format!("{}\n{{\"op\":\"later\"}}\n", header(v))).unwrap();
            let err = Journal::read(&path).expect_err("refused").to_string();
            assert!(
                err.contains(&format!(
                    "journal version {v} is not one this build reads (1 to {VERSION})"
                )),
                "{err}"
            );
            assert!(err.contains("the cacerts-hook version that wrote it"), "{err}");
        }
    }

    #[test]
    fn a_malformed_path_is_an_error_not_a_guess() {
        for line in [
            r#"{"op":"mkdir","id":7,"path":{"bytes":"not base64!"}}"#,
            r#"{"op":"mkdir","id":7,"path":{"text":"/etc"}}"#,
            r#"{"op":"mkdir","id":7,"path":{"bytes":"L2V0Yw==","bytes":"L2V0Yw=="}}"#,
            r#"{"op":"mkdir","id":7,"path":{}}"#,
            r#"{"op":"mkdir","id":7,"path":17}"#,
        ] {
            assert!(serde_json::from_str::<Record>(line).is_err(), "{line} was accepted");
        }
    }
}
