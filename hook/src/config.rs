//! The configuration file (TOML).

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Deserializer};

/// Where the configuration is read from unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/cacerts-hook/config.toml";

/// The annotation that opts a container out: value `"true"` skips it.
pub const OPT_OUT_ANNOTATION: &str = "cacerts-hook.dev/skip";

/// Largest configuration file read.
const MAX_SIZE: u64 = 1 << 20;

/// The settings. Every key is optional; unknown keys are errors.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// CA certificate files (PEM or DER) and directories of them.
    pub certs: Vec<PathBuf>,
    /// Where journals (`<id>.journal`) and bundle records (`<id>.json`) are kept.
    pub state_dir: PathBuf,
    /// What a failing hook does.
    pub on_error: OnError,
    /// Where the log line of each invocation goes.
    pub log: LogTarget,
    /// Create `/etc/ssl/certs/ca-certificates.crt` in images without any trust store.
    pub create_store_when_none: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            certs: vec![PathBuf::from("/etc/cacerts-hook/certs.d")],
            state_dir: PathBuf::from("/run/cacerts-hook"),
            on_error: OnError::Continue,
            log: LogTarget::File(PathBuf::from("/var/log/cacerts-hook.log")),
            create_store_when_none: true,
        }
    }
}

/// What a failing hook does.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Log the error and exit 0: the container starts without the certificates.
    Continue,
    /// Exit 1 with the message on stderr: the runtime refuses to start the container.
    Fail,
}

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// The syslog socket `/dev/log`.
    Syslog,
    /// journald's native socket.
    Journald,
    /// Standard error (discarded by most runtimes in hook mode).
    Stderr,
    /// Appended to this file.
    File(PathBuf),
}

impl fmt::Display for LogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogTarget::Syslog => f.write_str("syslog"),
            LogTarget::Journald => f.write_str("journald"),
            LogTarget::Stderr => f.write_str("stderr"),
            LogTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

impl std::str::FromStr for LogTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "syslog" => Ok(LogTarget::Syslog),
            "journald" => Ok(LogTarget::Journald),
            "stderr" => Ok(LogTarget::Stderr),
            p if p.starts_with('/') => Ok(LogTarget::File(PathBuf::from(p))),
            _ => Err(format!(
                "log must be \"syslog\", \"journald\", \"stderr\" or an absolute file path, not {s:?}"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for LogTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Config {
    /// Reads `path`; a missing file gives the defaults. Errors name the file and the line.
    pub fn load(path: &Path) -> Result<Config> {
        let bytes = match read_bounded(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read configuration {}", path.display())),
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("configuration {}: not UTF-8 text", path.display()))?;
        Config::parse(&text).map_err(|e| anyhow::anyhow!("configuration {}: {e}", path.display()))
    }

    /// Parses configuration text. The error message starts with the line and column.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| describe(text, &e))?;
        for (i, c) in config.certs.iter().enumerate() {
            if !c.is_absolute() {
                return Err(format!("certs[{i}]: {} is not an absolute path", c.display()));
            }
        }
        if !config.state_dir.is_absolute() {
            return Err(format!(
                "state_dir: {} is not an absolute path",
                config.state_dir.display()
            ));
        }
        Ok(config)
    }
}

/// `line L, column C: message`, from the error's span.
fn describe(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {msg}")
        }
        None => msg.to_owned(),
    }
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    cacerts_core::host::read_file(path, MAX_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn all_keys() {
        let c = Config::parse(
            "certs = [\"/a\", \"/b.pem\"]\nstate_dir = \"/s\"\non_error = \"fail\"\nlog = \"journald\"\ncreate_store_when_none = false\n",
        )
        .unwrap();
        assert_eq!(c.certs, vec![PathBuf::from("/a"), PathBuf::from("/b.pem")]);
        assert_eq!(c.on_error, OnError::Fail);
        assert_eq!(c.log, LogTarget::Journald);
        assert!(!c.create_store_when_none);
    }

    #[test]
    fn errors_carry_the_line() {
        let e = Config::parse("certs = [\"/a\"]\n\nbogus = 1\n").unwrap_err();
        assert!(e.starts_with("line 3, column 1:"), "{e}");
        assert!(e.contains("bogus"), "{e}");
        let e = Config::parse("on_error = \"continue\"\non_error2 = 1").unwrap_err();
        assert!(e.starts_with("line 2,"), "{e}");
        let e = Config::parse("\non_error = \"maybe\"\n").unwrap_err();
        assert!(e.starts_with("line 2, column 12:"), "{e}");
        let e = Config::parse("log = \"relative.log\"\n").unwrap_err();
        assert!(e.starts_with("line 1,"), "{e}");
        assert!(Config::parse("certs = [\"relative\"]").is_err());
    }
}
