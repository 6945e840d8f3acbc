//! Python certifi bundles: found in site-packages, virtualenvs under /opt and pip's vendored
//! copy; Debian's certifi (a link to the system bundle) left alone; uninstall leaves no trace.

use std::path::{Path, PathBuf};
use std::process::Command;

use cacerts_core::certs::{self, CaCert};
use cacerts_core::stores::certifi;
use cacerts_core::{install, uninstall, Change, ContainerRoot, Plan};
use cacerts_testkit::{age, build, Node, Snapshot};

fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let pem = dir.join(format!("{name}.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
        .args(["-nodes", "-days", "30", "-subj"])
        .arg(format!("/CN={name} test CA"))
        .args(["-addext", "basicConstraints=critical,CA:TRUE", "-keyout"])
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(&pem)
        .output()
        .expect("openssl must be installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    pem
}

fn load(pem: &Path) -> Vec<CaCert> {
    let loaded = certs::load(&[pem.to_owned()]);
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    loaded.certs
}

/// How many CA certificates Python's ssl module loads from a bundle.
fn python_count(bundle: &Path) -> usize {
    let out = Command::new("python3")
        .args([
            "-c",
            "import ssl,sys; c=ssl.create_default_context(cafile=sys.argv[1]); print(len(c.get_ca_certs()))",
        ])
        .arg(bundle)
        .output()
        .expect("python3 must be installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

const VENV: &str = "opt/venv/lib/python3.11/site-packages/certifi/cacert.pem";
const VENDORED: &str = "opt/venv/lib/python3.11/site-packages/pip/_vendor/certifi/cacert.pem";
const DOT_VENV: &str = "opt/app/.venv/lib/python3.12/site-packages/certifi/cacert.pem";
const USR_LOCAL: &str = "usr/local/lib/python3.12/site-packages/certifi/cacert.pem";
const DEBIAN: &str = "usr/lib/python3/dist-packages/certifi/cacert.pem";
const SYSTEM: &str = "etc/ssl/certs/ca-certificates.crt";
const TOO_DEEP: &str = "opt/a/b/c/d/e/f/lib/python3.11/site-packages/certifi/cacert.pem";

struct Fixture {
    tmp: tempfile::TempDir,
    rootfs: PathBuf,
    certs: Vec<CaCert>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let image = std::fs::read_to_string(make_ca(tmp.path(), "image-ca")).unwrap();
    let ours = make_ca(tmp.path(), "corp-root");
    let certs = load(&ours);
    let bundle = format!("\n# Issuer: CN=image-ca\n# Label: \"image-ca\"\n{image}");
    let with_ours = format!(
        "{bundle}\n# Label: \"corp\"\n{}",
        std::fs::read_to_string(&ours).unwrap()
    );
    build(
        &rootfs,
        &[
            Node::file(VENV, &bundle),
            Node::symlink("opt/venv/lib64", "lib"),
            Node::file(VENDORED, &bundle),
            Node::file(DOT_VENV, &bundle),
            // Already holds our certificate: nothing to add.
            Node::file(USR_LOCAL, &with_ours),
            Node::file(SYSTEM, &bundle),
            Node::symlink(DEBIAN, "/etc/ssl/certs/ca-certificates.crt"),
            Node::file(TOO_DEEP, &bundle),
        ],
    );
    age(&rootfs);
    Fixture { tmp, rootfs, certs }
}

fn edited(plan: &Plan) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = plan
        .changes
        .iter()
        .map(|c| match c {
            Change::EditFile { path, .. } => path.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    v.sort();
    v
}

#[test]
fn certifi_bundles_get_our_certs_and_uninstall_leaves_no_trace() {
    let f = fixture();
    let before = Snapshot::take(&f.rootfs);
    let untouched: Vec<(&str, Vec<u8>)> = [USR_LOCAL, SYSTEM, TOO_DEEP]
        .iter()
        .map(|p| (*p, std::fs::read(f.rootfs.join(p)).unwrap()))
        .collect();
    let root = ContainerRoot::open(&f.rootfs).unwrap();
    let plan = Plan {
        changes: certifi::plan(&root, &f.certs, &[]).unwrap(),
    };
    let want: Vec<PathBuf> = [DOT_VENV, VENV, VENDORED]
        .iter()
        .map(|p| Path::new("/").join(p))
        .collect();
    assert_eq!(edited(&plan), want);

    let journal = f.tmp.path().join("state/j.journal");
    install(&root, &plan, &journal, &Default::default()).unwrap();
    for p in [VENV, VENDORED, DOT_VENV] {
        let bundle = f.rootfs.join(p);
        assert_eq!(python_count(&bundle), 2, "{p}");
        let text = std::fs::read_to_string(&bundle).unwrap();
        assert!(text.contains("# Label: \"cacerts-hook-corp-root\""), "{text}");
        assert!(text.contains(f.certs[0].pem.as_str()));
    }
    for (p, bytes) in &untouched {
        assert_eq!(&std::fs::read(f.rootfs.join(p)).unwrap(), bytes, "{p} unchanged");
    }
    // Installed already: a second plan is empty.
    assert!(certifi::plan(&root, &f.certs, &[]).unwrap().is_empty());

    let report = uninstall(&root, &journal).unwrap();
    assert_eq!(report.restored.len(), 3, "{report:?}");
    before.assert_same(&Snapshot::take(&f.rootfs), "after uninstall");
}

#[test]
fn bundle_changed_by_the_container_keeps_its_change() {
    let f = fixture();
    let root = ContainerRoot::open(&f.rootfs).unwrap();
    let plan = Plan {
        changes: certifi::plan(&root, &f.certs, &[]).unwrap(),
    };
    let journal = f.tmp.path().join("state/j.journal");
    let original = std::fs::read_to_string(f.rootfs.join(VENV)).unwrap();
    install(&root, &plan, &journal, &Default::default()).unwrap();

    // The application appends its own certificate after ours.
    let theirs = std::fs::read_to_string(make_ca(f.tmp.path(), "app-ca")).unwrap();
    let bundle = f.rootfs.join(VENV);
    let mut text = std::fs::read_to_string(&bundle).unwrap();
    text.push_str(&theirs);
    std::fs::write(&bundle, &text).unwrap();

    let report = uninstall(&root, &journal).unwrap();
    assert_eq!(report.stripped, vec![Path::new("/").join(VENV)], "{report:?}");
    let after = std::fs::read_to_string(&bundle).unwrap();
    assert!(!after.contains(f.certs[0].pem.as_str()), "{after}");
    assert!(after.contains(&theirs));
    assert!(after.starts_with(&original));
    assert_eq!(python_count(&bundle), 2);
}
