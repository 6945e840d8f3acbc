//! Bad input: a rootfs that is missing or not a directory, and journals that are unreadable,
//! corrupt, of another version or for another root. Each gives a clear error naming the file and
//! what to do, and leaves the rootfs (and the journal) exactly as they were. A journal whose last
//! line was torn by a crash is still used.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use cacerts_core::failpoint::{arm, disarm};
use cacerts_core::{install, uninstall, Change, ContainerRoot, Edit, Error, Options, Plan, Result};
use cacerts_testkit::mount::Mount;
use cacerts_testkit::{age, build, Node, Snapshot};

const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nBAD-INPUT-CA\n-----END CERTIFICATE-----\n";

fn tree() -> Vec<Node> {
    vec![
        Node::file(
            "etc/ssl/certs/ca-certificates.crt",
            "-----BEGIN CERTIFICATE-----\nIMAGE\n-----END CERTIFICATE-----\n",
        ),
        Node::symlink("etc/ssl/cert.pem", "certs/ca-certificates.crt"),
        Node::dir("usr/share"),
    ]
}

fn plan() -> Plan {
    let mut p = Plan::new();
    p.push(Change::CreateFile {
        path: "/usr/local/share/ca-certificates/corp.crt".into(),
        contents: PEM.to_vec(),
        mode: 0o644,
    });
    p.push(Change::CreateSymlink {
        path: "/etc/ssl/certs/corp.pem".into(),
        target: "/usr/local/share/ca-certificates/corp.crt".into(),
    });
    p.push(Change::EditFile {
        path: "/etc/ssl/cert.pem".into(),
        edit: Edit::Append(PEM.to_vec()),
    });
    p
}

struct Fx {
    tmp: tempfile::TempDir,
    rootfs: PathBuf,
    journal: PathBuf,
    original: Snapshot,
}

impl Fx {
    fn new() -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        build(&rootfs, &tree());
        age(&rootfs);
        let original = Snapshot::take(&rootfs);
        let journal = tmp.path().join("state/ctr.journal");
        std::fs::create_dir(journal.parent().unwrap()).unwrap();
        Fx {
            tmp,
            rootfs,
            journal,
            original,
        }
    }

    fn root(&self) -> ContainerRoot {
        ContainerRoot::open(&self.rootfs).unwrap()
    }

    fn install(&self) -> Result<cacerts_core::Report> {
        install(&self.root(), &plan(), &self.journal, &Options::default())
    }

    fn uninstall(&self) -> Result<cacerts_core::Report> {
        uninstall(&self.root(), &self.journal)
    }
}

/// Runs `op` on a tree and journal that must both come out of it unchanged, and returns its error.
fn refused(fx: &Fx, what: &str, op: impl FnOnce() -> Result<cacerts_core::Report>) -> Error {
    let tree = Snapshot::take(&fx.rootfs);
    let journal = Snapshot::take(fx.journal.parent().unwrap());
    let err = match op() {
        Ok(r) => panic!("{what}: accepted ({r:?})"),
        Err(e) => e,
    };
    tree.assert_same(&Snapshot::take(&fx.rootfs), format!("{what}: rootfs"));
    journal.assert_same(
        &Snapshot::take(fx.journal.parent().unwrap()),
        format!("{what}: journal"),
    );
    err
}

#[track_caller]
fn assert_names(err: &Error, parts: &[&str]) {
    let msg = err.to_string();
    for p in parts {
        assert!(msg.contains(p), "error message {msg:?} does not mention {p:?}");
    }
}

#[test]
fn a_missing_rootfs_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("no-such-rootfs");
    let err = ContainerRoot::open(&path).unwrap_err();
    assert!(matches!(&err, Error::OpenRoot { path: p, .. } if *p == path), "{err:?}");
    assert_names(&err, &[path.to_str().unwrap(), "rootfs directory"]);
    // Under a path component that is a file, too.
    std::fs::write(tmp.path().join("file"), "x").unwrap();
    let path = tmp.path().join("file/rootfs");
    let err = ContainerRoot::open_with_backend(&path, cacerts_core::Backend::Walk).unwrap_err();
    assert!(matches!(&err, Error::OpenRoot { .. }), "{err:?}");
    assert_names(&err, &[path.to_str().unwrap()]);
    assert_eq!(std::fs::read(tmp.path().join("file")).unwrap(), b"x");
}

#[test]
fn a_rootfs_that_is_a_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rootfs");
    std::fs::write(&path, "not a directory").unwrap();
    std::os::unix::fs::symlink(&path, tmp.path().join("link")).unwrap();
    let before = Snapshot::take(tmp.path());
    for backend in [cacerts_core::Backend::Openat2, cacerts_core::Backend::Walk] {
        let err = ContainerRoot::open_with_backend(&path, backend).unwrap_err();
        assert!(
            matches!(&err, Error::RootNotDirectory { path: p } if *p == path),
            "{err:?}"
        );
        assert_names(&err, &[path.to_str().unwrap(), "not a directory"]);
    }
    // Through a symlink as well.
    let err = ContainerRoot::open(tmp.path().join("link")).unwrap_err();
    assert!(matches!(&err, Error::RootNotDirectory { .. }), "{err:?}");
    before.assert_same(&Snapshot::take(tmp.path()), "after the attempts");
}

#[test]
fn a_directory_at_the_journal_path_is_refused() {
    let fx = Fx::new();
    std::fs::create_dir(&fx.journal).unwrap();
    std::fs::write(fx.journal.join("inside"), "x").unwrap();
    for (what, err) in [
        ("uninstall", refused(&fx, "uninstall", || fx.uninstall())),
        ("install", refused(&fx, "install", || fx.install())),
    ] {
        assert!(
            matches!(&err, Error::JournalInvalid { path, .. } if *path == fx.journal),
            "{what}: {err:?}"
        );
        assert_names(
            &err,
            &[fx.journal.to_str().unwrap(), "not a regular file", "journal file"],
        );
    }
    fx.original.assert_same(&Snapshot::take(&fx.rootfs), "rootfs");
}

#[test]
fn an_unreadable_journal_is_refused() {
    let fx = Fx::new();
    fx.install().unwrap();
    // Root reads through permissions, so make the read itself fail: a journal path through a file.
    let journal = fx.journal.join("x");
    let err = uninstall(&fx.root(), &journal).unwrap_err();
    assert!(
        matches!(&err, Error::JournalIo { path, .. } if *path == journal),
        "{err:?}"
    );
    assert_names(&err, &[journal.to_str().unwrap()]);
    fx.uninstall().unwrap();
    fx.original.assert_same(&Snapshot::take(&fx.rootfs), "rootfs");
}

const CORRUPT_ADVICE: &str = "delete the journal";

#[test]
fn a_garbage_journal_is_refused() {
    for garbage in [
        &b"garbage\n"[..],
        b"",
        b"{\"format\":\"something-else\",\"version\":1,\"rootfs\":\"/\",\"root_dev\":0}\n",
        b"\x00\xff\xfe\n\n",
    ] {
        let fx = Fx::new();
        std::fs::write(&fx.journal, garbage).unwrap();
        for (what, err) in [
            ("uninstall", refused(&fx, "uninstall", || fx.uninstall())),
            ("install", refused(&fx, "install", || fx.install())),
        ] {
            assert!(
                matches!(&err, Error::JournalInvalid { path, .. } if *path == fx.journal),
                "{what} on {garbage:?}: {err:?}"
            );
            assert_names(&err, &[fx.journal.to_str().unwrap(), CORRUPT_ADVICE]);
        }
        fx.original.assert_same(&Snapshot::take(&fx.rootfs), "rootfs");
    }
}

fn rewrite_line(journal: &Path, index: usize, f: impl FnOnce(&str) -> String) {
    let text = std::fs::read_to_string(journal).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[index] = f(&lines[index]);
    std::fs::write(journal, lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_journal_with_a_corrupt_middle_line_is_refused() {
    let fx = Fx::new();
    fx.install().unwrap();
    let lines = std::fs::read_to_string(&fx.journal).unwrap().lines().count();
    assert!(lines > 4, "{lines} lines");
    rewrite_line(&fx.journal, 2, |l| l[..l.len() / 2].to_owned());
    for (what, err) in [
        ("uninstall", refused(&fx, "uninstall", || fx.uninstall())),
        ("install", refused(&fx, "install", || fx.install())),
    ] {
        assert!(matches!(&err, Error::JournalInvalid { .. }), "{what}: {err:?}");
        assert_names(&err, &[fx.journal.to_str().unwrap(), "line 3", CORRUPT_ADVICE]);
    }
}

#[test]
fn a_journal_of_another_version_is_refused() {
    let fx = Fx::new();
    fx.install().unwrap();
    rewrite_line(&fx.journal, 0, |l| {
        assert!(l.contains("\"version\":2"), "{l}");
        l.replace("\"version\":2", "\"version\":99")
    });
    for (what, err) in [
        ("uninstall", refused(&fx, "uninstall", || fx.uninstall())),
        ("install", refused(&fx, "install", || fx.install())),
    ] {
        assert!(matches!(&err, Error::JournalInvalid { .. }), "{what}: {err:?}");
        assert_names(
            &err,
            &[
                fx.journal.to_str().unwrap(),
                "version 99",
                "cacerts-hook version that wrote it",
            ],
        );
    }
}

#[test]
fn a_journal_for_another_root_is_refused() {
    let a = Fx::new();
    a.install().unwrap();
    let installed = Snapshot::take(&a.rootfs);
    let rootfs_b = a.tmp.path().join("rootfs-b");
    std::fs::create_dir(&rootfs_b).unwrap();
    build(&rootfs_b, &tree());
    age(&rootfs_b);
    let root_b = ContainerRoot::open(&rootfs_b).unwrap();
    let b_before = Snapshot::take(&rootfs_b);
    for (what, err) in [
        ("uninstall", refused(&a, "uninstall", || uninstall(&root_b, &a.journal))),
        (
            "install",
            refused(&a, "install", || {
                install(&root_b, &plan(), &a.journal, &Options::default())
            }),
        ),
    ] {
        match &err {
            Error::JournalForAnotherRoot {
                journal,
                recorded,
                given,
            } => {
                assert_eq!(journal, &a.journal, "{what}");
                assert_eq!(recorded, &std::fs::canonicalize(&a.rootfs).unwrap(), "{what}");
                assert_eq!(given, &std::fs::canonicalize(&rootfs_b).unwrap(), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_names(
            &err,
            &[
                a.journal.to_str().unwrap(),
                a.rootfs.file_name().unwrap().to_str().unwrap(),
                rootfs_b.to_str().unwrap(),
                "pass the rootfs the journal was written for",
            ],
        );
        b_before.assert_same(&Snapshot::take(&rootfs_b), format!("{what}: the other root"));
        installed.assert_same(&Snapshot::take(&a.rootfs), format!("{what}: the journal's root"));
    }
    // The right root still uninstalls cleanly.
    a.uninstall().unwrap();
    a.original.assert_same(&Snapshot::take(&a.rootfs), "after uninstall");
}

/// Lines in the journal after install crashed at mutation point `n` (0: no journal).
fn crash_install(fx: &Fx, n: usize) -> usize {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let injected = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m.starts_with("injected crash"));
            if !injected {
                default(info);
            }
        }));
    });
    arm(n, true);
    let crashed = catch_unwind(AssertUnwindSafe(|| fx.install())).is_err();
    disarm();
    assert!(crashed, "install did not reach point {n}");
    std::fs::read(&fx.journal)
        .map(|b| b.iter().filter(|c| **c == b'\n').count())
        .unwrap_or(0)
}

#[test]
fn a_torn_last_line_is_tolerated() {
    let count = {
        let fx = Fx::new();
        arm(usize::MAX, false);
        fx.install().unwrap();
        disarm()
    };
    let mut torn = 0;
    for n in 1..count {
        // Point n was a journal append when crashing right after it shows one more line: crashing
        // at n + 1 leaves the tree as a crash in the middle of that append would, and tearing the
        // new last line gives the journal such a crash leaves.
        let lines_before = crash_install(&Fx::new(), n);
        let fx = Fx::new();
        let lines = crash_install(&fx, n + 1);
        if lines != lines_before + 1 || lines < 2 {
            continue;
        }
        let mut bytes = std::fs::read(&fx.journal).unwrap();
        let last_start = bytes[..bytes.len() - 1].iter().rposition(|c| *c == b'\n').unwrap() + 1;
        bytes.truncate(last_start + (bytes.len() - last_start) / 2);
        std::fs::write(&fx.journal, &bytes).unwrap();
        torn += 1;
        let report = fx
            .uninstall()
            .unwrap_or_else(|e| panic!("torn line after point {n}: {e}"));
        assert!(report.kept.is_empty(), "{report:?}");
        fx.original
            .assert_same(&Snapshot::take(&fx.rootfs), format!("torn line after point {n}"));
        assert!(!fx.journal.exists());
        let left: Vec<_> = std::fs::read_dir(fx.journal.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "torn line after point {n}: left {left:?}");
    }
    eprintln!("torn appends: {torn} of {count} mutation points");
    assert!(torn >= 8, "only {torn} appends found to tear");
    // And install recovers such a journal too.
    let fx = Fx::new();
    crash_install(&fx, count / 2);
    let mut bytes = std::fs::read(&fx.journal).unwrap();
    bytes.extend_from_slice(b"{\"op\":\"mkdir\",\"id\":99,\"pa");
    std::fs::write(&fx.journal, &bytes).unwrap();
    assert!(fx.install().unwrap().recovered);
    fx.uninstall().unwrap();
    fx.original
        .assert_same(&Snapshot::take(&fx.rootfs), "install over a torn journal");
}

#[test]
fn a_fifo_at_the_journal_path_is_refused_without_waiting() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let journal = tmp.path().join("journal.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &journal,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let root = cacerts_core::ContainerRoot::open(&rootfs).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            cacerts_core::uninstall(&root, &journal)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    });
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("uninstall must not block on a FIFO journal");
    let err = result.unwrap_err();
    assert!(err.contains("not a regular file"), "{err}");
}

/// The journal's file system filling up in the middle of a record (a large append: most of a
/// megabyte for a thousand certificates) refuses the install with the cause named, and leaves
/// the tree as it was and no journal behind. The line that did not fit is cut off, so the
/// rollback's own records follow it (putting back a bundle appended to in place is journaled):
/// a crash at any point of that rollback too leaves a journal that uninstall reads and undoes to
/// the original tree.
#[test]
fn a_journal_file_system_that_fills_up_refuses_the_install_and_changes_nothing() {
    // A small append that is journaled and made, then a large one that cannot be journaled in
    // 16 KiB.
    let big: Vec<u8> = PEM.iter().copied().cycle().take(PEM.len() * 1500).collect();
    let mut plan = Plan::new();
    plan.push(Change::EditFile {
        path: "/etc/ssl/certs/ca-certificates.crt".into(),
        edit: Edit::Append(PEM.to_vec()),
    });
    plan.push(Change::EditFile {
        path: "/etc/pki/tls/certs/ca-bundle.crt".into(),
        edit: Edit::Append(big),
    });
    let setup = || {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        let mut nodes = tree();
        nodes.push(Node::file(
            "etc/pki/tls/certs/ca-bundle.crt",
            "-----BEGIN CERTIFICATE-----\nRHEL\n-----END CERTIFICATE-----\n",
        ));
        build(&rootfs, &nodes);
        age(&rootfs);
        let original = Snapshot::take(&rootfs);
        let state = tmp.path().join("small-state");
        let mount = Mount::new("tmpfs", &state, "size=16k,mode=0700");
        let journal = state.join("ctr.journal");
        (tmp, rootfs, original, mount, journal)
    };
    let root = |rootfs: &Path| ContainerRoot::open(rootfs).unwrap();
    // The mutation points an install passes, rollback included, when nothing is injected.
    let points = {
        let (_tmp, rootfs, original, _mount, journal) = setup();
        arm(usize::MAX, false);
        let result = install(&root(&rootfs), &plan, &journal, &Options::default());
        let points = disarm();
        let err = result.expect_err("the journal cannot hold the plan");
        assert_names(&err, &["journal", &journal.display().to_string()]);
        assert!(
            matches!(&err, Error::JournalIo { cause, .. } if cause.raw_os_error() == Some(28)),
            "not refused for ENOSPC: {err:?}"
        );
        original.assert_same(&Snapshot::take(&rootfs), "after the refused install");
        let left: Vec<_> = std::fs::read_dir(journal.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "left in the state directory: {left:?}");
        points
    };
    let mut recovered = 0;
    for n in 1..=points {
        let (_tmp, rootfs, original, _mount, journal) = setup();
        arm(n, true);
        let crashed = catch_unwind(AssertUnwindSafe(|| {
            install(&root(&rootfs), &plan, &journal, &Options::default())
        }))
        .is_err();
        disarm();
        if !crashed || !journal.exists() {
            continue;
        }
        recovered += 1;
        let report = uninstall(&root(&rootfs), &journal)
            .unwrap_or_else(|e| panic!("crash at point {n} of {points}: uninstall: {e}"));
        assert!(report.kept.is_empty(), "crash at point {n}: {report:?}");
        original.assert_same(&Snapshot::take(&rootfs), format!("crash at point {n} of {points}"));
        assert!(!journal.exists(), "crash at point {n}: the journal is left");
    }
    assert!(
        recovered >= 3,
        "only {recovered} of {points} crashes left a journal to recover"
    );
}
