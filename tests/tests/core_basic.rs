//! Install and uninstall on ordinary trees: the happy paths of the core layer.

use cacerts_core::{install, uninstall, Change, ContainerRoot, Edit, Plan};
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
