//! File metadata as the journal and the uninstaller need it.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, FileType, Stat, StatxFlags, Timespec};
use serde::{Deserialize, Serialize};

/// The type of a filesystem entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Anything else the kernel reports.
    Unknown,
}

impl FileKind {
    pub(crate) fn from_mode(mode: u32) -> Self {
        Self::from_type(FileType::from_raw_mode(mode))
    }

    /// From a directory entry's type; `Unknown` where the file system does not say.
    pub(crate) fn from_type(file_type: FileType) -> Self {
        match file_type {
            FileType::RegularFile => FileKind::File,
            FileType::Directory => FileKind::Dir,
            FileType::Symlink => FileKind::Symlink,
            FileType::Fifo => FileKind::Fifo,
            FileType::Socket => FileKind::Socket,
            FileType::CharacterDevice => FileKind::CharDevice,
            FileType::BlockDevice => FileKind::BlockDevice,
            _ => FileKind::Unknown,
        }
    }

    /// A short human name, used in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::File => "a regular file",
            FileKind::Dir => "a directory",
            FileKind::Symlink => "a symbolic link",
            FileKind::Fifo => "a FIFO",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Unknown => "an entry of unknown type",
        }
    }
}

/// A timestamp with nanosecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds within the second.
    pub nsec: i64,
}

impl Time {
    pub(crate) fn to_timespec(self) -> Timespec {
        Timespec {
            tv_sec: self.sec,
            tv_nsec: self.nsec as _,
        }
    }
}

/// What identifies an entry we created: its type and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Entry type.
    pub kind: FileKind,
    /// Device number of the filesystem (`st_dev`).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Birth time, where the file system records one: an inode number freed by a deletion is
    /// readily given to the next entry created, the birth time tells the two apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub born: Option<Time>,
}

impl Identity {
    /// Whether `meta` is this entry. `same_mount` is false when the root was mounted again since
    /// the identity was recorded (overlay filesystems get a new device number on every mount);
    /// then only type, inode and birth time are compared. Birth times are compared when both
    /// sides have one.
    pub fn matches(&self, meta: &Meta, same_mount: bool) -> bool {
        self.kind == meta.kind
            && self.ino == meta.ino
            && (!same_mount || self.dev == meta.dev)
            && (self.born.is_none() || meta.born.is_none() || self.born == meta.born)
    }
}

/// Metadata of one entry, from `fstat`/`fstatat` (never following a final symlink unless asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Entry type.
    pub kind: FileKind,
    /// Permission bits, including set-id and sticky bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Device number of the filesystem.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Number of hard links.
    pub nlink: u64,
    /// Device number, for device nodes.
    pub rdev: u64,
    /// Last access.
    pub atime: Time,
    /// Last modification.
    pub mtime: Time,
    /// Birth time, where known (see [`Identity::born`]).
    pub born: Option<Time>,
}

impl Meta {
    // The field types of `struct stat` differ between architectures; the casts are no-ops on some.
    #[allow(clippy::unnecessary_cast)]
    pub(crate) fn from_stat(st: &Stat) -> Self {
        Meta {
            kind: FileKind::from_mode(st.st_mode as u32),
            mode: st.st_mode as u32 & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            rdev: st.st_rdev as u64,
            atime: Time {
                sec: st.st_atime as i64,
                nsec: st.st_atime_nsec as i64,
            },
            mtime: Time {
                sec: st.st_mtime as i64,
                nsec: st.st_mtime_nsec as i64,
            },
            born: None,
        }
    }

    /// Metadata of `name` in `dir` (of `dir` itself when `name` is empty), not following a
    /// final symlink, birth time included, from one `statx`.
    pub(crate) fn statx_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Meta, rustix::io::Errno> {
        let mut flags = AtFlags::SYMLINK_NOFOLLOW;
        if name.is_empty() {
            flags |= AtFlags::EMPTY_PATH;
        }
        let st = rustix::fs::statx(dir, name, flags, StatxFlags::BASIC_STATS | StatxFlags::BTIME)?;
        let time = |t: rustix::fs::StatxTimestamp| Time {
            sec: t.tv_sec,
            nsec: i64::from(t.tv_nsec),
        };
        let mode = u32::from(st.stx_mode);
        Ok(Meta {
            kind: FileKind::from_mode(mode),
            mode: mode & 0o7777,
            uid: st.stx_uid,
            gid: st.stx_gid,
            size: st.stx_size,
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            nlink: u64::from(st.stx_nlink),
            rdev: rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
            atime: time(st.stx_atime),
            mtime: time(st.stx_mtime),
            born: (st.stx_mask & StatxFlags::BTIME.bits() != 0).then(|| time(st.stx_btime)),
        })
    }

    /// The identity (type, device, inode) of this entry.
    pub fn identity(&self) -> Identity {
        Identity {
            kind: self.kind,
            dev: self.dev,
            ino: self.ino,
            born: self.born,
        }
    }
}
