//! Crash recovery: install and uninstall are cut short at every mutation point, by an error (the
//! code's own rollback must run) or by a panic that unwinds past every rollback (a killed process),
//! and the next run must bring the tree back to exactly what it was.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

use cacerts_core::failpoint::{arm, disarm};
use cacerts_core::stores::keystore::Keystore;
use cacerts_core::{install, uninstall, Backend, Change, ContainerRoot, Edit, Error, Options, Plan, Report, Result};
use cacerts_testkit::fixtures::jks_store;
use cacerts_testkit::mount::Overlay;
use cacerts_testkit::{age, build, Node, Snapshot};

const PEM_A: &[u8] = b"-----BEGIN CERTIFICATE-----\nCORP-ROOT-A\n-----END CERTIFICATE-----\n";
const PEM_B: &[u8] = b"-----BEGIN CERTIFICATE-----\nCORP-ROOT-B\n-----END CERTIFICATE-----\n";

/// The JKS key store of the tree, edited in place.
const KEYSTORE: &str = "etc/ssl/certs/java/cacerts";

/// A Debian-like store with a Red Hat-like bundle beside it, reached through a symlink, and a
/// Java key store.
fn tree() -> Vec<Node> {
    vec![
        Node::File(
            KEYSTORE.into(),
            jks_store("changeit", &[("debian:image-1.pem", b"IMAGE-1-DER")]),
            0o644,
        ),
        Node::file(
            "etc/ssl/certs/ca-certificates.crt",
            "-----BEGIN CERTIFICATE-----\nIMAGE-1\n-----END CERTIFICATE-----\n",
        ),
        Node::symlink("etc/ssl/cert.pem", "certs/ca-certificates.crt"),
        // No trailing newline: the edit inserts a separator.
        Node::file(
            "etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
            "-----BEGIN CERTIFICATE-----\nIMAGE-2\n-----END CERTIFICATE-----",
        ),
        Node::symlink(
            "etc/pki/tls/certs/ca-bundle.crt",
            "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        ),
        Node::dir("usr/share/doc"),
        Node::file("usr/bin/true", "not executed"),
    ]
}

/// Several creates (with `mkdir -p` chains), a symlink, two bundle edits, one through a symlink,
/// and a key store edit (in place: an entry count patched, entries written over the old hash).
fn plan() -> Plan {
    let mut p = Plan::new();
    p.push(Change::CreateFile {
        path: "/usr/local/share/ca-certificates/corp/root-a.crt".into(),
        contents: PEM_A.to_vec(),
        mode: 0o644,
    });
    p.push(Change::CreateFile {
        path: "/usr/local/share/ca-certificates/corp/root-b.crt".into(),
        contents: PEM_B.to_vec(),
        mode: 0o600,
    });
    p.push(Change::CreateDir {
        path: "/etc/pki/ca-trust/source/anchors".into(),
    });
    p.push(Change::CreateSymlink {
        path: "/etc/ssl/certs/corp-root-a.pem".into(),
        target: "/usr/local/share/ca-certificates/corp/root-a.crt".into(),
    });
    let mut both = PEM_A.to_vec();
    both.extend_from_slice(PEM_B);
    p.push(Change::EditFile {
        path: "/etc/ssl/certs/ca-certificates.crt".into(),
        edit: Edit::Append(both.clone()),
    });
    p.push(Change::EditFile {
        path: "/etc/pki/tls/certs/ca-bundle.crt".into(),
        edit: Edit::Append(both),
    });
    p.push(Change::EditFile {
        path: format!("/{KEYSTORE}").into(),
        edit: Edit::KeystoreAdd {
            entries: vec![
                ("cacerts-hook-a".into(), b"ROOT-A-DER".to_vec()),
                ("cacerts-hook-b".into(), b"ROOT-B-DER".to_vec()),
            ],
            password: "changeit".into(),
        },
    });
    p
}

/// Where the tree is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// A directory.
    Plain,
    /// The lower layer of an overlay file system with an empty upper one, the root being the
    /// overlay, as an engine mounts a container's root: bundles are appended to by copy there.
    Overlay,
}

struct Fixture {
    /// Unmounted before the directory it is in is removed.
    overlay: Option<Overlay>,
    _tmp: tempfile::TempDir,
    rootfs: PathBuf,
    state: PathBuf,
    journal: PathBuf,
    before: Snapshot,
    backend: Backend,
}

/// The every-point loops run with both ways of resolving paths, and on an overlay file system.
const CASES: [(Backend, Layout); 3] = [
    (Backend::Openat2, Layout::Plain),
    (Backend::Walk, Layout::Plain),
    (Backend::Openat2, Layout::Overlay),
];

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(Backend::Openat2, Layout::Plain)
    }

    fn with(backend: Backend, layout: Layout) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let (rootfs, overlay) = match layout {
            Layout::Plain => {
                let rootfs = tmp.path().join("rootfs");
                std::fs::create_dir(&rootfs).unwrap();
                build(&rootfs, &tree());
                age(&rootfs);
                (rootfs, None)
            }
            Layout::Overlay => {
                let overlay = Overlay::new(&tmp.path().join("layers"), &tree());
                (overlay.merged.clone(), Some(overlay))
            }
        };
        let before = Snapshot::take(&rootfs);
        let state = tmp.path().join("state");
        let journal = state.join("ctr.journal");
        Fixture {
            overlay,
            rootfs,
            state,
            journal,
            before,
            backend,
            _tmp: tmp,
        }
    }

    /// The non-directories in the upper layer, on an overlay; none on a plain root.
    fn upper_non_directories(&self) -> Vec<PathBuf> {
        self.overlay
            .as_ref()
            .map(Overlay::upper_non_directories)
            .unwrap_or_default()
    }

    /// Nothing was copied up since the upper layer held `before`
    /// ([`Fixture::upper_non_directories`]): on an overlay, rolling back or undoing leaves in the
    /// upper layer only the copies the install had already renamed into place (restored), never
    /// another file of the image.
    #[track_caller]
    fn assert_nothing_copied_up(&self, before: &[PathBuf], ctx: &str) {
        let copied_up: Vec<_> = self
            .upper_non_directories()
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        assert!(copied_up.is_empty(), "{ctx}: copied up {copied_up:?}");
    }

    fn root(&self) -> ContainerRoot {
        ContainerRoot::open_with_backend(&self.rootfs, self.backend).unwrap()
    }

    fn install(&self) -> Result<Report> {
        install(&self.root(), &plan(), &self.journal, &Options::default())
    }

    fn uninstall(&self) -> Result<Report> {
        uninstall(&self.root(), &self.journal)
    }

    /// The tree is exactly as before, and neither the journal nor any of its backups is left.
    #[track_caller]
    fn assert_clean(&self, ctx: &str) {
        self.before.assert_same(&Snapshot::take(&self.rootfs), ctx);
        assert!(!self.journal.exists(), "{ctx}: journal left behind");
        if self.state.exists() {
            let left: Vec<_> = std::fs::read_dir(&self.state)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(left.is_empty(), "{ctx}: files left beside the journal: {left:?}");
        }
    }
}

/// Silences the message of injected panics (there are hundreds); any other panic is reported.
fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !msg.starts_with("injected crash at mutation point") {
                default(info);
            }
        }));
    });
}

/// Runs `f` with the thread armed to crash (panic) at mutation point `n`; true if it crashed.
fn crash_at<T>(n: usize, f: impl FnOnce() -> T) -> bool {
    quiet_injected_panics();
    arm(n, true);
    let outcome = catch_unwind(AssertUnwindSafe(f));
    disarm();
    match outcome {
        Ok(_) => false,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            assert_eq!(
                msg,
                format!("injected crash at mutation point {n}"),
                "a panic that is not the injected crash"
            );
            true
        }
    }
}

/// Mutation points a clean run of `f` passes.
fn count_points<T>(f: impl FnOnce() -> Result<T>) -> usize {
    arm(usize::MAX, false);
    let r = f();
    let n = disarm();
    assert!(r.is_ok(), "counting run failed: {:?}", r.err());
    n
}

fn install_points(layout: Layout) -> usize {
    let fx = Fixture::with(Backend::Openat2, layout);
    let n = count_points(|| fx.install());
    fx.uninstall().unwrap();
    fx.assert_clean("count run");
    n
}

fn uninstall_points(layout: Layout) -> usize {
    let fx = Fixture::with(Backend::Openat2, layout);
    fx.install().unwrap();
    let n = count_points(|| fx.uninstall());
    fx.assert_clean("count run");
    n
}

/// What an installed tree looks like, leaving out times (new entries get the current time; so
/// do new key store entries, whose trusted entries are compared instead of the bytes).
fn shape(rootfs: &Path) -> BTreeMap<PathBuf, String> {
    Snapshot::take(rootfs)
        .0
        .into_iter()
        .map(|(p, e)| {
            let contents = if p == Path::new(KEYSTORE) {
                let store = Keystore::parse(&std::fs::read(rootfs.join(KEYSTORE)).unwrap(), "changeit")
                    .expect("the installed key store verifies");
                format!("{:?}", store.trusted())
            } else {
                format!("{:?}", e.sha256)
            };
            let desc = format!(
                "{} {:o} {}:{} {:?} {:?} {:?} {contents}",
                e.kind, e.mode, e.uid, e.gid, e.size, e.target, e.xattrs
            );
            (p, desc)
        })
        .collect()
}

#[test]
fn the_plan_has_many_mutation_points() {
    // The loops below are only worth something if there is a lot to cut short.
    let install = install_points(Layout::Plain);
    let uninstall = uninstall_points(Layout::Plain);
    eprintln!("points: install {install}, uninstall {uninstall}");
    assert!(install >= 20, "install passes only {install} mutation points");
    assert!(uninstall >= 10, "uninstall passes only {uninstall} mutation points");
    // Counting is deterministic.
    assert_eq!(install, install_points(Layout::Plain));
    assert_eq!(uninstall, uninstall_points(Layout::Plain));
}

#[test]
fn the_installed_tree_is_what_the_plan_says() {
    let fx = Fixture::new();
    let store_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(fx.rootfs.join(KEYSTORE)).unwrap());
    let report = fx.install().unwrap();
    assert!(!report.recovered);
    assert_eq!(
        report.edited,
        vec![
            PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
            PathBuf::from("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"),
            PathBuf::from(format!("/{KEYSTORE}")),
        ]
    );
    // The key store was changed in place, and holds the image's entry and ours, in order.
    let store_meta = std::fs::metadata(fx.rootfs.join(KEYSTORE)).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&store_meta), store_inode);
    let store = Keystore::parse(&std::fs::read(fx.rootfs.join(KEYSTORE)).unwrap(), "changeit").unwrap();
    assert_eq!(
        store.trusted(),
        vec![
            ("debian:image-1.pem".to_string(), b"IMAGE-1-DER".to_vec()),
            ("cacerts-hook-a".to_string(), b"ROOT-A-DER".to_vec()),
            ("cacerts-hook-b".to_string(), b"ROOT-B-DER".to_vec()),
        ]
    );
    let bundle = std::fs::read_to_string(fx.rootfs.join("etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem")).unwrap();
    assert!(bundle.contains("IMAGE-2\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nCORP-ROOT-A"));
    assert!(
        std::fs::symlink_metadata(fx.rootfs.join("etc/pki/tls/certs/ca-bundle.crt"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(fx
        .rootfs
        .join("usr/local/share/ca-certificates/corp/root-b.crt")
        .is_file());
    assert!(fx.rootfs.join("etc/pki/ca-trust/source/anchors").is_dir());
    fx.uninstall().unwrap();
    fx.assert_clean("after uninstall");
}

/// The `op` and `id` of each record in the journal at `path`, batches taken apart (the header
/// has neither).
fn records(path: &Path) -> Vec<(String, u64)> {
    fn push(v: &serde_json::Value, out: &mut Vec<(String, u64)>) {
        match v["op"].as_str() {
            Some("batch") => v["records"].as_array().unwrap().iter().for_each(|r| push(r, out)),
            Some(op) => out.extend(v["id"].as_u64().map(|id| (op.to_owned(), id))),
            None => {}
        }
    }
    let mut out = Vec::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        push(&serde_json::from_str(line).unwrap(), &mut out);
    }
    out
}

#[test]
fn on_an_overlay_bundles_and_key_stores_are_changed_by_copy() {
    let bundle = "etc/ssl/certs/ca-certificates.crt";
    let mut expected = std::fs::read(Fixture::new().rootfs.join(bundle)).unwrap();
    expected.extend_from_slice(PEM_A);
    expected.extend_from_slice(PEM_B);
    let inode = |fx: &Fixture, path: &str| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(fx.rootfs.join(path)).unwrap())
    };
    for layout in [Layout::Plain, Layout::Overlay] {
        let fx = Fixture::with(Backend::Openat2, layout);
        let inodes = (inode(&fx, bundle), inode(&fx, KEYSTORE));
        fx.install().unwrap();
        assert_eq!(std::fs::read(fx.rootfs.join(bundle)).unwrap(), expected, "{layout:?}");
        let store = Keystore::parse(&std::fs::read(fx.rootfs.join(KEYSTORE)).unwrap(), "changeit").unwrap();
        assert_eq!(store.trusted().len(), 3, "{layout:?}: the image's entry and ours");
        let records = records(&fx.journal);
        let in_place: Vec<u64> = records
            .iter()
            .filter(|(op, _)| op == "append" || op == "patch")
            .map(|r| r.1)
            .collect();
        assert_eq!(in_place.len(), 3, "{layout:?}: two bundles, one key store: {records:?}");
        // A copy is journaled as the append or patch plus the `made` record of the file that
        // replaced the original.
        let copies = in_place
            .iter()
            .filter(|&&id| records.contains(&("made".to_owned(), id)))
            .count();
        match layout {
            Layout::Plain => {
                assert_eq!(copies, 0, "changed in place: {records:?}");
                assert_eq!((inode(&fx, bundle), inode(&fx, KEYSTORE)), inodes, "the same files");
            }
            Layout::Overlay => assert_eq!(copies, 3, "all three copied: {records:?}"),
        }
        fx.uninstall().unwrap();
        fx.assert_clean(&format!("{layout:?}: after uninstall"));
    }
}

#[test]
fn install_killed_at_every_point_is_recovered_by_uninstall() {
    for (backend, layout) in CASES {
        let count = install_points(layout);
        for n in 1..=count {
            let fx = Fixture::with(backend, layout);
            assert!(crash_at(n, || fx.install()), "install did not reach mutation point {n}");
            let crashed = fx.upper_non_directories();
            let report = fx
                .uninstall()
                .unwrap_or_else(|e| panic!("recovery after a crash at point {n}: {e}"));
            assert!(report.kept.is_empty(), "crash at {n}: recovery kept {:?}", report.kept);
            fx.assert_nothing_copied_up(&crashed, &format!("install crashed at {n}, then uninstall"));
            fx.assert_clean(&format!(
                "{backend:?}, {layout:?}: install crashed at mutation point {n}, then uninstall"
            ));
            // And the recovery is final: another uninstall has nothing to do.
            assert!(fx.uninstall().unwrap().is_empty());
        }
    }
}

#[test]
fn install_failing_at_every_point_rolls_itself_back() {
    for (backend, layout) in CASES {
        let count = install_points(layout);
        for n in 1..=count {
            // The upper layer as the install left it at point `n`, before any rollback: that of
            // an install killed there.
            let stopped = {
                let fx = Fixture::with(backend, layout);
                assert!(crash_at(n, || fx.install()));
                fx.upper_non_directories()
            };
            let fx = Fixture::with(backend, layout);
            arm(n, false);
            let result = fx.install();
            disarm();
            match result {
                Err(Error::Injected(at)) => assert_eq!(at, n),
                other => panic!("install failing at point {n} returned {other:?}"),
            }
            let ctx = format!("{backend:?}, {layout:?}: install failed at mutation point {n}");
            fx.assert_clean(&ctx);
            fx.assert_nothing_copied_up(&stopped, &ctx);
        }
    }
}

#[test]
fn uninstall_killed_at_every_point_is_finished_by_the_next_uninstall() {
    for (backend, layout) in CASES {
        let count = uninstall_points(layout);
        for n in 1..=count {
            let fx = Fixture::with(backend, layout);
            fx.install().unwrap();
            let installed = fx.upper_non_directories();
            assert!(
                crash_at(n, || fx.uninstall()),
                "uninstall did not reach mutation point {n}"
            );
            assert!(
                fx.journal.exists(),
                "crash at {n}: the journal went before the work was done"
            );
            let report = fx
                .uninstall()
                .unwrap_or_else(|e| panic!("second uninstall after a crash at point {n}: {e}"));
            assert!(report.kept.is_empty(), "crash at {n}: kept {:?}", report.kept);
            let ctx = format!("{backend:?}, {layout:?}: uninstall crashed at mutation point {n}, then uninstall");
            fx.assert_clean(&ctx);
            fx.assert_nothing_copied_up(&installed, &ctx);
        }
    }
}

#[test]
fn uninstall_failing_at_every_point_is_finished_by_the_next_uninstall() {
    for (backend, layout) in CASES {
        let count = uninstall_points(layout);
        for n in 1..=count {
            let fx = Fixture::with(backend, layout);
            fx.install().unwrap();
            let installed = fx.upper_non_directories();
            arm(n, false);
            let result = fx.uninstall();
            disarm();
            assert!(
                matches!(result, Err(Error::Injected(at)) if at == n),
                "uninstall failing at point {n} returned {result:?}"
            );
            assert!(
                fx.journal.exists(),
                "failure at {n}: the journal went before the work was done"
            );
            fx.uninstall()
                .unwrap_or_else(|e| panic!("second uninstall after a failure at point {n}: {e}"));
            let ctx = format!("{backend:?}, {layout:?}: uninstall failed at mutation point {n}, then uninstall");
            fx.assert_clean(&ctx);
            fx.assert_nothing_copied_up(&installed, &ctx);
        }
    }
}

#[test]
fn a_crashed_recovery_is_recovered_again() {
    let count = install_points(Layout::Plain);
    let mut combinations = 0;
    for n in (1..=count).step_by(3).chain([count]) {
        for m in [1, 2, 3, 5, 8, 13, 21] {
            let fx = Fixture::new();
            assert!(crash_at(n, || fx.install()));
            let crashed = crash_at(m, || fx.uninstall());
            // A second crash in the recovery of the recovery.
            if crashed {
                combinations += 1;
                crash_at(m / 2 + 1, || fx.uninstall());
            }
            fx.uninstall()
                .unwrap_or_else(|e| panic!("final recovery, install crashed at {n}, recovery at {m}: {e}"));
            fx.assert_clean(&format!(
                "install crashed at {n}, recovery crashed at {m}, then uninstall"
            ));
        }
    }
    assert!(combinations >= 20, "only {combinations} crashed recoveries");
}

#[test]
fn install_finding_a_stale_journal_rolls_it_back_first() {
    let count = install_points(Layout::Plain);
    let reference = {
        let fx = Fixture::new();
        fx.install().unwrap();
        shape(&fx.rootfs)
    };
    for n in 1..=count {
        let fx = Fixture::new();
        assert!(crash_at(n, || fx.install()));
        let stale = fx.journal.exists();
        // Only the very first point (creating the journal) comes before there is one.
        assert_eq!(stale, n > 1, "crash at {n}: journal present = {stale}");
        let report = fx
            .install()
            .unwrap_or_else(|e| panic!("install after a crash at point {n}: {e}"));
        assert_eq!(report.recovered, stale, "crash at {n}");
        assert_eq!(
            shape(&fx.rootfs),
            reference,
            "crash at {n}: the second install is not the same as one clean install"
        );
        fx.uninstall().unwrap();
        fx.assert_clean(&format!("install crashed at {n}, installed again, uninstalled"));
    }
}

#[test]
fn install_finding_a_stale_journal_after_a_crashed_uninstall() {
    let count = uninstall_points(Layout::Plain);
    for n in 1..=count {
        let fx = Fixture::new();
        fx.install().unwrap();
        assert!(crash_at(n, || fx.uninstall()));
        let report = fx.install().unwrap();
        assert!(report.recovered, "crash at {n}");
        fx.uninstall().unwrap();
        fx.assert_clean(&format!("uninstall crashed at {n}, installed again, uninstalled"));
    }
}
