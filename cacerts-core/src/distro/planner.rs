//! The steps a family's installer is made of: read what a trust store holds, pick names that
//! collide with nothing, append to bundles, create anchors and hash links. Only reads go to the
//! root; everything else becomes a [`Change`] in the plan.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use base64::alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::certs::{attribute_text, CaCert};
use crate::error::Result;
use crate::plan::{Change, Edit, Plan};
use crate::rootfs::{ContainerRoot, FileKind};

/// Base64 as PEM bodies use it; as lenient as OpenSSL's decoder about the unused bits of the
/// last character.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Prefix of every file name we choose, so that nothing collides with the image's own names.
pub const NAME_PREFIX: &str = "cacerts-hook-";

/// How a certificate is written into a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `-----BEGIN CERTIFICATE-----`.
    Pem,
    /// `-----BEGIN TRUSTED CERTIFICATE-----`, as p11-kit's `openssl-bundle` and
    /// `openssl-directory` extracts write an anchor without purpose restrictions: the DER
    /// certificate followed by OpenSSL's `X509_CERT_AUX` holding only the alias (the subject's
    /// common name): no trusted or rejected purposes, no key id.
    Trusted,
}

/// Fingerprints (SHA-256 of the DER) of the certificates a file holds.
pub type Fingerprints = HashSet<[u8; 32]>;

/// A plan being built for one root and one set of certificates.
pub struct Planner<'a> {
    /// The root, for reads.
    pub root: &'a ContainerRoot,
    /// The certificates to install.
    pub certs: &'a [CaCert],
    /// Whether a trust store may be created where the image has none.
    pub create_store: bool,
    plan: Plan,
    /// Paths this plan creates.
    claimed: HashSet<PathBuf>,
    /// Canonical paths of the files this plan appends to or creates as bundles.
    bundles: HashSet<PathBuf>,
    /// What the bundles read so far hold, by canonical path: each file is read and scanned once.
    held: RefCell<HashMap<PathBuf, Rc<Fingerprints>>>,
}

impl<'a> Planner<'a> {
    /// A planner with an empty plan.
    pub fn new(root: &'a ContainerRoot, certs: &'a [CaCert], create_store: bool) -> Self {
        Planner {
            root,
            certs,
            create_store,
            plan: Plan::new(),
            claimed: HashSet::new(),
            bundles: HashSet::new(),
            held: RefCell::new(HashMap::new()),
        }
    }

    /// The plan built so far.
    pub fn into_plan(self) -> Plan {
        self.plan
    }

    /// Adds a change built elsewhere (language-runtime stores).
    pub fn push(&mut self, change: Change) {
        self.plan.push(change);
    }

    /// True when `path` is an existing regular file (symlinks followed inside the root). A path
    /// that cannot be resolved (a loop) is no file.
    pub fn is_file(&self, path: &str) -> bool {
        matches!(self.root.metadata(path), Ok(Some(m)) if m.kind == FileKind::File)
    }

    /// True when `path` is an existing directory (symlinks followed inside the root). A path
    /// that cannot be resolved (a loop) is no directory.
    pub fn is_dir(&self, path: &str) -> bool {
        matches!(self.root.metadata(path), Ok(Some(m)) if m.kind == FileKind::Dir)
    }

    /// True when anything, even a dangling symlink, is at `path`, or this plan creates it.
    pub fn taken(&self, path: &Path) -> Result<bool> {
        Ok(self.claimed.contains(path) || self.root.symlink_metadata(path)?.is_some())
    }

    /// The certificates a bundle holds; `None` when there is no regular file at `path`.
    /// Anything but a regular file there (a FIFO, a device) is refused with an error. A file is
    /// read once per plan, whatever the names it is asked for under.
    pub fn bundle(&self, path: &str) -> Result<Option<Rc<Fingerprints>>> {
        if self.root.metadata(path)?.is_none() {
            return Ok(None);
        }
        let physical = self.root.canonicalize(path)?;
        if let Some(held) = self.held.borrow().get(&physical) {
            return Ok(Some(Rc::clone(held)));
        }
        let held = Rc::new(fingerprints(&self.root.read_file(&physical)?));
        self.held.borrow_mut().insert(physical, Rc::clone(&held));
        Ok(Some(held))
    }

    /// What a family with `main_bundle` has to do: the certificates that bundle does not hold
    /// yet (all of them when it does not exist), and whether it exists. `None` when there is
    /// nothing to do: every certificate is there already, or there is no store and creating one
    /// is switched off.
    pub fn todo(&self, main_bundle: &str) -> Result<Option<Todo<'a>>> {
        let trusted = self.bundle(main_bundle)?;
        if trusted.is_none() && !self.create_store {
            return Ok(None);
        }
        let certs: Vec<&'a CaCert> = self
            .certs
            .iter()
            .filter(|c| !trusted.as_deref().is_some_and(|t| t.contains(&c.sha256)))
            .collect();
        Ok((!certs.is_empty()).then_some(Todo {
            certs,
            bundle_exists: trusted.is_some(),
        }))
    }

    /// Appends to the existing file `path` those of `certs` it does not hold yet. A file reached
    /// through several names is changed once. Returns false (and plans nothing) when there is no
    /// file at `path`.
    pub fn append(&mut self, path: &str, certs: &[&CaCert], form: Form) -> Result<bool> {
        if !self.is_file(path) {
            // Refuses a FIFO or device with an error, as reading it would.
            return Ok(self.bundle(path)?.is_some());
        }
        let physical = self.root.canonicalize(path)?;
        if self.bundles.contains(&physical) {
            return Ok(true);
        }
        let Some(held) = self.bundle(path)? else {
            return Ok(false);
        };
        self.bundles.insert(physical);
        let text: Vec<u8> = certs
            .iter()
            .filter(|c| !held.contains(&c.sha256))
            .flat_map(|c| encode(c, form).into_bytes())
            .collect();
        if !text.is_empty() {
            self.plan.push(Change::EditFile {
                path: path.into(),
                edit: Edit::Append(text),
            });
        }
        Ok(true)
    }

    /// Creates a bundle holding `certs`, unless something is already at `path`.
    pub fn create_bundle(&mut self, path: &str, certs: &[&CaCert], form: Form) -> Result<()> {
        if certs.is_empty() || self.taken(Path::new(path))? {
            return Ok(());
        }
        let text: String = certs.iter().map(|c| encode(c, form)).collect();
        self.bundles.insert(self.root.canonicalize(path)?);
        self.create_file(path, text.into_bytes());
        Ok(())
    }

    /// Creates `link -> target` unless something is already at `link`.
    pub fn link_if_free(&mut self, link: &str, target: &str) -> Result<()> {
        if !self.taken(Path::new(link))? {
            self.symlink(link, target);
        }
        Ok(())
    }

    /// Creates a regular file (mode 0644).
    pub fn create_file(&mut self, path: impl Into<PathBuf>, contents: Vec<u8>) {
        self.create_file_mode(path, contents, 0o644);
    }

    /// Creates a regular file with the given mode.
    pub fn create_file_mode(&mut self, path: impl Into<PathBuf>, contents: Vec<u8>, mode: u32) {
        let path = path.into();
        self.claimed.insert(path.clone());
        self.plan.push(Change::CreateFile { path, contents, mode });
    }

    /// Creates a symbolic link.
    pub fn symlink(&mut self, path: impl Into<PathBuf>, target: impl Into<PathBuf>) {
        let path = path.into();
        self.claimed.insert(path.clone());
        self.plan.push(Change::CreateSymlink {
            path,
            target: target.into(),
        });
    }

    /// A base name for `cert`: `cacerts-hook-<name>`, or with a fingerprint suffix when
    /// `<dir>/<prefix><base><suffix>` is taken in any of `places`.
    pub fn free_name(&self, cert: &CaCert, places: &[(&str, &str, &str)]) -> Result<String> {
        let fp = hex::encode(cert.sha256);
        let candidates = [
            format!("{NAME_PREFIX}{}", cert.name),
            format!("{NAME_PREFIX}{}-{}", cert.name, &fp[..16]),
            format!("{NAME_PREFIX}{}-{fp}", cert.name),
        ];
        for (i, base) in candidates.iter().chain(std::iter::repeat(&candidates[2])).enumerate() {
            let base = if i < 3 { base.clone() } else { format!("{base}-{i}") };
            let mut free = true;
            for (dir, prefix, suffix) in places {
                if self.taken(&Path::new(dir).join(format!("{prefix}{base}{suffix}")))? {
                    free = false;
                    break;
                }
            }
            if free {
                return Ok(base);
            }
        }
        unreachable!("the candidate names never run out")
    }

    /// Links `cert` into the OpenSSL hash directory `dir` as `HHHHHHHH.N -> target`, with the
    /// next free `N`, unless a certificate with the same SHA-1 fingerprint is already linked
    /// under that hash. With `old_hash`, the pre-1.0 (MD5) subject hash is linked too, as p11-kit
    /// does.
    pub fn hash_link(&mut self, dir: &str, cert: &CaCert, target: &str, old_hash: bool) -> Result<()> {
        let mut hashes = vec![cert.subject_hash];
        if old_hash {
            hashes.extend(subject_hash_old(cert));
        }
        let entries = self.root.read_dir(dir).unwrap_or_default();
        for h in hashes {
            let prefix = format!("{h:08x}.");
            let mut used = HashSet::new();
            let mut linked = false;
            for e in &entries {
                let name = e.name.to_string_lossy();
                let Some(n) = name.strip_prefix(&prefix).and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                used.insert(n);
                let path = Path::new(dir).join(&*name);
                if let Ok(bytes) = self.root.read_file(&path) {
                    if cert_ders(&bytes)
                        .first()
                        .is_some_and(|der| Sha1::digest(der)[..] == cert.sha1)
                    {
                        linked = true;
                    }
                }
            }
            if linked {
                continue;
            }
            let n = (0..)
                .find(|n| !used.contains(n) && !self.claimed.contains(&Path::new(dir).join(format!("{prefix}{n}"))))
                .expect("a free number");
            self.symlink(Path::new(dir).join(format!("{prefix}{n}")), target);
        }
        Ok(())
    }
}

/// The certificate as text in the given form, newline-terminated.
pub fn encode(cert: &CaCert, form: Form) -> String {
    match form {
        Form::Pem => cert.pem.clone(),
        Form::Trusted => {
            let mut der = cert.der.clone();
            der.extend(cert_aux(&alias(cert)));
            pem_block("TRUSTED CERTIFICATE", &der)
        }
    }
}

/// The label p11-kit gives an anchor file's certificate: the subject's common name, else the
/// one-line subject.
fn alias(cert: &CaCert) -> String {
    x509_parser::parse_x509_certificate(&cert.der)
        .ok()
        .and_then(|(_, x)| x.subject().iter_common_name().next().and_then(attribute_text))
        .unwrap_or_else(|| cert.subject.clone())
}

/// DER of `X509_CERT_AUX ::= SEQUENCE { alias UTF8String }`.
fn cert_aux(alias: &str) -> Vec<u8> {
    let inner = der_tlv(0x0c, alias.as_bytes());
    der_tlv(0x30, &inner)
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// OpenSSL's `X509_NAME_hash_old`: the first four bytes of the MD5 of the subject's DER, little
/// endian.
fn subject_hash_old(cert: &CaCert) -> Option<u32> {
    let (_, x) = x509_parser::parse_x509_certificate(&cert.der).ok()?;
    Some(crate::subject_hash::subject_hash_old(x.subject().as_raw()))
}

/// The DER encoding of every certificate in a file, not parsed: PEM blocks (`CERTIFICATE`,
/// `X509 CERTIFICATE`, `TRUSTED CERTIFICATE`), the first DER element of each block's decoded body
/// (a trusted certificate's trust settings follow it), or of the file when it has no PEM block.
/// Blocks that do not decode are skipped.
///
/// A block that decodes to something other than a certificate yields bytes no certificate of
/// ours hashes to, so fingerprints taken from these match DER-encoded certificates only. A
/// certificate in a BER encoding (which OpenSSL would re-encode) is not recognised; an install
/// then appends a duplicate, which is harmless.
pub fn cert_ders(bytes: &[u8]) -> Vec<Vec<u8>> {
    pem_ders(bytes, &["CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"])
}

/// [`cert_ders`] of the PEM blocks labelled one of `labels` (or of the file as DER when it has
/// none).
pub fn pem_ders(bytes: &[u8], labels: &[&str]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut rest: &str = &text;
    let mut any_block = false;
    while let Some(start) = rest.find("-----BEGIN ") {
        rest = &rest[start + 11..];
        let Some(label_end) = rest.find("-----") else {
            break;
        };
        let label = &rest[..label_end];
        rest = &rest[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest.find(&end_marker) else {
            break;
        };
        let body = &rest[..end];
        rest = &rest[end + end_marker.len()..];
        if !labels.contains(&label) {
            continue;
        }
        any_block = true;
        // Base64 is ASCII: only ASCII white space is taken out.
        let b64: String = body.split_ascii_whitespace().collect();
        if let Some(der) = BASE64
            .decode(&b64)
            .ok()
            .and_then(|der| first_element(&der).map(<[u8]>::to_vec))
        {
            out.push(der);
        }
    }
    if !any_block {
        out.extend(first_element(bytes).map(<[u8]>::to_vec));
    }
    out
}

/// The first DER element of `der` when it is a SEQUENCE that fits (definite length, at most
/// four length bytes).
fn first_element(der: &[u8]) -> Option<&[u8]> {
    if der.first() != Some(&0x30) {
        return None;
    }
    let first = *der.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = der
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, 2 + n)
    };
    der.get(..header.checked_add(len)?)
}

/// Fingerprints (SHA-256 of the DER) of every certificate in a file.
pub fn fingerprints(bytes: &[u8]) -> Fingerprints {
    cert_ders(bytes).iter().map(|der| Sha256::digest(der).into()).collect()
}

/// The outcome of [`Planner::todo`].
pub struct Todo<'a> {
    /// The certificates to install.
    pub certs: Vec<&'a CaCert>,
    /// Whether the family's main bundle exists (else it is to be created).
    pub bundle_exists: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        assert_eq!(der_tlv(0x0c, b"ab"), vec![0x0c, 2, b'a', b'b']);
        let long = vec![0u8; 300];
        assert_eq!(&der_tlv(0x30, &long)[..4], &[0x30, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn fingerprints_without_parsing_match_openssl() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBVzCB/qADAgECAhQ=\n-----END CERTIFICATE-----\n";
        // Not a whole certificate: its first element claims more bytes than there are.
        assert!(fingerprints(pem.as_bytes()).is_empty());
        assert_eq!(
            first_element(&[0x30, 0x03, 1, 2, 3, 9, 9]),
            Some(&[0x30, 0x03, 1, 2, 3][..])
        );
        assert_eq!(first_element(&[0x30, 0x81, 0x01, 7]), Some(&[0x30, 0x81, 0x01, 7][..]));
        assert_eq!(first_element(&[0x30, 0x80, 0, 0]), None);
        assert_eq!(first_element(&[0x31, 0x00]), None);
        assert_eq!(first_element(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn garbage_has_no_certificates() {
        assert!(cert_ders(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_empty());
        assert!(cert_ders(b"-----BEGIN CERTIFICATE-----\nunterminated").is_empty());
        assert!(cert_ders(&[0x30, 0x82, 0xff]).is_empty());
        assert!(fingerprints(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_empty());
        assert!(fingerprints(b"-----BEGIN CERTIFICATE-----\nunterminated").is_empty());
        assert!(fingerprints(&[0x30, 0x82, 0xff]).is_empty());
    }
}
