//! Install into a copy of every family's store, check each file, link and bundle the family's
//! own tool would have produced, plan again (nothing left to do), uninstall, and require the tree
//! to be exactly as before.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cacerts_core::distro::{Detection, Family};
use cacerts_core::installer::{self, Settings};
use cacerts_core::{certs, install, uninstall, Change, ContainerRoot, Plan};
use cacerts_testkit::ca::{cert_set, first_cert, openssl_cli, TestCa};
use cacerts_testkit::fixtures::{self, label, Base};
use cacerts_testkit::{age, build, resolve, Node, Snapshot};

/// An install done on a fixture, to be checked and then undone.
struct Installed {
    _tmp: tempfile::TempDir,
    rootfs: PathBuf,
    journal: PathBuf,
    before: Snapshot,
    ca: TestCa,
    detection: Detection,
    plan: Plan,
    certs: Vec<certs::CaCert>,
}

fn install_into(nodes: &[Node], ca: TestCa, settings: &Settings) -> Installed {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    build(&rootfs, nodes);
    age(&rootfs);
    let before = Snapshot::take(&rootfs);
    let input = ca.write(tmp.path(), "corp-root.pem");
    let loaded = certs::load(&[input]);
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    let root = ContainerRoot::open(&rootfs).unwrap();
    let (detection, plan) = installer::plan(&root, &loaded.certs, settings).unwrap();
    let journal = tmp.path().join("state/journal");
    install(&root, &plan, &journal, &Default::default()).unwrap();
    Installed {
        rootfs,
        journal,
        before,
        ca,
        detection,
        plan,
        certs: loaded.certs,
        _tmp: tmp,
    }
}

impl Installed {
    /// The host path of `p`, symlinks resolved inside the rootfs.
    fn path(&self, p: &str) -> PathBuf {
        resolve(&self.rootfs, p)
    }

    /// The host path of `p` itself (a final symlink not followed).
    fn entry(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        resolve(&self.rootfs, p.parent().unwrap()).join(p.file_name().unwrap())
    }

    fn assert_link(&self, link: &str, target: &str) {
        let got = std::fs::read_link(self.entry(link)).unwrap_or_else(|e| panic!("{link}: {e}"));
        assert_eq!(got, Path::new(target), "{link}");
    }

    /// The file holds our CA (and only it, as its first certificate).
    fn assert_is_ca(&self, file: &str) {
        assert_eq!(first_cert(&self.path(file)), self.ca.sha256, "{file}");
    }

    fn assert_mode(&self, file: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(self.path(file)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(m, mode, "mode of {file}");
    }

    /// As OpenSSL reads it, the bundle holds exactly `base` plus our CA.
    fn assert_bundle(&self, file: &str, base: &[&TestCa]) {
        let mut want: BTreeSet<String> = base.iter().map(|c| c.sha256.clone()).collect();
        want.insert(self.ca.sha256.clone());
        assert_eq!(cert_set(&self.path(file)), want, "{file}");
    }

    /// `dir/HHHHHHHH.n -> target`, the target holds our CA, and the name's hash is what the real
    /// `openssl x509 -subject_hash` (or `-subject_hash_old`) prints for it.
    fn assert_hash_link(&self, dir: &str, old: bool, n: u32, target: &str) {
        let hash = if old { self.ca.hash_old } else { self.ca.hash };
        let link = format!("{dir}/{hash:08x}.{n}");
        self.assert_link(&link, target);
        let file = self.path(&format!("{dir}/{target}"));
        assert_eq!(first_cert(&file), self.ca.sha256, "{link}");
        let flag = if old { "-subject_hash_old" } else { "-subject_hash" };
        assert_eq!(
            openssl_cli(&["x509", "-noout", flag, "-in"], &file),
            format!("{hash:08x}")
        );
    }

    fn edits(&self) -> Vec<PathBuf> {
        self.plan
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::EditFile { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect()
    }

    /// Planning again finds everything trusted; uninstall leaves no trace.
    fn finish(self) {
        let root = ContainerRoot::open(&self.rootfs).unwrap();
        let (_, again) = installer::plan(&root, &self.certs, &Settings::default()).unwrap();
        assert!(again.is_empty(), "planning again after install: {:#?}", again.changes);
        let report = uninstall(&root, &self.journal).unwrap();
        assert!(report.kept.is_empty(), "{:?}", report.kept);
        self.before
            .assert_same(&Snapshot::take(&self.rootfs), "after uninstall");
    }
}

fn corp() -> TestCa {
    TestCa::new("Corp Root CA")
}

const NAME: &str = "cacerts-hook-corp-root";

fn refs(base: &Base) -> Vec<&TestCa> {
    base.cas.iter().collect()
}

fn plan_for(nodes: &[Node], input: &TestCa, settings: &Settings) -> (Detection, Plan) {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), nodes);
    let dir = tempfile::tempdir().unwrap();
    let loaded = certs::load(&[input.write(dir.path(), "input.pem")]);
    installer::plan(&ContainerRoot::open(tmp.path()).unwrap(), &loaded.certs, settings).unwrap()
}

fn no_store_settings() -> Settings {
    let mut s = Settings::default();
    s.create_store_when_none = false;
    s
}

#[test]
fn debian_without_a_store_gets_one() {
    let i = install_into(&fixtures::debian_base(), corp(), &Settings::default());
    assert_eq!(i.detection.family, Family::Debian);
    let anchor = format!("/usr/local/share/ca-certificates/{NAME}.crt");
    i.assert_is_ca(&anchor);
    i.assert_link(&format!("/etc/ssl/certs/{NAME}.pem"), &anchor);
    i.assert_hash_link("/etc/ssl/certs", false, 0, &format!("{NAME}.pem"));
    i.assert_bundle("/etc/ssl/certs/ca-certificates.crt", &[]);
    assert!(i.edits().is_empty());
    i.finish();

    let (_, plan) = plan_for(&fixtures::debian_base(), &corp(), &no_store_settings());
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn debian_with_ca_certificates() {
    let base = Base::new();
    let i = install_into(&fixtures::debian(&base), corp(), &Settings::default());
    let anchor = format!("/usr/local/share/ca-certificates/{NAME}.crt");
    i.assert_is_ca(&anchor);
    i.assert_mode(&anchor, 0o644);
    i.assert_link(&format!("/etc/ssl/certs/{NAME}.pem"), &anchor);
    i.assert_hash_link("/etc/ssl/certs", false, 0, &format!("{NAME}.pem"));
    i.assert_bundle("/etc/ssl/certs/ca-certificates.crt", &refs(&base));
    // The image's files are untouched.
    for ca in &base.cas {
        i.assert_link(
            &format!("/etc/ssl/certs/{:08x}.0", ca.hash),
            &format!("{}.pem", label(ca)),
        );
    }
    i.finish();

    // A certificate the image already trusts: nothing to do.
    let (_, plan) = plan_for(&fixtures::debian(&base), &base.cas[1], &Settings::default());
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn debian_names_and_hashes_never_collide() {
    let base = Base::new();
    let ours = corp();
    // Another CA with exactly our subject (so the same hash), already linked as .0, and a file
    // of ours' name that holds something else.
    let twin = TestCa::new("Corp Root CA");
    assert_eq!(twin.hash, ours.hash);
    let mut nodes = fixtures::debian(&base);
    nodes.extend([
        Node::file("usr/share/ca-certificates/mozilla/Twin.crt", &twin.pem),
        Node::symlink("etc/ssl/certs/Twin.pem", "/usr/share/ca-certificates/mozilla/Twin.crt"),
        Node::symlink(&format!("etc/ssl/certs/{:08x}.0", twin.hash), "Twin.pem"),
        Node::file(&format!("usr/local/share/ca-certificates/{NAME}.crt"), &twin.pem),
    ]);
    let fp = &ours.sha256[..16];
    let i = install_into(&nodes, ours.clone(), &Settings::default());
    let name = format!("{NAME}-{fp}");
    let anchor = format!("/usr/local/share/ca-certificates/{name}.crt");
    i.assert_is_ca(&anchor);
    i.assert_link(&format!("/etc/ssl/certs/{name}.pem"), &anchor);
    i.assert_hash_link("/etc/ssl/certs", false, 1, &format!("{name}.pem"));
    i.finish();
}

/// Each name tried is taken in turn (files that are not ours): the fingerprint's first 16 hex
/// digits, then all of it, then all of it and a count.
#[test]
fn names_taken_give_way_to_longer_ones_in_turn() {
    let base = Base::new();
    let ours = corp();
    let other = TestCa::new("Other Root CA");
    let fp = &ours.sha256;
    let mut nodes = fixtures::alpine_full(&base);
    let mut taken = vec![NAME.to_owned(), format!("{NAME}-{}", &fp[..16]), format!("{NAME}-{fp}")];
    for (i, name) in taken.iter().enumerate() {
        // In either place a name is looked for: the anchors, and the links beside the bundle.
        let file = match i {
            1 => format!("etc/ssl/certs/ca-cert-{name}.pem"),
            _ => format!("usr/local/share/ca-certificates/{name}.crt"),
        };
        nodes.push(Node::file(&file, &other.pem));
    }
    let i = install_into(&nodes, ours.clone(), &Settings::default());
    taken.push(format!("{NAME}-{fp}-3"));
    let name = taken.last().unwrap();
    let anchor = format!("/usr/local/share/ca-certificates/{name}.crt");
    i.assert_is_ca(&anchor);
    i.assert_link(&format!("/etc/ssl/certs/ca-cert-{name}.pem"), &anchor);
    i.finish();
}

#[test]
fn debian_skips_a_hash_link_already_there() {
    // The image links our certificate under its hash but its bundle lacks it: the anchor and the
    // bundle get it, the hash directory does not get a second link.
    let base = Base::new();
    let ours = corp();
    let mut nodes = fixtures::debian(&base);
    nodes.extend([
        Node::file("usr/share/ca-certificates/mozilla/Ours.crt", &ours.pem),
        Node::symlink("etc/ssl/certs/Ours.pem", "/usr/share/ca-certificates/mozilla/Ours.crt"),
        Node::symlink(&format!("etc/ssl/certs/{:08x}.0", ours.hash), "Ours.pem"),
    ]);
    let i = install_into(&nodes, ours.clone(), &Settings::default());
    i.assert_bundle("/etc/ssl/certs/ca-certificates.crt", &refs(&base));
    assert!(std::fs::symlink_metadata(i.entry(&format!("/etc/ssl/certs/{:08x}.1", ours.hash))).is_err());
    i.finish();
}

/// The hash links `plan` makes, as (name, target).
fn hash_links(plan: &Plan, hash: u32) -> Vec<(String, String)> {
    let prefix = format!("/etc/ssl/certs/{hash:08x}.");
    plan.changes
        .iter()
        .filter_map(|c| match c {
            Change::CreateSymlink { path, target } if path.to_string_lossy().starts_with(&prefix) => Some((
                path.to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// Whether the real `openssl verify` finds `ca` through the hash directory `/etc/ssl/certs` of
/// `rootfs` alone, reading each entry as the container would (its links resolved inside the
/// root, into a copy under `scratch`).
fn openssl_finds(rootfs: &Path, ca: &TestCa, scratch: &Path) -> bool {
    let capath = tempfile::tempdir_in(scratch).unwrap();
    for entry in std::fs::read_dir(resolve(rootfs, "/etc/ssl/certs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let seen = resolve(rootfs, format!("/etc/ssl/certs/{name}"));
        if seen.is_file() {
            std::fs::copy(&seen, capath.path().join(&name)).unwrap();
        }
    }
    let leaf = ca.write(scratch, "verify-me.pem");
    let out = std::process::Command::new("openssl")
        .args(["verify", "-no-CAfile", "-no-CAstore", "-CApath"])
        .arg(capath.path())
        .arg(&leaf)
        .output()
        .expect("run openssl");
    out.status.success()
}

#[test]
fn debian_hash_links_are_numbered_as_openssl_reads_them() {
    // OpenSSL reads HHHHHHHH.0, .1, ... up to the first missing name. Our certificate linked
    // only past a gap is one it never finds: the real `openssl verify` fails, and the install
    // links it again, at the gap, after which it succeeds.
    let base = Base::new();
    let ours = corp();
    let h = ours.hash;
    let mut nodes = fixtures::debian(&base);
    nodes.extend([
        Node::file("usr/share/ca-certificates/mozilla/Ours.crt", &ours.pem),
        Node::symlink(
            &format!("etc/ssl/certs/{h:08x}.1"),
            "/usr/share/ca-certificates/mozilla/Ours.crt",
        ),
    ]);
    let scratch = tempfile::tempdir().unwrap();
    let image = scratch.path().join("image");
    build(&image, &nodes);
    assert!(
        !openssl_finds(&image, &ours, scratch.path()),
        "a link past a gap is not read"
    );
    let i = install_into(&nodes, ours.clone(), &Settings::default());
    assert_eq!(
        hash_links(&i.plan, h),
        vec![(format!("/etc/ssl/certs/{h:08x}.0"), format!("{NAME}.pem"))]
    );
    assert!(
        openssl_finds(&i.rootfs, &ours, scratch.path()),
        "OpenSSL finds ours once installed"
    );
    i.finish();
}

#[test]
fn hash_links_are_the_same_whether_names_are_looked_up_or_listed() {
    // Under our hash: a twin (same subject, another key) at .0, nothing at .1, ours at .2 and
    // under the spelling .00, neither of which OpenSSL reads: the link goes to .1. A plan for
    // one certificate looks names up one by one, one for ten lists the directory, and one that
    // has to look past more links than it looks up one by one switches to the listing midway:
    // all must agree.
    let base = Base::new();
    let ours = corp();
    let twin = TestCa::new("Corp Root CA");
    assert_eq!(twin.hash, ours.hash);
    let h = ours.hash;
    let mut nodes = fixtures::debian(&base);
    nodes.extend([
        Node::file("usr/share/ca-certificates/mozilla/Twin.crt", &twin.pem),
        Node::file("usr/share/ca-certificates/mozilla/Ours.crt", &ours.pem),
        Node::symlink(
            &format!("etc/ssl/certs/{h:08x}.0"),
            "/usr/share/ca-certificates/mozilla/Twin.crt",
        ),
        Node::symlink(
            &format!("etc/ssl/certs/{h:08x}.2"),
            "/usr/share/ca-certificates/mozilla/Ours.crt",
        ),
        Node::symlink(
            &format!("etc/ssl/certs/{h:08x}.00"),
            "/usr/share/ca-certificates/mozilla/Ours.crt",
        ),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let gap = tmp.path().join("gap");
    build(&gap, &nodes);
    // Seventy twins at .0 to .69.
    let crowded = tmp.path().join("crowded");
    let mut crowd = fixtures::debian(&base);
    for n in 0..70 {
        let twin = TestCa::new("Corp Root CA");
        crowd.push(Node::file(
            &format!("usr/share/ca-certificates/mozilla/Twin{n}.crt"),
            &twin.pem,
        ));
        crowd.push(Node::symlink(
            &format!("etc/ssl/certs/{h:08x}.{n}"),
            &format!("/usr/share/ca-certificates/mozilla/Twin{n}.crt"),
        ));
    }
    build(&crowded, &crowd);
    let others: Vec<TestCa> = (0..9).map(|i| TestCa::new(&format!("Other Root {i}"))).collect();
    let inputs = tempfile::tempdir().unwrap();
    let mut files = vec![ours.write(inputs.path(), "corp-root.pem")];
    files.extend(
        others
            .iter()
            .enumerate()
            .map(|(i, ca)| ca.write(inputs.path(), &format!("other-{i}.pem"))),
    );
    let plan_with = |files: &[PathBuf], rootfs: &Path| {
        let loaded = certs::load(files);
        assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
        let root = ContainerRoot::open(rootfs).unwrap();
        installer::plan(&root, &loaded.certs, &Settings::default()).unwrap().1
    };
    for (root, n) in [(&gap, 1), (&crowded, 70)] {
        let expected = vec![(format!("/etc/ssl/certs/{h:08x}.{n}"), format!("{NAME}.pem"))];
        let one = plan_with(&files[..1], root);
        assert_eq!(hash_links(&one, h), expected, "looked up one by one");
        let ten = plan_with(&files, root);
        assert_eq!(hash_links(&ten, h), expected, "from the listing");
        // The other nine are planned alike both ways too: the whole plans agree on them.
        let mine = |p: &Plan| p.changes.iter().filter(|c| c.summary().contains("corp-root")).count();
        assert_eq!(mine(&one), mine(&ten));
    }
}

#[test]
fn distroless() {
    let base = Base::new();
    let i = install_into(&fixtures::distroless(&base), corp(), &Settings::default());
    assert_eq!(i.detection.family, Family::Debian);
    i.assert_bundle("/etc/ssl/certs/ca-certificates.crt", &refs(&base));
    let anchor = format!("/usr/local/share/ca-certificates/{NAME}.crt");
    i.assert_is_ca(&anchor);
    i.assert_hash_link("/etc/ssl/certs", false, 0, &format!("{NAME}.pem"));
    i.finish();
}

#[test]
fn alpine_bundle_only() {
    let base = Base::new();
    let i = install_into(&fixtures::alpine_bundle(&base), corp(), &Settings::default());
    assert_eq!(i.detection.family, Family::Alpine);
    i.assert_bundle("/etc/ssl/certs/ca-certificates.crt", &refs(&base));
    i.assert_bundle("/etc/ssl/cert.pem", &refs(&base));
    i.assert_bundle("/etc/ssl1.1/cert.pem", &refs(&base));
    i.assert_is_ca(&format!("/usr/local/share/ca-certificates/{NAME}.crt"));
    // No per-certificate links: the full package is not there.
    let names: Vec<String> = std::fs::read_dir(i.path("/etc/ssl/certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["ca-certificates.crt"]);
    assert_eq!(i.edits(), vec![PathBuf::from("/etc/ssl/certs/ca-certificates.crt")]);
    i.finish();
}

#[test]
fn alpine_full_package() {
    let base = Base::new();
    let i = install_into(&fixtures::alpine_full(&base), corp(), &Settings::default());
    let anchor = format!("/usr/local/share/ca-certificates/{NAME}.crt");
    i.assert_is_ca(&anchor);
    i.assert_link(&format!("/etc/ssl/certs/ca-cert-{NAME}.pem"), &anchor);
    i.assert_hash_link("/etc/ssl/certs", false, 0, &format!("ca-cert-{NAME}.pem"));
    i.assert_bundle("/etc/ssl/certs/ca-certificates.crt", &refs(&base));
    i.finish();
}

#[test]
fn wolfi_bundle_is_changed_once_through_all_its_names() {
    let base = Base::new();
    let i = install_into(&fixtures::wolfi(&base), corp(), &Settings::default());
    assert_eq!(i.detection.family, Family::Alpine);
    assert_eq!(i.edits(), vec![PathBuf::from("/etc/ssl/certs/ca-certificates.crt")]);
    for name in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/ssl/cert.pem",
        "/etc/ssl/certs/ca-bundle.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        i.assert_bundle(name, &refs(&base));
    }
    i.finish();
}

#[test]
fn alpine_without_a_store() {
    let nodes = vec![Node::file("etc/alpine-release", "3.20.3\n")];
    let i = install_into(&nodes, corp(), &Settings::default());
    i.assert_bundle("/etc/ssl/certs/ca-certificates.crt", &[]);
    i.assert_link("/etc/ssl/cert.pem", "certs/ca-certificates.crt");
    i.finish();
}

#[test]
fn rhel_p11kit_layout() {
    let base = Base::new();
    let i = install_into(&fixtures::ubi(&base), corp(), &Settings::default());
    assert_eq!(i.detection.family, Family::Rhel);
    let anchor = format!("/etc/pki/ca-trust/source/anchors/{NAME}.pem");
    i.assert_is_ca(&anchor);
    let x = "/etc/pki/ca-trust/extracted";
    for b in ["tls", "email", "objsign"] {
        let bundle = format!("{x}/pem/{b}-ca-bundle.pem");
        i.assert_bundle(&bundle, &refs(&base));
        i.assert_mode(&bundle, 0o444);
    }
    let trust = format!("{x}/openssl/ca-bundle.trust.crt");
    i.assert_bundle(&trust, &refs(&base));
    // Exactly what `openssl x509 -trustout -setalias "<CN>"` writes.
    let text = std::fs::read_to_string(i.path(&trust)).unwrap();
    assert!(text.ends_with(&i.ca.trusted_pem()), "{text}");
    let hd = format!("{x}/pem/directory-hash");
    i.assert_is_ca(&format!("{hd}/{NAME}.pem"));
    i.assert_mode(&format!("{hd}/{NAME}.pem"), 0o444);
    i.assert_hash_link(&hd, false, 0, &format!("{NAME}.pem"));
    i.assert_hash_link(&hd, true, 0, &format!("{NAME}.pem"));
    for name in [
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/pki/tls/cert.pem",
        "/etc/ssl/cert.pem",
    ] {
        i.assert_bundle(name, &refs(&base));
    }
    i.finish();
}

#[test]
fn ubi_micro_without_a_store() {
    let i = install_into(&fixtures::ubi_micro(), corp(), &Settings::default());
    assert_eq!(i.detection.family, Family::Rhel);
    let tls = "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem";
    i.assert_bundle(tls, &[]);
    i.assert_link("/etc/pki/tls/certs/ca-bundle.crt", tls);
    i.assert_link("/etc/pki/tls/cert.pem", tls);
    i.assert_is_ca(&format!("/etc/pki/ca-trust/source/anchors/{NAME}.pem"));
    i.finish();

    let (_, plan) = plan_for(&fixtures::ubi_micro(), &corp(), &no_store_settings());
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn suse_layout() {
    let base = Base::new();
    let i = install_into(&fixtures::suse(&base), corp(), &Settings::default());
    assert_eq!(i.detection.family, Family::Suse);
    i.assert_is_ca(&format!("/etc/pki/trust/anchors/{NAME}.pem"));
    i.assert_bundle("/var/lib/ca-certificates/ca-bundle.pem", &refs(&base));
    i.assert_bundle("/etc/ssl/ca-bundle.pem", &refs(&base));
    let pem = "/var/lib/ca-certificates/pem";
    i.assert_is_ca(&format!("{pem}/{NAME}.pem"));
    i.assert_hash_link(pem, false, 0, &format!("{NAME}.pem"));
    i.assert_hash_link(pem, true, 0, &format!("{NAME}.pem"));
    let ossl = "/var/lib/ca-certificates/openssl";
    let file = format!("{ossl}/{NAME}.pem");
    assert_eq!(std::fs::read_to_string(i.path(&file)).unwrap(), i.ca.trusted_pem());
    i.assert_hash_link(ossl, false, 0, &format!("{NAME}.pem"));
    i.assert_hash_link(ossl, true, 0, &format!("{NAME}.pem"));
    i.finish();
}

#[test]
fn arch_layout() {
    let base = Base::new();
    let i = install_into(&fixtures::arch(&base), corp(), &Settings::default());
    assert_eq!(i.detection.family, Family::Arch);
    i.assert_is_ca(&format!("/etc/ca-certificates/trust-source/anchors/{NAME}.crt"));
    let x = "/etc/ca-certificates/extracted";
    for b in [
        "tls-ca-bundle.pem",
        "email-ca-bundle.pem",
        "objsign-ca-bundle.pem",
        "ca-bundle.trust.crt",
    ] {
        i.assert_bundle(&format!("{x}/{b}"), &refs(&base));
    }
    i.assert_bundle("/etc/ssl/certs/ca-certificates.crt", &refs(&base));
    i.assert_bundle("/etc/ssl/cert.pem", &refs(&base));
    let file = format!("{x}/cadir/{NAME}.pem");
    assert_eq!(std::fs::read_to_string(i.path(&file)).unwrap(), i.ca.trusted_pem());
    i.assert_hash_link(&format!("{x}/cadir"), false, 0, &format!("{NAME}.pem"));
    i.finish();
}

#[test]
fn no_store_at_all() {
    for nodes in [fixtures::busybox(), fixtures::scratch()] {
        let i = install_into(&nodes, corp(), &Settings::default());
        assert_eq!(i.detection.family, Family::None);
        i.assert_bundle("/etc/ssl/certs/ca-certificates.crt", &[]);
        assert_eq!(i.plan.changes.len(), 1);
        i.finish();
        let (_, plan) = plan_for(&nodes, &corp(), &no_store_settings());
        assert!(plan.is_empty(), "{plan:?}");
    }
}

#[test]
fn generic_appends_to_each_physical_bundle_once() {
    let base = Base::new();
    let nodes = vec![
        Node::file("etc/os-release", "ID=gentoo\n"),
        Node::file("etc/ssl/certs/ca-certificates.crt", base.bundle()),
        Node::symlink("etc/ssl/cert.pem", "certs/ca-certificates.crt"),
        Node::file("etc/pki/tls/certs/ca-bundle.crt", base.cas[0].pem.clone()),
    ];
    let i = install_into(&nodes, corp(), &Settings::default());
    assert_eq!(i.detection.family, Family::Generic);
    assert_eq!(
        i.edits(),
        vec![
            PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            PathBuf::from("/etc/pki/tls/certs/ca-bundle.crt")
        ]
    );
    i.assert_bundle("/etc/ssl/cert.pem", &refs(&base));
    i.assert_bundle("/etc/pki/tls/certs/ca-bundle.crt", &[&base.cas[0]]);
    i.finish();
}

#[test]
fn an_extra_go_bundle_next_to_a_family_store_is_covered() {
    // A Debian image that also carries a RHEL-style bundle file of its own.
    let base = Base::new();
    let mut nodes = fixtures::debian(&base);
    nodes.push(Node::file("etc/pki/tls/certs/ca-bundle.crt", base.bundle()));
    let i = install_into(&nodes, corp(), &Settings::default());
    i.assert_bundle("/etc/pki/tls/certs/ca-bundle.crt", &refs(&base));
    i.assert_bundle("/etc/ssl/certs/ca-certificates.crt", &refs(&base));
    i.finish();
}

#[test]
fn hostile_stores_are_refused_or_contained() {
    // A FIFO where the bundle should be: refused at once, not read (which would block).
    let mut nodes = fixtures::debian_base();
    nodes.push(Node::Fifo("etc/ssl/certs/ca-certificates.crt".into()));
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), &nodes);
    let dir = tempfile::tempdir().unwrap();
    let loaded = certs::load(&[corp().write(dir.path(), "corp-root.pem")]);
    let err = installer::plan(
        &ContainerRoot::open(tmp.path()).unwrap(),
        &loaded.certs,
        &Settings::default(),
    )
    .unwrap_err();
    assert!(err.is_safety_violation(), "{err}");

    // A bundle link climbing out of the root lands inside it; a garbage bundle gets our CA.
    let nodes = vec![
        Node::file("etc/alpine-release", "3.20.3\n"),
        Node::symlink("etc/ssl/certs/ca-certificates.crt", "../../../../../../../real-bundle"),
        Node::file("real-bundle", "garbage, not PEM\n"),
    ];
    let i = install_into(&nodes, corp(), &Settings::default());
    i.assert_bundle("/real-bundle", &[]);
    assert_eq!(i.edits(), vec![PathBuf::from("/etc/ssl/certs/ca-certificates.crt")]);
    i.finish();
}

#[test]
fn several_certificates_with_one_name_and_one_hash() {
    // Two inputs named alike, with the same subject: distinct names, hash suffixes .0 and .1.
    let (a, b) = (TestCa::new("Corp Root CA"), TestCa::new("Corp Root CA"));
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    build(&rootfs, &fixtures::debian_base());
    let before = Snapshot::take(&rootfs);
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir(&da).unwrap();
    std::fs::create_dir(&db).unwrap();
    let loaded = certs::load(&[a.write(&da, "corp-root.pem"), b.write(&db, "corp-root.pem")]);
    assert_eq!(loaded.certs.len(), 2);
    let root = ContainerRoot::open(&rootfs).unwrap();
    let (_, plan) = installer::plan(&root, &loaded.certs, &Settings::default()).unwrap();
    let journal = tmp.path().join("journal");
    install(&root, &plan, &journal, &Default::default()).unwrap();
    let second = format!("{NAME}-{}", &b.sha256[..16]);
    let certs_dir = rootfs.join("etc/ssl/certs");
    assert_eq!(
        std::fs::read_link(certs_dir.join(format!("{:08x}.0", a.hash))).unwrap(),
        Path::new(&format!("{NAME}.pem"))
    );
    assert_eq!(
        std::fs::read_link(certs_dir.join(format!("{:08x}.1", a.hash))).unwrap(),
        Path::new(&format!("{second}.pem"))
    );
    assert_eq!(
        first_cert(&resolve(&rootfs, format!("/etc/ssl/certs/{second}.pem"))),
        b.sha256
    );
    let bundle = cert_set(&certs_dir.join("ca-certificates.crt"));
    assert_eq!(bundle, [a.sha256.clone(), b.sha256.clone()].into_iter().collect());
    let (_, again) = installer::plan(&root, &loaded.certs, &Settings::default()).unwrap();
    assert!(again.is_empty());
    uninstall(&root, &journal).unwrap();
    before.assert_same(&Snapshot::take(&rootfs), "after uninstall");
}
