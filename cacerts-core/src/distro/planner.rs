//! The steps a family's installer is made of: read what a trust store holds, pick names that
//! collide with nothing, append to bundles, create anchors and hash links. Only reads go to the
//! root; everything else becomes a [`Change`] in the plan.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::certs::{attribute_text, CaCert};
use crate::der;
use crate::error::Result;
use crate::pem::{self, pem_block, Scanner};
use crate::plan::{Change, Edit, Plan};
use crate::rootfs::{join_name, ContainerRoot, FileKind};

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

/// A bundle's canonical path and the certificates it holds.
type BundleEntry = (PathBuf, Rc<Fingerprints>);

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
    /// [`Planner::bundle_entry`]'s answers, by the name asked for.
    by_name: RefCell<HashMap<String, Option<BundleEntry>>>,
    /// [`Planner::entries`]' answers, by directory.
    listings: RefCell<HashMap<PathBuf, Option<Rc<Listing>>>>,
    /// Names looked up one by one so far (see [`Planner::has_entry`]).
    lookups: Cell<usize>,
}

/// Up to this many certificates, [`Planner::has_entry`] looks names up one by one.
const LOOKUP_CERTS: usize = 8;
/// The most names [`Planner::has_entry`] looks up one by one before it lists directories.
const MAX_LOOKUPS: usize = 64;

/// The names of a directory's entries.
type Listing = HashSet<OsString>;

impl<'a> Planner<'a> {
    /// A planner with an empty plan.
    pub fn new(root: &'a ContainerRoot, certs: &'a [CaCert], create_store: bool) -> Self {
        Planner {
            root,
            certs,
            create_store,
            plan: Plan::new(),
            // Every CA claims a name or more: room for a thousand from the start, not grown
            // (and every path hashed again) ten times over.
            claimed: HashSet::with_capacity(certs.len()),
            bundles: HashSet::new(),
            held: RefCell::new(HashMap::new()),
            by_name: RefCell::new(HashMap::new()),
            listings: RefCell::new(HashMap::new()),
            lookups: Cell::new(0),
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
        if self.claimed.contains(path) {
            return Ok(true);
        }
        match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => self.has_entry(dir, name),
            _ => Ok(self.root.symlink_metadata(path)?.is_some()),
        }
    }

    /// True when directory `dir` (symlinks on the way followed inside the root) has an entry
    /// `name`. For a few certificates each name is looked up (a Debian `/etc/ssl/certs` holds
    /// hundreds of entries, and listing it costs more than the whole rest of a plan); for more,
    /// or once [`MAX_LOOKUPS`] names have been looked up, the directory is listed once and the
    /// listing asked. Both answer alike.
    fn has_entry(&self, dir: &Path, name: &OsStr) -> Result<bool> {
        if self.certs.len() > LOOKUP_CERTS || self.lookups.get() >= MAX_LOOKUPS {
            if let Some(entries) = self.entries(dir) {
                return Ok(entries.contains(name));
            }
        }
        self.lookups.set(self.lookups.get() + 1);
        Ok(self.root.symlink_metadata(join_name(dir, name))?.is_some())
    }

    /// The entries of directory `dir` (symlinks on the way followed inside the root), listed
    /// once per plan: the tree does not change while a plan is made, and a thousand CAs ask about
    /// the same directories a thousand times. An empty listing when nothing is at `dir`; `None`
    /// when it cannot be listed (not a directory, a loop), for the caller to ask entry by entry.
    fn entries(&self, dir: &Path) -> Option<Rc<Listing>> {
        if let Some(known) = self.listings.borrow().get(dir) {
            return known.clone();
        }
        let listing = match self.root.metadata(dir) {
            Ok(None) => Some(Listing::default()),
            Ok(Some(m)) if m.kind == FileKind::Dir => self
                .root
                .read_dir(dir)
                .ok()
                .map(|entries| entries.into_iter().map(|e| e.name).collect()),
            _ => None,
        }
        .map(Rc::new);
        self.listings.borrow_mut().insert(dir.to_owned(), listing.clone());
        listing
    }

    /// The certificates a bundle holds; `None` when there is no regular file at `path`.
    /// Anything but a regular file there (a FIFO, a device) is refused with an error. A file is
    /// read once per plan, whatever the names it is asked for under.
    pub fn bundle(&self, path: &str) -> Result<Option<Rc<Fingerprints>>> {
        Ok(self.bundle_entry(path)?.map(|(_, held)| held))
    }

    /// [`Planner::bundle`], with the file's canonical path; remembered by the name asked for,
    /// since the tree does not change while a plan is made.
    fn bundle_entry(&self, path: &str) -> Result<Option<BundleEntry>> {
        if let Some(known) = self.by_name.borrow().get(path) {
            return Ok(known.clone());
        }
        let entry = if self.root.metadata(path)?.is_none() {
            None
        } else {
            let physical = self.root.canonicalize(path)?;
            let known = self.held.borrow().get(&physical).cloned();
            let held = match known {
                Some(held) => held,
                None => {
                    let mut scanner = Scanner::looking_for(self.certs.iter().map(|c| c.der.len()));
                    self.root.read_file_chunks(&physical, |chunk| scanner.feed(chunk))?;
                    let held: Fingerprints = scanner.finish().iter().map(|der| Sha256::digest(der).into()).collect();
                    let held = Rc::new(held);
                    self.held.borrow_mut().insert(physical.clone(), Rc::clone(&held));
                    held
                }
            };
            Some((physical, held))
        };
        self.by_name.borrow_mut().insert(path.to_owned(), entry.clone());
        Ok(entry)
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
        // Refuses a FIFO or device with an error, as reading it does.
        let Some((physical, held)) = self.bundle_entry(path)? else {
            return Ok(false);
        };
        if !self.bundles.insert(physical) {
            return Ok(true);
        }
        let text = encode_all(certs.iter().copied().filter(|c| !held.contains(&c.sha256)), form);
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
        let text = encode_all(certs.iter().copied(), form);
        self.bundles.insert(self.root.canonicalize(path)?);
        self.create_file(path, text);
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
        // Each candidate made only when the one before is taken: nearly always the first is
        // free, and a thousand CAs are a thousand calls.
        let candidate = |i: usize| {
            let fp = || hex::encode(cert.sha256);
            match i {
                0 => format!("{NAME_PREFIX}{}", cert.name),
                1 => format!("{NAME_PREFIX}{}-{}", cert.name, &fp()[..16]),
                2 => format!("{NAME_PREFIX}{}-{}", cert.name, fp()),
                i => format!("{NAME_PREFIX}{}-{}-{i}", cert.name, fp()),
            }
        };
        let mut path = String::new();
        for i in 0.. {
            let base = candidate(i);
            let mut free = true;
            for (dir, prefix, suffix) in places {
                path.clear();
                path.reserve(dir.len() + 1 + prefix.len() + base.len() + suffix.len());
                path.push_str(dir);
                if !dir.ends_with('/') {
                    path.push('/');
                }
                path.push_str(prefix);
                path.push_str(&base);
                path.push_str(suffix);
                if self.taken(Path::new(&path))? {
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
    ///
    /// Names are taken as OpenSSL looks them up: `.0`, `.1` and so on, up to the first missing
    /// one. A link past a gap, or under another spelling of a number (`.00`), is one OpenSSL
    /// never reads, so it neither counts as linking the certificate nor keeps its number taken.
    pub fn hash_link(&mut self, dir: &str, cert: &CaCert, target: &str, old_hash: bool) -> Result<()> {
        let mut hashes = vec![cert.subject_hash];
        if old_hash {
            hashes.extend(subject_hash_old(cert));
        }
        let dir = Path::new(dir);
        for h in hashes {
            let mut n = 0u32;
            let mut linked = false;
            loop {
                let name = format!("{h:08x}.{n}");
                if !self.has_entry(dir, OsStr::new(&name))? {
                    break;
                }
                if let Ok(bytes) = self.root.read_file(dir.join(&name)) {
                    if pem::cert_ders(&bytes)
                        .first()
                        .is_some_and(|der| Sha1::digest(der)[..] == cert.sha1)
                    {
                        linked = true;
                        break;
                    }
                }
                n += 1;
            }
            if linked {
                continue;
            }
            while self.claimed.contains(&dir.join(format!("{h:08x}.{n}"))) {
                n += 1;
            }
            self.symlink(dir.join(format!("{h:08x}.{n}")), target);
        }
        Ok(())
    }
}

/// `certs` in `form`, one after another: the PEM blocks copied once each, into a buffer of
/// their size (a thousand CAs make most of a megabyte).
fn encode_all<'c>(certs: impl Iterator<Item = &'c CaCert> + Clone, form: Form) -> Vec<u8> {
    match form {
        Form::Pem => {
            let mut text = Vec::with_capacity(certs.clone().map(|c| c.pem.len()).sum());
            for c in certs {
                text.extend_from_slice(c.pem.as_bytes());
            }
            text
        }
        Form::Trusted => certs.flat_map(|c| encode(c, form).into_bytes()).collect(),
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
    let inner = der::encode(0x0c, alias.as_bytes());
    der::encode(der::SEQUENCE, &inner)
}

/// OpenSSL's `X509_NAME_hash_old`: the first four bytes of the MD5 of the subject's DER, little
/// endian.
fn subject_hash_old(cert: &CaCert) -> Option<u32> {
    let (_, x) = x509_parser::parse_x509_certificate(&cert.der).ok()?;
    Some(crate::subject_hash::subject_hash_old(x.subject().as_raw()))
}

/// The outcome of [`Planner::todo`].
pub struct Todo<'a> {
    /// The certificates to install.
    pub certs: Vec<&'a CaCert>,
    /// Whether the family's main bundle exists (else it is to be created).
    pub bundle_exists: bool,
}
