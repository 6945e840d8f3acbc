//! Races: while install and uninstall run, another thread keeps exchanging path components of the
//! rootfs with symlinks that escape it (absolute host path, `..` chains, `/proc/self/root`), using
//! `renameat2(RENAME_EXCHANGE)` so the swap is atomic and every name always exists. Errors are
//! allowed (that is what a race should turn into); panics and any write, deletion or time change
//! outside the root are not.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cacerts_core::{install, uninstall, Backend, Change, ContainerRoot, Edit, Error, Options, Plan};
use cacerts_testkit::{age, build, Node, Snapshot};
use rustix::fs::{renameat_with, RenameFlags, CWD};

const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nRACE-CA\n-----END CERTIFICATE-----\n";
/// Time the attacker runs against each backend.
const PER_BACKEND: Duration = Duration::from_secs(10);
/// Attacker swaps required over the whole test.
const MIN_SWAPS: u64 = 10_000;

fn plan() -> Plan {
    let mut p = Plan::new();
    p.push(Change::CreateFile {
        path: "/usr/local/share/ca-certificates/race/race.crt".into(),
        contents: PEM.to_vec(),
        mode: 0o644,
    });
    p.push(Change::CreateSymlink {
        path: "/etc/ssl/certs/race.pem".into(),
        target: "/usr/local/share/ca-certificates/race/race.crt".into(),
    });
    p.push(Change::CreateFile {
        path: "/etc/ssl/certs/ab12cd34.0".into(),
        contents: PEM.to_vec(),
        mode: 0o644,
    });
    p.push(Change::EditFile {
        path: "/etc/ssl/cert.pem".into(),
        edit: Edit::Append(PEM.to_vec()),
    });
    p
}

/// A symlink target that leads from `link_dir` (a host directory) to `dest` through `..` only.
fn dotdot_path(link_dir: &Path, dest: &Path) -> String {
    let depth = link_dir.components().count() - 1;
    format!("{}{}", "../".repeat(depth), dest.strip_prefix("/").unwrap().display())
}

/// The rootfs, with three escaping links beside each of the two attacked directories.
fn build_rootfs(rootfs: &Path, canary_certs: &Path, canary_share: &Path) {
    std::fs::create_dir(rootfs).unwrap();
    let ssl = rootfs.join("etc/ssl");
    let local = rootfs.join("usr/local");
    build(
        rootfs,
        &[
            Node::file(
                "etc/ssl/certs/ca-certificates.crt",
                "-----BEGIN CERTIFICATE-----\nIMAGE\n-----END CERTIFICATE-----\n",
            ),
            Node::symlink("etc/ssl/cert.pem", "certs/ca-certificates.crt"),
            Node::symlink("etc/ssl/evil-abs", canary_certs.to_str().unwrap()),
            Node::symlink("etc/ssl/evil-rel", &dotdot_path(&ssl, canary_certs)),
            Node::symlink(
                "etc/ssl/evil-proc",
                &format!("/proc/self/root{}", canary_certs.display()),
            ),
            Node::dir("usr/local/share/man"),
            Node::symlink("usr/local/evil-abs", canary_share.to_str().unwrap()),
            Node::symlink("usr/local/evil-rel", &dotdot_path(&local, canary_share)),
            Node::symlink(
                "usr/local/evil-proc",
                &format!("/proc/self/root{}", canary_share.display()),
            ),
        ],
    );
    // The escaping links really do lead to the canaries on the host.
    for link in ["etc/ssl/evil-abs", "etc/ssl/evil-rel", "etc/ssl/evil-proc"] {
        assert_eq!(std::fs::canonicalize(rootfs.join(link)).unwrap(), canary_certs);
    }
    for link in ["usr/local/evil-abs", "usr/local/evil-rel", "usr/local/evil-proc"] {
        assert_eq!(std::fs::canonicalize(rootfs.join(link)).unwrap(), canary_share);
    }
    age(rootfs);
}

/// Host directories the escaping links point to, laid out like what the plan would touch there.
fn build_canaries(canary_certs: &Path, canary_share: &Path) {
    std::fs::create_dir(canary_certs).unwrap();
    std::fs::create_dir(canary_share).unwrap();
    build(
        canary_certs,
        &[
            Node::file("ca-certificates.crt", "HOST BUNDLE\n"),
            Node::File("secret".into(), b"HOST SECRET\n".to_vec(), 0o000),
            Node::dir("java"),
        ],
    );
    build(
        canary_share,
        &[
            Node::file("ca-certificates/host.crt", "HOST CERT\n"),
            Node::dir("ca-certificates/race"),
            Node::File("secret".into(), b"HOST SECRET\n".to_vec(), 0o000),
        ],
    );
    age(canary_certs);
    age(canary_share);
}

#[derive(Default)]
struct Control {
    stop: AtomicBool,
    pause: AtomicBool,
    paused: AtomicBool,
    /// Set when the attacker has ended, normally or not; nobody waits for it then.
    gone: AtomicBool,
    swaps: AtomicU64,
}

struct Gone<'a>(&'a Control);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.gone.store(true, Ordering::SeqCst);
    }
}

impl Control {
    /// Stops the attacker with the original layout in place, and waits until it has.
    fn hold(&self) {
        self.pause.store(true, Ordering::SeqCst);
        while !self.paused.load(Ordering::SeqCst) && !self.gone.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    }

    fn release(&self) {
        self.pause.store(false, Ordering::SeqCst);
        while self.paused.load(Ordering::SeqCst) && !self.gone.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    }
}

/// Exchanges each attacked directory with each of its escaping links, and back, until stopped.
/// Between the two exchanges the evil layout stays for a varying number of spins.
fn attacker(ctl: &Control, rootfs: &Path) {
    let _gone = Gone(ctl);
    let pairs: Vec<(PathBuf, PathBuf)> = [
        ("etc/ssl/certs", "etc/ssl/evil-abs"),
        ("usr/local/share", "usr/local/evil-abs"),
        ("etc/ssl/certs", "etc/ssl/evil-rel"),
        ("usr/local/share", "usr/local/evil-rel"),
        ("etc/ssl/certs", "etc/ssl/evil-proc"),
        ("usr/local/share", "usr/local/evil-proc"),
    ]
    .iter()
    .map(|(a, b)| (rootfs.join(a), rootfs.join(b)))
    .collect();
    let exchange = |a: &Path, b: &Path| {
        renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE)
            .unwrap_or_else(|e| panic!("exchange {} <-> {}: {e}", a.display(), b.display()));
        ctl.swaps.fetch_add(1, Ordering::Relaxed);
    };
    let mut round = 0usize;
    while !ctl.stop.load(Ordering::SeqCst) {
        if ctl.pause.load(Ordering::SeqCst) {
            ctl.paused.store(true, Ordering::SeqCst);
            while ctl.pause.load(Ordering::SeqCst) && !ctl.stop.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            ctl.paused.store(false, Ordering::SeqCst);
            continue;
        }
        let (a, b) = &pairs[round % pairs.len()];
        exchange(a, b);
        for _ in 0..(round % 97) * 40 {
            std::hint::spin_loop();
        }
        exchange(a, b);
        round += 1;
    }
}

#[derive(Debug, Default)]
struct Tally {
    cycles: u64,
    install_ok: u64,
    install_err: u64,
    uninstall_ok: u64,
    uninstall_err: u64,
    kept: u64,
    rebuilds_with_leftovers: u64,
}

/// Errors a race may legitimately produce; anything about the journal itself would be a bug.
fn check_error(what: &str, e: &Error) {
    assert!(
        !matches!(
            e,
            Error::JournalInvalid { .. } | Error::JournalIo { .. } | Error::JournalForAnotherRoot { .. }
        ),
        "{what}: the journal broke under the race: {e}"
    );
}

/// What the race left in the rootfs, leaving out the times of the two directories whose entries
/// the attacker renames (its own doing, not the library's).
fn leftovers(original: &Snapshot, rootfs: &Path) -> Vec<String> {
    let mut before = original.clone();
    let mut now = Snapshot::take(rootfs);
    for snap in [&mut before, &mut now] {
        for dir in ["./etc/ssl", "./usr/local"] {
            if let Some(e) = snap.0.get_mut(Path::new(dir)) {
                e.mtime = (0, 0);
            }
        }
    }
    before.diff(&now)
}

fn run_backend(
    backend: Backend,
    tmp: &Path,
    ctl: &Arc<Control>,
    rootfs: &Path,
    original: &Snapshot,
    tally: &mut Tally,
) {
    let journal = tmp.join(format!("state/{backend:?}.journal"));
    let open = || ContainerRoot::open_with_backend(rootfs, backend).unwrap();
    let deadline = Instant::now() + PER_BACKEND;
    while Instant::now() < deadline {
        tally.cycles += 1;
        // Odd cycles install on a quiet tree and are attacked during uninstall only.
        let quiet_install = tally.cycles % 2 == 1;
        if quiet_install {
            ctl.hold();
        }
        match install(&open(), &plan(), &journal, &Options::default()) {
            Ok(_) => tally.install_ok += 1,
            Err(e) => {
                check_error("install", &e);
                tally.install_err += 1;
            }
        }
        if quiet_install {
            ctl.release();
        }
        match uninstall(&open(), &journal) {
            Ok(r) => {
                tally.uninstall_ok += 1;
                tally.kept += r.kept.len() as u64;
            }
            Err(e) => {
                check_error("uninstall", &e);
                tally.uninstall_err += 1;
            }
        }
        if tally.cycles % 25 == 0 {
            // With the attacker held, finish what is left, and start again from a fresh tree if
            // the race left anything behind (so later cycles are not just "already exists").
            ctl.hold();
            uninstall(&open(), &journal).unwrap();
            if !leftovers(original, rootfs).is_empty() {
                tally.rebuilds_with_leftovers += 1;
                std::fs::remove_dir_all(rootfs).unwrap();
                let (cc, cs) = (tmp.join("canary-certs"), tmp.join("canary-share"));
                build_rootfs(rootfs, &cc, &cs);
            }
            ctl.release();
        }
    }
}

#[test]
fn swapping_components_for_escaping_symlinks_never_reaches_outside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let tmp = std::fs::canonicalize(tmp.path()).map(|p| (tmp, p)).unwrap();
    let (_guard, tmp) = tmp;
    let rootfs = tmp.join("rootfs");
    let canary_certs = tmp.join("canary-certs");
    let canary_share = tmp.join("canary-share");
    build_canaries(&canary_certs, &canary_share);
    build_rootfs(&rootfs, &canary_certs, &canary_share);
    let canaries_before = (Snapshot::take(&canary_certs), Snapshot::take(&canary_share));
    let original = Snapshot::take(&rootfs);

    let ctl = Arc::new(Control::default());
    let thread = {
        let ctl = Arc::clone(&ctl);
        let rootfs = rootfs.clone();
        std::thread::spawn(move || attacker(&ctl, &rootfs))
    };
    let mut tally = Tally::default();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for backend in [Backend::Openat2, Backend::Walk] {
            run_backend(backend, &tmp, &ctl, &rootfs, &original, &mut tally);
            assert!(!ctl.gone.load(Ordering::SeqCst), "the attacker thread ended early");
        }
    }));
    ctl.stop.store(true, Ordering::SeqCst);
    let attacker_result = thread.join();
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
    assert!(attacker_result.is_ok(), "the attacker thread failed");
    let swaps = ctl.swaps.load(Ordering::SeqCst);

    // The attacker always swaps back, so the layout is the original one; finish any journal.
    for backend in [Backend::Openat2, Backend::Walk] {
        let journal = tmp.join(format!("state/{backend:?}.journal"));
        uninstall(&ContainerRoot::open(&rootfs).unwrap(), &journal).unwrap();
        assert!(!journal.exists());
    }
    let leftovers = leftovers(&original, &rootfs);
    eprintln!(
        "race: {swaps} swaps, {tally:?}; leftovers in the rootfs after the last cycle: {}",
        if leftovers.is_empty() {
            "none".to_owned()
        } else {
            leftovers.join("; ")
        }
    );

    assert!(swaps >= MIN_SWAPS, "only {swaps} attacker swaps");
    assert!(
        tally.install_ok > 0 && tally.uninstall_ok > 0,
        "nothing ever succeeded, the race tested nothing: {tally:?}"
    );
    canaries_before
        .0
        .assert_same(&Snapshot::take(&canary_certs), "host directory behind etc/ssl/evil-*");
    canaries_before
        .1
        .assert_same(&Snapshot::take(&canary_share), "host directory behind usr/local/evil-*");
}
