//! Install and uninstall on ordinary trees: the happy paths of the core layer.

use cacerts_core::{install, uninstall, uninstall_recorded, Change, ContainerRoot, Edit, Plan};
use cacerts_testkit::{age, build, Node, Snapshot};

const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nTESTCA\n-----END CERTIFICATE-----\n";

fn plan() -> Plan {
    let mut p = Plan::new();
    p.push(Change::CreateFile {
        path: "/usr/local/share/ca-certificates/test.crt".into(),
        contents: PEM.to_vec(),
        mode: 0o644,
    });
    p.push(Change::CreateSymlink {
        path: "/etc/ssl/certs/test.pem".into(),
        target: "/usr/local/share/ca-certificates/test.crt".into(),
    });
    p.push(Change::EditFile {
        path: "/etc/ssl/cert.pem".into(),
        edit: Edit::Append(PEM.to_vec()),
    });
    p
}

#[test]
fn install_then_uninstall_leaves_no_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    build(
        &rootfs,
        &[
            Node::file(
                "etc/ssl/certs/ca-certificates.crt",
                "-----BEGIN CERTIFICATE-----\nIMAGE\n-----END CERTIFICATE-----",
            ),
            Node::symlink("etc/ssl/cert.pem", "certs/ca-certificates.crt"),
            Node::dir("usr/local"),
        ],
    );
    age(&rootfs);
    let before = Snapshot::take(&rootfs);
    let journal = tmp.path().join("state/j.json");

    let root = ContainerRoot::open(&rootfs).unwrap();
    let report = install(&root, &plan(), &journal, &Default::default()).unwrap();
    assert_eq!(
        report.edited,
        vec![std::path::PathBuf::from("/etc/ssl/certs/ca-certificates.crt")]
    );
    let bundle = std::fs::read(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(bundle.ends_with(PEM), "appended after a separator newline");
    assert!(bundle.windows(6).any(|w| w == b"IMAGE\n"));
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/ssl/certs/test.pem")).unwrap(),
        std::path::Path::new("/usr/local/share/ca-certificates/test.crt")
    );
    assert_ne!(Snapshot::take(&rootfs), before);

    let root = ContainerRoot::open(&rootfs).unwrap();
    let report = uninstall(&root, &journal).unwrap();
    assert!(report.kept.is_empty(), "{:?}", report.kept);
    before.assert_same(&Snapshot::take(&rootfs), "after uninstall");
    assert!(!journal.exists());
    // Idempotent: a second uninstall finds no journal and does nothing.
    assert!(uninstall(&root, &journal).unwrap().is_empty());
    before.assert_same(&Snapshot::take(&rootfs), "after a second uninstall");
}

/// Undone from the journal alone, on the root its header records; or, when `gone` says that
/// root is no more, deleted without touching anything.
#[test]
fn a_journal_is_undone_on_the_root_it_records() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    build(
        &rootfs,
        &[
            Node::file("etc/ssl/certs/ca-certificates.crt", "x\n"),
            Node::symlink("etc/ssl/cert.pem", "certs/ca-certificates.crt"),
        ],
    );
    age(&rootfs);
    let before = Snapshot::take(&rootfs);
    let journal = tmp.path().join("state/j.json");
    let options = Default::default();
    assert!(
        uninstall_recorded(&journal, &options, |_| panic!("no journal, no root"))
            .unwrap()
            .is_none()
    );

    install(&ContainerRoot::open(&rootfs).unwrap(), &plan(), &journal, &options).unwrap();
    let mut asked = None;
    let report = uninstall_recorded(&journal, &options, |r| {
        asked = Some(r.to_owned());
        false
    })
    .unwrap()
    .expect("a journal");
    assert_eq!(asked.as_deref(), Some(rootfs.canonicalize().unwrap().as_path()));
    assert_eq!(
        report.removed.len(),
        6,
        "two entries and the four directories made for one: {report:?}"
    );
    assert_eq!(report.restored.len(), 1, "{report:?}");
    before.assert_same(&Snapshot::take(&rootfs), "after uninstall_recorded");
    assert!(!journal.exists());

    // A root said to be gone is left as it is; only the journal goes.
    install(&ContainerRoot::open(&rootfs).unwrap(), &plan(), &journal, &options).unwrap();
    let installed = Snapshot::take(&rootfs);
    let report = uninstall_recorded(&journal, &options, |_| true)
        .unwrap()
        .expect("a journal");
    assert!(report.is_empty(), "{report:?}");
    assert!(!journal.exists());
    installed.assert_same(&Snapshot::take(&rootfs), "a gone root is not touched");
}

#[test]
fn journal_inside_the_root_is_refused_before_any_change() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    build(
        &rootfs,
        &[Node::file("etc/ssl/certs/ca-certificates.crt", "x\n"), Node::dir("run")],
    );
    age(&rootfs);
    let before = Snapshot::take(&rootfs);
    let root = ContainerRoot::open(&rootfs).unwrap();
    // Directly inside, and through a host symlink that leads inside.
    std::os::unix::fs::symlink(rootfs.join("run"), tmp.path().join("sneaky")).unwrap();
    for journal in [rootfs.join("run/j.json"), tmp.path().join("sneaky/new/j.json")] {
        let err = install(&root, &plan(), &journal, &Default::default()).unwrap_err();
        assert!(
            matches!(err, cacerts_core::Error::JournalInvalid { .. }),
            "{}: {err}",
            journal.display()
        );
        assert!(
            err.to_string().contains("outside the container's root filesystem"),
            "{err}"
        );
    }
    before.assert_same(&Snapshot::take(&rootfs), "after refused installs");
}

/// A name in an image may be any bytes but `/` and NUL. A trust store under a directory whose
/// name is not UTF-8, and new entries named so, are installed, journaled and undone like any
/// other (the journal once refused to serialize such a path, halfway through an install).
#[test]
fn names_that_are_not_utf8_are_journaled_and_undone() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    let odd = |prefix: &str, name: &[u8]| {
        let mut p = PathBuf::from(prefix);
        p.push(OsStr::from_bytes(name));
        p
    };
    for backend in [cacerts_core::Backend::Openat2, cacerts_core::Backend::Walk] {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        build(&rootfs, &[Node::dir("usr/local/share/ca-certificates")]);
        // /etc/ssl/certs -> "c\xff", which holds the bundle.
        let store = odd("etc/ssl", b"c\xff");
        std::fs::create_dir_all(rootfs.join(&store)).unwrap();
        std::fs::write(
            rootfs.join(&store).join("ca-certificates.crt"),
            "-----BEGIN CERTIFICATE-----\nIMAGE\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(OsStr::from_bytes(b"c\xff"), rootfs.join("etc/ssl/certs")).unwrap();
        age(&rootfs);
        let before = Snapshot::take(&rootfs);
        let journal = tmp.path().join("state/j.json");

        let anchor_dir = odd("/usr/local/share/ca-certificates", b"dir-\xfe");
        let anchor = anchor_dir.join(OsStr::from_bytes(b"ca-\xfd.crt"));
        let mut plan = Plan::new();
        plan.push(Change::CreateDir {
            path: anchor_dir.clone(),
        });
        plan.push(Change::CreateFile {
            path: anchor.clone(),
            contents: PEM.to_vec(),
            mode: 0o644,
        });
        plan.push(Change::CreateSymlink {
            path: odd("/etc/ssl/certs", b"link-\xfc.pem"),
            target: anchor.clone(),
        });
        plan.push(Change::EditFile {
            path: "/etc/ssl/certs/ca-certificates.crt".into(),
            edit: Edit::Append(PEM.to_vec()),
        });

        let root = ContainerRoot::open_with_backend(&rootfs, backend).unwrap();
        let report = install(&root, &plan, &journal, &Default::default())
            .unwrap_or_else(|e| panic!("[{backend:?}] install: {e}"));
        assert_eq!(
            report.edited,
            vec![PathBuf::from("/").join(&store).join("ca-certificates.crt")],
            "[{backend:?}] the bundle is edited under its canonical, non-UTF-8 path"
        );
        assert_eq!(
            std::fs::read(rootfs.join(anchor.strip_prefix("/").unwrap())).unwrap(),
            PEM
        );
        let link = rootfs.join(&store).join(OsStr::from_bytes(b"link-\xfc.pem"));
        assert_eq!(std::fs::read_link(&link).unwrap(), anchor, "[{backend:?}]");
        let text = std::fs::read(&journal).unwrap();
        assert!(
            text.windows(9).any(|w| w == br#"{"bytes":"#),
            "[{backend:?}] the journal names the paths by their bytes"
        );

        let root = ContainerRoot::open_with_backend(&rootfs, backend).unwrap();
        let report = uninstall(&root, &journal).unwrap_or_else(|e| panic!("[{backend:?}] uninstall: {e}"));
        assert!(report.kept.is_empty(), "[{backend:?}] {:?}", report.kept);
        before.assert_same(&Snapshot::take(&rootfs), format!("[{backend:?}] after uninstall"));
        assert!(!journal.exists(), "[{backend:?}]");
    }
}
