//! Files on the host (the operator's CA files, the hook's configuration, a bundle's
//! `config.json`): read without blocking and within a bound.
//!
//! Not for the container's files: those are read through [`crate::ContainerRoot`].

use std::io::{Error, ErrorKind, Read};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// Reads the regular file `path`, of at most `limit` bytes.
///
/// Opened non-blocking, so that a FIFO never waits for a writer, and without acquiring a
/// terminal; the type is checked on the open descriptor, so there is no window to swap the file
/// in between. A file that is not regular is an error of kind [`ErrorKind::InvalidInput`], one
/// over `limit` of kind [`ErrorKind::InvalidData`]. The size `fstat` reports is read in one call:
/// a file that grows meanwhile is read to that size, one cut short to its end.
pub fn read_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    // rustix's O_CLOEXEC is the kernel's: musl's open(3) adds an fcntl after it, for kernels
    // that predate the flag.
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut file = std::fs::File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > limit {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("{} bytes is over the {limit}-byte limit", meta.len()),
        ));
    }
    let mut buf = vec![0u8; meta.len() as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_within_the_limit_only() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read_file(&file, 10).unwrap(), b"0123456789");
        let e = read_file(&file, 9).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "10 bytes is over the 9-byte limit");

        let e = read_file(tmp.path(), 1 << 20).unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string().as_str()),
            (ErrorKind::InvalidInput, "not a regular file")
        );

        // A FIFO with no writer: refused at once, not waited on.
        let fifo = tmp.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(read_file(&fifo, 1 << 20).unwrap_err().kind(), ErrorKind::InvalidInput);

        assert_eq!(
            read_file(&tmp.path().join("missing"), 1).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }
}
