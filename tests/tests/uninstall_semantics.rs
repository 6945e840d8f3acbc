//! The uninstall contract, one clause per test: what we created is removed only while it is still
//! ours, what we changed is put back exactly if nobody touched it since, only our part is taken out
//! of what the container changed, nothing the container deleted comes back, and new entries are
//! owned like their parent directory.

use std::os::unix::fs::{lchown, MetadataExt};
use std::path::{Path, PathBuf};

use cacerts_core::{install, uninstall, Change, ContainerRoot, Edit, Options, Plan, Report};
use cacerts_testkit::mount::Overlay;
use cacerts_testkit::{age, build, fixtures, Node, Snapshot};

const IMAGE_PEM: &str = "-----BEGIN CERTIFICATE-----\nIMAGE-CA\n-----END CERTIFICATE-----\n";
const OUR_PEM: &str = "-----BEGIN CERTIFICATE-----\nOUR-CA\n-----END CERTIFICATE-----\n";
const THEIR_PEM: &str = "-----BEGIN CERTIFICATE-----\nCONTAINER-CA\n-----END CERTIFICATE-----\n";
const BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

struct Fx {
    /// Unmounted before the directory it is in is removed.
    _overlay: Option<Overlay>,
    _tmp: tempfile::TempDir,
    rootfs: PathBuf,
    journal: PathBuf,
}

impl Fx {
    fn new(nodes: &[Node]) -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir(&rootfs).unwrap();
        build(&rootfs, nodes);
        age(&rootfs);
        let journal = tmp.path().join("state/ctr.journal");
        Fx {
            _overlay: None,
            _tmp: tmp,
            rootfs,
            journal,
        }
    }

    /// The tree as the lower layer of an overlay file system with an empty upper one, the root
    /// being the overlay: how an engine mounts a container's root.
    fn on_overlay(nodes: &[Node]) -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let overlay = Overlay::new(&tmp.path().join("layers"), nodes);
        let rootfs = overlay.merged.clone();
        let journal = tmp.path().join("state/ctr.journal");
        Fx {
            _overlay: Some(overlay),
            _tmp: tmp,
            rootfs,
            journal,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.rootfs.join(rel)
    }

    fn install(&self, plan: &Plan) -> Report {
        let root = ContainerRoot::open(&self.rootfs).unwrap();
        install(&root, plan, &self.journal, &Options::default()).unwrap()
    }

    fn uninstall(&self) -> Report {
        let root = ContainerRoot::open(&self.rootfs).unwrap();
        let report = uninstall(&root, &self.journal).unwrap();
        assert!(!self.journal.exists(), "journal left after uninstall");
        report
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::take(&self.rootfs)
    }
}

fn debian_tree() -> Vec<Node> {
    vec![
        Node::file(BUNDLE, IMAGE_PEM),
        Node::symlink("etc/ssl/cert.pem", "certs/ca-certificates.crt"),
        Node::dir("usr/share"),
    ]
}

fn append_plan() -> Plan {
    let mut p = Plan::new();
    p.push(Change::EditFile {
        path: format!("/{BUNDLE}").into(),
        edit: Edit::Append(OUR_PEM.into()),
    });
    p
}

fn create_plan(path: &str) -> Plan {
    let mut p = Plan::new();
    p.push(Change::CreateFile {
        path: path.into(),
        contents: OUR_PEM.into(),
        mode: 0o644,
    });
    p
}

fn kept_paths(report: &Report) -> Vec<&Path> {
    report.kept.iter().map(|(p, _)| p.as_path()).collect()
}

/// (atime, mtime) with nanoseconds, read with `lstat` only (reading would move atime).
fn times(path: &Path) -> ((i64, i64), (i64, i64)) {
    let m = std::fs::symlink_metadata(path).unwrap();
    ((m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec()))
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn created_file_replaced_by_the_container_is_kept() {
    let fx = Fx::new(&debian_tree());
    let crt = "usr/local/share/ca-certificates/corp.crt";
    fx.install(&create_plan(&format!("/{crt}")));
    // The container puts its own file there: written beside, renamed over ours.
    std::fs::write(fx.path("usr/local/share/ca-certificates/.new"), THEIR_PEM).unwrap();
    std::fs::rename(fx.path("usr/local/share/ca-certificates/.new"), fx.path(crt)).unwrap();
    let report = fx.uninstall();
    assert_eq!(std::fs::read_to_string(fx.path(crt)).unwrap(), THEIR_PEM);
    assert!(
        kept_paths(&report).contains(&Path::new(&format!("/{crt}"))),
        "{report:?}"
    );
    assert!(!report.removed.contains(&PathBuf::from(format!("/{crt}"))));
}

#[test]
fn created_entries_deleted_and_recreated_by_the_container_are_kept() {
    // `rm` then create: the file system may hand the container the very inode number ours had
    // (ext4 usually does), so the inode alone does not tell ours from theirs. Several rounds, so
    // that reuse happens at least in some.
    let crt = "usr/local/share/ca-certificates/corp.crt";
    let link = "etc/ssl/certs/corp.pem";
    let mut reused = 0;
    for _ in 0..20 {
        let fx = Fx::new(&debian_tree());
        let mut plan = create_plan(&format!("/{crt}"));
        plan.push(Change::CreateSymlink {
            path: format!("/{link}").into(),
            target: format!("/{crt}").into(),
        });
        fx.install(&plan);
        let ino = |p: &str| std::fs::symlink_metadata(fx.path(p)).unwrap().ino();
        let (file_ino, link_ino) = (ino(crt), ino(link));
        std::fs::remove_file(fx.path(crt)).unwrap();
        std::fs::write(fx.path(crt), THEIR_PEM).unwrap();
        std::fs::remove_file(fx.path(link)).unwrap();
        std::os::unix::fs::symlink("/usr/share/ca-certificates/theirs.crt", fx.path(link)).unwrap();
        reused += usize::from(ino(crt) == file_ino) + usize::from(ino(link) == link_ino);
        let report = fx.uninstall();
        assert_eq!(
            std::fs::read_to_string(fx.path(crt)).ok().as_deref(),
            Some(THEIR_PEM),
            "the container's file was removed: {report:?}"
        );
        assert_eq!(
            std::fs::read_link(fx.path(link)).ok(),
            Some(PathBuf::from("/usr/share/ca-certificates/theirs.crt")),
            "the container's symlink was removed: {report:?}"
        );
        let kept = kept_paths(&report);
        assert!(kept.contains(&Path::new(&format!("/{crt}"))), "{report:?}");
        assert!(kept.contains(&Path::new(&format!("/{link}"))), "{report:?}");
    }
    eprintln!("inode numbers handed on to the container's entries: {reused} of 40");
}

#[test]
fn created_symlink_replaced_by_the_container_is_kept() {
    let fx = Fx::new(&debian_tree());
    let mut plan = Plan::new();
    plan.push(Change::CreateSymlink {
        path: "/etc/ssl/certs/corp.pem".into(),
        target: "/usr/local/share/ca-certificates/corp.crt".into(),
    });
    fx.install(&plan);
    std::fs::remove_file(fx.path("etc/ssl/certs/corp.pem")).unwrap();
    std::fs::write(fx.path("etc/ssl/certs/corp.pem"), THEIR_PEM).unwrap();
    let report = fx.uninstall();
    assert_eq!(
        std::fs::read_to_string(fx.path("etc/ssl/certs/corp.pem")).unwrap(),
        THEIR_PEM
    );
    assert!(kept_paths(&report).contains(&Path::new("/etc/ssl/certs/corp.pem")));
}

#[test]
fn untouched_file_gets_bytes_mode_owner_xattrs_and_times_back() {
    let fx = Fx::new(&[Node::File(BUNDLE.into(), IMAGE_PEM.into(), 0o640), Node::dir("usr")]);
    let bundle = fx.path(BUNDLE);
    rustix::fs::setxattr(&bundle, "user.test", b"image value", rustix::fs::XattrFlags::empty()).unwrap();
    std::os::unix::fs::chown(&bundle, Some(1234), Some(5678)).unwrap();
    let before = fx.snapshot();
    // Age again after the snapshot read everything: atimes are old again, mtimes unchanged.
    age(&fx.rootfs);
    let bundle_times = times(&bundle);
    let dir_times = times(&fx.path("etc/ssl/certs"));

    fx.install(&append_plan());
    let installed = std::fs::symlink_metadata(&bundle).unwrap();
    assert_eq!(
        (installed.uid(), installed.gid(), installed.mode() & 0o7777),
        (1234, 5678, 0o640)
    );
    let report = fx.uninstall();

    assert_eq!(report.restored, vec![PathBuf::from(format!("/{BUNDLE}"))]);
    assert!(report.kept.is_empty(), "{report:?}");
    // Times first: the snapshot reads the file, which may move its atime.
    assert_eq!(times(&bundle), bundle_times, "bundle (atime, mtime)");
    assert_eq!(times(&fx.path("etc/ssl/certs")), dir_times, "directory (atime, mtime)");
    let after = fx.snapshot();
    let entry = &after.0[Path::new(&format!("./{BUNDLE}"))];
    assert_eq!((entry.uid, entry.gid, entry.mode), (1234, 5678, 0o640));
    assert_eq!(
        entry.xattrs.get("user.test").map(String::as_str),
        Some(hex(b"image value").as_str())
    );
    before.assert_same(&after, "after uninstall");
}

#[test]
fn journals_with_the_digests_of_earlier_builds_are_still_undone_exactly() {
    // Earlier builds recorded the original of a file changed in place by its SHA-256, then by its
    // BLAKE3, in journals of version 1. Those are read and checked with that algorithm: the
    // bundle is recognised as the original plus our bytes and put back, not treated as changed
    // by the container.
    use sha2::{Digest, Sha256};
    let xxh3 = hex(&xxhash_rust::xxh3::xxh3_128(IMAGE_PEM.as_bytes()).to_be_bytes());
    let new_field = format!("\"xxh3_128\":\"{xxh3}\"");
    for (name, digest) in [
        ("sha256", hex(&Sha256::digest(IMAGE_PEM.as_bytes()))),
        ("blake3", blake3::hash(IMAGE_PEM.as_bytes()).to_hex().to_string()),
    ] {
        let old_field = format!("\"{name}\":\"{digest}\"");
        let fx = Fx::new(&debian_tree());
        let before = fx.snapshot();
        fx.install(&append_plan());
        let journal = std::fs::read_to_string(&fx.journal).unwrap();
        assert!(journal.contains(&new_field), "this build records XXH3-128:\n{journal}");
        // As those builds wrote it: a version 1 header.
        let journal = journal.replacen("\"version\":2,", "\"version\":1,", 1);
        assert!(
            journal.starts_with("{\"format\":\"cacerts-hook-journal\",\"version\":1,"),
            "{journal}"
        );
        std::fs::write(&fx.journal, journal.replace(&new_field, &old_field)).unwrap();
        let report = fx.uninstall();
        assert_eq!(
            report.restored,
            vec![PathBuf::from(format!("/{BUNDLE}"))],
            "{old_field}: {report:?}"
        );
        assert!(report.stripped.is_empty(), "{old_field}: {report:?}");
        before.assert_same(&fx.snapshot(), format!("{old_field}: after uninstall"));

        // A digest that does not match is a bundle the container changed: only our bytes go.
        fx.install(&append_plan());
        let journal = std::fs::read_to_string(&fx.journal)
            .unwrap()
            .replacen("\"version\":2,", "\"version\":1,", 1);
        let wrong = format!("\"{name}\":\"{}\"", "0".repeat(digest.len()));
        std::fs::write(&fx.journal, journal.replace(&new_field, &wrong)).unwrap();
        let report = fx.uninstall();
        assert_eq!(
            report.stripped,
            vec![PathBuf::from(format!("/{BUNDLE}"))],
            "{wrong}: {report:?}"
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn container_append_after_install_is_kept_with_its_time() {
    container_append_is_kept(&Fx::new(&debian_tree()));
}

/// On an overlay the bundle was replaced by an appended copy; the container appends to that.
#[test]
fn container_append_after_install_on_an_overlay_is_kept_with_its_time() {
    container_append_is_kept(&Fx::on_overlay(&debian_tree()));
}

fn container_append_is_kept(fx: &Fx) {
    fx.install(&append_plan());
    let bundle = fx.path(BUNDLE);
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&bundle).unwrap();
        f.write_all(THEIR_PEM.as_bytes()).unwrap();
    }
    let changed_mtime = times(&bundle).1;
    let report = fx.uninstall();
    assert_eq!(report.stripped, vec![PathBuf::from(format!("/{BUNDLE}"))]);
    assert_eq!(
        std::fs::read_to_string(&bundle).unwrap(),
        format!("{IMAGE_PEM}{THEIR_PEM}"),
        "only our certificate comes out"
    );
    let mtime = times(&bundle).1;
    assert_eq!(mtime, changed_mtime, "the container's modification time is kept");
    assert_ne!(mtime, (1_500_000_000, 123_456_789), "not reset to the image's time");
}

#[test]
fn container_rewrite_with_our_block_in_the_middle_keeps_its_additions() {
    let fx = Fx::new(&debian_tree());
    fx.install(&append_plan());
    let bundle = fx.path(BUNDLE);
    // As update-ca-certificates does: a new file, every certificate in its order, renamed over.
    let regenerated = format!("{IMAGE_PEM}{OUR_PEM}{THEIR_PEM}");
    std::fs::write(fx.path("etc/ssl/certs/ca-certificates.crt.new"), &regenerated).unwrap();
    std::fs::rename(fx.path("etc/ssl/certs/ca-certificates.crt.new"), &bundle).unwrap();
    let changed_mtime = times(&bundle).1;
    let report = fx.uninstall();
    assert_eq!(report.stripped, vec![PathBuf::from(format!("/{BUNDLE}"))]);
    assert_eq!(
        std::fs::read_to_string(&bundle).unwrap(),
        format!("{IMAGE_PEM}{THEIR_PEM}")
    );
    assert_eq!(times(&bundle).1, changed_mtime);
}

#[test]
fn container_rewrite_without_our_block_is_left_alone() {
    let fx = Fx::new(&debian_tree());
    fx.install(&append_plan());
    let bundle = fx.path(BUNDLE);
    std::fs::write(&bundle, THEIR_PEM).unwrap();
    let entry = |s: &Snapshot| s.0[Path::new(&format!("./{BUNDLE}"))].clone();
    let before = entry(&fx.snapshot());
    let report = fx.uninstall();
    assert!(report.restored.is_empty() && report.stripped.is_empty(), "{report:?}");
    assert_eq!(entry(&fx.snapshot()), before, "a bundle with nothing of ours");
}

#[test]
fn what_the_container_deleted_is_not_recreated() {
    let fx = Fx::new(&debian_tree());
    let mut plan = append_plan();
    plan.push(Change::CreateFile {
        path: "/usr/local/share/ca-certificates/corp.crt".into(),
        contents: OUR_PEM.into(),
        mode: 0o644,
    });
    fx.install(&plan);
    std::fs::remove_file(fx.path(BUNDLE)).unwrap();
    std::fs::remove_file(fx.path("usr/local/share/ca-certificates/corp.crt")).unwrap();
    let report = fx.uninstall();
    assert!(!fx.path(BUNDLE).exists(), "deleted bundle recreated");
    assert!(!fx.path("usr/local/share/ca-certificates/corp.crt").exists());
    assert!(
        kept_paths(&report).contains(&Path::new(&format!("/{BUNDLE}"))),
        "{report:?}"
    );
    // The directories we made for the file are empty again and go.
    assert!(!fx.path("usr/local").exists());
    // The journal's backup of the bundle goes with the journal.
    let state: Vec<_> = std::fs::read_dir(fx.journal.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(state.is_empty(), "left beside the journal: {state:?}");
}

#[test]
fn created_directories_go_when_empty_and_stay_when_the_container_filled_them() {
    let fx = Fx::new(&debian_tree());
    fx.install(&create_plan("/usr/local/share/ca-certificates/corp/root.crt"));
    // The container adds a file two levels up from ours.
    std::fs::write(fx.path("usr/local/share/ca-certificates/theirs.crt"), THEIR_PEM).unwrap();
    let report = fx.uninstall();
    assert!(!fx.path("usr/local/share/ca-certificates/corp").exists());
    assert_eq!(
        std::fs::read_to_string(fx.path("usr/local/share/ca-certificates/theirs.crt")).unwrap(),
        THEIR_PEM
    );
    let removed: Vec<_> = report.removed.iter().map(PathBuf::as_path).collect();
    assert_eq!(
        removed,
        [
            Path::new("/usr/local/share/ca-certificates/corp/root.crt"),
            Path::new("/usr/local/share/ca-certificates/corp"),
        ]
    );
    let kept = kept_paths(&report);
    assert!(
        kept.contains(&Path::new("/usr/local/share/ca-certificates")),
        "{report:?}"
    );
    assert!(kept.contains(&Path::new("/usr/local/share")), "{report:?}");
    assert!(kept.contains(&Path::new("/usr/local")), "{report:?}");
}

#[test]
fn created_directories_are_all_removed_when_empty() {
    let fx = Fx::new(&debian_tree());
    let before = fx.snapshot();
    let report = fx.install(&create_plan("/usr/local/share/ca-certificates/corp/root.crt"));
    assert_eq!(report.created.len(), 5, "{report:?}");
    let report = fx.uninstall();
    assert_eq!(report.removed.len(), 5, "{report:?}");
    before.assert_same(&fx.snapshot(), "after uninstall");
}

#[test]
fn touched_directories_get_their_times_back_to_the_nanosecond() {
    let fx = Fx::new(&debian_tree());
    let dirs = ["etc/ssl/certs", "usr", "usr/share", "."];
    let before: Vec<_> = dirs.iter().map(|d| times(&fx.path(d))).collect();
    let mut plan = append_plan();
    plan.push(Change::CreateSymlink {
        path: "/etc/ssl/certs/corp.pem".into(),
        target: "/usr/share/ca-certificates/corp.crt".into(),
    });
    plan.push(Change::CreateFile {
        path: "/usr/share/ca-certificates/corp.crt".into(),
        contents: OUR_PEM.into(),
        mode: 0o644,
    });
    plan.push(Change::CreateDir {
        path: "/opt/corp".into(),
    });
    fx.install(&plan);
    let installed: Vec<_> = dirs.iter().map(|d| times(&fx.path(d)).1).collect();
    for (d, (b, i)) in dirs.iter().zip(before.iter().zip(&installed)) {
        if *d != "usr" {
            assert_ne!(
                b.1, *i,
                "{d}: install did not change the directory, the test proves nothing"
            );
        }
    }
    fx.uninstall();
    let after: Vec<_> = dirs.iter().map(|d| times(&fx.path(d))).collect();
    assert_eq!(after, before, "(atime, mtime) of {dirs:?}");
}

#[test]
fn a_second_uninstall_does_nothing() {
    let fx = Fx::new(&debian_tree());
    let before = fx.snapshot();
    let mut plan = append_plan();
    plan.push(Change::CreateFile {
        path: "/usr/local/share/ca-certificates/corp.crt".into(),
        contents: OUR_PEM.into(),
        mode: 0o644,
    });
    fx.install(&plan);
    fx.uninstall();
    before.assert_same(&fx.snapshot(), "after uninstall");
    // The container recreates a file of that name; a second uninstall must not touch it.
    std::fs::create_dir_all(fx.path("usr/local/share/ca-certificates")).unwrap();
    std::fs::write(fx.path("usr/local/share/ca-certificates/corp.crt"), OUR_PEM).unwrap();
    let now = fx.snapshot();
    let report = fx.uninstall();
    assert_eq!(report, Report::default());
    now.assert_same(&fx.snapshot(), "after a second uninstall");
}

#[test]
fn new_entries_are_owned_like_their_nearest_existing_parent() {
    let fx = Fx::new(&[Node::file(BUNDLE, IMAGE_PEM), Node::dir("usr/share"), Node::dir("opt")]);
    // A user-namespaced rootfs: everything belongs to the mapped root, 100000.
    for e in walk(&fx.rootfs) {
        lchown(&e, Some(100_000), Some(100_000)).unwrap();
    }
    // And one subtree belongs to another mapped user.
    lchown(fx.path("opt"), Some(101_000), Some(101_001)).unwrap();
    age(&fx.rootfs);
    let before = fx.snapshot();
    let mut plan = Plan::new();
    plan.push(Change::CreateFile {
        path: "/usr/local/share/ca-certificates/corp.crt".into(),
        contents: OUR_PEM.into(),
        mode: 0o644,
    });
    plan.push(Change::CreateSymlink {
        path: "/etc/ssl/certs/corp.pem".into(),
        target: "/usr/local/share/ca-certificates/corp.crt".into(),
    });
    plan.push(Change::CreateSymlink {
        path: "/opt/corp/certs/corp.pem".into(),
        target: "/usr/local/share/ca-certificates/corp.crt".into(),
    });
    plan.push(Change::CreateDir {
        path: "/opt/corp/empty".into(),
    });
    plan.push(Change::EditFile {
        path: format!("/{BUNDLE}").into(),
        edit: Edit::Append(OUR_PEM.into()),
    });
    fx.install(&plan);
    for p in [
        "usr/local",
        "usr/local/share",
        "usr/local/share/ca-certificates",
        "usr/local/share/ca-certificates/corp.crt",
        "etc/ssl/certs/corp.pem",
        BUNDLE,
    ] {
        assert_eq!(owner(&fx.path(p)), (100_000, 100_000), "{p}");
    }
    for p in [
        "opt/corp",
        "opt/corp/certs",
        "opt/corp/certs/corp.pem",
        "opt/corp/empty",
    ] {
        assert_eq!(owner(&fx.path(p)), (101_000, 101_001), "{p}");
    }
    fx.uninstall();
    before.assert_same(&fx.snapshot(), "after uninstall");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    if std::fs::symlink_metadata(dir).unwrap().is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            out.extend(walk(&e.unwrap().path()));
        }
    }
    out
}

#[test]
fn a_bundle_hardlinked_to_passwd_leaves_passwd_alone() {
    let passwd = "root:x:0:0:root:/root:/bin/sh\n";
    let fx = Fx::new(&[
        Node::file("etc/passwd", passwd),
        Node::dir("etc/ssl/certs"),
        Node::Hardlink(BUNDLE.into(), "etc/passwd".into()),
    ]);
    let passwd_entry = |s: &Snapshot| s.0[Path::new("./etc/passwd")].clone();
    let before = fx.snapshot();
    let report = fx.install(&append_plan());
    assert_eq!(report.edited, vec![PathBuf::from(format!("/{BUNDLE}"))]);
    assert_eq!(std::fs::read_to_string(fx.path("etc/passwd")).unwrap(), passwd);
    assert_eq!(passwd_entry(&fx.snapshot()), passwd_entry(&before));
    let bundle = std::fs::read_to_string(fx.path(BUNDLE)).unwrap();
    assert_eq!(bundle, format!("{passwd}{OUR_PEM}"));
    fx.uninstall();
    assert_eq!(std::fs::read_to_string(fx.path("etc/passwd")).unwrap(), passwd);
    before.assert_same(&fx.snapshot(), "after uninstall");
}

#[test]
fn installing_twice_with_the_same_journal_is_installing_once() {
    let fx = Fx::new(&debian_tree());
    let before = fx.snapshot();
    let mut plan = append_plan();
    plan.push(Change::CreateFile {
        path: "/usr/local/share/ca-certificates/corp.crt".into(),
        contents: OUR_PEM.into(),
        mode: 0o644,
    });
    plan.push(Change::CreateSymlink {
        path: "/etc/ssl/certs/corp.pem".into(),
        target: "/usr/local/share/ca-certificates/corp.crt".into(),
    });
    let first = fx.install(&plan);
    assert!(!first.recovered);
    let second = fx.install(&plan);
    assert!(second.recovered);
    assert_eq!((&first.created, &first.edited), (&second.created, &second.edited));
    assert_eq!(
        std::fs::read_to_string(fx.path(BUNDLE)).unwrap(),
        format!("{IMAGE_PEM}{OUR_PEM}"),
        "our certificate is in the bundle once"
    );
    fx.uninstall();
    before.assert_same(&fx.snapshot(), "after uninstall");
}

#[test]
fn created_file_changed_in_place_by_the_container_is_kept() {
    let fx = Fx::new(&debian_tree());
    let crt = "usr/local/share/ca-certificates/corp.crt";
    fx.install(&create_plan(&format!("/{crt}")));
    // Same inode, the container's contents.
    std::fs::write(fx.path(crt), THEIR_PEM).unwrap();
    let report = fx.uninstall();
    assert_eq!(std::fs::read_to_string(fx.path(crt)).unwrap(), THEIR_PEM);
    assert!(
        kept_paths(&report).contains(&Path::new(&format!("/{crt}"))),
        "{report:?}"
    );
}

#[test]
fn created_directory_deleted_and_recreated_by_the_container_is_kept() {
    let mut reused = 0;
    for _ in 0..20 {
        let fx = Fx::new(&[Node::dir("opt")]);
        let mut plan = Plan::new();
        plan.push(Change::CreateDir {
            path: "/opt/corp".into(),
        });
        fx.install(&plan);
        let ino = std::fs::symlink_metadata(fx.path("opt/corp")).unwrap().ino();
        std::fs::remove_dir(fx.path("opt/corp")).unwrap();
        std::fs::create_dir(fx.path("opt/corp")).unwrap();
        reused += usize::from(std::fs::symlink_metadata(fx.path("opt/corp")).unwrap().ino() == ino);
        let report = fx.uninstall();
        assert!(
            fx.path("opt/corp").is_dir(),
            "the container's directory was removed: {report:?}"
        );
    }
    eprintln!("directory inode numbers handed on: {reused} of 20");
}

#[test]
fn an_appended_bundle_keeps_its_inode_while_the_container_runs() {
    let fx = Fx::new(&debian_tree());
    let bundle = fx.path(BUNDLE);
    let inode = |p: &Path| std::fs::symlink_metadata(p).unwrap().ino();
    let original = inode(&bundle);
    let before = fx.snapshot();
    age(&fx.rootfs);
    let bundle_times = times(&bundle);

    let report = fx.install(&append_plan());
    assert_eq!(report.edited, vec![PathBuf::from(format!("/{BUNDLE}"))]);
    assert_eq!(inode(&bundle), original, "appended in place, not replaced");
    assert_eq!(
        std::fs::read_to_string(&bundle).unwrap(),
        format!("{IMAGE_PEM}{OUR_PEM}")
    );
    let journal = std::fs::read_to_string(&fx.journal).unwrap();
    assert!(journal.contains(r#""op":"append""#), "{journal}");
    let backups = std::fs::read_dir(fx.journal.parent().unwrap()).unwrap().count();
    assert_eq!(
        backups, 1,
        "no backup beside the journal: the original is the file's prefix"
    );

    let report = fx.uninstall();
    assert_eq!(report.restored, vec![PathBuf::from(format!("/{BUNDLE}"))]);
    assert_eq!(times(&bundle), bundle_times, "bundle (atime, mtime)");
    before.assert_same(&fx.snapshot(), "after uninstall");
}

/// A process in the container spliced the bundle into a pipe (as `cat` does) and exited; the
/// pipe is read only after uninstall. The reader still gets the bytes that were in the file,
/// ours included: uninstall never rewrites the pages the pipe holds.
#[test]
fn a_pipe_holding_the_bundle_keeps_its_bytes_through_uninstall() {
    use rustix::pipe::{pipe, splice, SpliceFlags};
    let fx = Fx::new(&debian_tree());
    fx.install(&append_plan());
    let installed = std::fs::read(fx.path(BUNDLE)).unwrap();
    let (reader, writer) = pipe().unwrap();
    let file = std::fs::File::open(fx.path(BUNDLE)).unwrap();
    let mut offset = 0u64;
    while (offset as usize) < installed.len() {
        let n = splice(
            &file,
            Some(&mut offset),
            &writer,
            None,
            installed.len(),
            SpliceFlags::empty(),
        )
        .unwrap();
        assert!(n > 0);
    }
    drop((file, writer));
    fx.uninstall();
    let mut read = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(reader), &mut read).unwrap();
    assert_eq!(read, installed, "what the pipe holds");
    assert_eq!(std::fs::read_to_string(fx.path(BUNDLE)).unwrap(), IMAGE_PEM);
}

#[test]
fn an_append_torn_by_a_crash_is_cut_back() {
    for kept in [0, 1, OUR_PEM.len() / 2, OUR_PEM.len() - 1] {
        let fx = Fx::new(&debian_tree());
        let bundle = fx.path(BUNDLE);
        let before = fx.snapshot();
        age(&fx.rootfs);
        let bundle_times = times(&bundle);
        fx.install(&append_plan());
        // As if the process died while writing: only the first `kept` bytes of ours arrived.
        let f = std::fs::OpenOptions::new().write(true).open(&bundle).unwrap();
        f.set_len((IMAGE_PEM.len() + kept) as u64).unwrap();
        drop(f);
        let report = fx.uninstall();
        assert!(
            report.kept.is_empty() && report.stripped.is_empty(),
            "{kept}: {report:?}"
        );
        // Times first: reading the file may move its atime.
        assert_eq!(times(&bundle), bundle_times, "{kept}: bundle (atime, mtime)");
        assert_eq!(std::fs::read_to_string(&bundle).unwrap(), IMAGE_PEM, "{kept}");
        before.assert_same(&fx.snapshot(), format!("{kept} bytes kept"));
    }
}

#[test]
fn a_bundle_the_container_cut_short_is_not_cut_further() {
    let fx = Fx::new(&debian_tree());
    let bundle = fx.path(BUNDLE);
    fx.install(&append_plan());
    // The container truncated the file below its original size and wrote its own line.
    std::fs::write(&bundle, "x\n").unwrap();
    let report = fx.uninstall();
    assert!(report.restored.is_empty() && report.stripped.is_empty(), "{report:?}");
    assert_eq!(std::fs::read_to_string(&bundle).unwrap(), "x\n");
}

const KEYSTORE: &str = "etc/ssl/certs/java/cacerts";

fn keystore_plan() -> Plan {
    let mut p = Plan::new();
    p.push(Change::EditFile {
        path: format!("/{KEYSTORE}").into(),
        edit: Edit::KeystoreAdd {
            entries: vec![("cacerts-hook-ours".into(), b"OUR-CA-DER".to_vec())],
            password: "changeit".into(),
        },
    });
    p
}

#[test]
fn a_key_store_edit_torn_by_a_crash_is_put_back() {
    // A JKS store gains entries in place by two writes: the new entries and hash over the old
    // hash (the last 20 bytes) from `keep` on, then the entry count at offset 8. Any mix of
    // those writes that can reach the disk, including the count without the entries (a host
    // crash may persist the later write alone), must come back as the original.
    let original = fixtures::jks_store("changeit", &[("image", b"IMAGE-CA-DER")]);
    let keep = original.len() - 20;
    // The new entry and hash: 37 bytes of entry (tag, alias, date, type, certificate) and 20.
    let tail_len = 4 + 2 + "cacerts-hook-ours".len() + 8 + 2 + 5 + 4 + "OUR-CA-DER".len() + 20;
    for written in [0, 1, 10, 19, 20, 21, tail_len / 2, tail_len - 1, tail_len] {
        for count_new in [false, true] {
            if (written, count_new) == (0, false) {
                continue;
            }
            let what = format!("{written} bytes of the tail written, count patched: {count_new}");
            let fx = Fx::new(&[Node::File(KEYSTORE.into(), original.clone(), 0o644)]);
            let before = fx.snapshot();
            let store = fx.path(KEYSTORE);
            let store_times = times(&store);
            fx.install(&keystore_plan());
            let installed = std::fs::read(&store).unwrap();
            assert_eq!(installed.len(), keep + tail_len, "{what}");
            assert_eq!(installed[..8], original[..8], "{what}");
            assert_eq!(installed[12..keep], original[12..keep], "{what}");
            // The file as that crash left it: the same inode, written in place.
            let mut state = original.clone();
            state.resize(original.len().max(keep + written), 0);
            state[keep..keep + written].copy_from_slice(&installed[keep..keep + written]);
            if count_new {
                state[8..12].copy_from_slice(&installed[8..12]);
            }
            let f = std::fs::OpenOptions::new().write(true).open(&store).unwrap();
            f.set_len(state.len() as u64).unwrap();
            std::os::unix::fs::FileExt::write_all_at(&f, &state, 0).unwrap();
            drop(f);
            let report = fx.uninstall();
            assert!(
                report.kept.is_empty() && report.stripped.is_empty(),
                "{what}: {report:?}"
            );
            assert_eq!(times(&store), store_times, "{what}: (atime, mtime)");
            assert_eq!(std::fs::read(&store).unwrap(), original, "{what}");
            before.assert_same(&fx.snapshot(), &what);
        }
    }
}

#[test]
fn a_key_store_changed_by_the_container_loses_only_our_entry() {
    let original = fixtures::jks_store("changeit", &[("image", b"IMAGE-CA-DER")]);
    let fx = Fx::new(&[Node::File(KEYSTORE.into(), original, 0o644)]);
    let store = fx.path(KEYSTORE);
    let inode = std::fs::metadata(&store).unwrap().ino();
    fx.install(&keystore_plan());
    assert_eq!(std::fs::metadata(&store).unwrap().ino(), inode, "edited in place");
    // The container rewrites the store with an entry of its own, as keytool does.
    let theirs = fixtures::jks_store(
        "changeit",
        &[
            ("image", b"IMAGE-CA-DER"),
            ("cacerts-hook-ours", b"OUR-CA-DER"),
            ("theirs", b"THEIR-CA-DER"),
        ],
    );
    std::fs::write(&store, theirs).unwrap();
    let report = fx.uninstall();
    assert_eq!(
        report.stripped,
        vec![PathBuf::from(format!("/{KEYSTORE}"))],
        "{report:?}"
    );
    assert_eq!(
        std::fs::read(&store).unwrap(),
        fixtures::jks_store("changeit", &[("image", b"IMAGE-CA-DER"), ("theirs", b"THEIR-CA-DER")])
    );
}

#[test]
fn a_hard_linked_key_store_is_replaced_not_written_through() {
    let original = fixtures::jks_store("changeit", &[("image", b"IMAGE-CA-DER")]);
    let fx = Fx::new(&[Node::File(KEYSTORE.into(), original.clone(), 0o644), Node::dir("srv")]);
    // Another name of the same inode, as a hard link out of the root would be.
    std::fs::hard_link(fx.path(KEYSTORE), fx.path("srv/other-name")).unwrap();
    let before = fx.snapshot();
    fx.install(&keystore_plan());
    assert_eq!(
        std::fs::read(fx.path("srv/other-name")).unwrap(),
        original,
        "written through"
    );
    let store = cacerts_core::stores::keystore::Keystore::parse(&std::fs::read(fx.path(KEYSTORE)).unwrap(), "changeit")
        .unwrap();
    assert_eq!(store.aliases(), vec!["image", "cacerts-hook-ours"]);
    fx.uninstall();
    before.assert_same(&fx.snapshot(), "after uninstall");
}

#[test]
fn a_key_store_linked_out_of_the_root_is_changed_inside_it() {
    // The image's key store is a link to an absolute path, and another through `..` past the
    // root: both resolve inside the root, as the container sees them. A store of the same name on
    // the host must stay as it is; the in-root file of that name gets the entry.
    let host = tempfile::tempdir().unwrap();
    let host_store = host.path().join("cacerts");
    let canary = fixtures::jks_store("changeit", &[("host", b"HOST-CA-DER")]);
    std::fs::write(&host_store, &canary).unwrap();
    let host_rel = host_store.strip_prefix("/").unwrap().to_str().unwrap().to_owned();
    let depth = "../".repeat(12);
    for target in [format!("/{host_rel}"), format!("{depth}{host_rel}")] {
        let original = fixtures::jks_store("changeit", &[("image", b"IMAGE-CA-DER")]);
        let fx = Fx::new(&[
            Node::symlink(KEYSTORE, &target),
            Node::File(host_rel.clone(), original.clone(), 0o644),
        ]);
        let before = fx.snapshot();
        fx.install(&keystore_plan());
        assert_eq!(
            std::fs::read(&host_store).unwrap(),
            canary,
            "{target}: the host's store changed"
        );
        let mirror =
            cacerts_core::stores::keystore::Keystore::parse(&std::fs::read(fx.path(&host_rel)).unwrap(), "changeit")
                .unwrap();
        assert_eq!(mirror.aliases(), vec!["image", "cacerts-hook-ours"], "{target}");
        fx.uninstall();
        assert_eq!(std::fs::read(&host_store).unwrap(), canary, "{target}");
        before.assert_same(&fx.snapshot(), &target);
    }
}
