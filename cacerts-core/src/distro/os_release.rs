//! `os-release(5)` parsing, tolerant of whatever an image puts there.
//!
//! The file is a list of `KEY=VALUE` lines in shell syntax: values may be double-quoted (with
//! backslash escapes for `"`, `\`, `$` and backquote), single-quoted (literal), or bare (a
//! backslash escapes the next character; the value ends at unquoted whitespace). Lines that are
//! not assignments, keys that are not `[A-Za-z0-9_]+`, invalid UTF-8 and unterminated quotes are
//! tolerated: garbage yields fewer fields, never an error.

use std::collections::BTreeMap;

/// The fields of an os-release file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsRelease {
    fields: BTreeMap<String, String>,
}

impl OsRelease {
    /// Parses the file's bytes.
    pub fn parse(bytes: &[u8]) -> OsRelease {
        let text = String::from_utf8_lossy(bytes);
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((key, raw)) = line.split_once('=') else {
                continue;
            };
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                continue;
            }
            if let Some(value) = unquote(raw) {
                fields.insert(key.to_owned(), value);
            }
        }
        OsRelease { fields }
    }

    /// A field's value, if set (and not empty).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// `ID`, lower-cased.
    pub fn id(&self) -> Option<String> {
        self.get("ID").map(|s| s.to_ascii_lowercase())
    }

    /// `ID_LIKE`, split on whitespace, lower-cased.
    pub fn id_like(&self) -> Vec<String> {
        self.get("ID_LIKE")
            .map(|s| s.split_whitespace().map(|w| w.to_ascii_lowercase()).collect())
            .unwrap_or_default()
    }
}

/// The value of one assignment's right-hand side; `None` when a quote is never closed.
fn unquote(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        e @ ('"' | '\\' | '$' | '`') => out.push(e),
                        '\n' => {}
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    },
                    other => out.push(other),
                }
            },
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    other => out.push(other),
                }
            },
            '\\' => {
                if let Some(e) = chars.next() {
                    out.push(e);
                }
            }
            c if c.is_whitespace() => break,
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_variants() {
        let os = OsRelease::parse(
            b"# comment\nNAME=\"Debian GNU/Linux\"\nID=debian\nVERSION_ID='12'\n\
              PRETTY_NAME=\"say \\\"hi\\\" \\$x \\\\ \\q\"\nBARE=a\\ b c\nJOINED=ab\"c d\"'e'\n\
              BAD KEY=x\n=novalue\nUNTERMINATED=\"abc\n  ID_LIKE=\"Ubuntu  Debian\"\n",
        );
        assert_eq!(os.get("NAME"), Some("Debian GNU/Linux"));
        assert_eq!(os.id().as_deref(), Some("debian"));
        assert_eq!(os.get("VERSION_ID"), Some("12"));
        assert_eq!(os.get("PRETTY_NAME"), Some("say \"hi\" $x \\ \\q"));
        assert_eq!(os.get("BARE"), Some("a b"));
        assert_eq!(os.get("JOINED"), Some("abc de"));
        assert_eq!(os.get("UNTERMINATED"), None);
        assert_eq!(os.id_like(), vec!["ubuntu", "debian"]);
    }

    #[test]
    fn garbage_is_tolerated() {
        let os = OsRelease::parse(&[0xff, 0xfe, b'\n', b'I', b'D', b'=', 0xc3, b'\n', 0]);
        assert_eq!(os.id().as_deref(), Some("\u{fffd}"));
        assert_eq!(OsRelease::parse(b"").id(), None);
        assert_eq!(OsRelease::parse(b"ID=").id(), None);
    }
}
