//! The CA certificates to install: loaded from the operator's files, checked, named.
//!
//! Inputs are host files the operator provides (never files from the image): PEM files holding
//! one or many certificates, DER files, or directories of those (not recursive; hidden files and
//! Kubernetes' `..data` style entries are skipped, symlinks to files are followed, which is how
//! mounted ConfigMaps and Secrets present their keys).
//!
//! Only CA certificates are kept: `basicConstraints` with `CA:TRUE`, or a self-signed version 1
//! root (which predates extensions; its signature is verified with its own key, for the
//! algorithms roots are signed with: RSA with SHA-1 or SHA-2, ECDSA on P-256 or P-384, Ed25519). A file that fails to parse, holds a private key, or a
//! certificate that is not a CA or has expired, is skipped with a reason naming the file; the
//! others still go in. The same certificate given twice is kept once. `TRUSTED CERTIFICATE`
//! blocks (OpenSSL's form, with trust settings an anchor cannot keep) are reported, not loaded.

use std::collections::HashSet;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, OnceLock};

use memchr::arch::all::twoway;
use memchr::memmem::Finder;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::asn1_rs::Class;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::objects::{oid2abbrev, oid_registry};
use x509_parser::time::ASN1Time;
use x509_parser::x509::{AttributeTypeAndValue, X509Name, X509Version};

use crate::der;
use crate::pem::{self, pem_block, plain_cert_ders};
use crate::subject_hash::{self, string_value};

/// Why a file holding a private key (PEM, or DER in PKCS#8 or the traditional forms) is skipped.
const HOLDS_KEY: &str = "holds a private key; give the CA certificate alone (never a key) and keep the key secret";

/// The start of a PEM block in OpenSSL's trusted form (certificate and trust settings).
const TRUSTED_BEGIN: &[u8] = b"-----BEGIN TRUSTED CERTIFICATE-----";

/// The PEM labels of plain certificates (OpenSSL reads the old one too).
const CERT_LABELS: [&str; 2] = ["CERTIFICATE", "X509 CERTIFICATE"];

/// A marker every CA file is looked through for.
struct Marker {
    needle: Vec<u8>,
    /// memchr's portable Two-Way searcher, for files of up to [`pem::VECTOR_AFTER`] bytes.
    portable: twoway::Finder,
    /// memchr's vector searcher, for larger files: building it asks the CPU what it supports.
    vector: OnceLock<Finder<'static>>,
}

impl Marker {
    fn new(needle: &[u8]) -> Marker {
        Marker {
            needle: needle.to_vec(),
            portable: twoway::Finder::new(needle),
            vector: OnceLock::new(),
        }
    }

    /// Whether the marker is in `bytes`.
    fn is_in(&self, bytes: &[u8]) -> bool {
        if bytes.len() as u64 > pem::VECTOR_AFTER {
            return self.vector().find(bytes).is_some();
        }
        self.portable.find(bytes, &self.needle).is_some()
    }

    fn vector(&self) -> &Finder<'static> {
        self.vector.get_or_init(|| Finder::new(&self.needle).into_owned())
    }

    /// How many times the marker is in `bytes` (matches that do not overlap).
    fn count(&self, bytes: &[u8]) -> usize {
        if bytes.len() as u64 > pem::VECTOR_AFTER {
            return self.vector().find_iter(bytes).count();
        }
        let mut count = 0;
        let mut rest = bytes;
        while let Some(at) = self.portable.find(rest, &self.needle) {
            count += 1;
            rest = &rest[at + self.needle.len()..];
        }
        count
    }
}

/// The markers, each searcher built once (building one costs more than searching a
/// certificate's few hundred bytes with it).
struct Markers {
    key: Marker,
    trusted: Marker,
    begins: Vec<Marker>,
}

static MARKERS: LazyLock<Markers> = LazyLock::new(|| Markers {
    key: Marker::new(b"PRIVATE KEY-----"),
    trusted: Marker::new(TRUSTED_BEGIN),
    begins: CERT_LABELS
        .iter()
        .map(|label| Marker::new(format!("-----BEGIN {label}-----").as_bytes()))
        .collect(),
});

/// Why a certificate without `CA:TRUE` is skipped.
const NOT_CA: &str = "not a CA certificate (no basicConstraints CA:TRUE)";

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
        if name.as_bytes().starts_with(b".") {
            continue;
        }
        let path = crate::rootfs::join_name(dir, &name);
        // The entry's own type needs no stat; a symlink (how mounted ConfigMaps and Secrets
        // present their keys) is followed.
        let is_file = match entry.file_type() {
            Ok(t) if t.is_file() => true,
            Ok(t) if t.is_dir() => false,
            _ => std::fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false),
        };
        if is_file {
            files.push((name, path));
        }
    }
    // One directory's entries: ordered by name, which is their paths' order. The names the
    // listing gave are compared as they are, not found again in each path at every comparison.
    files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

fn load_file(path: &Path, seen: &mut HashSet<[u8; 32]>, out: &mut Loaded) {
    let skip = |out: &mut Loaded, reason: String| {
        out.skipped.push(Skipped {
            source: path.to_owned(),
            reason,
        })
    };
    let bytes = match crate::host::read_file(path, MAX_INPUT) {
        Ok(b) => b,
        Err(e) => return skip(out, format!("cannot read: {e}")),
    };
    let markers = &*MARKERS;
    if markers.key.is_in(&bytes) {
        return skip(out, HOLDS_KEY.into());
    }
    // OpenSSL's `TRUSTED CERTIFICATE` blocks carry trust settings (which may reject purposes)
    // that an anchor cannot express, and the PEM reader passes over them without a word: report
    // them, and load the plain blocks beside them.
    let trusted = markers.trusted.count(&bytes);
    if trusted > 0 {
        skip(
            out,
            format!(
                "{trusted} TRUSTED CERTIFICATE block(s) not loaded: their OpenSSL trust settings cannot be \
                 kept; give plain CERTIFICATE blocks"
            ),
        );
    }
    let blocks: usize = markers.begins.iter().map(|m| m.count(&bytes)).sum();
    let ders = if blocks > 0 || trusted > 0 {
        let ders = if blocks > 0 {
            plain_cert_ders(&bytes)
        } else {
            Vec::new()
        };
        // As OpenSSL's PEM reader, refuse the file when any of its blocks is unreadable.
        if ders.len() < blocks {
            return skip(
                out,
                "not valid PEM certificate data (a CERTIFICATE block is cut short or not base64)".into(),
            );
        }
        if ders.is_empty() {
            return;
        }
        ders
    } else {
        match x509_parser::parse_x509_certificate(&bytes) {
            Ok((rest, _)) => vec![bytes[..bytes.len() - rest.len()].to_vec()],
            Err(_) if is_private_key(&bytes) => return skip(out, HOLDS_KEY.into()),
            Err(_) => return skip(out, "neither PEM certificates nor a DER certificate".into()),
        }
    };
    let mut certs = Vec::with_capacity(ders.len());
    for (i, der) in ders.iter().enumerate() {
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => certs.push(cert),
            Err(e) if ders.len() > 1 => {
                return skip(
                    out,
                    format!(
                        "not valid PEM certificate data (certificate {} of {}: {e})",
                        i + 1,
                        ders.len()
                    ),
                )
            }
            Err(e) => return skip(out, format!("not valid PEM certificate data ({e})")),
        }
    }
    let stem = sanitize(
        path.file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default()
            .as_ref(),
    );
    let many = certs.len() > 1;
    let count = certs.len();
    let label = |i: usize| {
        if many {
            format!("certificate {} of {count}", i + 1)
        } else {
            "certificate".to_owned()
        }
    };
    // What each certificate gives, read while the parsed certificates borrow `ders`; then each
    // DER is moved into its CaCert rather than copied.
    let checked: Vec<Option<(String, u32)>> = certs
        .iter()
        .enumerate()
        .map(|(i, cert)| {
            let subject = one_line(cert.subject());
            if let Err(why) = check(cert) {
                skip(out, format!("{} ({subject}): {why}", label(i)));
                return None;
            }
            match subject_hash::subject_hash(cert.subject().as_raw()) {
                Ok(h) => Some((subject, h)),
                Err(e) => {
                    skip(out, format!("{} ({subject}): {e}", label(i)));
                    None
                }
            }
        })
        .collect();
    drop(certs);
    for (i, (der, checked)) in ders.into_iter().zip(checked).enumerate() {
        let Some((subject, subject_hash)) = checked else {
            continue;
        };
        let sha256: [u8; 32] = Sha256::digest(&der).into();
        if !seen.insert(sha256) {
            continue;
        }
        let name = if many {
            format!("{stem}-{}", i + 1)
        } else {
            stem.clone()
        };
        out.certs.push(CaCert {
            pem: pem_block("CERTIFICATE", &der),
            sha1: Sha1::digest(&der).into(),
            der,
            name,
            subject_hash,
            sha256,
            subject,
            source: path.to_owned(),
        });
    }
}

/// Why a certificate may not be installed as a trust anchor, if it may not.
fn check(cert: &X509Certificate<'_>) -> Result<(), String> {
    let not_after = cert.validity().not_after;
    if not_after < ASN1Time::now() {
        return Err(format!("expired on {}", gmt(&not_after)));
    }
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => Ok(()),
        Ok(Some(_)) => Err("not a CA certificate (basicConstraints CA:FALSE)".into()),
        Ok(None) if cert.version() == X509Version::V1 => self_signed(cert),
        Ok(None) => Err(NOT_CA.into()),
        Err(e) => Err(format!("malformed basicConstraints ({e})")),
    }
}

/// A version 1 certificate predates extensions: it is taken for a CA when it is a self-signed
/// root, as OpenSSL decides: issuer and subject the same name (compared in OpenSSL's canonical
/// form), and the signature verifies with the certificate's own key.
fn self_signed(cert: &X509Certificate<'_>) -> Result<(), String> {
    let subject = subject_hash::canonical(cert.subject().as_raw());
    let issuer = subject_hash::canonical(cert.issuer().as_raw());
    if !matches!((subject, issuer), (Ok(s), Ok(i)) if s == i) {
        return Err(NOT_CA.into());
    }
    match cert.verify_signature(None) {
        Ok(()) => Ok(()),
        Err(X509Error::SignatureUnsupportedAlgorithm) => Err(format!(
            "{NOT_CA}; as a version 1 root its self-signature would count, but its algorithm ({}) \
             cannot be checked",
            cert.signature_algorithm.algorithm
        )),
        Err(_) => Err(NOT_CA.into()),
    }
}

/// A time as OpenSSL prints it (`Jan  2 03:04:05 2024 GMT`).
fn gmt(t: &ASN1Time) -> String {
    let t = t.to_datetime();
    let month = t.month().to_string();
    format!(
        "{} {:2} {:02}:{:02}:{:02} {} GMT",
        &month[..3],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

/// Abbreviations of the name attributes that CA subjects use (DER contents of the object
/// identifier), as x509-parser's OID registry gives them: looked up here first, because building
/// that registry costs a hook start about a tenth of a millisecond for one CA.
const NAME_ABBREVS: &[(&[u8], &str)] = &[
    (&[0x55, 0x04, 0x03], "CN"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x0a], "O"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (&[0x55, 0x04, 0x05], "serialNumber"),
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01], "Email"),
    (&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19], "DC"),
];

/// The subject in one line, for messages: `CN=..., O=...`.
fn one_line(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    for atv in name.iter_attributes() {
        if !out.is_empty() {
            out.push_str(", ");
        }
        let oid = atv.attr_type();
        match NAME_ABBREVS.iter().find(|(der, _)| *der == oid.as_bytes()) {
            Some((_, abbrev)) => out.push_str(abbrev),
            None => match oid2abbrev(oid, oid_registry()) {
                Ok(abbrev) => out.push_str(abbrev),
                Err(_) => out.push_str(&oid.to_id_string()),
            },
        }
        out.push('=');
        match attribute_text(atv) {
            Some(text) => out.push_str(&text),
            None => out.push_str(&String::from_utf8_lossy(atv.attr_value().data)),
        }
    }
    out
}

/// The value of a name's attribute as text, when it is one of the string types.
pub(crate) fn attribute_text(atv: &AttributeTypeAndValue<'_>) -> Option<String> {
    let value = atv.attr_value();
    if value.class() != Class::Universal || value.header.is_constructed() {
        return None;
    }
    string_value(u8::try_from(value.tag().0).ok()?, value.data)
}

/// Whether `bytes` start with a DER private key: PKCS#8 (`PrivateKeyInfo`, `OneAsymmetricKey`
/// or `EncryptedPrivateKeyInfo`), or a traditional RSA, DSA or EC private key. Judged by the
/// shape of the outer SEQUENCE, which no certificate has.
fn is_private_key(bytes: &[u8]) -> bool {
    let Some((outer, _)) = der::split(bytes) else {
        return false;
    };
    if outer.tag != der::SEQUENCE {
        return false;
    }
    let Some(items) = der::elements(outer.content) else {
        return false;
    };
    let tags: Vec<u8> = items.iter().map(|t| t.tag).collect();
    let algorithm =
        |t: &der::Tlv<'_>| t.tag == der::SEQUENCE && der::split(t.content).is_some_and(|(oid, _)| oid.tag == der::OID);
    match tags.as_slice() {
        // PrivateKeyInfo / OneAsymmetricKey: version, algorithm, key, optional attributes and
        // public key.
        [der::INTEGER, der::SEQUENCE, der::OCTET_STRING, ..] => algorithm(&items[1]),
        // EncryptedPrivateKeyInfo: algorithm, encrypted key.
        [der::SEQUENCE, der::OCTET_STRING] => algorithm(&items[0]),
        // ECPrivateKey (RFC 5915): version 1, key, optional parameters and public key.
        [der::INTEGER, der::OCTET_STRING, ..] => items[0].content == [1],
        // DSA (version, p, q, g, y, x) and RSA (version, n, e, d, p, q, dp, dq, qinv, and more
        // primes in version 1): integers only.
        t => (t.len() == 6 || t.len() >= 9) && t.iter().all(|t| *t == der::INTEGER),
    }
}

/// Longest name: file names built from it (`cacerts-hook-<name>-<SHA-256 hex>.pem` and the
/// like) must stay within the 255 bytes a file name may have.
const MAX_NAME: usize = 64;

/// Lower-case `[a-z0-9._-]`, other runs become `-`; at most `MAX_NAME` (64) bytes; never empty,
/// never starting with a dot.
pub fn sanitize(stem: &str) -> String {
    let mut out = String::with_capacity(stem.len().min(MAX_NAME));
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
    out.truncate(out.trim_end_matches(['-', '.']).len());
    if out.is_empty() {
        "ca".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_abbreviations_are_the_registry_s() {
        for (der, abbrev) in NAME_ABBREVS {
            let oid = x509_parser::der_parser::oid::Oid::new((*der).into());
            assert_eq!(oid2abbrev(&oid, oid_registry()), Ok(*abbrev), "{}", oid.to_id_string());
        }
    }

    /// The one-line subject of messages: abbreviations first from the table, then from the
    /// registry (`streetAddress`), else the dotted OID; text values as text, others as their bytes.
    #[test]
    fn one_line_subjects() {
        use x509_parser::prelude::FromDer;
        let atv = |oid: &[u8], tag: u8, value: &[u8]| {
            der::encode(
                der::SET,
                &der::encode(
                    der::SEQUENCE,
                    &[der::encode(der::OID, oid), der::encode(tag, value)].concat(),
                ),
            )
        };
        let name = der::encode(
            der::SEQUENCE,
            &[
                atv(&[0x55, 0x04, 0x03], 0x0c, "Corp Root CA".as_bytes()),
                atv(&[0x55, 0x04, 0x0a], 0x13, b"Example"),
                atv(&[0x55, 0x04, 0x09], 0x0c, b"Main St"),
                atv(&[0x2a, 0x03, 0x04], 0x04, b"raw"),
            ]
            .concat(),
        );
        let (_, name) = X509Name::from_der(&name).unwrap();
        assert_eq!(
            one_line(&name),
            "CN=Corp Root CA, O=Example, streetAddress=Main St, 1.2.3.4=raw"
        );
        let (_, empty) = X509Name::from_der(&[0x30, 0x00]).unwrap();
        assert_eq!(one_line(&empty), "");
    }

    /// A marker is counted alike by the portable searcher (small files) and the vector one
    /// (past `pem::VECTOR_AFTER`), matches that overlap counted once.
    #[test]
    fn markers_count_alike_in_small_and_large_files() {
        let marker = Marker::new(b"-----BEGIN CERTIFICATE-----");
        let piece = b"xx-----BEGIN CERTIFICATE-----BEGIN CERTIFICATE-----\n-----BEGIN CERTIFICATE----";
        for copies in [1usize, 10, (2 * pem::VECTOR_AFTER as usize) / piece.len()] {
            let bytes = piece.repeat(copies);
            assert_eq!(marker.count(&bytes), copies, "{} bytes", bytes.len());
            assert!(marker.is_in(&bytes));
            assert!(!Marker::new(b"PRIVATE KEY-----").is_in(&bytes));
        }
        assert!(
            marker.vector.get().is_some(),
            "the large file was searched by the vector searcher"
        );
    }

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
