//! What the runtime hands a hook: the state JSON on stdin, and the bundle's `config.json`.
//!
//! Own lenient structures rather than a full OCI model: only the fields used here are read,
//! unknown fields are ignored, and the variants the runtimes really send are accepted (crun's
//! extra `root` and status `created`, poststop without `pid`, older engines' `bundlePath`).

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Largest state JSON read from stdin.
pub const MAX_STATE: u64 = 4 << 20;
/// Largest `config.json` read from the bundle.
pub const MAX_CONFIG: u64 = 16 << 20;

/// The container state a runtime writes to a hook's stdin.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Container id.
    pub id: String,
    /// Bundle directory (absolute).
    #[serde(default, alias = "bundlePath")]
    pub bundle: Option<PathBuf>,
    /// crun's non-standard copy of `root.path`.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Annotations.
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
}

/// The parts of the bundle's `config.json` the hook needs.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Spec {
    /// `root`.
    #[serde(default)]
    pub root: Option<Root>,
    /// `process`.
    #[serde(default)]
    pub process: Option<Process>,
    /// `mounts`.
    #[serde(default)]
    pub mounts: Option<Vec<Mount>>,
    /// `annotations`.
    #[serde(default)]
    pub annotations: Option<HashMap<String, String>>,
}

/// `root` of config.json.
#[derive(Clone, Debug, Deserialize)]
pub struct Root {
    /// The rootfs, absolute or relative to the bundle.
    pub path: PathBuf,
}

/// `process` of config.json.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Process {
    /// `KEY=value` strings.
    #[serde(default)]
    pub env: Option<Vec<String>>,
}

/// One entry of `mounts`.
#[derive(Clone, Debug, Deserialize)]
pub struct Mount {
    /// Where it is mounted, as the container sees it.
    pub destination: PathBuf,
}

impl Spec {
    /// The rootfs host path: `root.path` resolved against the bundle, never the working directory.
    pub fn rootfs(&self, bundle: &Path) -> Option<PathBuf> {
        self.root.as_ref().map(|r| bundle.join(&r.path))
    }
}

/// Whether `id` is safe to use as a file name: `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Parses state JSON.
pub fn parse_state(bytes: &[u8]) -> Result<State> {
    let state: State = serde_json::from_slice(bytes).context("invalid container state JSON on stdin")?;
    if !valid_id(&state.id) {
        bail!(
            "invalid container id {:?}: expected [A-Za-z0-9][A-Za-z0-9_.-]{{0,127}}",
            state.id
        );
    }
    Ok(state)
}

/// Reads all of `input` (the hook's stdin) up to `limit` bytes, giving up after `timeout` (a
/// runtime that never closes our stdin must not hang the container's start). Each read waits in
/// poll(2) for what is left of the timeout, on the descriptor itself (no buffer in between whose
/// contents poll could not see), so no thread is started for it.
pub fn read_with_timeout(input: impl AsFd, limit: u64, timeout: Duration) -> Result<Vec<u8>> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    use rustix::io::Errno;
    let context = "cannot read the container state from stdin";
    let deadline = Instant::now() + timeout;
    let fd = input.as_fd();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = Timespec::try_from(left).unwrap_or(Timespec { tv_sec: 0, tv_nsec: 0 });
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&wait)) {
            Ok(0) => bail!(
                "no container state on stdin within {} s (stdin was not closed)",
                timeout.as_secs()
            ),
            Ok(_) if fds[0].revents().contains(PollFlags::NVAL) => {
                bail!("{context}: standard input is not open")
            }
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(std::io::Error::from(e)).context(context),
        }
        match rustix::io::read(fd, &mut chunk) {
            Ok(0) => return Ok(buf),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() as u64 > limit {
                    bail!("container state on stdin is over {limit} bytes");
                }
            }
            Err(Errno::INTR | Errno::AGAIN) => {}
            Err(e) => return Err(std::io::Error::from(e)).context(context),
        }
    }
}

/// Reads and parses `config.json` from the bundle.
pub fn read_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let bytes =
        cacerts_core::host::read_file(&path, MAX_CONFIG).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("invalid {}", path.display()))
}

/// `path` made absolute (relative mount destinations are relative to the rootfs) with `.` and
/// `..` folded lexically, as the container would see it before symlinks.
pub fn normalize_in_root(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("abc"));
        assert!(valid_id("0a_b.c-d"));
        assert!(valid_id(&"a".repeat(128)));
        assert!(!valid_id(&"a".repeat(129)));
        for bad in ["", ".x", "-x", "_x", "a/b", "..", "a b", "é"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn state_variants() {
        let runc =
            br#"{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b","annotations":{"a":"b"}}"#;
        let s = parse_state(runc).unwrap();
        assert_eq!(s.bundle.as_deref(), Some(Path::new("/b")));
        let crun = br#"{"ociVersion":"1.0.0","id":"c1","status":"created","pid":42,"bundle":"/b","root":"/b/rootfs"}"#;
        assert_eq!(parse_state(crun).unwrap().root.as_deref(), Some(Path::new("/b/rootfs")));
        let poststop = br#"{"ociVersion":"1.0.0","id":"c1","status":"stopped","bundle":"/b"}"#;
        parse_state(poststop).unwrap();
        let old = br#"{"id":"c1","pid":0,"bundlePath":"/old"}"#;
        assert_eq!(parse_state(old).unwrap().bundle.as_deref(), Some(Path::new("/old")));
        assert!(parse_state(br#"{"id":"../x","bundle":"/b"}"#).is_err());
        assert!(parse_state(b"{").is_err());
    }

    #[test]
    fn normalize() {
        assert_eq!(normalize_in_root(Path::new("etc/ssl/")), Path::new("/etc/ssl"));
        assert_eq!(normalize_in_root(Path::new("/a/../../b/./c")), Path::new("/b/c"));
    }

    #[test]
    fn stdin_is_read_to_its_end_across_reads_and_pauses() {
        use std::io::Write;
        let (mut writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
        let state: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let sent = state.clone();
        let t = std::thread::spawn(move || {
            for part in sent.chunks(3_000) {
                writer.write_all(part).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        assert_eq!(
            read_with_timeout(&reader, 10_000, Duration::from_secs(5)).unwrap(),
            state
        );
        t.join().unwrap();
        let (mut writer, reader) = std::os::unix::net::UnixStream::pair().unwrap();
        writer.write_all(&state).unwrap();
        drop(writer);
        let e = read_with_timeout(&reader, 9_999, Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("over 9999 bytes"), "{e}");
    }

    #[test]
    fn stdin_that_never_closes_times_out() {
        let (_keep, reader) = std::os::unix::net::UnixStream::pair().unwrap();
        let start = std::time::Instant::now();
        let e = read_with_timeout(reader, 10, Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("not closed"), "{e}");
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
