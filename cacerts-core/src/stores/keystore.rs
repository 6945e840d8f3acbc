//! Java keystores, read and written natively: JKS and PKCS#12 trust stores.
//!
//! Only what a trust store needs is understood; everything else is carried through unchanged.
//!
//! - **JKS** (magic `0xFEEDFEED`, versions 1 and 2): every entry is kept as the exact bytes it
//!   had; trusted-certificate entries are also decoded so their aliases and certificates can be
//!   compared. The integrity hash (SHA-1 over the password as UTF-16BE, `"Mighty Aphrodite"` and
//!   the data) is verified before anything else, and recomputed on write.
//! - **PKCS#12** as the JDK writes it: an authenticated safe of `data` and `encryptedData`
//!   content infos. Certificate bags carrying Oracle's trusted-key-usage attribute are trusted
//!   entries. Stores with no MAC (the password-less trust stores of JDK 18+) and stores with an
//!   HMAC (PKCS#12 key derivation, SHA-1 or SHA-2) are supported; certificates in an
//!   `encryptedData` content info are decrypted and re-encrypted when it is PBES2 (PBKDF2 with
//!   HMAC-SHA-1/SHA-2, AES-CBC), which is what JDK 12+ writes. Other forms (legacy
//!   `pbeWithSHAAnd*` encryption as written by JDK 8 and 11, PBMAC1, BER indefinite lengths) are
//!   refused with an error. Content infos and bags we do not change keep their exact bytes.
//!
//! Every length read from a file is checked against the bytes that remain, so a corrupt or
//! hostile file is an error, never a panic or a large allocation; key-derivation iteration counts
//! are capped.

use std::cell::RefCell;
use std::fmt;

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::digest::core_api::BlockSizeUser;
use hmac::{Mac, SimpleHmac};
use sha1::Sha1;
use sha2::Digest as _;
use sha2::{Sha224, Sha256, Sha384, Sha512};

use crate::der;

/// The password Java's trust stores use unless someone changed it.
pub const DEFAULT_PASSWORD: &str = "changeit";

/// Highest key-derivation iteration count accepted (JDKs write 10,000 to 100,000).
const MAX_ITERATIONS: u64 = 10_000_000;

/// Why a keystore could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeystoreError(pub String);

impl fmt::Display for KeystoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeystoreError {}

type Result<T> = std::result::Result<T, KeystoreError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(KeystoreError(msg.into()))
}

/// The two keystore formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Sun's JKS.
    Jks,
    /// PKCS#12.
    Pkcs12,
}

/// True if `bytes` look like a keystore of either format (by its first bytes only).
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&JKS_MAGIC.to_be_bytes()) {
        Some(Format::Jks)
    } else if bytes.first() == Some(&0x30) {
        Some(Format::Pkcs12)
    } else {
        None
    }
}

/// A parsed keystore that can be changed and written back.
#[derive(Clone, Debug)]
pub struct Keystore {
    inner: Inner,
}

#[derive(Clone, Debug)]
enum Inner {
    Jks(Jks),
    Pkcs12(Pkcs12),
}

impl Keystore {
    /// Parses a keystore, checking its integrity with `password` (a PKCS#12 store without a MAC
    /// needs none). A wrong password is an error.
    pub fn parse(bytes: &[u8], password: &str) -> Result<Keystore> {
        let inner = match sniff(bytes) {
            Some(Format::Jks) => Inner::Jks(Jks::parse(bytes, password)?),
            Some(Format::Pkcs12) => Inner::Pkcs12(Pkcs12::parse(bytes, password)?),
            None if bytes.starts_with(&0xCECE_CECEu32.to_be_bytes()) => {
                return err("JCEKS keystores are not supported")
            }
            None => return err("neither a JKS nor a PKCS#12 keystore"),
        };
        Ok(Keystore { inner })
    }

    /// The format, kept on write.
    pub fn format(&self) -> Format {
        match self.inner {
            Inner::Jks(_) => Format::Jks,
            Inner::Pkcs12(_) => Format::Pkcs12,
        }
    }

    /// Trusted-certificate entries: alias (lower case) and DER certificate.
    pub fn trusted(&self) -> Vec<(String, Vec<u8>)> {
        match &self.inner {
            Inner::Jks(j) => j
                .entries
                .iter()
                .filter_map(|e| e.trusted.clone().map(|d| (e.alias.clone(), d)))
                .collect(),
            Inner::Pkcs12(p) => p
                .bags()
                .filter_map(|b| match (&b.alias, &b.trusted) {
                    (Some(a), Some(d)) => Some((a.clone(), d.clone())),
                    (None, Some(d)) => Some((String::new(), d.clone())),
                    _ => None,
                })
                .collect(),
        }
    }

    /// Every alias in the store, of any entry type (lower case).
    pub fn aliases(&self) -> Vec<String> {
        match &self.inner {
            Inner::Jks(j) => j.entries.iter().map(|e| e.alias.clone()).collect(),
            Inner::Pkcs12(p) => p.bags().filter_map(|b| b.alias.clone()).collect(),
        }
    }

    /// True if the store holds this certificate as a trusted entry.
    pub fn contains_cert(&self, der: &[u8]) -> bool {
        match &self.inner {
            Inner::Jks(j) => j.entries.iter().any(|e| e.trusted.as_deref() == Some(der)),
            Inner::Pkcs12(p) => p.bags().any(|b| b.trusted.as_deref() == Some(der)),
        }
    }

    /// Adds a trusted-certificate entry at the end of the store.
    pub fn add_trusted(&mut self, alias: &str, der: &[u8]) {
        let alias = alias.to_ascii_lowercase();
        match &mut self.inner {
            Inner::Jks(j) => j.add(alias, der),
            Inner::Pkcs12(p) => p.add(alias, der),
        }
    }

    /// Removes the trusted-certificate entries with these aliases; returns how many went.
    pub fn remove_trusted(&mut self, aliases: &[String]) -> usize {
        let lower: Vec<String> = aliases.iter().map(|a| a.to_ascii_lowercase()).collect();
        match &mut self.inner {
            Inner::Jks(j) => j.remove(&lower),
            Inner::Pkcs12(p) => p.remove(&lower),
        }
    }

    /// An empty JKS store, for tests.
    #[cfg(test)]
    pub(crate) fn empty_jks() -> Keystore {
        Keystore {
            inner: Inner::Jks(Jks {
                version: 2,
                entries: Vec::new(),
            }),
        }
    }

    /// Encodes the store in its own format, with a fresh integrity check under `password`.
    pub fn to_bytes(&self, password: &str) -> Result<Vec<u8>> {
        match &self.inner {
            Inner::Jks(j) => Ok(j.to_bytes(password)),
            Inner::Pkcs12(p) => p.to_bytes(password),
        }
    }
}

/// What a store holds, for deciding what to add to it: every alias (lower case) and the
/// trusted certificates (DER), borrowed from the file's bytes for JKS.
#[derive(Debug)]
pub struct Holdings<'a> {
    /// Every alias, of any entry type.
    pub aliases: std::collections::HashSet<String>,
    /// The certificates of the trusted-certificate entries.
    pub certs: Vec<std::borrow::Cow<'a, [u8]>>,
}

impl Holdings<'_> {
    /// True if the store holds this certificate as a trusted entry.
    pub fn contains_cert(&self, der: &[u8]) -> bool {
        self.certs.iter().any(|c| **c == *der)
    }
}

/// What the store `bytes` holds, checked as [`Keystore::parse`] checks it, without copying a JKS
/// store's entries.
pub fn holdings<'a>(bytes: &'a [u8], password: &str) -> Result<Holdings<'a>> {
    if sniff(bytes) == Some(Format::Jks) {
        let jks = JksView::parse(bytes, password)?;
        return Ok(Holdings {
            certs: jks.entries.iter().filter_map(|e| e.trusted.map(Into::into)).collect(),
            aliases: jks.entries.into_iter().map(|e| e.alias).collect(),
        });
    }
    let store = Keystore::parse(bytes, password)?;
    Ok(Holdings {
        aliases: store.aliases().into_iter().collect(),
        certs: store.trusted().into_iter().map(|(_, der)| der.into()).collect(),
    })
}

/// Most stores [`remember_checked`] keeps per thread.
const MAX_CHECKED: usize = 8;

thread_local! {
    /// Store contents that passed the integrity check, with the password: what the planner read.
    static CHECKED: RefCell<Vec<(Vec<u8>, String)>> = const { RefCell::new(Vec::new()) };
}

/// Remembers, for this thread, that the store `bytes` passed the integrity check with
/// `password`: the planner read and checked it, and an install that finds exactly these bytes in
/// the file need not hash them with SHA-1 again (a third of a Debian install's hashing). The
/// install compares every byte it reads, so a file changed since is checked as any other.
pub(crate) fn remember_checked(bytes: Vec<u8>, password: &str) {
    CHECKED.with_borrow_mut(|checked| {
        if checked.len() == MAX_CHECKED {
            checked.remove(0);
        }
        // Moved, not copied: the planner's buffer itself is kept.
        checked.push((bytes, password.to_owned()));
    });
}

/// Forgets what [`remember_checked`] remembered on this thread (a new plan starts).
pub(crate) fn forget_checked() {
    CHECKED.with_borrow_mut(Vec::clear);
}

/// The remembered contents of `len` bytes checked with `password`, if any; forgotten by this
/// call (an install uses them once).
pub(crate) fn take_checked(len: u64, password: &str) -> Option<Vec<u8>> {
    CHECKED.with_borrow_mut(|checked| {
        let i = checked
            .iter()
            .position(|(bytes, pw)| bytes.len() as u64 == len && pw == password)?;
        Some(checked.swap_remove(i).0)
    })
}

// ------------------------------------------------------------------------------------------------
// JKS

const JKS_MAGIC: u32 = 0xFEED_FEED;
const JKS_WHITENER: &[u8] = b"Mighty Aphrodite";
const JKS_PRIVATE_KEY: u32 = 1;
const JKS_TRUSTED_CERT: u32 = 2;

#[derive(Clone, Debug)]
struct Jks {
    version: u32,
    entries: Vec<JksEntry>,
}

#[derive(Clone, Debug)]
struct JksEntry {
    /// Alias, lower case (JKS aliases are case-insensitive).
    alias: String,
    /// The entry exactly as stored: tag, alias, date and body.
    raw: Vec<u8>,
    /// The certificate of a trusted-certificate entry.
    trusted: Option<Vec<u8>>,
}

/// A bounds-checked reader over a byte slice.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let rest = &self.buf[self.pos..];
        if n > rest.len() {
            return err(format!(
                "truncated: {n} bytes needed at offset {}, {} left",
                self.pos,
                rest.len()
            ));
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Java's `readUTF`: a 16-bit length and modified UTF-8.
    fn utf(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// A 32-bit length and that many bytes.
    fn blob(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn jks_digest(password: &str, data: &[u8]) -> [u8; 20] {
    jks_digest_of(password, &[data])
}

/// The JKS integrity hash of the data made of `parts`, in order.
fn jks_digest_of(password: &str, parts: &[&[u8]]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    for unit in password.encode_utf16() {
        hasher.update(unit.to_be_bytes());
    }
    hasher.update(JKS_WHITENER);
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The bytes of a JKS trusted-certificate entry dated now: tag, alias, date, (version 2) the
/// certificate type, and the certificate.
fn jks_trusted_entry(version: u32, alias: &str, der: &[u8]) -> Vec<u8> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut raw = Vec::with_capacity(der.len() + alias.len() + 32);
    raw.extend_from_slice(&JKS_TRUSTED_CERT.to_be_bytes());
    raw.extend_from_slice(&(alias.len() as u16).to_be_bytes());
    raw.extend_from_slice(alias.as_bytes());
    raw.extend_from_slice(&millis.to_be_bytes());
    if version == 2 {
        raw.extend_from_slice(&5u16.to_be_bytes());
        raw.extend_from_slice(b"X.509");
    }
    raw.extend_from_slice(&(der.len() as u32).to_be_bytes());
    raw.extend_from_slice(der);
    raw
}

/// Offset of the entry count in a JKS file (after the magic and the version).
const JKS_COUNT_AT: usize = 8;
/// Length of the integrity hash at the end of a JKS file.
const JKS_DIGEST_LEN: usize = 20;

/// Trusted-certificate entries added to a JKS store in place: the file keeps its first `keep`
/// bytes but for the entry count, and its old integrity hash (the last 20 bytes) is overwritten by
/// `tail`, the new entries followed by the new hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JksAppend {
    /// Length of the original's data before its integrity hash.
    pub keep: u64,
    /// Offset of the entry count.
    pub count_at: u64,
    /// The entry count before, big endian.
    pub old_count: [u8; 4],
    /// The entry count after, big endian.
    pub new_count: [u8; 4],
    /// The original's integrity hash.
    pub old_digest: [u8; 20],
    /// The new entries and the new integrity hash.
    pub tail: Vec<u8>,
    /// Aliases added (lower case), in order.
    pub added: Vec<String>,
}

/// How to add `entries` (alias, DER) to the JKS store `bytes` without rewriting it: only the
/// entry count, the new entries and the integrity hash change. `Ok(None)` when `bytes` is not a
/// JKS store (PKCS#12 is a nested DER structure and is rewritten instead). The store's integrity
/// is checked with `password` first, as [`Keystore::parse`] does; certificates it already holds
/// are skipped, so `added` may be empty.
///
/// `checked` says that these exact bytes already passed that check with `password` (see
/// [`remember_checked`]), which is then not done again.
pub(crate) fn jks_append(
    bytes: &[u8],
    password: &str,
    entries: &[(String, Vec<u8>)],
    checked: bool,
) -> Result<Option<JksAppend>> {
    if sniff(bytes) != Some(Format::Jks) {
        return Ok(None);
    }
    let jks = JksView::read(bytes, password, !checked)?;
    let mut added = Vec::new();
    let mut tail = Vec::new();
    for (alias, der) in entries {
        if !jks.entries.iter().any(|e| e.trusted == Some(der.as_slice())) {
            let alias = alias.to_ascii_lowercase();
            tail.extend(jks_trusted_entry(jks.version, &alias, der));
            added.push(alias);
        }
    }
    let count =
        u32::try_from(jks.entries.len() + added.len()).map_err(|_| KeystoreError("too many JKS entries".into()))?;
    let keep = bytes.len() - JKS_DIGEST_LEN;
    let new_count = count.to_be_bytes();
    let digest = jks_digest_of(
        password,
        &[
            &bytes[..JKS_COUNT_AT],
            &new_count,
            &bytes[JKS_COUNT_AT + 4..keep],
            &tail,
        ],
    );
    tail.extend_from_slice(&digest);
    let mut old_count = [0u8; 4];
    old_count.copy_from_slice(&bytes[JKS_COUNT_AT..JKS_COUNT_AT + 4]);
    let mut old_digest = [0u8; 20];
    old_digest.copy_from_slice(&bytes[keep..]);
    Ok(Some(JksAppend {
        keep: keep as u64,
        count_at: JKS_COUNT_AT as u64,
        old_count,
        new_count,
        old_digest,
        tail,
        added,
    }))
}

/// A JKS store as read: its entries borrowed from the file's bytes, nothing copied.
struct JksView<'a> {
    version: u32,
    entries: Vec<JksEntryRef<'a>>,
}

/// A [`JksEntry`] borrowed from the file's bytes.
struct JksEntryRef<'a> {
    alias: String,
    raw: &'a [u8],
    trusted: Option<&'a [u8]>,
}

impl<'a> JksView<'a> {
    /// Reads and checks a JKS store (structure and integrity hash).
    fn parse(bytes: &'a [u8], password: &str) -> Result<JksView<'a>> {
        JksView::read(bytes, password, true)
    }

    /// Reads a JKS store's structure, and checks its integrity hash when `verify`.
    fn read(bytes: &'a [u8], password: &str, verify: bool) -> Result<JksView<'a>> {
        if bytes.len() < 12 + 20 {
            return err("JKS keystore too short");
        }
        let (data, digest) = bytes.split_at(bytes.len() - 20);
        let mut c = Cursor::new(data);
        c.u32()?; // magic, checked by sniff()
        let version = c.u32()?;
        if version != 1 && version != 2 {
            return err(format!("JKS version {version} is not supported"));
        }
        let count = c.u32()?;
        let mut entries = Vec::new();
        for i in 0..count {
            let start = c.pos;
            let tag = c.u32()?;
            let alias = c.utf()?;
            c.take(8)?; // creation date
            let mut trusted = None;
            match tag {
                JKS_PRIVATE_KEY => {
                    c.blob()?; // the protected key
                    let chain = c.u32()?;
                    for _ in 0..chain {
                        if version == 2 {
                            c.utf()?;
                        }
                        c.blob()?;
                    }
                }
                JKS_TRUSTED_CERT => {
                    if version == 2 {
                        let kind = c.utf()?;
                        if kind != b"X.509" {
                            return err(format!(
                                "entry {i}: certificate type {:?} is not X.509",
                                String::from_utf8_lossy(kind)
                            ));
                        }
                    }
                    trusted = Some(c.blob()?);
                }
                other => return err(format!("entry {i}: unknown JKS entry tag {other}")),
            }
            entries.push(JksEntryRef {
                alias: String::from_utf8_lossy(alias).to_lowercase(),
                raw: &data[start..c.pos],
                trusted,
            });
        }
        if c.pos != data.len() {
            return err(format!("{} unexpected bytes after the last entry", data.len() - c.pos));
        }
        if verify && jks_digest(password, data) != digest {
            return err("integrity check failed: wrong keystore password, or the file is corrupt");
        }
        Ok(JksView { version, entries })
    }
}

impl Jks {
    fn parse(bytes: &[u8], password: &str) -> Result<Jks> {
        let view = JksView::parse(bytes, password)?;
        Ok(Jks {
            version: view.version,
            entries: view
                .entries
                .into_iter()
                .map(|e| JksEntry {
                    alias: e.alias,
                    raw: e.raw.to_vec(),
                    trusted: e.trusted.map(<[u8]>::to_vec),
                })
                .collect(),
        })
    }

    fn add(&mut self, alias: String, der: &[u8]) {
        self.entries.push(JksEntry {
            raw: jks_trusted_entry(self.version, &alias, der),
            alias,
            trusted: Some(der.to_vec()),
        });
    }

    fn remove(&mut self, aliases: &[String]) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|e| !(e.trusted.is_some() && aliases.contains(&e.alias)));
        before - self.entries.len()
    }

    fn to_bytes(&self, password: &str) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&JKS_MAGIC.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.raw);
        }
        let digest = jks_digest(password, &out);
        out.extend_from_slice(&digest);
        out
    }
}

// ------------------------------------------------------------------------------------------------
// DER

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const NULL: u8 = 0x05;
const OID: u8 = 0x06;
const BMP_STRING: u8 = 0x1E;
const CONTEXT_0: u8 = 0xA0;
const CONTEXT_0_PRIMITIVE: u8 = 0x80;

// Object identifiers, DER content bytes.
const OID_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
const OID_ENCRYPTED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x06];
const OID_CERT_BAG: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x0C, 0x0A, 0x01, 0x03];
const OID_X509_CERT: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x16, 0x01];
const OID_FRIENDLY_NAME: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x14];
/// Oracle's trusted key usage, 2.16.840.1.113894.746875.1.1.
const OID_TRUSTED_KEY_USAGE: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x86, 0xF9, 0x66, 0xAD, 0xCA, 0x7B, 0x01, 0x01];
/// anyExtendedKeyUsage, 2.5.29.37.0.
const OID_ANY_EKU: &[u8] = &[0x55, 0x1D, 0x25, 0x00];
const OID_PBES2: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x05, 0x0D];
const OID_PBKDF2: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x05, 0x0C];
const OID_PKCS12_PBE_PREFIX: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x0C, 0x01];
const OID_PBMAC1: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x05, 0x0E];

/// Digests by OID (as in a MacData DigestInfo) and their HMAC OIDs (as a PBKDF2 PRF).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Digest {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    const ALL: [Digest; 5] = [
        Digest::Sha1,
        Digest::Sha224,
        Digest::Sha256,
        Digest::Sha384,
        Digest::Sha512,
    ];

    fn oid(self) -> &'static [u8] {
        match self {
            Digest::Sha1 => &[0x2B, 0x0E, 0x03, 0x02, 0x1A],
            Digest::Sha224 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04],
            Digest::Sha256 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01],
            Digest::Sha384 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02],
            Digest::Sha512 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03],
        }
    }

    fn hmac_oid(self) -> &'static [u8] {
        match self {
            Digest::Sha1 => &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x02, 0x07],
            Digest::Sha224 => &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x02, 0x08],
            Digest::Sha256 => &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x02, 0x09],
            Digest::Sha384 => &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x02, 0x0A],
            Digest::Sha512 => &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x02, 0x0B],
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Digest::Sha1 => Sha1::digest(data).to_vec(),
            Digest::Sha224 => Sha224::digest(data).to_vec(),
            Digest::Sha256 => Sha256::digest(data).to_vec(),
            Digest::Sha384 => Sha384::digest(data).to_vec(),
            Digest::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Output size in bytes.
    fn size(self) -> usize {
        match self {
            Digest::Sha1 => 20,
            Digest::Sha224 => 28,
            Digest::Sha256 => 32,
            Digest::Sha384 => 48,
            Digest::Sha512 => 64,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn mac<D: sha2::Digest + BlockSizeUser>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <SimpleHmac<D> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Sha1 => mac::<Sha1>(key, data),
            Digest::Sha224 => mac::<Sha224>(key, data),
            Digest::Sha256 => mac::<Sha256>(key, data),
            Digest::Sha384 => mac::<Sha384>(key, data),
            Digest::Sha512 => mac::<Sha512>(key, data),
        }
    }

    /// PBKDF2 with HMAC over this digest, filling `out`.
    fn pbkdf2(self, password: &[u8], salt: &[u8], rounds: u32, out: &mut [u8]) {
        match self {
            Digest::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, rounds, out),
            Digest::Sha224 => pbkdf2::pbkdf2_hmac::<Sha224>(password, salt, rounds, out),
            Digest::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, out),
            Digest::Sha384 => pbkdf2::pbkdf2_hmac::<Sha384>(password, salt, rounds, out),
            Digest::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, out),
        }
    }

    /// Block size in bytes, for the PKCS#12 key derivation.
    fn block(self) -> usize {
        match self {
            Digest::Sha384 | Digest::Sha512 => 128,
            _ => 64,
        }
    }
}

/// A DER reader: definite lengths only, every length checked against what remains.
struct Der<'a> {
    buf: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Der { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Next element: its tag, its contents, and the whole encoding.
    fn any(&mut self) -> Result<(u8, &'a [u8], &'a [u8])> {
        let buf = self.buf;
        if buf.len() < 2 {
            return err("truncated DER");
        }
        let tag = buf[0];
        if tag & 0x1F == 0x1F {
            return err("multi-byte DER tags are not supported");
        }
        let (len, header) = match buf[1] {
            n if n < 0x80 => (n as usize, 2),
            0x80 => return err("indefinite-length (BER) encoding is not supported"),
            n => {
                let k = (n & 0x7F) as usize;
                if k > 4 || buf.len() < 2 + k {
                    return err("bad DER length");
                }
                let len = buf[2..2 + k].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
                (len, 2 + k)
            }
        };
        if len > buf.len() - header {
            return err(format!(
                "DER length {len} is past the end of the data ({} bytes left)",
                buf.len() - header
            ));
        }
        let whole = &buf[..header + len];
        self.buf = &buf[header + len..];
        Ok((tag, &whole[header..], whole))
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8]> {
        let (t, content, _) = self.any()?;
        if t != tag {
            return err(format!("{what}: expected DER tag {tag:#04x}, found {t:#04x}"));
        }
        Ok(content)
    }

    fn uint(&mut self, what: &str) -> Result<u64> {
        let c = self.expect(INTEGER, what)?;
        if c.is_empty() || c[0] & 0x80 != 0 {
            return err(format!("{what}: integer out of range"));
        }
        let c = match c {
            [0, rest @ ..] => rest,
            _ => c,
        };
        if c.len() > 8 {
            return err(format!("{what}: integer out of range"));
        }
        Ok(c.iter().fold(0u64, |a, b| (a << 8) | *b as u64))
    }
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    der::encode(SEQUENCE, &parts.concat())
}

fn der_uint(v: u64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut c = bytes[skip..].to_vec();
    if c[0] & 0x80 != 0 {
        c.insert(0, 0);
    }
    der::encode(INTEGER, &c)
}

// ------------------------------------------------------------------------------------------------
// PKCS#12

#[derive(Clone, Debug)]
struct Pkcs12 {
    contents: Vec<ContentInfo>,
    mac: Option<MacParams>,
}

#[derive(Clone, Debug)]
struct MacParams {
    digest: Digest,
    salt_len: usize,
    iterations: u64,
}

#[derive(Clone, Debug)]
struct ContentInfo {
    /// The encoding as read; reused as is while `dirty` is false.
    raw: Vec<u8>,
    /// The safe bags, when the content is one we can read (`data`, or `encryptedData` we decrypted).
    bags: Option<Vec<Bag>>,
    /// How the bags are encrypted, for `encryptedData`.
    encryption: Option<Pbes2>,
    dirty: bool,
}

#[derive(Clone, Debug)]
struct Bag {
    raw: Vec<u8>,
    alias: Option<String>,
    /// The certificate of a certificate bag marked as trusted.
    trusted: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
struct Pbes2 {
    salt: Vec<u8>,
    iterations: u64,
    key_len: Option<u64>,
    prf: Digest,
    cipher: Aes,
    iv: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aes {
    Aes128,
    Aes192,
    Aes256,
}

impl Aes {
    const ALL: [Aes; 3] = [Aes::Aes128, Aes::Aes192, Aes::Aes256];

    fn oid(self) -> &'static [u8] {
        match self {
            Aes::Aes128 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02],
            Aes::Aes192 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x16],
            Aes::Aes256 => &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A],
        }
    }

    fn key_len(self) -> usize {
        match self {
            Aes::Aes128 => 16,
            Aes::Aes192 => 24,
            Aes::Aes256 => 32,
        }
    }

    /// AES-CBC with PKCS#7 padding. `key` and `iv` have the right lengths.
    fn encrypt(self, key: &[u8], iv: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<C: KeyIvInit + BlockEncryptMut>(key: &[u8], iv: &[u8], data: &[u8]) -> Vec<u8> {
            C::new_from_slices(key, iv)
                .expect("key and IV lengths match the cipher")
                .encrypt_padded_vec_mut::<Pkcs7>(data)
        }
        match self {
            Aes::Aes128 => run::<cbc::Encryptor<aes::Aes128>>(key, iv, data),
            Aes::Aes192 => run::<cbc::Encryptor<aes::Aes192>>(key, iv, data),
            Aes::Aes256 => run::<cbc::Encryptor<aes::Aes256>>(key, iv, data),
        }
    }

    /// The inverse of [`Aes::encrypt`]; `None` when the padding is wrong (a wrong key, or
    /// corrupt data).
    fn decrypt(self, key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
        fn run<C: KeyIvInit + BlockDecryptMut>(key: &[u8], iv: &[u8], data: &[u8]) -> Option<Vec<u8>> {
            C::new_from_slices(key, iv)
                .expect("key and IV lengths match the cipher")
                .decrypt_padded_vec_mut::<Pkcs7>(data)
                .ok()
        }
        match self {
            Aes::Aes128 => run::<cbc::Decryptor<aes::Aes128>>(key, iv, data),
            Aes::Aes192 => run::<cbc::Decryptor<aes::Aes192>>(key, iv, data),
            Aes::Aes256 => run::<cbc::Decryptor<aes::Aes256>>(key, iv, data),
        }
    }
}

/// Fills `buf` from the kernel's random number generator.
fn random(buf: &mut [u8], what: &str) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return err(format!("{what}: {e}")),
        }
    }
    Ok(())
}

fn check_iterations(n: u64, what: &str) -> Result<u64> {
    if n == 0 || n > MAX_ITERATIONS {
        return err(format!("{what}: iteration count {n} is out of range"));
    }
    Ok(n)
}

impl Pbes2 {
    /// Parses an AlgorithmIdentifier's contents (OID and parameters).
    fn parse(alg: &[u8]) -> Result<Pbes2> {
        let mut d = Der::new(alg);
        let oid = d.expect(OID, "encryption algorithm")?;
        if oid != OID_PBES2 {
            if oid.starts_with(OID_PKCS12_PBE_PREFIX) {
                return err(
                    "certificates are encrypted with a legacy pbeWithSHAAnd* algorithm (as JDK 8 and 11 \
                     write); only PBES2 is supported",
                );
            }
            return err("certificates are encrypted with an unsupported algorithm");
        }
        let mut params = Der::new(d.expect(SEQUENCE, "PBES2 parameters")?);
        let mut kdf = Der::new(params.expect(SEQUENCE, "PBES2 key derivation")?);
        if kdf.expect(OID, "PBES2 key derivation")? != OID_PBKDF2 {
            return err("PBES2 key derivation is not PBKDF2");
        }
        let mut kp = Der::new(kdf.expect(SEQUENCE, "PBKDF2 parameters")?);
        let salt = kp.expect(OCTET_STRING, "PBKDF2 salt")?.to_vec();
        let iterations = check_iterations(kp.uint("PBKDF2 iterations")?, "PBKDF2")?;
        let mut key_len = None;
        if kp.peek() == Some(INTEGER) {
            key_len = Some(kp.uint("PBKDF2 key length")?);
        }
        let mut prf = Digest::Sha1;
        if kp.peek() == Some(SEQUENCE) {
            let mut p = Der::new(kp.expect(SEQUENCE, "PBKDF2 PRF")?);
            let oid = p.expect(OID, "PBKDF2 PRF")?;
            prf = *Digest::ALL
                .iter()
                .find(|d| d.hmac_oid() == oid)
                .ok_or_else(|| KeystoreError("PBKDF2 PRF is not HMAC-SHA-1/SHA-2".into()))?;
        }
        let mut enc = Der::new(params.expect(SEQUENCE, "PBES2 encryption scheme")?);
        let oid = enc.expect(OID, "PBES2 encryption scheme")?;
        let cipher = *Aes::ALL
            .iter()
            .find(|a| a.oid() == oid)
            .ok_or_else(|| KeystoreError("PBES2 cipher is not AES-CBC".into()))?;
        let iv = enc.expect(OCTET_STRING, "PBES2 IV")?.to_vec();
        if iv.len() != 16 {
            return err("PBES2 AES IV is not 16 bytes");
        }
        if key_len.is_some_and(|k| k != cipher.key_len() as u64) {
            return err("PBKDF2 key length does not match the cipher");
        }
        Ok(Pbes2 {
            salt,
            iterations,
            key_len,
            prf,
            cipher,
            iv,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut kp = vec![der::encode(OCTET_STRING, &self.salt), der_uint(self.iterations)];
        if let Some(k) = self.key_len {
            kp.push(der_uint(k));
        }
        if self.prf != Digest::Sha1 {
            kp.push(seq(&[&der::encode(OID, self.prf.hmac_oid()), &der::encode(NULL, &[])]));
        }
        let kp: Vec<&[u8]> = kp.iter().map(|v| v.as_slice()).collect();
        let kdf = seq(&[&der::encode(OID, OID_PBKDF2), &seq(&kp)]);
        let enc = seq(&[
            &der::encode(OID, self.cipher.oid()),
            &der::encode(OCTET_STRING, &self.iv),
        ]);
        seq(&[&der::encode(OID, OID_PBES2), &seq(&[&kdf, &enc])])
    }

    fn key(&self, password: &str) -> Vec<u8> {
        let mut key = vec![0; self.cipher.key_len()];
        // At most MAX_ITERATIONS, checked when parsed.
        let rounds = u32::try_from(self.iterations).expect("iteration count is capped");
        self.prf.pbkdf2(password.as_bytes(), &self.salt, rounds, &mut key);
        key
    }

    fn encrypt(&self, password: &str, data: &[u8]) -> Vec<u8> {
        self.cipher.encrypt(&self.key(password), &self.iv, data)
    }

    fn decrypt(&self, password: &str, data: &[u8]) -> Result<Vec<u8>> {
        self.cipher.decrypt(&self.key(password), &self.iv, data).ok_or_else(|| {
            KeystoreError("cannot decrypt the certificates: wrong keystore password, or the file is corrupt".into())
        })
    }

    /// The same parameters with a fresh salt and IV, for writing new ciphertext.
    fn refreshed(&self) -> Result<Pbes2> {
        let mut next = self.clone();
        random(&mut next.salt, "random salt")?;
        random(&mut next.iv, "random IV")?;
        Ok(next)
    }
}

/// The PKCS#12 key derivation (RFC 7292, appendix B.2).
fn pkcs12_kdf(digest: Digest, password: &str, salt: &[u8], id: u8, iterations: u64, n: usize) -> Vec<u8> {
    let v = digest.block();
    let mut pass: Vec<u8> = password.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    pass.extend_from_slice(&[0, 0]);
    let fill = |src: &[u8]| -> Vec<u8> {
        if src.is_empty() {
            return Vec::new();
        }
        let len = v * src.len().div_ceil(v);
        src.iter().cycle().take(len).copied().collect()
    };
    let mut i_block = fill(salt);
    i_block.extend(fill(&pass));
    let d = vec![id; v];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut a = digest.hash(&[d.as_slice(), &i_block].concat());
        for _ in 1..iterations {
            a = digest.hash(&a);
        }
        out.extend_from_slice(&a[..a.len().min(n - out.len())]);
        if out.len() >= n {
            break;
        }
        let b: Vec<u8> = a.iter().cycle().take(v).copied().collect();
        for chunk in i_block.chunks_mut(v) {
            let mut carry = 1u16;
            for k in (0..v).rev() {
                let s = chunk[k] as u16 + b[k] as u16 + carry;
                chunk[k] = s as u8;
                carry = s >> 8;
            }
        }
    }
    out
}

fn pkcs12_mac(digest: Digest, password: &str, salt: &[u8], iterations: u64, data: &[u8]) -> Vec<u8> {
    let key = pkcs12_kdf(digest, password, salt, 3, iterations, digest.size());
    digest.hmac(&key, data)
}

fn bmp_decode(b: &[u8]) -> Option<String> {
    if b.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = b.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    String::from_utf16(&units).ok()
}

impl Bag {
    fn parse(raw: &[u8]) -> Result<Bag> {
        let mut outer = Der::new(raw);
        let mut d = Der::new(outer.expect(SEQUENCE, "safe bag")?);
        let bag_id = d.expect(OID, "safe bag type")?;
        let value = d.expect(CONTEXT_0, "safe bag value")?;
        let mut alias = None;
        let mut trust = false;
        if !d.is_empty() {
            let mut attrs = Der::new(d.expect(SET, "bag attributes")?);
            while !attrs.is_empty() {
                let mut a = Der::new(attrs.expect(SEQUENCE, "bag attribute")?);
                let oid = a.expect(OID, "bag attribute type")?;
                let mut values = Der::new(a.expect(SET, "bag attribute values")?);
                if oid == OID_FRIENDLY_NAME {
                    let name = values.expect(BMP_STRING, "friendlyName")?;
                    alias = bmp_decode(name).map(|s| s.to_lowercase());
                } else if oid == OID_TRUSTED_KEY_USAGE {
                    trust = true;
                }
            }
        }
        let mut trusted = None;
        if bag_id == OID_CERT_BAG && trust {
            let mut v = Der::new(value);
            let mut cb = Der::new(v.expect(SEQUENCE, "certificate bag")?);
            if cb.expect(OID, "certificate type")? == OID_X509_CERT {
                let mut c = Der::new(cb.expect(CONTEXT_0, "certificate")?);
                trusted = Some(c.expect(OCTET_STRING, "certificate")?.to_vec());
            }
        }
        Ok(Bag {
            raw: raw.to_vec(),
            alias,
            trusted,
        })
    }

    fn trusted_cert(alias: &str, der: &[u8]) -> Bag {
        let cert_bag = seq(&[
            &der::encode(OID, OID_X509_CERT),
            &der::encode(CONTEXT_0, &der::encode(OCTET_STRING, der)),
        ]);
        let bmp: Vec<u8> = alias.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        let friendly = seq(&[
            &der::encode(OID, OID_FRIENDLY_NAME),
            &der::encode(SET, &der::encode(BMP_STRING, &bmp)),
        ]);
        let usage = seq(&[
            &der::encode(OID, OID_TRUSTED_KEY_USAGE),
            &der::encode(SET, &der::encode(OID, OID_ANY_EKU)),
        ]);
        let attrs = der::encode(SET, &[friendly, usage].concat());
        Bag {
            raw: seq(&[
                &der::encode(OID, OID_CERT_BAG),
                &der::encode(CONTEXT_0, &cert_bag),
                &attrs,
            ]),
            alias: Some(alias.to_owned()),
            trusted: Some(der.to_vec()),
        }
    }
}

fn parse_safe_contents(bytes: &[u8]) -> Result<Vec<Bag>> {
    let mut outer = Der::new(bytes);
    let mut d = Der::new(outer.expect(SEQUENCE, "safe contents")?);
    if !outer.is_empty() {
        return err("unexpected bytes after the safe contents");
    }
    let mut bags = Vec::new();
    while !d.is_empty() {
        let (tag, _, raw) = d.any()?;
        if tag != SEQUENCE {
            return err("safe bag is not a SEQUENCE");
        }
        bags.push(Bag::parse(raw)?);
    }
    Ok(bags)
}

fn encode_safe_contents(bags: &[Bag]) -> Vec<u8> {
    let body: Vec<u8> = bags.iter().flat_map(|b| b.raw.iter().copied()).collect();
    der::encode(SEQUENCE, &body)
}

impl ContentInfo {
    fn parse(raw: &[u8], password: &str) -> Result<ContentInfo> {
        let mut outer = Der::new(raw);
        let mut d = Der::new(outer.expect(SEQUENCE, "content info")?);
        let kind = d.expect(OID, "content type")?;
        let mut ci = ContentInfo {
            raw: raw.to_vec(),
            bags: None,
            encryption: None,
            dirty: false,
        };
        if kind == OID_DATA {
            let mut x = Der::new(d.expect(CONTEXT_0, "data content")?);
            ci.bags = Some(parse_safe_contents(x.expect(OCTET_STRING, "data content")?)?);
        } else if kind == OID_ENCRYPTED_DATA {
            let mut x = Der::new(d.expect(CONTEXT_0, "encrypted data")?);
            let mut ed = Der::new(x.expect(SEQUENCE, "encrypted data")?);
            ed.uint("encrypted data version")?;
            let mut eci = Der::new(ed.expect(SEQUENCE, "encrypted content info")?);
            if eci.expect(OID, "encrypted content type")? != OID_DATA {
                return err("encrypted content is not data");
            }
            let alg = eci.expect(SEQUENCE, "content encryption algorithm")?;
            let pbes2 = Pbes2::parse(alg)?;
            let cipher = eci.expect(CONTEXT_0_PRIMITIVE, "encrypted content")?;
            let plain = pbes2.decrypt(password, cipher)?;
            ci.bags = Some(parse_safe_contents(&plain)?);
            ci.encryption = Some(pbes2);
        }
        // Anything else (enveloped data, ...) is carried through unread.
        Ok(ci)
    }

    fn encode(&self, password: &str) -> Result<Vec<u8>> {
        let Some(bags) = self.bags.as_ref().filter(|_| self.dirty) else {
            return Ok(self.raw.clone());
        };
        let plain = encode_safe_contents(bags);
        match &self.encryption {
            None => Ok(seq(&[
                &der::encode(OID, OID_DATA),
                &der::encode(CONTEXT_0, &der::encode(OCTET_STRING, &plain)),
            ])),
            Some(p) => {
                let p = p.refreshed()?;
                let cipher = p.encrypt(password, &plain);
                let eci = seq(&[
                    &der::encode(OID, OID_DATA),
                    &p.encode(),
                    &der::encode(CONTEXT_0_PRIMITIVE, &cipher),
                ]);
                let ed = seq(&[&der_uint(0), &eci]);
                Ok(seq(&[
                    &der::encode(OID, OID_ENCRYPTED_DATA),
                    &der::encode(CONTEXT_0, &ed),
                ]))
            }
        }
    }
}

impl Pkcs12 {
    fn parse(bytes: &[u8], password: &str) -> Result<Pkcs12> {
        let mut outer = Der::new(bytes);
        let mut pfx = Der::new(outer.expect(SEQUENCE, "PKCS#12 PFX")?);
        if !outer.is_empty() {
            return err("unexpected bytes after the PKCS#12 structure");
        }
        if pfx.uint("PKCS#12 version")? != 3 {
            return err("PKCS#12 version is not 3");
        }
        let mut auth = Der::new(pfx.expect(SEQUENCE, "authenticated safe")?);
        if auth.expect(OID, "authenticated safe type")? != OID_DATA {
            return err("PKCS#12 stores protected with public keys are not supported");
        }
        let mut x = Der::new(auth.expect(CONTEXT_0, "authenticated safe")?);
        let safe = x.expect(OCTET_STRING, "authenticated safe")?;
        let mut mac = None;
        if !pfx.is_empty() {
            let mut md = Der::new(pfx.expect(SEQUENCE, "MAC data")?);
            let mut info = Der::new(md.expect(SEQUENCE, "MAC digest info")?);
            let mut alg = Der::new(info.expect(SEQUENCE, "MAC algorithm")?);
            let oid = alg.expect(OID, "MAC algorithm")?;
            if oid == OID_PBMAC1 {
                return err("PBMAC1 integrity protection is not supported");
            }
            let digest = *Digest::ALL
                .iter()
                .find(|d| d.oid() == oid)
                .ok_or_else(|| KeystoreError("MAC digest is not SHA-1/SHA-2".into()))?;
            let value = info.expect(OCTET_STRING, "MAC value")?;
            let salt = md.expect(OCTET_STRING, "MAC salt")?;
            let iterations = if md.is_empty() { 1 } else { md.uint("MAC iterations")? };
            let iterations = check_iterations(iterations, "MAC")?;
            if pkcs12_mac(digest, password, salt, iterations, safe) != value {
                return err("integrity check failed: wrong keystore password, or the file is corrupt");
            }
            if !pfx.is_empty() {
                return err("unexpected data after the MAC");
            }
            mac = Some(MacParams {
                digest,
                salt_len: salt.len().max(8),
                iterations,
            });
        }
        let mut safe_der = Der::new(safe);
        let mut list = Der::new(safe_der.expect(SEQUENCE, "authenticated safe contents")?);
        if !safe_der.is_empty() {
            return err("unexpected data after the authenticated safe");
        }
        let mut contents = Vec::new();
        while !list.is_empty() {
            let (tag, _, raw) = list.any()?;
            if tag != SEQUENCE {
                return err("content info is not a SEQUENCE");
            }
            contents.push(ContentInfo::parse(raw, password)?);
        }
        Ok(Pkcs12 { contents, mac })
    }

    fn bags(&self) -> impl Iterator<Item = &Bag> {
        self.contents.iter().filter_map(|c| c.bags.as_ref()).flatten()
    }

    fn add(&mut self, alias: String, der: &[u8]) {
        let bag = Bag::trusted_cert(&alias, der);
        // Into the content info that already holds trusted certificates, as the JDK keeps them.
        let target = self
            .contents
            .iter_mut()
            .rev()
            .find(|c| c.bags.as_ref().is_some_and(|b| b.iter().any(|b| b.trusted.is_some())));
        match target {
            Some(c) => {
                c.bags.get_or_insert_with(Vec::new).push(bag);
                c.dirty = true;
            }
            None => {
                // No certificates yet: a new content info, encrypted like the JDK does when the
                // store has a password.
                let encryption = self.mac.as_ref().map(|_| Pbes2 {
                    salt: vec![0; 20],
                    iterations: 10_000,
                    key_len: None,
                    prf: Digest::Sha256,
                    cipher: Aes::Aes256,
                    iv: vec![0; 16],
                });
                self.contents.push(ContentInfo {
                    raw: Vec::new(),
                    bags: Some(vec![bag]),
                    encryption,
                    dirty: true,
                });
            }
        }
    }

    fn remove(&mut self, aliases: &[String]) -> usize {
        let mut removed = 0;
        for c in &mut self.contents {
            let Some(bags) = &mut c.bags else { continue };
            let before = bags.len();
            bags.retain(|b| !(b.trusted.is_some() && b.alias.as_ref().is_some_and(|a| aliases.contains(a))));
            if bags.len() != before {
                removed += before - bags.len();
                c.dirty = true;
            }
        }
        // A content info left empty held only our entries: it goes too.
        self.contents
            .retain(|c| !(c.dirty && c.bags.as_ref().is_some_and(|b| b.is_empty())));
        removed
    }

    fn to_bytes(&self, password: &str) -> Result<Vec<u8>> {
        let mut list = Vec::new();
        for c in &self.contents {
            list.extend(c.encode(password)?);
        }
        let safe = der::encode(SEQUENCE, &list);
        let auth = seq(&[
            &der::encode(OID, OID_DATA),
            &der::encode(CONTEXT_0, &der::encode(OCTET_STRING, &safe)),
        ]);
        let mut parts = vec![der_uint(3), auth];
        if let Some(m) = &self.mac {
            let mut salt = vec![0; m.salt_len];
            random(&mut salt, "random salt")?;
            let value = pkcs12_mac(m.digest, password, &salt, m.iterations, &safe);
            let info = seq(&[
                &seq(&[&der::encode(OID, m.digest.oid()), &der::encode(NULL, &[])]),
                &der::encode(OCTET_STRING, &value),
            ]);
            parts.push(seq(&[
                &info,
                &der::encode(OCTET_STRING, &salt),
                &der_uint(m.iterations),
            ]));
        }
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        Ok(seq(&parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_round_trip() {
        for n in [0usize, 1, 127, 128, 255, 256, 65535, 65536, 1 << 20] {
            let v = vec![7u8; n];
            let enc = der::encode(OCTET_STRING, &v);
            let mut d = Der::new(&enc);
            assert_eq!(d.expect(OCTET_STRING, "x").unwrap(), v.as_slice());
            assert!(d.is_empty());
        }
        for v in [0u64, 1, 127, 128, 255, 256, 10_000, u32::MAX as u64] {
            assert_eq!(Der::new(&der_uint(v)).uint("x").unwrap(), v);
        }
    }

    #[test]
    fn oversized_lengths_are_errors() {
        assert!(Der::new(&[0x04, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0]).any().is_err());
        assert!(Der::new(&[0x30, 0x80, 0, 0]).any().is_err());
        assert!(Der::new(&[0x04]).any().is_err());
    }

    #[test]
    fn pkcs12_kdf_matches_known_vector() {
        // RFC 7292 style vector from OpenSSL's test suite (SHA-1, password "smeg",
        // salt 0A58CF64530D823F, id 1, 1 iteration, 24 bytes).
        let key = pkcs12_kdf(
            Digest::Sha1,
            "smeg",
            &[0x0A, 0x58, 0xCF, 0x64, 0x53, 0x0D, 0x82, 0x3F],
            1,
            1,
            24,
        );
        assert_eq!(hex::encode(key), "8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3");
    }

    /// `bytes` with `add` applied as the in-place install writes it.
    fn applied(bytes: &[u8], add: &JksAppend) -> Vec<u8> {
        let mut out = bytes[..add.keep as usize].to_vec();
        out[add.count_at as usize..add.count_at as usize + 4].copy_from_slice(&add.new_count);
        out.extend_from_slice(&add.tail);
        out
    }

    #[test]
    fn jks_entries_added_in_place_make_a_store_that_verifies() {
        let mut image = Keystore::empty_jks();
        image.add_trusted("image", b"image-cert");
        let bytes = image.to_bytes("changeit").unwrap();
        let entries = vec![
            ("Cacerts-Hook-A".to_owned(), b"cert-a".to_vec()),
            ("cacerts-hook-dup".to_owned(), b"image-cert".to_vec()),
            ("cacerts-hook-b".to_owned(), b"cert-b".to_vec()),
        ];
        let add = jks_append(&bytes, "changeit", &entries, false).unwrap().unwrap();
        assert_eq!(
            add.added,
            vec!["cacerts-hook-a", "cacerts-hook-b"],
            "held certificates are skipped"
        );
        assert_eq!(add.keep as usize, bytes.len() - 20);
        assert_eq!((add.old_count, add.new_count), (1u32.to_be_bytes(), 3u32.to_be_bytes()));
        assert_eq!(add.old_digest[..], bytes[bytes.len() - 20..]);
        let store = Keystore::parse(&applied(&bytes, &add), "changeit").expect("the result verifies");
        assert_eq!(
            store.trusted(),
            vec![
                ("image".to_owned(), b"image-cert".to_vec()),
                ("cacerts-hook-a".to_owned(), b"cert-a".to_vec()),
                ("cacerts-hook-b".to_owned(), b"cert-b".to_vec()),
            ]
        );
        // Nothing to add: no entry, the count and hash as they were.
        let none = jks_append(&bytes, "changeit", &entries[1..2], false).unwrap().unwrap();
        assert!(none.added.is_empty());
        assert_eq!(applied(&bytes, &none), bytes);
        // A wrong password or a corrupt store is refused; PKCS#12 is not changed in place.
        assert!(jks_append(&bytes, "wrong", &entries, false).is_err());
        assert!(jks_append(&bytes[..bytes.len() - 1], "changeit", &entries, false).is_err());
        assert_eq!(jks_append(&[0x30, 0x00], "changeit", &entries, false), Ok(None));
    }

    #[test]
    fn jks_round_trip_and_password() {
        let mut ks = Jks {
            version: 2,
            entries: Vec::new(),
        };
        ks.add("a".into(), b"cert-a");
        let bytes = ks.to_bytes("changeit");
        let parsed = Keystore::parse(&bytes, "changeit").unwrap();
        assert_eq!(parsed.trusted(), vec![("a".to_owned(), b"cert-a".to_vec())]);
        assert!(Keystore::parse(&bytes, "wrong").is_err());
        assert_eq!(parsed.to_bytes("changeit").unwrap(), bytes);
    }
}
