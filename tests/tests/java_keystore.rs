//! Java trust stores made by the real `keytool`, edited by our codec, checked by `keytool` again:
//! JKS, password-protected PKCS#12 (encrypted certificates and a MAC, the JDK 12-17 default),
//! MAC-only PKCS#12, and the password-less PKCS#12 of JDK 18+. Uninstall leaves no trace, and
//! takes only our entries out of a store the container changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cacerts_core::certs::{self, CaCert};
use cacerts_core::stores::java;
use cacerts_core::{install, uninstall, Change, ContainerRoot, Edit, Error, Plan};
use cacerts_testkit::{age, build, Node, Snapshot};

/// A throwaway CA certificate in `dir/<name>.pem`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let pem = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj"])
        .arg(format!("/CN={name} test CA"))
        .args(["-addext", "basicConstraints=critical,CA:TRUE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pem
}

fn load(pem: &Path) -> Vec<CaCert> {
    let loaded = certs::load(&[pem.to_owned()]);
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    loaded.certs
}

/// Runs keytool, which must succeed; returns its stdout and stderr together.
fn keytool(args: &[&str]) -> String {
    let out = Command::new("keytool")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("keytool must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "keytool {args:?} failed:\n{text}");
    text
}

/// How a store is made.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `-storetype JKS`.
    Jks,
    /// keytool's PKCS#12 default on JDK 17: certificates PBES2-encrypted, HMAC-SHA-256.
    Pkcs12,
    /// Certificates in the clear, with a MAC.
    Pkcs12MacOnly,
    /// No encryption, no MAC: JDK 18+'s `cacerts`.
    Pkcs12NoPassword,
}

impl Kind {
    fn options(self) -> Vec<&'static str> {
        match self {
            Kind::Jks => vec!["-storetype", "JKS"],
            Kind::Pkcs12 => vec!["-storetype", "PKCS12"],
            Kind::Pkcs12MacOnly => vec![
                "-J-Dkeystore.pkcs12.certProtectionAlgorithm=NONE",
                "-storetype",
                "PKCS12",
            ],
            Kind::Pkcs12NoPassword => vec![
                "-J-Dkeystore.pkcs12.certProtectionAlgorithm=NONE",
                "-J-Dkeystore.pkcs12.macAlgorithm=NONE",
                "-storetype",
                "PKCS12",
            ],
        }
    }
}

fn import(kind: Kind, store: &Path, alias: &str, pem: &Path, password: &str) {
    import_with(kind.options(), store, alias, pem, password);
}

/// `keytool -importcert` with `options` (store type, JVM properties) first.
fn import_with<'a>(mut args: Vec<&'a str>, store: &'a Path, alias: &'a str, pem: &'a Path, password: &'a str) {
    let store = store.to_str().unwrap();
    let pem = pem.to_str().unwrap();
    args.extend(["-importcert", "-noprompt", "-alias", alias, "-file", pem]);
    args.extend(["-keystore", store, "-storepass", password]);
    keytool(&args);
}

fn genkey(kind: Kind, store: &Path, alias: &str) {
    let mut args = kind.options();
    args.extend(["-genkeypair", "-alias", alias, "-keyalg", "EC", "-dname", "CN=service"]);
    args.extend(["-keystore", store.to_str().unwrap(), "-storepass", "changeit"]);
    args.extend(["-keypass", "changeit"]);
    keytool(&args);
}

/// `keytool -list -v` with the store password: any integrity failure makes keytool fail.
fn list(store: &Path) -> String {
    keytool(&[
        "-list",
        "-v",
        "-keystore",
        store.to_str().unwrap(),
        "-storepass",
        "changeit",
    ])
}

/// The entries of a `keytool -list -v` listing: (alias, entry type).
fn entries(listing: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut alias = None;
    for line in listing.lines() {
        if let Some(a) = line.strip_prefix("Alias name: ") {
            alias = Some(a.trim().to_owned());
        } else if let Some(t) = line.strip_prefix("Entry type: ") {
            out.push((alias.take().unwrap(), t.trim().to_owned()));
        }
    }
    out.sort();
    out
}

fn pair(a: &str, t: &str) -> (String, String) {
    (a.to_owned(), t.to_owned())
}

struct Fixture {
    tmp: tempfile::TempDir,
    rootfs: PathBuf,
    ours: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let ours = make_ca(tmp.path(), "corp-root");
    Fixture { tmp, rootfs, ours }
}

fn plan_java(rootfs: &Path, certs: &[CaCert], env: &[String]) -> Plan {
    let root = ContainerRoot::open(rootfs).unwrap();
    Plan {
        changes: java::plan(&root, certs, env).unwrap(),
    }
}

/// The Debian layout: the JDK's file is a link to the system store, found once.
fn round_trip(kind: Kind, with_key: bool) {
    let f = fixture();
    let image_ca = make_ca(f.tmp.path(), "image-ca");
    let store = f.tmp.path().join("cacerts");
    import(kind, &store, "debian:image-ca.pem", &image_ca, "changeit");
    if with_key {
        genkey(kind, &store, "service-key");
    }
    build(
        &f.rootfs,
        &[
            Node::file("etc/ssl/certs/java/cacerts", std::fs::read(&store).unwrap()),
            Node::symlink(
                "usr/lib/jvm/java-17-openjdk-amd64/lib/security/cacerts",
                "/etc/ssl/certs/java/cacerts",
            ),
            Node::symlink("usr/lib/jvm/default-java", "java-17-openjdk-amd64"),
        ],
    );
    age(&f.rootfs);
    let before = Snapshot::take(&f.rootfs);
    let host_store = f.rootfs.join("etc/ssl/certs/java/cacerts");
    let original = std::fs::read(&host_store).unwrap();

    let certs = load(&f.ours);
    let plan = plan_java(&f.rootfs, &certs, &[]);
    assert_eq!(plan.changes.len(), 1, "{kind:?}: one physical store: {plan:?}");
    let Change::EditFile { path, edit } = &plan.changes[0] else {
        panic!("{plan:?}")
    };
    assert_eq!(path, Path::new("/etc/ssl/certs/java/cacerts"));
    assert!(
        matches!(edit, Edit::KeystoreAdd { entries, .. } if entries.len() == 1 && entries[0].0 == "cacerts-hook-corp-root")
    );

    let journal = f.tmp.path().join("state/j.journal");
    let root = ContainerRoot::open(&f.rootfs).unwrap();
    let report = install(&root, &plan, &journal, &Default::default()).unwrap();
    assert_eq!(report.edited, vec![PathBuf::from("/etc/ssl/certs/java/cacerts")]);

    let after = std::fs::read(&host_store).unwrap();
    match kind {
        Kind::Jks => assert!(after.starts_with(&[0xFE, 0xED, 0xFE, 0xED]), "still JKS"),
        _ => assert_eq!(after[0], 0x30, "still PKCS#12"),
    }
    let listing = list(&host_store);
    let want_type = if matches!(kind, Kind::Jks) { "JKS" } else { "PKCS12" };
    assert!(listing.contains(&format!("Keystore type: {want_type}")), "{listing}");
    let mut want = vec![
        pair("cacerts-hook-corp-root", "trustedCertEntry"),
        pair("debian:image-ca.pem", "trustedCertEntry"),
    ];
    if with_key {
        want.push(pair("service-key", "PrivateKeyEntry"));
    }
    want.sort();
    assert_eq!(entries(&listing), want, "{kind:?}:\n{listing}");
    assert!(listing.contains("CN=corp-root test CA"), "{listing}");
    if matches!(kind, Kind::Pkcs12 | Kind::Pkcs12MacOnly) {
        // A second implementation agrees on the MAC and the encryption.
        let out = Command::new("openssl")
            .args(["pkcs12", "-info", "-nokeys", "-passin", "pass:changeit", "-in"])
            .arg(&host_store)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "openssl pkcs12: {text}");
        assert!(text.contains("MAC: sha256"), "{text}");
    }
    if matches!(kind, Kind::Pkcs12NoPassword) {
        // Still password-less: keytool lists it without a password and without the warning it
        // gives for a store whose MAC it could not check.
        let bare = keytool(&["-list", "-keystore", host_store.to_str().unwrap()]);
        assert!(bare.contains("cacerts-hook-corp-root"), "{bare}");
        assert!(!bare.contains("WARNING"), "{bare}");
    }

    // A second plan finds the certificate present and does nothing.
    assert!(plan_java(&f.rootfs, &certs, &[]).is_empty());

    let report = uninstall(&root, &journal).unwrap();
    assert_eq!(report.restored, vec![PathBuf::from("/etc/ssl/certs/java/cacerts")]);
    before.assert_same(&Snapshot::take(&f.rootfs), format!("{kind:?} after uninstall"));
    assert_eq!(std::fs::read(&host_store).unwrap(), original);
}

#[test]
fn jks_round_trip() {
    round_trip(Kind::Jks, false);
}

#[test]
fn jks_with_private_key_round_trip() {
    round_trip(Kind::Jks, true);
}

#[test]
fn pkcs12_encrypted_round_trip() {
    round_trip(Kind::Pkcs12, false);
}

#[test]
fn pkcs12_with_private_key_round_trip() {
    round_trip(Kind::Pkcs12, true);
}

#[test]
fn pkcs12_mac_only_round_trip() {
    round_trip(Kind::Pkcs12MacOnly, false);
}

#[test]
fn pkcs12_password_less_round_trip() {
    round_trip(Kind::Pkcs12NoPassword, false);
}

/// After install the container adds its own entry: uninstall takes out ours only.
fn container_adds_an_entry(kind: Kind) {
    let f = fixture();
    let image_ca = make_ca(f.tmp.path(), "image-ca");
    let theirs = make_ca(f.tmp.path(), "later-ca");
    let store = f.tmp.path().join("cacerts");
    import(kind, &store, "image", &image_ca, "changeit");
    build(
        &f.rootfs,
        &[Node::file(
            "opt/java/openjdk/lib/security/cacerts",
            std::fs::read(&store).unwrap(),
        )],
    );
    age(&f.rootfs);
    let env = vec!["PATH=/usr/bin".to_owned(), "JAVA_HOME=/opt/java/openjdk".to_owned()];
    let plan = plan_java(&f.rootfs, &load(&f.ours), &env);
    assert_eq!(plan.changes.len(), 1, "JAVA_HOME names the same file once: {plan:?}");

    let journal = f.tmp.path().join("state/j.journal");
    let root = ContainerRoot::open(&f.rootfs).unwrap();
    install(&root, &plan, &journal, &Default::default()).unwrap();
    let host_store = f.rootfs.join("opt/java/openjdk/lib/security/cacerts");
    import(kind, &host_store, "theirs", &theirs, "changeit");
    assert_eq!(entries(&list(&host_store)).len(), 3);

    let report = uninstall(&root, &journal).unwrap();
    assert_eq!(
        report.stripped,
        vec![PathBuf::from("/opt/java/openjdk/lib/security/cacerts")]
    );
    let listing = list(&host_store);
    assert_eq!(
        entries(&listing),
        vec![pair("image", "trustedCertEntry"), pair("theirs", "trustedCertEntry")],
        "{kind:?}:\n{listing}"
    );
    assert!(!journal.exists());
}

#[test]
fn jks_container_added_entry_is_kept() {
    container_adds_an_entry(Kind::Jks);
}

#[test]
fn pkcs12_container_added_entry_is_kept() {
    container_adds_an_entry(Kind::Pkcs12);
}

#[test]
fn pkcs12_password_less_container_added_entry_is_kept() {
    container_adds_an_entry(Kind::Pkcs12NoPassword);
}

/// The container regenerated the store (update-ca-certificates): nothing of ours is left in it,
/// and uninstall leaves it exactly as the container wrote it.
#[test]
fn regenerated_store_is_left_alone() {
    let f = fixture();
    let image_ca = make_ca(f.tmp.path(), "image-ca");
    let store = f.tmp.path().join("cacerts");
    import(Kind::Jks, &store, "image", &image_ca, "changeit");
    build(
        &f.rootfs,
        &[Node::file("etc/ssl/certs/java/cacerts", std::fs::read(&store).unwrap())],
    );
    let plan = plan_java(&f.rootfs, &load(&f.ours), &[]);
    let journal = f.tmp.path().join("state/j.journal");
    let root = ContainerRoot::open(&f.rootfs).unwrap();
    install(&root, &plan, &journal, &Default::default()).unwrap();

    let host_store = f.rootfs.join("etc/ssl/certs/java/cacerts");
    let regenerated = f.tmp.path().join("regenerated");
    import(Kind::Jks, &regenerated, "debian:image.pem", &image_ca, "changeit");
    std::fs::write(&host_store, std::fs::read(&regenerated).unwrap()).unwrap();
    let written = std::fs::read(&host_store).unwrap();

    let report = uninstall(&root, &journal).unwrap();
    assert!(report.stripped.is_empty() && report.restored.is_empty(), "{report:?}");
    assert_eq!(std::fs::read(&host_store).unwrap(), written);
}

/// A store with another password fails its integrity check: an error naming the file, and no
/// change planned.
#[test]
fn wrong_password_is_an_error() {
    for kind in [Kind::Jks, Kind::Pkcs12] {
        let f = fixture();
        let image_ca = make_ca(f.tmp.path(), "image-ca");
        let store = f.tmp.path().join("cacerts");
        import(kind, &store, "image", &image_ca, "s3cret-pass");
        build(
            &f.rootfs,
            &[Node::file(
                "etc/pki/ca-trust/extracted/java/cacerts",
                std::fs::read(&store).unwrap(),
            )],
        );
        let root = ContainerRoot::open(&f.rootfs).unwrap();
        let e = java::plan(&root, &load(&f.ours), &[]).unwrap_err();
        assert!(
            matches!(&e, Error::Keystore { path, .. } if path == Path::new("/etc/pki/ca-trust/extracted/java/cacerts")),
            "{kind:?}: {e}"
        );
        assert!(e.to_string().contains("password"), "{e}");

        // plan_each goes on with the other stores.
        let good = f.tmp.path().join("good");
        import(Kind::Jks, &good, "image", &image_ca, "changeit");
        build(
            &f.rootfs,
            &[Node::file("etc/ssl/certs/java/cacerts", std::fs::read(&good).unwrap())],
        );
        let each = java::plan_each(&root, &load(&f.ours), &[]).unwrap();
        assert_eq!(each.len(), 2, "{each:?}");
        assert!(
            matches!(&each[0], Ok(Change::EditFile { path, .. }) if path == Path::new("/etc/ssl/certs/java/cacerts"))
        );
        assert!(matches!(&each[1], Err(Error::Keystore { .. })));
    }
}

#[test]
fn a_store_changed_after_planning_is_checked_again() {
    // The install does not check again the integrity of a store that holds exactly what the
    // planner read and checked. Changed between plan and install, even at the same size, the
    // store is checked as any other: a broken integrity hash is refused, and nothing changes.
    let f = fixture();
    let image_ca = make_ca(f.tmp.path(), "image-ca");
    let store = f.tmp.path().join("cacerts");
    import(Kind::Jks, &store, "image", &image_ca, "changeit");
    let good = std::fs::read(&store).unwrap();
    let path = "etc/ssl/certs/java/cacerts";
    build(&f.rootfs, &[Node::file(path, good.clone())]);
    let certs = load(&f.ours);
    let on_disk = f.rootfs.join(path);
    for (what, mut changed) in [("integrity hash", good.clone()), ("entry bytes", good.clone())] {
        // The same length: only the bytes tell.
        let at = if what == "integrity hash" {
            good.len() - 1
        } else {
            good.len() / 2
        };
        changed[at] ^= 0x55;
        let plan = plan_java(&f.rootfs, &certs, &[]);
        assert_eq!(plan.changes.len(), 1, "{plan:?}");
        std::fs::write(&on_disk, &changed).unwrap();
        let journal = f.tmp.path().join(format!("journal-{}", what.replace(' ', "-")));
        let root = ContainerRoot::open(&f.rootfs).unwrap();
        let e = install(&root, &plan, &journal, &Default::default()).unwrap_err();
        assert!(matches!(&e, Error::Keystore { .. }), "{what}: {e}");
        assert_eq!(
            std::fs::read(&on_disk).unwrap(),
            changed,
            "{what}: the store is left as it was"
        );
        std::fs::write(&on_disk, &good).unwrap();
    }
    // Unchanged, the planner's check stands and the install goes ahead.
    let plan = plan_java(&f.rootfs, &certs, &[]);
    let journal = f.tmp.path().join("journal");
    let root = ContainerRoot::open(&f.rootfs).unwrap();
    install(&root, &plan, &journal, &Default::default()).unwrap();
    let listing = list(&on_disk);
    assert!(listing.contains("cacerts-hook-corp-root"), "{listing}");
    uninstall(&root, &journal).unwrap();
    assert_eq!(std::fs::read(&on_disk).unwrap(), good);
}

/// Every PBES2 variant (PBKDF2 with HMAC-SHA-1/224/256/384/512, AES-128/192/256-CBC) and MAC
/// digest a store may use is read, and written back with the same algorithms: stores made by
/// keytool with its algorithm properties, and by `openssl pkcs12` for AES-192 (which the JDK
/// neither offers nor reads). OpenSSL checks every result, keytool those it can read.
#[test]
fn every_pbes2_cipher_and_mac_digest() {
    let f = fixture();
    let image_ca = make_ca(f.tmp.path(), "image-ca");
    let certs = load(&f.ours);
    // (keytool's certificate protection and MAC algorithms, or OpenSSL when `None`; what
    // `openssl pkcs12 -info` shows of them)
    let variants = [
        (
            Some(("PBEWithHmacSHA1AndAES_128", "HmacPBESHA1")),
            ["MAC: sha1,", "AES-128-CBC, Iteration 10000, PRF hmacWithSHA1\n"],
        ),
        (
            Some(("PBEWithHmacSHA224AndAES_256", "HmacPBESHA224")),
            ["MAC: sha224,", "AES-256-CBC, Iteration 10000, PRF hmacWithSHA224\n"],
        ),
        (
            Some(("PBEWithHmacSHA384AndAES_128", "HmacPBESHA384")),
            ["MAC: sha384,", "AES-128-CBC, Iteration 10000, PRF hmacWithSHA384\n"],
        ),
        (
            Some(("PBEWithHmacSHA512AndAES_256", "HmacPBESHA512")),
            ["MAC: sha512,", "AES-256-CBC, Iteration 10000, PRF hmacWithSHA512\n"],
        ),
        (
            None,
            ["MAC: sha224,", "AES-192-CBC, Iteration 2048, PRF hmacWithSHA256\n"],
        ),
    ];
    let make = |store: &Path, algorithms: Option<(&str, &str)>| match algorithms {
        Some((cert, mac)) => {
            let cert = format!("-J-Dkeystore.pkcs12.certProtectionAlgorithm={cert}");
            let mac = format!("-J-Dkeystore.pkcs12.macAlgorithm={mac}");
            import_with(
                vec![&cert, &mac, "-storetype", "PKCS12"],
                store,
                "image",
                &image_ca,
                "changeit",
            );
        }
        None => {
            let out = Command::new("openssl")
                .args([
                    "pkcs12",
                    "-export",
                    "-nokeys",
                    "-certpbe",
                    "AES-192-CBC",
                    "-macalg",
                    "sha224",
                ])
                .args(["-passout", "pass:changeit", "-in"])
                .arg(&image_ca)
                .arg("-out")
                .arg(store)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    };
    for (i, (algorithms, want)) in variants.into_iter().enumerate() {
        let rootfs = f.tmp.path().join(format!("rootfs-{i}"));
        let store = rootfs.join("etc/ssl/certs/java/cacerts");
        std::fs::create_dir_all(store.parent().unwrap()).unwrap();
        make(&store, algorithms);
        let original = std::fs::read(&store).unwrap();
        let info = |store: &Path| {
            let out = Command::new("openssl")
                .args(["pkcs12", "-info", "-nokeys", "-passin", "pass:changeit", "-in"])
                .arg(store)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "openssl pkcs12: {text}");
            text
        };
        let text = info(&store);
        assert!(want.iter().all(|w| text.contains(w)), "variant {i} as made: {text}");

        let plan = plan_java(&rootfs, &certs, &[]);
        assert_eq!(plan.changes.len(), 1, "variant {i}: {plan:?}");
        let journal = f.tmp.path().join(format!("state/{i}.journal"));
        let root = ContainerRoot::open(&rootfs).unwrap();
        install(&root, &plan, &journal, &Default::default()).unwrap();
        let text = info(&store);
        assert!(want.iter().all(|w| text.contains(w)), "variant {i} as written: {text}");
        // keytool (JDK 17) cannot read PBES2 with AES-192 at all.
        if algorithms.is_some() {
            let listing = list(&store);
            assert!(
                entries(&listing).contains(&pair("cacerts-hook-corp-root", "trustedCertEntry")),
                "variant {i}:\n{listing}"
            );
        }
        assert!(plan_java(&rootfs, &certs, &[]).is_empty(), "variant {i}: read back");
        uninstall(&root, &journal).unwrap();
        assert_eq!(std::fs::read(&store).unwrap(), original, "variant {i}");
    }
}

/// JDK 8/11-style PKCS#12 (certificates under pbeWithSHAAnd40BitRC2-CBC) is refused by name.
#[test]
fn legacy_pkcs12_is_refused_with_a_clear_error() {
    let f = fixture();
    let image_ca = make_ca(f.tmp.path(), "image-ca");
    let store = f.tmp.path().join("cacerts");
    import_with(
        vec!["-J-Dkeystore.pkcs12.legacy", "-storetype", "PKCS12"],
        &store,
        "image",
        &image_ca,
        "changeit",
    );
    build(
        &f.rootfs,
        &[Node::file(
            "usr/lib/jvm/jdk-11/lib/security/cacerts",
            std::fs::read(&store).unwrap(),
        )],
    );
    let root = ContainerRoot::open(&f.rootfs).unwrap();
    let e = java::plan(&root, &load(&f.ours), &[]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("/usr/lib/jvm/jdk-11/lib/security/cacerts"), "{msg}");
    assert!(msg.contains("legacy"), "{msg}");
}

/// Every place a store is looked for, and each physical file once.
#[test]
fn stores_are_found_everywhere_and_once() {
    let f = fixture();
    let image_ca = make_ca(f.tmp.path(), "image-ca");
    let jks = f.tmp.path().join("jks");
    import(Kind::Jks, &jks, "image", &image_ca, "changeit");
    let jks = std::fs::read(&jks).unwrap();
    build(
        &f.rootfs,
        &[
            Node::file("etc/pki/ca-trust/extracted/java/cacerts", jks.clone()),
            Node::symlink("etc/pki/java/cacerts", "/etc/pki/ca-trust/extracted/java/cacerts"),
            Node::file("var/lib/ca-certificates/java-cacerts", jks.clone()),
            Node::file("usr/lib/jvm/jdk8/jre/lib/security/cacerts", jks.clone()),
            Node::symlink(
                "usr/lib/jvm/jdk17/lib/security/cacerts",
                "../../../../../etc/pki/java/cacerts",
            ),
            Node::file("srv/jdk/lib/security/cacerts", jks.clone()),
            // Not a keystore yet (an empty placeholder) and a dangling link: skipped.
            Node::file("etc/ssl/certs/java/cacerts", b""),
            Node::symlink("opt/java/openjdk/lib/security/cacerts", "/nowhere"),
        ],
    );
    // A JDK whose store is a hard link of another: two names, each its own file to change (the
    // edit replaces a file with other links rather than writing through it).
    let linked = f.rootfs.join("usr/lib/jvm/jdk11/lib/security/cacerts");
    std::fs::create_dir_all(linked.parent().unwrap()).unwrap();
    std::fs::hard_link(f.rootfs.join("var/lib/ca-certificates/java-cacerts"), &linked).unwrap();
    let plan = plan_java(&f.rootfs, &load(&f.ours), &["JAVA_HOME=/srv/jdk".to_owned()]);
    let mut paths: Vec<_> = plan
        .changes
        .iter()
        .map(|c| match c {
            Change::EditFile { path, .. } => path.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    paths.sort();
    let want: Vec<PathBuf> = [
        "/etc/pki/ca-trust/extracted/java/cacerts",
        "/srv/jdk/lib/security/cacerts",
        "/usr/lib/jvm/jdk11/lib/security/cacerts",
        "/usr/lib/jvm/jdk8/jre/lib/security/cacerts",
        "/var/lib/ca-certificates/java-cacerts",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(paths, want);
}

/// A store with no trusted certificate yet (only a key entry): ours goes into a content info
/// of its own, encrypted when the store has a password, and keytool reads both.
#[test]
fn store_without_trusted_certs_gets_its_first() {
    for kind in [Kind::Jks, Kind::Pkcs12, Kind::Pkcs12NoPassword] {
        let f = fixture();
        let store = f.tmp.path().join("cacerts");
        genkey(kind, &store, "service-key");
        build(
            &f.rootfs,
            &[Node::file("etc/ssl/certs/java/cacerts", std::fs::read(&store).unwrap())],
        );
        let plan = plan_java(&f.rootfs, &load(&f.ours), &[]);
        let journal = f.tmp.path().join("state/j.journal");
        let root = ContainerRoot::open(&f.rootfs).unwrap();
        install(&root, &plan, &journal, &Default::default()).unwrap();
        let host_store = f.rootfs.join("etc/ssl/certs/java/cacerts");
        let listing = list(&host_store);
        assert_eq!(
            entries(&listing),
            vec![
                pair("cacerts-hook-corp-root", "trustedCertEntry"),
                pair("service-key", "PrivateKeyEntry")
            ],
            "{kind:?}:\n{listing}"
        );
        // Taken out of a store the container changed, the content info we added goes too.
        let other = make_ca(f.tmp.path(), "other-ca");
        import(kind, &host_store, "other", &other, "changeit");
        uninstall(&root, &journal).unwrap();
        let listing = list(&host_store);
        assert_eq!(
            entries(&listing),
            vec![
                pair("other", "trustedCertEntry"),
                pair("service-key", "PrivateKeyEntry")
            ],
            "{kind:?}:\n{listing}"
        );
    }
}
