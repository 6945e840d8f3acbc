//! Throwaway CA certificates for tests, and independent checks of certificate files with the
//! real `openssl` command.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::{X509NameBuilder, X509NameRef, X509};

/// A generated self-signed CA certificate.
#[derive(Clone, Debug)]
pub struct TestCa {
    /// Common name.
    pub cn: String,
    /// PEM, newline-terminated.
    pub pem: String,
    /// DER.
    pub der: Vec<u8>,
    /// SHA-256 of the DER, lower-case hex.
    pub sha256: String,
    /// `openssl x509 -subject_hash`.
    pub hash: u32,
    /// `openssl x509 -subject_hash_old`.
    pub hash_old: u32,
}

impl TestCa {
    /// A new CA with subject `CN=<cn>, O=cacerts-hook tests`, valid for 30 days.
    pub fn new(cn: &str) -> TestCa {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
        let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("cn");
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "cacerts-hook tests")
            .expect("o");
        let name = name.build();
        let x = build_ca(&name, &key, MessageDigest::sha256(), 30, true);
        let der = x.to_der().expect("der");
        let pem = String::from_utf8(x.to_pem().expect("pem")).expect("ascii");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, &pem).expect("write");
        TestCa {
            cn: cn.to_owned(),
            sha256: hex::encode(x.digest(MessageDigest::sha256()).expect("digest")),
            hash: u32::from_str_radix(&openssl_cli(&["x509", "-noout", "-subject_hash", "-in"], &file), 16)
                .expect("hash"),
            hash_old: u32::from_str_radix(&openssl_cli(&["x509", "-noout", "-subject_hash_old", "-in"], &file), 16)
                .expect("hash"),
            pem,
            der,
        }
    }

    /// Writes the PEM to `dir/<file>` and returns the path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).expect("write CA");
        path
    }

    /// The certificate as `openssl x509 -trustout -setalias <cn>` writes it: a
    /// `TRUSTED CERTIFICATE` block with an alias and no trust settings.
    pub fn trusted_pem(&self) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = self.write(dir.path(), "ca.pem");
        let out = Command::new("openssl")
            .args(["x509", "-trustout", "-setalias", &self.cn, "-in"])
            .arg(&file)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl x509 -trustout failed");
        String::from_utf8(out.stdout).expect("ascii")
    }
}

/// A self-signed CA certificate for `name` and `key`: version 3, a random serial, valid from now
/// for `days`, critical `CA:TRUE` and `keyCertSign, cRLSign`, and a subject key identifier if
/// `ski`.
pub fn build_ca(name: &X509NameRef, key: &PKey<Private>, digest: MessageDigest, days: u32, ski: bool) -> X509 {
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let mut serial = BigNum::new().expect("bn");
    serial.rand(64, MsbOption::MAYBE_ZERO, false).expect("rand");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    b.set_subject_name(name).expect("subject");
    b.set_issuer_name(name).expect("issuer");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(days).expect("time"))
        .expect("na");
    b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
        .expect("bc");
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .expect("ku"),
    )
    .expect("ku");
    if ski {
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(None, None))
            .expect("ski");
        b.append_extension(ski).expect("ski");
    }
    b.sign(key, digest).expect("sign");
    b.build()
}

/// Runs `openssl ARGS PATH` and returns its trimmed standard output; panics on failure.
pub fn openssl_cli(args: &[&str], path: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg(path)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// SHA-256 fingerprints (hex) of every certificate in a file, as the real OpenSSL reads it
/// (`CERTIFICATE` and `TRUSTED CERTIFICATE` blocks alike, through `crl2pkcs7 -certfile`).
pub fn cert_set(path: &Path) -> BTreeSet<String> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return BTreeSet::new();
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg("openssl crl2pkcs7 -nocrl -certfile \"$1\" | openssl pkcs7 -print_certs")
        .arg("sh")
        .arg(path)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    X509::stack_from_pem(&out.stdout)
        .expect("parse openssl output")
        .iter()
        .map(|x| hex::encode(x.digest(MessageDigest::sha256()).expect("digest")))
        .collect()
}

/// SHA-256 fingerprint (hex) of the (first) certificate of a file, as `openssl x509` reads it.
pub fn first_cert(path: &Path) -> String {
    let out = openssl_cli(&["x509", "-noout", "-fingerprint", "-sha256", "-in"], path);
    out.split_once('=')
        .map(|(_, v)| v.replace(':', "").to_ascii_lowercase())
        .unwrap_or_else(|| panic!("no fingerprint for {}: {out}", path.display()))
}
