//! Data for the benchmarks, generated once and cached under `target/bench-data/`.
//!
//! Two pools of certificates: the *image* pool (up to 15,000 self-signed CA certificates that look
//! like a distribution's roots in size: RSA 2048 and 4096 and EC P-384 keys, about 1.5 KB of PEM
//! each, the mix of Mozilla's list) from which trust-store fixtures of 150, 1,500 and 15,000
//! certificates are made, and the *local* pool (up to 1,000 small EC CA certificates, one PEM file
//! each) that stands for the operator's CAs to install.

use std::path::{Path, PathBuf};

use openssl::ec::{EcGroup, EcKey};
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509};

use crate::ca::TestCa;
use crate::fixtures::Base;

/// Certificates in the image pool.
pub const IMAGE_POOL: usize = 15_000;
/// Certificates in the local pool.
pub const LOCAL_POOL: usize = 1_000;

/// `$CARGO_TARGET_DIR/bench-data`, else the workspace's `target/bench-data` (created).
pub fn data_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("bench-data");
    std::fs::create_dir_all(&dir).expect("create bench-data");
    dir
}

fn keys() -> Vec<PKey<Private>> {
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey"));
    }
    keys.push(PKey::from_rsa(Rsa::generate(4096).expect("rsa")).expect("pkey"));
    let p384 = EcGroup::from_curve_name(Nid::SECP384R1).expect("curve");
    for _ in 0..2 {
        keys.push(PKey::from_ec_key(EcKey::generate(&p384).expect("ec")).expect("pkey"));
    }
    keys
}

/// A self-signed CA certificate with subject `CN=<cn>, O=<org>`, valid ten years.
fn self_signed(cn: &str, org: &str, key: &PKey<Private>, digest: MessageDigest) -> X509 {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_nid(Nid::COUNTRYNAME, "XX").expect("c");
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, org).expect("o");
    name.append_entry_by_nid(Nid::COMMONNAME, cn).expect("cn");
    let name = name.build();
    crate::ca::build_ca(&name, key, digest, 3650, false)
}

/// Writes `bytes` to `path` through a temporary name, so that a cache file is whole or absent.
fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).expect("write cache file");
    std::fs::rename(&tmp, path).expect("rename cache file");
}

/// The image pool as one PEM file (generated on first use; about 15 s).
pub fn image_pool_file() -> PathBuf {
    let path = data_dir().join(format!("image-pool-{IMAGE_POOL}.pem"));
    if !path.exists() {
        let keys = keys();
        let mut pem = Vec::new();
        for i in 0..IMAGE_POOL {
            let key = &keys[i % keys.len()];
            let digest = if i % keys.len() >= 6 {
                MessageDigest::sha384()
            } else {
                MessageDigest::sha256()
            };
            let x = self_signed(
                &format!("Benchmark Root Certification Authority {i:05}"),
                "Benchmark Trust Services",
                key,
                digest,
            );
            pem.extend(x.to_pem().expect("pem"));
        }
        write_atomic(&path, &pem);
    }
    path
}

/// A [`TestCa`] for an existing certificate, with the hashes computed in process.
pub fn test_ca(x: &X509) -> TestCa {
    let der = x.to_der().expect("der");
    let subject = x.subject_name().to_der().expect("subject der");
    let md5 = hash(MessageDigest::md5(), &subject).expect("md5");
    let cn = x
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .unwrap_or_default();
    TestCa {
        cn,
        pem: String::from_utf8(x.to_pem().expect("pem")).expect("ascii"),
        sha256: hex::encode(x.digest(MessageDigest::sha256()).expect("digest")),
        hash: x.subject_name_hash(),
        hash_old: u32::from_le_bytes([md5[0], md5[1], md5[2], md5[3]]),
        der,
    }
}

/// The first `n` certificates of the image pool.
pub fn image_certs(n: usize) -> Vec<TestCa> {
    assert!(n <= IMAGE_POOL, "the image pool holds {IMAGE_POOL} certificates");
    let bytes = std::fs::read(image_pool_file()).expect("read image pool");
    X509::stack_from_pem(&bytes)
        .expect("parse image pool")
        .iter()
        .take(n)
        .map(test_ca)
        .collect()
}

/// The CAs of an image whose store holds `n` certificates: the three of [`Base::new`] and
/// `n - 3` from the image pool.
pub fn base(n: usize) -> Base {
    let mut base = Base::new();
    base.cas.extend(image_certs(n.saturating_sub(base.cas.len())));
    base
}

/// A directory of `n` CA files (`ca-0000.pem`, ...) from the local pool, for `--certs`.
pub fn local_cas(n: usize) -> PathBuf {
    assert!(n <= LOCAL_POOL, "the local pool holds {LOCAL_POOL} certificates");
    let pool = data_dir().join(format!("local-pool-{LOCAL_POOL}"));
    if !pool.join("complete").exists() {
        let _ = std::fs::remove_dir_all(&pool);
        std::fs::create_dir_all(&pool).expect("create local pool");
        let p256 = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
        for i in 0..LOCAL_POOL {
            let key = PKey::from_ec_key(EcKey::generate(&p256).expect("ec")).expect("pkey");
            let x = self_signed(
                &format!("Corp Internal CA {i:04}"),
                "Benchmark Corp",
                &key,
                MessageDigest::sha256(),
            );
            std::fs::write(pool.join(format!("ca-{i:04}.pem")), x.to_pem().expect("pem")).expect("write CA");
        }
        std::fs::write(pool.join("complete"), "").expect("mark pool complete");
    }
    let dir = data_dir().join(format!("cas-{n}"));
    if !dir.join(".complete").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create CA dir");
        for i in 0..n {
            let name = format!("ca-{i:04}.pem");
            std::fs::copy(pool.join(&name), dir.join(&name)).expect("copy CA");
        }
        // Hidden: certificate loading skips dot files.
        std::fs::write(dir.join(".complete"), "").expect("mark CA dir complete");
    }
    dir
}
