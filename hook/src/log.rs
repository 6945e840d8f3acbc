//! One log line per invocation, to a file, syslog, journald or stderr.
//!
//! Runtimes discard or hide a hook's output, so the outcome of every hook invocation is written
//! where an operator will find it. The sockets are written with plain datagrams (the syslog
//! `/dev/log` format and journald's native protocol); when a socket is missing the line goes to
//! stderr instead, so nothing is lost silently.

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::LogTarget;

const IDENT: &str = "cacerts-hook";

/// Severity of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Success.
    Info,
    /// Something failed.
    Error,
}

/// Writes log lines to the configured target.
#[derive(Clone, Debug)]
pub struct Logger {
    target: LogTarget,
}

impl Logger {
    /// A logger for `target`.
    pub fn new(target: LogTarget) -> Logger {
        Logger { target }
    }

    /// Writes one line (newlines in `msg` are replaced). Never fails: a log that cannot be
    /// written falls back to stderr.
    pub fn line(&self, level: Level, msg: &str) {
        let msg = msg.replace(['\n', '\r'], " ");
        let pid = std::process::id();
        let sent = match &self.target {
            LogTarget::Stderr => false,
            LogTarget::File(path) => std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(path)
                .and_then(|mut f| {
                    f.write_all(format!("{} {IDENT}[{pid}]: {}: {msg}\n", rfc3339_now(), level.word()).as_bytes())
                })
                .is_ok(),
            LogTarget::Syslog => {
                // Facility daemon (3); severity info (6) or err (3).
                let pri = 3 * 8 + if level == Level::Error { 3 } else { 6 };
                send("/dev/log", format!("<{pri}>{IDENT}[{pid}]: {msg}").as_bytes())
            }
            LogTarget::Journald => {
                let prio = if level == Level::Error { 3 } else { 6 };
                send(
                    "/run/systemd/journal/socket",
                    format!("MESSAGE={msg}\nPRIORITY={prio}\nSYSLOG_IDENTIFIER={IDENT}\nSYSLOG_PID={pid}\n").as_bytes(),
                )
            }
        };
        if !sent {
            eprintln!("{IDENT}: {}: {msg}", level.word());
        }
    }
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Error => "error",
        }
    }
}

fn send(socket: &str, bytes: &[u8]) -> bool {
    UnixDatagram::unbound().and_then(|s| s.send_to(bytes, socket)).is_ok()
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339_now() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut s = String::new();
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_millis()
    );
    s
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Quotes a value for a `key=value` log field when it needs it.
pub fn quote(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=') {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote(""), "\"\"");
    }
}
