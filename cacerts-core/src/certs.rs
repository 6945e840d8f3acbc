//! The CA certificates to install: loaded from the operator's files, checked, named.
//!
//! Inputs are host files the operator provides (never files from the image): PEM files holding
//! one or many certificates, DER files, or directories of those (not recursive; hidden files and
//! Kubernetes' `..data` style entries are skipped, symlinks to files are followed, which is how
//! mounted ConfigMaps and Secrets present their keys).
//!
//! Only CA certificates are kept: `basicConstraints` with `CA:TRUE`, or a self-signed version 1
//! root (which predates extensions). A file that fails to parse, holds a private key, or a
//! certificate that is not a CA or has expired, is skipped with a reason naming the file; the
//! others still go in. The same certificate given twice is kept once. `TRUSTED CERTIFICATE`
//! blocks (OpenSSL's form, with trust settings an anchor cannot keep) are reported, not loaded.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::x509::X509;

/// Why a file holding a private key (PEM, or DER in PKCS#8 or the traditional forms) is skipped.
const HOLDS_KEY: &str = "holds a private key; give the CA certificate alone (never a key) and keep the key secret";

/// The start of a PEM block in OpenSSL's trusted form (certificate and trust settings).
const TRUSTED_BEGIN: &[u8] = b"-----BEGIN TRUSTED CERTIFICATE-----";

/// Largest input file accepted (a bundle of 15,000 certificates is about 21 MB).
const MAX_INPUT: u64 = 64 << 20;

/// A CA certificate ready to install.
#[derive(Clone)]
pub struct CaCert {
    /// The certificate, DER encoded.
    pub der: Vec<u8>,
    /// The certificate as one PEM block, ending with a newline.
    pub pem: String,
    /// A stable name: the input file's stem, sanitised to `[a-z0-9._-]`, with `-N` appended for
    /// the N-th certificate of a file that holds several.
    pub name: String,
    /// OpenSSL's `X509_NAME_hash` of the subject, as used for `HHHHHHHH.N` links.
    pub subject_hash: u32,
    /// SHA-1 fingerprint (what the distributions' tools use to skip duplicates).
    pub sha1: [u8; 20],
    /// SHA-256 fingerprint.
    pub sha256: [u8; 32],
    /// The subject, one line (`CN=..., O=...`), for messages.
    pub subject: String,
    /// The file it came from.
    pub source: PathBuf,
}

impl fmt::Debug for CaCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCert")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .field("sha256", &hex::encode(self.sha256))
            .field("source", &self.source)
            .finish()
    }
}

/// An input that was not installed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The input file (or directory).
    pub source: PathBuf,
    /// Why, in words an operator can act on.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped {}: {}", self.source.display(), self.reason)
    }
}

/// The outcome of loading inputs.
#[derive(Debug, Default)]
pub struct Loaded {
    /// CA certificates to install, in input order, without duplicates.
    pub certs: Vec<CaCert>,
    /// Inputs left out, with reasons.
    pub skipped: Vec<Skipped>,
}

/// Loads CA certificates from files and directories. Never fails as a whole: problems with one
/// input are reported in [`Loaded::skipped`].
pub fn load(inputs: &[PathBuf]) -> Loaded {
    let mut out = Loaded::default();
    let mut seen = HashSet::new();
    for input in inputs {
        match std::fs::metadata(input) {
            Ok(m) if m.is_dir() => match list_dir(input) {
                Ok(files) => {
                    for f in files {
                        load_file(&f, &mut seen, &mut out);
                    }
                }
                Err(e) => out.skipped.push(Skipped {
                    source: input.clone(),
                    reason: format!("cannot read directory: {e}"),
                }),
            },
            Ok(_) => load_file(input, &mut seen, &mut out),
            Err(e) => out.skipped.push(Skipped {
                source: input.clone(),
                reason: format!("cannot read: {e}"),
            }),
        }
    }
    out
}

fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if std::fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn load_file(path: &Path, seen: &mut HashSet<[u8; 32]>, out: &mut Loaded) {
    let skip = |out: &mut Loaded, reason: String| {
        out.skipped.push(Skipped {
            source: path.to_owned(),
            reason,
        })
    };
    let bytes = match read_bounded(path) {
        Ok(b) => b,
        Err(e) => return skip(out, format!("cannot read: {e}")),
    };
    if contains(&bytes, b"PRIVATE KEY-----") {
        return skip(out, HOLDS_KEY.into());
    }
    // OpenSSL's `TRUSTED CERTIFICATE` blocks carry trust settings (which may reject purposes)
    // that an anchor cannot express, and the PEM reader passes over them without a word: report
    // them, and load the plain blocks beside them.
    let trusted = bytes
        .windows(TRUSTED_BEGIN.len())
        .filter(|w| *w == TRUSTED_BEGIN)
        .count();
    if trusted > 0 {
        skip(
            out,
            format!(
                "{trusted} TRUSTED CERTIFICATE block(s) not loaded: their OpenSSL trust settings cannot be \
                 kept; give plain CERTIFICATE blocks"
            ),
        );
    }
    let certs = if contains(&bytes, b"-----BEGIN CERTIFICATE-----") || trusted > 0 {
        match X509::stack_from_pem(&bytes) {
            Ok(c) if !c.is_empty() => c,
            Ok(_) if trusted > 0 => return,
            Ok(_) => return skip(out, "no certificate in the PEM data".into()),
            Err(e) => return skip(out, format!("not valid PEM certificate data ({e})")),
        }
    } else {
        match X509::from_der(&bytes) {
            Ok(c) => vec![c],
            Err(_) if PKey::private_key_from_der(&bytes).is_ok() => return skip(out, HOLDS_KEY.into()),
            Err(_) => return skip(out, "neither PEM certificates nor a DER certificate".into()),
        }
    };
    let stem = sanitize(
        path.file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
            .as_ref(),
    );
    let many = certs.len() > 1;
    for (i, cert) in certs.iter().enumerate() {
        let label = if many {
            format!("certificate {} of {}", i + 1, certs.len())
        } else {
            "certificate".into()
        };
        let subject = one_line(cert.subject_name());
        match check(cert) {
            Ok(()) => {}
            Err(why) => {
                skip(out, format!("{label} ({subject}): {why}"));
                continue;
            }
        }
        let (Ok(der), Ok(pem), Ok(sha1), Ok(sha256)) = (
            cert.to_der(),
            cert.to_pem(),
            cert.digest(MessageDigest::sha1()),
            cert.digest(MessageDigest::sha256()),
        ) else {
            skip(out, format!("{label} ({subject}): cannot be re-encoded"));
            continue;
        };
        let sha256: [u8; 32] = sha256.as_ref().try_into().expect("sha256 is 32 bytes");
        if !seen.insert(sha256) {
            continue;
        }
        let name = if many {
            format!("{stem}-{}", i + 1)
        } else {
            stem.clone()
        };
        out.certs.push(CaCert {
            der,
            pem: String::from_utf8(pem).expect("PEM is ASCII"),
            name,
            subject_hash: cert.subject_name_hash(),
            sha1: sha1.as_ref().try_into().expect("sha1 is 20 bytes"),
            sha256,
            subject,
            source: path.to_owned(),
        });
    }
}

/// Why a certificate may not be installed as a trust anchor, if it may not.
fn check(cert: &X509) -> Result<(), String> {
    let now = Asn1Time::days_from_now(0).map_err(|e| e.to_string())?;
    if cert.not_after() < now {
        return Err(format!("expired on {}", cert.not_after()));
    }
    let der = cert.to_der().map_err(|e| e.to_string())?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| format!("cannot parse the certificate ({e})"))?;
    match parsed.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => Ok(()),
        Ok(Some(_)) => Err("not a CA certificate (basicConstraints CA:FALSE)".into()),
        Ok(None) if cert.version() == 0 && self_signed(cert) => Ok(()),
        Ok(None) => Err("not a CA certificate (no basicConstraints CA:TRUE)".into()),
        Err(e) => Err(format!("malformed basicConstraints ({e})")),
    }
}

fn self_signed(cert: &X509) -> bool {
    cert.issued(cert) == openssl::x509::X509VerifyResult::OK
        && cert.public_key().and_then(|k| cert.verify(&k)).unwrap_or(false)
}

fn one_line(name: &openssl::x509::X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Longest name: file names built from it (`cacerts-hook-<name>-<SHA-256 hex>.pem` and the
/// like) must stay within the 255 bytes a file name may have.
const MAX_NAME: usize = 64;

/// Lower-case `[a-z0-9._-]`, other runs become `-`; at most `MAX_NAME` (64) bytes; never empty,
/// never starting with a dot.
pub fn sanitize(stem: &str) -> String {
    let mut out = String::new();
    for c in stem.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '_' || (c == '.' && !out.is_empty()) || c == '-' {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    // ASCII only by now: truncating at any byte is at a character boundary.
    out.truncate(MAX_NAME);
    let out = out.trim_end_matches(['-', '.']).to_owned();
    if out.is_empty() {
        "ca".into()
    } else {
        out
    }
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: opening a FIFO for reading would otherwise wait for a writer forever (the
    // type is checked on the open descriptor, so there is no window to swap the file in between).
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut buf = Vec::new();
    f.take(MAX_INPUT + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(std::io::Error::other(format!("larger than {MAX_INPUT} bytes")));
    }
    Ok(buf)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_names() {
        assert_eq!(sanitize("Corp Root CA (2024)"), "corp-root-ca-2024");
        assert_eq!(sanitize("..data"), "data");
        assert_eq!(sanitize("???"), "ca");
        assert_eq!(sanitize("a.b_c-d"), "a.b_c-d");
        assert_eq!(sanitize(&"ab-".repeat(100)), "ab-".repeat(21) + "a");
    }

    #[test]
    fn a_fifo_input_is_skipped_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ca.pem");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let loaded = load(std::slice::from_ref(&fifo));
        assert!(loaded.certs.is_empty());
        assert_eq!(loaded.skipped.len(), 1);
        assert!(
            loaded.skipped[0].reason.contains("not a regular file"),
            "{:?}",
            loaded.skipped
        );
    }
}
