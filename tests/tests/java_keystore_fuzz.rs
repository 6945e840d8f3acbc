//! The keystore parser on hostile bytes: truncated and mutated copies of real keystores, and
//! lengths that point far past the end, give errors, never a panic or a huge allocation.

use std::path::Path;
use std::process::{Command, Stdio};

use cacerts_core::stores::keystore::{Keystore, DEFAULT_PASSWORD};

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd} must be installed: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Real keystores made by keytool: JKS, encrypted PKCS#12, password-less PKCS#12, each with a
/// trusted certificate and a private key.
fn samples(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let pem = dir.join("ca.pem");
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=fuzz CA",
            "-keyout",
            dir.join("ca.key").to_str().unwrap(),
            "-out",
            pem.to_str().unwrap(),
        ],
    );
    let kinds: [(&str, &[&str]); 3] = [
        ("jks", &["-storetype", "JKS"]),
        ("pkcs12", &["-storetype", "PKCS12"]),
        (
            "pkcs12-nopass",
            &[
                "-J-Dkeystore.pkcs12.certProtectionAlgorithm=NONE",
                "-J-Dkeystore.pkcs12.macAlgorithm=NONE",
                "-J-Dkeystore.pkcs12.keyProtectionAlgorithm=PBEWithHmacSHA256AndAES_256",
                "-storetype",
                "PKCS12",
            ],
        ),
    ];
    let mut out = Vec::new();
    for (name, opts) in kinds {
        let store = dir.join(name);
        let s = store.to_str().unwrap();
        let mut a: Vec<&str> = opts.to_vec();
        a.extend([
            "-importcert",
            "-noprompt",
            "-alias",
            "ca",
            "-file",
            pem.to_str().unwrap(),
        ]);
        a.extend(["-keystore", s, "-storepass", "changeit"]);
        run("keytool", &a);
        let mut a: Vec<&str> = opts.to_vec();
        a.extend(["-genkeypair", "-alias", "key", "-keyalg", "EC", "-dname", "CN=k"]);
        a.extend(["-keystore", s, "-storepass", "changeit", "-keypass", "changeit"]);
        run("keytool", &a);
        out.push((name, std::fs::read(&store).unwrap()));
    }
    out
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Parses, and when that works, exercises every operation on the result.
fn exercise(bytes: &[u8]) -> bool {
    let Ok(mut ks) = Keystore::parse(bytes, DEFAULT_PASSWORD) else {
        return false;
    };
    let _ = ks.trusted();
    let _ = ks.aliases();
    ks.add_trusted("cacerts-hook-x", b"\x30\x03\x02\x01\x01");
    ks.remove_trusted(&["ca".to_owned(), "cacerts-hook-x".to_owned()]);
    if let Ok(out) = ks.to_bytes(DEFAULT_PASSWORD) {
        Keystore::parse(&out, DEFAULT_PASSWORD).expect("what we write parses back");
    }
    true
}

#[test]
fn truncated_and_mutated_keystores_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (name, original) in samples(tmp.path()) {
        assert!(exercise(&original), "{name}: the unmodified store parses");
        for len in 0..original.len() {
            assert!(!exercise(&original[..len]), "{name}: truncated to {len} bytes parsed");
        }
        // Encrypted stores cost a key derivation per attempt: fewer rounds.
        let rounds = if name == "pkcs12" { 600 } else { 6000 };
        let mut parsed = 0;
        for _ in 0..rounds {
            let mut m = original.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len());
                m[at] = match rng.below(4) {
                    0 => 0xFF,
                    1 => 0x00,
                    2 => m[at] ^ (1 << rng.below(8)),
                    _ => rng.next() as u8,
                };
            }
            if rng.below(8) == 0 {
                let at = rng.below(m.len());
                m.truncate(at);
            }
            parsed += exercise(&m) as usize;
        }
        eprintln!("{name}: {parsed} of {rounds} mutants still parsed");
    }
}

#[test]
fn lengths_past_the_end_are_errors() {
    // JKS: a huge entry count, then a huge certificate length.
    let mut jks = vec![0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2, 0xFF, 0xFF, 0xFF, 0xFF];
    jks.extend([0u8; 20]);
    assert!(Keystore::parse(&jks, DEFAULT_PASSWORD).is_err());
    let mut jks = vec![0xFE, 0xED, 0xFE, 0xED, 0, 0, 0, 2, 0, 0, 0, 1];
    jks.extend([0, 0, 0, 2, 0, 1, b'a']); // trusted cert, alias "a"
    jks.extend([0u8; 8]); // date
    jks.extend([0, 5]);
    jks.extend(b"X.509");
    jks.extend([0xFF, 0xFF, 0xFF, 0xF0]);
    jks.extend([0u8; 20]);
    assert!(Keystore::parse(&jks, DEFAULT_PASSWORD).is_err());
    // DER: a 2 GiB SEQUENCE in a few bytes; an indefinite length; nothing at all.
    for der in [
        &[0x30, 0x84, 0x7F, 0xFF, 0xFF, 0xFF, 0x02, 0x01, 0x03][..],
        &[0x30, 0x80, 0x02, 0x01, 0x03, 0, 0][..],
        &[0x30][..],
        &[][..],
    ] {
        assert!(Keystore::parse(der, DEFAULT_PASSWORD).is_err(), "{der:02x?}");
    }
}
