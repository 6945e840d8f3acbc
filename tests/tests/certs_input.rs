//! The input contract of `certs::load`: which files and directories become CA certificates, how
//! they are named, and how every input that does not is reported (always naming the file, never
//! hanging, never taking the other inputs down with it).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use cacerts_core::certs::{self, Loaded, Skipped};
use cacerts_core::installer::{self, Settings};
use cacerts_core::{install, ContainerRoot};
use cacerts_testkit::build;
use cacerts_testkit::ca::{openssl_cli, TestCa};
use cacerts_testkit::fixtures::{self, Base};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::dsa::Dsa;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::symm::Cipher;
use openssl::x509::extension::BasicConstraints;
use openssl::x509::{X509Name, X509NameBuilder, X509};

/// Loads `inputs` on another thread and gives up after a while, so that an input that blocks
/// (a FIFO without a writer) fails the test instead of hanging it. Every `Skipped` must name its
/// file, both as `source` and in its `Display`.
fn load(inputs: &[PathBuf]) -> Loaded {
    let inputs = inputs.to_vec();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(certs::load(&inputs));
    });
    let loaded = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("certs::load did not return within 20 s");
    for s in &loaded.skipped {
        let shown = s.to_string();
        assert!(
            shown.contains(&s.source.display().to_string()),
            "the message names the file: {shown}"
        );
        assert!(!s.reason.trim().is_empty(), "a reason is given: {shown}");
    }
    loaded
}

/// The one skip reported for `path`, which must be there exactly once.
fn skipped<'a>(loaded: &'a Loaded, path: &Path) -> &'a Skipped {
    let found: Vec<&Skipped> = loaded.skipped.iter().filter(|s| s.source == path).collect();
    assert_eq!(found.len(), 1, "one skip for {}: {:?}", path.display(), loaded.skipped);
    found[0]
}

fn names(loaded: &Loaded) -> Vec<&str> {
    loaded.certs.iter().map(|c| c.name.as_str()).collect()
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(openssl::sha::sha256(der))
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn subject(cn: &str) -> X509Name {
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    n.append_entry_by_nid(Nid::ORGANIZATIONNAME, "cacerts-hook tests")
        .unwrap();
    n.build()
}

fn days_from_now(days: i64) -> Asn1Time {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Asn1Time::from_unix(now + days * 86_400).unwrap()
}

/// What to build; see [`Spec::build`].
struct Spec<'a> {
    cn: &'a str,
    /// 0 for X.509 v1, 2 for v3.
    version: i32,
    /// `Some(ca)`: a critical basicConstraints extension with that CA flag; `None`: none.
    ca: Option<bool>,
    /// Signed by this certificate's key (issuer name from it); self-signed when `None`.
    issuer: Option<(&'a X509, &'a PKey<Private>)>,
    /// Validity, in days from now.
    valid: (i64, i64),
    /// The certificate's key (a new P-256 key when `None`), and the signature's digest.
    key: Option<&'a PKey<Private>>,
    digest: MessageDigest,
}

impl Spec<'_> {
    fn new(cn: &str) -> Spec<'_> {
        Spec {
            cn,
            version: 2,
            ca: Some(true),
            issuer: None,
            valid: (-1, 30),
            key: None,
            digest: MessageDigest::sha256(),
        }
    }

    /// The certificate and its key.
    fn build(&self) -> (X509, PKey<Private>) {
        let key = self.key.cloned().unwrap_or_else(new_key);
        let name = subject(self.cn);
        let mut b = X509::builder().unwrap();
        b.set_version(self.version).unwrap();
        let mut serial = BigNum::new().unwrap();
        serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
        b.set_subject_name(&name).unwrap();
        match self.issuer {
            Some((cert, _)) => b.set_issuer_name(cert.subject_name()).unwrap(),
            None => b.set_issuer_name(&name).unwrap(),
        }
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&days_from_now(self.valid.0)).unwrap();
        b.set_not_after(&days_from_now(self.valid.1)).unwrap();
        if let Some(ca) = self.ca {
            let mut bc = BasicConstraints::new();
            bc.critical();
            if ca {
                bc.ca();
            }
            b.append_extension(bc.build().unwrap()).unwrap();
        }
        let signer = self.issuer.map(|(_, k)| k).unwrap_or(&key);
        b.sign(signer, self.digest).unwrap();
        (b.build(), key)
    }
}

fn pem(x: &X509) -> Vec<u8> {
    x.to_pem().unwrap()
}

fn write(dir: &Path, name: impl AsRef<OsStr>, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name.as_ref());
    std::fs::write(&path, bytes).unwrap();
    path
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

#[test]
fn one_ca_in_a_pem_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Corp Root CA");
    let path = ca.write(dir.path(), "corp-root.pem");
    let loaded = load(std::slice::from_ref(&path));
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    assert_eq!(loaded.certs.len(), 1);
    let c = &loaded.certs[0];
    assert_eq!(c.name, "corp-root");
    assert_eq!(c.der, ca.der);
    assert_eq!(c.pem, ca.pem);
    assert_eq!(hex::encode(c.sha256), ca.sha256);
    assert_eq!(c.source, path);
    assert_eq!(c.subject_hash, ca.hash);
    assert!(c.subject.contains("CN=Corp Root CA"), "{}", c.subject);
    assert_eq!(
        hex::encode(c.sha1),
        openssl_cli(&["x509", "-noout", "-fingerprint", "-sha1", "-in"], &path)
            .split_once('=')
            .unwrap()
            .1
            .replace(':', "")
            .to_ascii_lowercase()
    );
}

#[test]
fn several_cas_in_one_pem_file_are_numbered_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let cas: Vec<TestCa> = (1..=3).map(|i| TestCa::new(&format!("Bundle CA {i}"))).collect();
    // Text around and between the blocks, as bundles carry (comments, `openssl x509 -text`).
    let mut text = String::from("# Corp bundle\n");
    for ca in &cas {
        text.push_str(&format!("Subject: CN={}\n", ca.cn));
        text.push_str(&ca.pem);
        text.push('\n');
    }
    let path = write(dir.path(), "bundle.pem", &text);
    let loaded = load(std::slice::from_ref(&path));
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    assert_eq!(names(&loaded), ["bundle-1", "bundle-2", "bundle-3"]);
    for (c, ca) in loaded.certs.iter().zip(&cas) {
        assert_eq!(c.der, ca.der);
        assert_eq!(c.source, path);
    }

    // A leaf in the middle is skipped, named by its position; the others keep their numbers.
    let (root, root_key) = Spec::new("Mixed Root").build();
    let (leaf, _) = Spec {
        ca: Some(false),
        issuer: Some((&root, &root_key)),
        ..Spec::new("leaf.example")
    }
    .build();
    let mixed = write(
        dir.path(),
        "mixed.crt",
        [cas[0].pem.as_bytes(), &pem(&leaf), &pem(&root)].concat(),
    );
    let loaded = load(std::slice::from_ref(&mixed));
    assert_eq!(names(&loaded), ["mixed-1", "mixed-3"]);
    let s = skipped(&loaded, &mixed);
    assert!(s.reason.contains("2 of 3"), "{s}");
    assert!(s.reason.contains("leaf.example"), "{s}");
}

#[test]
fn a_der_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("DER Root");
    for file in ["root.der", "root.cer", "root.crt"] {
        let path = write(dir.path(), file, &ca.der);
        let loaded = load(std::slice::from_ref(&path));
        assert!(loaded.skipped.is_empty(), "{file}: {:?}", loaded.skipped);
        assert_eq!(names(&loaded), ["root"]);
        assert_eq!(loaded.certs[0].der, ca.der);
        assert_eq!(loaded.certs[0].pem, ca.pem, "{file}: re-encoded as PEM");
        assert_eq!(loaded.certs[0].subject_hash, ca.hash);
    }
}

/// A directory: its files in sorted order, not recursive; hidden entries and the `..data` style
/// entries of a mounted Kubernetes Secret or ConfigMap left out; symlinks to files followed, so a
/// Secret's key is loaded exactly once.
#[test]
fn a_directory_of_mixed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    std::fs::create_dir(&dir).unwrap();
    let [a, b, c, d, hidden, nested, secret] =
        ["A", "B", "C", "D", "Hidden", "Nested", "Secret"].map(|n| TestCa::new(&format!("Dir {n}")));
    // Created out of order.
    write(&dir, "c-der.cer", &c.der);
    write(&dir, "b.pem", &b.pem);
    write(&dir, "a.crt", &a.pem);
    write(&dir, ".hidden.pem", &hidden.pem);
    std::fs::create_dir(dir.join("sub")).unwrap();
    write(&dir.join("sub"), "nested.pem", &nested.pem);
    // A symlink to a file outside the directory is followed.
    let outside = write(tmp.path(), "outside.pem", &d.pem);
    symlink(&outside, dir.join("d-link.pem")).unwrap();
    // A mounted Secret: the real files in a timestamped hidden directory, `..data` pointing at
    // it, and each key a symlink through `..data`.
    std::fs::create_dir(dir.join("..2024_01_01")).unwrap();
    write(&dir.join("..2024_01_01"), "ca.crt", &secret.pem);
    symlink("..2024_01_01", dir.join("..data")).unwrap();
    symlink("..data/ca.crt", dir.join("ca.crt")).unwrap();

    let loaded = load(std::slice::from_ref(&dir));
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    assert_eq!(
        names(&loaded),
        ["a", "b", "c-der", "ca", "d-link"],
        "sorted by file name"
    );
    let ders: Vec<&Vec<u8>> = loaded.certs.iter().map(|c| &c.der).collect();
    assert_eq!(ders, [&a.der, &b.der, &c.der, &secret.der, &d.der]);
    assert_eq!(
        loaded.certs.iter().filter(|c| c.der == secret.der).count(),
        1,
        "the Secret's key once"
    );
    assert_eq!(loaded.certs[3].source, dir.join("ca.crt"));
    for left_out in [&hidden, &nested] {
        assert!(!loaded.certs.iter().any(|c| c.der == left_out.der), "{}", left_out.cn);
    }

    // A bad file among them is reported by name; the rest still load.
    let bad = write(
        &dir,
        "broken.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let loaded = load(std::slice::from_ref(&dir));
    assert_eq!(loaded.certs.len(), 5);
    skipped(&loaded, &bad);
    assert_eq!(loaded.skipped.len(), 1, "{:?}", loaded.skipped);
}

#[test]
fn a_leaf_certificate_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (root, root_key) = Spec::new("Issuing Root").build();
    let (leaf, _) = Spec {
        ca: Some(false),
        issuer: Some((&root, &root_key)),
        ..Spec::new("server.example")
    }
    .build();
    let (self_signed_leaf, _) = Spec {
        ca: Some(false),
        ..Spec::new("self-signed.example")
    }
    .build();
    let good = TestCa::new("Good CA");
    let inputs = [
        write(dir.path(), "leaf.pem", pem(&leaf)),
        write(dir.path(), "self-signed-leaf.pem", pem(&self_signed_leaf)),
        good.write(dir.path(), "good.pem"),
    ];
    let loaded = load(&inputs);
    assert_eq!(names(&loaded), ["good"]);
    for path in &inputs[..2] {
        let s = skipped(&loaded, path);
        assert!(s.reason.contains("not a CA"), "{s}");
        assert!(s.reason.contains("CA:FALSE"), "{s}");
    }
}

#[test]
fn without_basic_constraints_only_a_self_signed_v1_root_is_a_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (root, root_key) = Spec::new("Issuing Root").build();
    let (v1_root, _) = Spec {
        version: 0,
        ca: None,
        ..Spec::new("Legacy V1 Root")
    }
    .build();
    assert_eq!(v1_root.version(), 0);
    assert!(v1_root.to_text().unwrap().windows(10).all(|w| w != b"X509v3 ext"));
    let (v3_no_bc, _) = Spec {
        ca: None,
        ..Spec::new("V3 Without Constraints")
    }
    .build();
    let (v1_issued, _) = Spec {
        version: 0,
        ca: None,
        issuer: Some((&root, &root_key)),
        ..Spec::new("V1 Issued")
    }
    .build();
    // Subject equal to issuer, but signed by another key: not self-signed.
    let (v1_forged, _) = Spec {
        version: 0,
        ca: None,
        issuer: Some((&root, &root_key)),
        ..Spec::new("Issuing Root")
    }
    .build();
    let inputs = [
        write(dir.path(), "v1-root.pem", pem(&v1_root)),
        write(dir.path(), "v3-no-bc.pem", pem(&v3_no_bc)),
        write(dir.path(), "v1-issued.pem", pem(&v1_issued)),
        write(dir.path(), "v1-forged.pem", pem(&v1_forged)),
    ];
    let loaded = load(&inputs);
    assert_eq!(names(&loaded), ["v1-root"]);
    assert_eq!(loaded.certs[0].der, v1_root.to_der().unwrap());
    for path in &inputs[1..] {
        let s = skipped(&loaded, path);
        assert!(s.reason.contains("not a CA"), "{s}");
    }
    assert_eq!(loaded.skipped.len(), 3);
}

/// The self-signature of a version 1 root is checked for the algorithms roots use (RSA with SHA-1
/// or SHA-2, ECDSA on P-256 and P-384, Ed25519); a root signed otherwise is skipped with a reason
/// that says so, never taken unchecked.
#[test]
fn version_1_roots_of_every_common_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let p384 = PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap()).unwrap();
    let ed25519 = PKey::generate_ed25519().unwrap();
    let p521 = PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::SECP521R1).unwrap()).unwrap()).unwrap();
    let v1 = |cn, key, digest| {
        Spec {
            version: 0,
            ca: None,
            key: Some(key),
            digest,
            ..Spec::new(cn)
        }
        .build()
        .0
    };
    let good = [
        ("rsa-sha1.pem", v1("V1 RSA SHA-1", &rsa, MessageDigest::sha1())),
        ("rsa-sha256.pem", v1("V1 RSA SHA-256", &rsa, MessageDigest::sha256())),
        ("rsa-sha512.pem", v1("V1 RSA SHA-512", &rsa, MessageDigest::sha512())),
        ("p384.pem", v1("V1 P-384", &p384, MessageDigest::sha384())),
        ("ed25519.pem", v1("V1 Ed25519", &ed25519, MessageDigest::null())),
    ];
    let inputs: Vec<PathBuf> = good.iter().map(|(f, x)| write(dir.path(), f, pem(x))).collect();
    let loaded = load(&inputs);
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    assert_eq!(loaded.certs.len(), good.len());

    // Another key's signature, under each algorithm: not self-signed.
    let other = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let (issuer, _) = Spec {
        key: Some(&other),
        ..Spec::new("V1 RSA SHA-256")
    }
    .build();
    let (forged, _) = Spec {
        version: 0,
        ca: None,
        key: Some(&rsa),
        issuer: Some((&issuer, &other)),
        ..Spec::new("V1 RSA SHA-256")
    }
    .build();
    let forged = write(dir.path(), "forged.pem", pem(&forged));
    let unsupported = write(
        dir.path(),
        "p521.pem",
        pem(&v1("V1 P-521", &p521, MessageDigest::sha512())),
    );
    let loaded = load(&[forged.clone(), unsupported.clone()]);
    assert!(loaded.certs.is_empty(), "{:?}", names(&loaded));
    assert!(skipped(&loaded, &forged).reason.contains("not a CA"));
    let s = skipped(&loaded, &unsupported);
    assert!(
        s.reason.contains("not a CA") && s.reason.contains("cannot be checked"),
        "{s}"
    );
}

#[test]
fn an_expired_ca_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (expired, _) = Spec {
        valid: (-60, -1),
        ..Spec::new("Expired Root")
    }
    .build();
    let good = TestCa::new("Good CA");
    let inputs = [
        write(dir.path(), "expired.pem", pem(&expired)),
        good.write(dir.path(), "good.pem"),
    ];
    let loaded = load(&inputs);
    assert_eq!(names(&loaded), ["good"]);
    let s = skipped(&loaded, &inputs[0]);
    assert!(s.reason.contains("expired"), "{s}");
    assert!(s.reason.contains("Expired Root"), "{s}");
}

/// A file with a private key in it is refused as a whole, whatever else it holds, and says why.
#[test]
fn a_file_holding_a_private_key_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, key) = Spec::new("Keyed Root").build();
    let ec = key.ec_key().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("pkcs8-key.pem", key.private_key_to_pem_pkcs8().unwrap()),
        ("ec-key.pem", ec.private_key_to_pem().unwrap()),
        (
            "encrypted-key.pem",
            key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), b"secret")
                .unwrap(),
        ),
        (
            "cert-then-key.pem",
            [pem(&ca), key.private_key_to_pem_pkcs8().unwrap()].concat(),
        ),
        (
            "key-then-cert.pem",
            [ec.private_key_to_pem().unwrap(), pem(&ca)].concat(),
        ),
        ("pkcs8-key.der", key.private_key_to_pkcs8().unwrap()),
        ("ec-key.der", ec.private_key_to_der().unwrap()),
        (
            "encrypted-pkcs8-key.der",
            key.private_key_to_pkcs8_passphrase(Cipher::aes_256_cbc(), b"secret")
                .unwrap(),
        ),
        (
            "rsa-key.der",
            Rsa::generate(2048).unwrap().private_key_to_der().unwrap(),
        ),
        (
            "dsa-key.der",
            Dsa::generate(2048).unwrap().private_key_to_der().unwrap(),
        ),
        (
            "ed25519-key.der",
            PKey::generate_ed25519().unwrap().private_key_to_pkcs8().unwrap(),
        ),
    ];
    let good = TestCa::new("Good CA");
    let mut inputs: Vec<PathBuf> = cases.iter().map(|(n, b)| write(dir.path(), n, b)).collect();
    inputs.push(good.write(dir.path(), "good.pem"));
    let loaded = load(&inputs);
    assert_eq!(names(&loaded), ["good"], "nothing from a file with a key");
    for path in &inputs[..cases.len()] {
        let s = skipped(&loaded, path);
        assert!(s.reason.contains("private key"), "{s}");
    }
}

#[test]
fn unparseable_and_empty_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let good = TestCa::new("Good CA");
    // Deterministic noise (xorshift), so a failure can be reproduced.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut bad_body = good.pem.clone();
    let at = bad_body.find('\n').unwrap() + 10;
    bad_body.replace_range(at..at + 4, "*%$#");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "bad-base64.pem",
            b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n".to_vec(),
        ),
        ("corrupted.pem", bad_body.into_bytes()),
        ("truncated.pem", good.pem.as_bytes()[..good.pem.len() / 2].to_vec()),
        ("random.bin", noise),
        ("truncated.der", good.der[..good.der.len() - 10].to_vec()),
        ("empty.pem", Vec::new()),
        ("text.pem", b"just some text\n".to_vec()),
    ];
    let mut inputs: Vec<PathBuf> = cases.iter().map(|(n, b)| write(dir.path(), n, b)).collect();
    inputs.push(good.write(dir.path(), "good.pem"));
    let loaded = load(&inputs);
    assert_eq!(names(&loaded), ["good"]);
    for path in &inputs[..cases.len()] {
        skipped(&loaded, path);
    }
    assert_eq!(loaded.skipped.len(), cases.len());
}

/// The same certificate given twice (two files, PEM and DER, a file and a directory holding it)
/// is installed once, from its first source; the repeats are not errors.
#[test]
fn the_same_certificate_twice_is_loaded_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Twice CA");
    let other = TestCa::new("Other CA");
    let sub = dir.path().join("mounted");
    std::fs::create_dir(&sub).unwrap();
    let inputs = [
        ca.write(dir.path(), "first.pem"),
        ca.write(dir.path(), "second.pem"),
        write(dir.path(), "third.der", &ca.der),
        write(
            dir.path(),
            "bundle.pem",
            [other.pem.as_str(), ca.pem.as_str(), other.pem.as_str()].concat(),
        ),
        ca.write(&sub, "again.crt"),
        sub.clone(),
    ];
    let loaded = load(&inputs);
    assert!(loaded.skipped.is_empty(), "repeats are no errors: {:?}", loaded.skipped);
    assert_eq!(names(&loaded), ["first", "bundle-1"]);
    assert_eq!(loaded.certs[0].source, inputs[0]);
    assert_eq!(sha256_hex(&loaded.certs[0].der), ca.sha256);
    assert_eq!(sha256_hex(&loaded.certs[1].der), other.sha256);
}

#[test]
fn missing_and_unreadable_paths_are_skipped_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let good = TestCa::new("Good CA");
    let missing = dir.path().join("missing.pem");
    let fifo = dir.path().join("fifo.pem");
    mkfifo(&fifo);
    let dangling = dir.path().join("dangling.pem");
    symlink("nowhere.pem", &dangling).unwrap();
    let inputs = [
        missing.clone(),
        fifo.clone(),
        dangling.clone(),
        good.write(dir.path(), "good.pem"),
    ];
    let loaded = load(&inputs);
    assert_eq!(names(&loaded), ["good"]);
    assert!(skipped(&loaded, &missing).reason.contains("cannot read"));
    assert!(skipped(&loaded, &dangling).reason.contains("cannot read"));
    let s = skipped(&loaded, &fifo);
    assert!(s.reason.contains("not a regular file"), "{s}");

    // A FIFO (and a symlink to one) inside a directory does not block either.
    let certs_dir = dir.path().join("certs");
    std::fs::create_dir(&certs_dir).unwrap();
    mkfifo(&certs_dir.join("a-fifo.crt"));
    symlink("a-fifo.crt", certs_dir.join("b-link.crt")).unwrap();
    good.write(&certs_dir, "c.crt");
    let loaded = load(std::slice::from_ref(&certs_dir));
    assert_eq!(names(&loaded), ["c"]);
}

/// Names are the file's stem, lower-cased, `[a-z0-9._-]` only, never hidden, never empty, and
/// short enough to build file names from.
#[test]
fn names_are_sanitised_file_stems() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&OsStr, &str)> = vec![
        (OsStr::new("Corp Root CA (2024).pem"), "corp-root-ca-2024"),
        (OsStr::new("  spaced   out  .crt"), "spaced-out"),
        (
            OsStr::new("Zertifizierungsstelle Ärzte.pem"),
            "zertifizierungsstelle-rzte",
        ),
        (OsStr::new("证书.pem"), "ca"),
        (OsStr::new(".hidden-root.pem"), "hidden-root"),
        (OsStr::new("..data.pem"), "data"),
        (OsStr::new("...pem"), "ca"),
        (OsStr::new("noext"), "noext"),
        (OsStr::new("v1.2.root.crt"), "v1.2.root"),
        (OsStr::new("trailing-.pem"), "trailing"),
        (OsStr::new("-dash--Run_.pem"), "-dash--run_"),
        (OsStr::from_bytes(b"bad-\xff\xfe-utf8.pem"), "bad--utf8"),
    ];
    for (file, expect) in cases {
        let ca = TestCa::new("Named CA");
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        let path = write(sub.path(), file, &ca.pem);
        let loaded = load(std::slice::from_ref(&path));
        assert!(loaded.skipped.is_empty(), "{file:?}: {:?}", loaded.skipped);
        assert_eq!(names(&loaded), [expect], "{file:?}");
        usable(expect);
    }

    // Every name, whatever the file name, is usable inside `cacerts-hook-<name>-<sha256>.pem`.
    let long = format!("{}.pem", "Very Long Name ".repeat(16).trim_end());
    let ca = TestCa::new("Long CA");
    let loaded = load(&[ca.write(dir.path(), &long)]);
    let name = &loaded.certs[0].name;
    assert!(
        name.len() <= 64,
        "{} bytes: cacerts-hook-{name}-<fingerprint>.pem would pass NAME_MAX",
        name.len()
    );
    assert!(name.starts_with("very-long-name-very-long-name"), "{name}");
    usable(name);
    // And installs: every file named after it fits.
    let rootfs = tempfile::tempdir().unwrap();
    build(rootfs.path(), &fixtures::debian(&Base::new()));
    let root = ContainerRoot::open(rootfs.path()).unwrap();
    let (_, plan) = installer::plan(&root, &loaded.certs, &Settings::default()).unwrap();
    install(&root, &plan, &dir.path().join("journal"), &Default::default()).unwrap();
}

fn usable(name: &str) {
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)),
        "{name}"
    );
    assert!(
        !name.is_empty() && !name.starts_with('.') && !name.ends_with(['.', '-']),
        "{name}"
    );
}

/// The subject hash we name links after is what `openssl x509 -subject_hash` prints for the same
/// file, including for subjects that need OpenSSL's canonical form (case, spacing, UTF-8).
#[test]
fn subject_hash_matches_the_openssl_cli() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key();
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_nid(Nid::COUNTRYNAME, "DE").unwrap();
    n.append_entry_by_nid(Nid::ORGANIZATIONNAME, "  Müller   &  SÖHNE  GmbH ")
        .unwrap();
    n.append_entry_by_nid(Nid::ORGANIZATIONALUNITNAME, "PKI").unwrap();
    n.append_entry_by_nid(Nid::COMMONNAME, "Müller ROOT  CA 2024").unwrap();
    let name = n.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&days_from_now(-1)).unwrap();
    b.set_not_after(&days_from_now(30)).unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let odd = b.build();

    let plain = TestCa::new("Plain CA");
    for (file, bytes) in [("odd.pem", pem(&odd)), ("plain.der", plain.der.clone())] {
        let path = write(dir.path(), file, &bytes);
        let loaded = load(std::slice::from_ref(&path));
        assert_eq!(loaded.certs.len(), 1, "{file}: {:?}", loaded.skipped);
        let form = if file.ends_with(".der") { "DER" } else { "PEM" };
        let cli = openssl_cli(&["x509", "-noout", "-subject_hash", "-inform", form, "-in"], &path);
        assert_eq!(format!("{:08x}", loaded.certs[0].subject_hash), cli, "{file}");
    }
}

/// OpenSSL's `TRUSTED CERTIFICATE` form (`openssl x509 -trustout`, RHEL's `ca-bundle.trust.crt`)
/// carries trust settings an anchor cannot keep (a rejected purpose, say): such blocks are not
/// loaded, and never dropped silently; the plain blocks beside them still load.
#[test]
fn a_trusted_certificate_block_is_reported_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let plain = TestCa::new("Plain CA");
    let trusted = TestCa::new("Trusted Form CA");
    let only = write(dir.path(), "trusted.pem", trusted.trusted_pem());
    let mixed = write(
        dir.path(),
        "mixed.pem",
        [trusted.trusted_pem(), plain.pem.clone(), trusted.trusted_pem()].concat(),
    );
    let loaded = load(std::slice::from_ref(&only));
    assert!(loaded.certs.is_empty(), "{:?}", names(&loaded));
    let s = skipped(&loaded, &only);
    assert!(s.reason.contains("1 TRUSTED CERTIFICATE block"), "{s}");

    let loaded = load(std::slice::from_ref(&mixed));
    assert_eq!(names(&loaded), ["mixed"]);
    assert_eq!(loaded.certs[0].der, plain.der);
    let s = skipped(&loaded, &mixed);
    assert!(s.reason.contains("2 TRUSTED CERTIFICATE block"), "{s}");
}
