//! Our plans against the distributions' own tools, run for real on the same trees: Debian's
//! `update-ca-certificates` in a chroot of a real bookworm rootfs, and p11-kit's `trust extract`
//! (what RHEL's `update-ca-trust` runs) on the UBI fixture.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cacerts_core::distro::Family;
use cacerts_core::installer::{self, Settings};
use cacerts_core::{certs, install, uninstall, ContainerRoot};
use cacerts_testkit::ca::{cert_set, first_cert, TestCa};
use cacerts_testkit::fixtures::{self, Base};
use cacerts_testkit::mount::Mount;
use cacerts_testkit::rootfs::debian_rootfs;
use cacerts_testkit::{age, build, resolve, Snapshot};
use openssl::hash::MessageDigest;
use openssl::x509::X509;

const NAME: &str = "cacerts-hook-corp-root";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Name -> symlink target (or `None` for a regular file) of every entry of a directory.
fn listing(dir: &Path) -> BTreeMap<String, Option<PathBuf>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_link(e.path()).ok(),
            )
        })
        .collect()
}

fn is_hash_name(n: &str) -> bool {
    n.len() > 9 && n.as_bytes()[8] == b'.' && n[..8].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Our install on a real bookworm rootfs with ca-certificates, next to a copy where the real
/// `update-ca-certificates` (chroot, run by the test, never by the product) picked up the same
/// anchor file.
///
/// Identical: the bundle's bytes (the tool concatenates the source files, ours appends the
/// same PEM text at the end, where the tool puts `/usr/local` certificates), and every entry
/// of `/etc/ssl/certs` with its link target. The one legitimate difference would be the `.N`
/// suffix of a hash link when another certificate already has the same subject hash: the tool
/// renumbers the whole directory, we take the next free number; with no such collision here,
/// the names match too.
#[test]
fn debian_matches_update_ca_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    debian_rootfs(&ours, "bookworm", &["ca-certificates"]);
    run(Command::new("cp").arg("-a").arg(&ours).arg(&theirs));
    age(&ours);
    let before = Snapshot::take(&ours);

    let ca = TestCa::new("Corp Root CA");
    let loaded = certs::load(&[ca.write(tmp.path(), "corp-root.pem")]);
    let root = ContainerRoot::open(&ours).unwrap();
    let (detection, plan) = installer::plan(&root, &loaded.certs, &Settings::default()).unwrap();
    assert_eq!(detection.family, Family::Debian);
    assert_eq!(detection.version.as_deref(), Some("12"));
    let journal = tmp.path().join("journal");
    install(&root, &plan, &journal, &Default::default()).unwrap();

    let anchor = format!("usr/local/share/ca-certificates/{NAME}.crt");
    std::fs::copy(ours.join(&anchor), theirs.join(&anchor)).unwrap();
    run(Command::new("chroot")
        .arg(&theirs)
        .arg("update-ca-certificates")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));

    let bundle = "etc/ssl/certs/ca-certificates.crt";
    let (a, b) = (ours.join(bundle), theirs.join(bundle));
    assert!(cert_set(&a).contains(&ca.sha256));
    assert_eq!(
        cert_set(&a),
        cert_set(&b),
        "same certificates trusted through the bundle"
    );
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "bundle bytes");

    let certs_dir = "etc/ssl/certs";
    let (ours_list, theirs_list) = (listing(&ours.join(certs_dir)), listing(&theirs.join(certs_dir)));
    let mut hash_links = 0;
    for (name, target) in &theirs_list {
        if is_hash_name(name) {
            hash_links += 1;
            let path = format!("{certs_dir}/{name}");
            assert_eq!(
                first_cert(&resolve(&ours, &path)),
                first_cert(&resolve(&theirs, &path)),
                "{name} -> {target:?}"
            );
        }
    }
    assert!(hash_links > 100, "{hash_links} hash links");
    assert_eq!(ours_list, theirs_list, "every entry of /etc/ssl/certs");
    assert_eq!(
        ours_list.get(&format!("{:08x}.0", ca.hash)),
        Some(&Some(PathBuf::from(format!("{NAME}.pem"))))
    );

    let (_, again) = installer::plan(&root, &loaded.certs, &Settings::default()).unwrap();
    assert!(again.is_empty(), "{:?}", again.changes);
    let report = uninstall(&root, &journal).unwrap();
    assert!(report.kept.is_empty(), "{:?}", report.kept);
    before.assert_same(&Snapshot::take(&ours), "after uninstall");
}

/// Alias -> (entry type, SHA-256 of the certificate, hex) of every entry of a Java keystore, as
/// the host's real `keytool -list -rfc` reads it.
fn keytool_entries(store: &Path) -> BTreeMap<String, (String, String)> {
    let out = Command::new("keytool")
        .args(["-list", "-rfc", "-storepass", "changeit", "-keystore"])
        .arg(store)
        .stdin(Stdio::null())
        .output()
        .expect("keytool must be installed");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "keytool -list {}: {text}{}",
        store.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let count: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("Your keystore contains "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no entry count from keytool:\n{text}"));
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    let mut entries = BTreeMap::new();
    for chunk in text.split("Alias name: ").skip(1) {
        let alias = chunk.lines().next().unwrap().trim().to_owned();
        let kind = chunk
            .lines()
            .find_map(|l| l.strip_prefix("Entry type: "))
            .unwrap_or_else(|| panic!("{alias}: no entry type"))
            .trim()
            .to_owned();
        let (Some(a), Some(b)) = (chunk.find(begin), chunk.find(end)) else {
            panic!("{alias}: no certificate in keytool's output");
        };
        let cert = X509::from_pem(&chunk.as_bytes()[a..b + end.len()]).unwrap();
        let fp = hex::encode(cert.digest(MessageDigest::sha256()).unwrap());
        assert!(entries.insert(alias.clone(), (kind, fp)).is_none(), "{alias} twice");
    }
    assert_eq!(entries.len(), count, "every entry of {} parsed", store.display());
    entries
}

/// Our install next to Debian's own tools for the Java trust store: on one copy of a real
/// bookworm rootfs with `ca-certificates-java`, our install; on a second copy, the same anchor in
/// `/usr/local/share/ca-certificates/` and the real `update-ca-certificates` in a chroot, whose
/// `jks-keystore` hook has the ca-certificates-java trigger run Java (which needs `/proc`,
/// mounted for the run) to add the certificate to `/etc/ssl/certs/java/cacerts`.
///
/// The rootfs includes `default-jre-headless`: on bookworm `ca-certificates-java` depends on
/// `ca-certificates` only, and without a JRE its trigger stops at "No JRE found" and no Java
/// store exists at all.
///
/// Compared through the host's `keytool`: the same set of certificates, every entry a
/// `trustedCertEntry`, every entry that was there before unchanged under its alias. What
/// legitimately differs: the new entry's alias (`debian:<anchor name>.pem` from Debian's tool,
/// `cacerts-hook-<name>` from ours) and its creation date; and the file's bytes, since Debian's
/// tool has Java's `KeyStore.store` write the whole file again while ours keeps every existing
/// entry's bytes and adds one, so the entries' layout and the integrity digest differ.
#[test]
fn debian_java_store_matches_update_ca_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    debian_rootfs(
        &ours,
        "bookworm",
        &["ca-certificates", "ca-certificates-java", "default-jre-headless"],
    );
    run(Command::new("cp").arg("-a").arg(&ours).arg(&theirs));
    age(&ours);
    let before = Snapshot::take(&ours);
    let store = "etc/ssl/certs/java/cacerts";
    let original = keytool_entries(&ours.join(store));
    assert!(original.len() > 100, "{} entries", original.len());
    assert!(
        original.keys().all(|a| a.starts_with("debian:")),
        "{:?}",
        original.keys()
    );
    let jks_magic = [0xfe, 0xed, 0xfe, 0xed];
    assert_eq!(
        std::fs::read(ours.join(store)).unwrap()[..4],
        jks_magic,
        "JKS on bookworm"
    );

    let ca = TestCa::new("Corp Root CA");
    let loaded = certs::load(&[ca.write(tmp.path(), "corp-root.pem")]);
    let root = ContainerRoot::open(&ours).unwrap();
    let journal = tmp.path().join("journal");
    let (detection, report) = installer::install_certs(
        &root,
        &loaded.certs,
        &Settings::default(),
        &journal,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(detection.family, Family::Debian);
    assert!(detection.skipped.is_empty(), "{:?}", detection.skipped);
    assert!(
        report.edited.contains(&PathBuf::from(format!("/{store}"))),
        "{:?}",
        report.edited
    );

    let anchor = format!("usr/local/share/ca-certificates/{NAME}.crt");
    std::fs::copy(ours.join(&anchor), theirs.join(&anchor)).unwrap();
    {
        let _proc = Mount::new("proc", &theirs.join("proc"), "");
        run(Command::new("chroot")
            .arg(&theirs)
            .arg("update-ca-certificates")
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"));
    }

    let (a, b) = (keytool_entries(&ours.join(store)), keytool_entries(&theirs.join(store)));
    let fingerprints =
        |m: &BTreeMap<String, (String, String)>| -> BTreeSet<String> { m.values().map(|(_, fp)| fp.clone()).collect() };
    assert_eq!(fingerprints(&a), fingerprints(&b), "the same certificates");
    assert!(fingerprints(&a).contains(&ca.sha256));
    assert_eq!(a.len(), original.len() + 1);
    assert_eq!(b.len(), original.len() + 1);
    let entry = ("trustedCertEntry".to_owned(), ca.sha256.clone());
    let (mut a, mut b) = (a, b);
    assert_eq!(a.remove(NAME), Some(entry.clone()), "ours: {NAME}");
    assert_eq!(
        b.remove(&format!("debian:{NAME}.pem")),
        Some(entry),
        "Debian's alias for the anchor"
    );
    assert_eq!(a, original, "every other entry of ours as it was");
    assert_eq!(b, original, "every other entry of Debian's as it was");
    assert_eq!(std::fs::read(ours.join(store)).unwrap()[..4], jks_magic, "still JKS");
    for jdk in ["default-java", "java-17-openjdk-amd64"] {
        let link = ours.join(format!("usr/lib/jvm/{jdk}/lib/security/cacerts"));
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("/etc/ssl/certs/java/cacerts"),
            "the JDK's link to the shared store stays a link"
        );
    }

    let report = uninstall(&root, &journal).unwrap();
    assert!(report.kept.is_empty(), "{:?}", report.kept);
    before.assert_same(&Snapshot::take(&ours), "after uninstall");
}

/// Runs the host's p11-kit `trust` as an unprivileged user (p11-kit ignores user configuration
/// when run as root) with a private configuration whose trust module reads only `paths`.
struct Trust {
    home: PathBuf,
}

impl Trust {
    fn new(dir: &Path, paths: &[PathBuf]) -> Trust {
        let home = dir.join("home");
        let conf = home.join(".config/pkcs11");
        std::fs::create_dir_all(conf.join("modules")).unwrap();
        std::fs::write(conf.join("pkcs11.conf"), "user-config: only\n").unwrap();
        let joined: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        std::fs::write(
            conf.join("modules/p11-kit-trust.module"),
            format!(
                "module: p11-kit-trust.so\npriority: 1\ntrust-policy: yes\nx-init-reserved: paths={}\n",
                joined.join(":")
            ),
        )
        .unwrap();
        Trust { home }
    }

    fn extract(&self, args: &[&str], out: &Path) {
        run(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "trust", "extract"])
            .args(args)
            .arg(out)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/bin:/bin"));
    }
}

/// Our install on the UBI fixture against p11-kit's `trust extract` with RHEL's
/// `update-ca-trust` arguments, reading the fixture's anchors after our install: the same
/// certificates in each PEM bundle (server-auth, email, code-signing), in the trusted bundle,
/// and under the same hash link names in the hash directory. Our `TRUSTED CERTIFICATE` block is
/// byte for byte the one p11-kit writes. Differences by design: p11-kit rewrites whole files
/// (with `--comment` label lines on RHEL), we append; its directory-hash files are named after
/// the label (`Corp_Root_CA.pem`), ours `cacerts-hook-<name>.pem`.
#[test]
fn rhel_matches_trust_extract() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let base = Base::new();
    build(&rootfs, &fixtures::ubi(&base));
    let ca = TestCa::new("Corp Root CA");
    let inputs = tempfile::tempdir().unwrap();
    let loaded = certs::load(&[ca.write(inputs.path(), "corp-root.pem")]);
    let root = ContainerRoot::open(&rootfs).unwrap();
    let (_, plan) = installer::plan(&root, &loaded.certs, &Settings::default()).unwrap();
    install(&root, &plan, &tmp.path().join("journal"), &Default::default()).unwrap();

    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let trust = Trust::new(
        tmp.path(),
        &[
            rootfs.join("etc/pki/ca-trust/source"),
            rootfs.join("usr/share/pki/ca-trust-source"),
        ],
    );
    let x = rootfs.join("etc/pki/ca-trust/extracted");
    for (purpose, ours) in [
        ("server-auth", "pem/tls-ca-bundle.pem"),
        ("email", "pem/email-ca-bundle.pem"),
        ("code-signing", "pem/objsign-ca-bundle.pem"),
    ] {
        let theirs = out.join(format!("{purpose}.pem"));
        trust.extract(
            &[
                "--format=pem-bundle",
                "--filter=ca-anchors",
                &format!("--purpose={purpose}"),
            ],
            &theirs,
        );
        let set = cert_set(&theirs);
        assert_eq!(set.len(), 4, "{purpose}: the fixture's three CAs and ours");
        assert!(set.contains(&ca.sha256));
        assert_eq!(cert_set(&x.join(ours)), set, "{ours}");
    }

    let theirs = out.join("ca-bundle.trust.crt");
    trust.extract(&["--format=openssl-bundle", "--filter=certificates"], &theirs);
    let ours = x.join("openssl/ca-bundle.trust.crt");
    assert_eq!(cert_set(&ours), cert_set(&theirs));
    let our_text = std::fs::read_to_string(&ours).unwrap();
    let block_start = our_text.rfind("-----BEGIN TRUSTED CERTIFICATE-----").unwrap();
    let our_block = &our_text[block_start..];
    assert!(
        std::fs::read_to_string(&theirs).unwrap().contains(our_block),
        "p11-kit writes the same block:\n{our_block}"
    );

    let theirs = out.join("directory-hash");
    trust.extract(
        &[
            "--format=pem-directory-hash",
            "--filter=ca-anchors",
            "--purpose=server-auth",
        ],
        &theirs,
    );
    let ours = x.join("pem/directory-hash");
    let hashes = |dir: &Path| -> BTreeSet<String> { listing(dir).into_keys().filter(|n| is_hash_name(n)).collect() };
    let names = hashes(&theirs);
    assert_eq!(names.len(), 8, "current and old hash for four certificates: {names:?}");
    assert_eq!(hashes(&ours), names);
    for n in &names {
        assert_eq!(first_cert(&ours.join(n)), first_cert(&theirs.join(n)), "{n}");
    }
}
