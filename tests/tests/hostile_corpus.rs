//! The hostile-tree corpus: layouts an image author could ship to make the installer write outside
//! the container root, hang, crash or leave something behind, replayed against every backend.
//!
//! Every case builds a temporary directory holding `rootfs/` (the layout under test) and a sibling
//! `canary/` (files and directories that mirror the paths the plan touches). Escape links point at
//! the canary by absolute host path, by `..` chains, through `/proc/self/root` and through
//! `/proc/self/cwd`: followed on the host they reach the canary (a test below proves it), followed
//! inside the root they must not. For each case and backend the run checks that the install
//! neither hangs nor panics, that the canary is untouched, that the outcome is the expected one
//! (installed with the right contents, or refused with the expected error variant and no change at
//! all), and that uninstall restores the root exactly and deletes the journal.

use std::any::Any;
use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cacerts_core::{install, uninstall, Backend, Change, ContainerRoot, Edit, Error, FileKind, Options, Plan};
use cacerts_testkit::{age, build, Node, Snapshot};

/// An install or uninstall taking longer than this has hung.
const HANG_LIMIT: Duration = Duration::from_secs(20);
/// A read of a single special file taking longer than this has hung.
const READ_LIMIT: Duration = Duration::from_secs(5);

const BACKENDS: [Backend; 2] = [Backend::Openat2, Backend::Walk];
/// Cases run concurrently (each in its own directory).
const WORKERS: usize = 4;

const PEM: &[u8] = b"-----BEGIN CERTIFICATE-----\nCORPUS-TEST-CA\n-----END CERTIFICATE-----\n";
/// The image's bundle, without a final newline so that the separator logic is exercised.
const IMAGE_BUNDLE: &[u8] = b"-----BEGIN CERTIFICATE-----\nIMAGE-CA\n-----END CERTIFICATE-----";
const CANARY_BUNDLE: &[u8] = b"-----BEGIN CERTIFICATE-----\nCANARY-MUST-NOT-CHANGE\n-----END CERTIFICATE-----\n";
const MIRROR_BUNDLE: &[u8] = b"-----BEGIN CERTIFICATE-----\nIN-ROOT-MIRROR\n-----END CERTIFICATE-----\n";
const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n";

const ANCHOR: &str = "/usr/local/share/ca-certificates/x.crt";
const LINK: &str = "/etc/ssl/certs/x.pem";
const HASH_LINK: &str = "/etc/ssl/certs/a1b2c3d4.0";
const BUNDLE_VIA: &str = "/etc/ssl/cert.pem";
const EXTRA_DIR: &str = "/etc/pki/ca-trust/source/anchors";

/// The plan every case applies, as a Debian-family installer would build it, plus a `mkdir -p`.
fn plan() -> Plan {
    let mut p = Plan::new();
    p.push(Change::CreateFile {
        path: ANCHOR.into(),
        contents: PEM.to_vec(),
        mode: 0o644,
    });
    p.push(Change::CreateDir { path: EXTRA_DIR.into() });
    p.push(Change::CreateSymlink {
        path: LINK.into(),
        target: ANCHOR.into(),
    });
    p.push(Change::CreateFile {
        path: HASH_LINK.into(),
        contents: PEM.to_vec(),
        mode: 0o644,
    });
    p.push(Change::EditFile {
        path: BUNDLE_VIA.into(),
        edit: Edit::Append(PEM.to_vec()),
    });
    p
}

/// The image as shipped, before a case replaces some of it.
fn image() -> Vec<Node> {
    vec![
        Node::file("etc/passwd", PASSWD),
        Node::file("etc/hostname", "image\n"),
        Node::file("etc/ssl/openssl.cnf", "# config\n"),
        Node::file("etc/ssl/certs/ca-certificates.crt", IMAGE_BUNDLE),
        Node::symlink("etc/ssl/cert.pem", "certs/ca-certificates.crt"),
        Node::File("usr/bin/true".into(), Vec::new(), 0o755),
        Node::dir("usr/local/bin"),
        Node::dir("usr/share/doc"),
    ]
}

/// The image without the entries at or below `replaced`, then `extra`.
fn image_with(replaced: &[&str], extra: Vec<Node>) -> Vec<Node> {
    let gone = |p: &str| {
        replaced
            .iter()
            .any(|r| p == *r || p.strip_prefix(r).is_some_and(|rest| rest.starts_with('/')))
    };
    let mut nodes: Vec<Node> = image().into_iter().filter(|n| !gone(n.path())).collect();
    nodes.extend(extra);
    nodes
}

/// The canary: the same paths as the image, outside the root. Everything the plan would create
/// there already exists, so an escape would succeed silently if nothing stopped it.
fn canary_tree() -> Vec<Node> {
    vec![
        Node::file("etc/passwd", b"canary:x:0:0::/:/bin/false\n"),
        Node::file("etc/ssl/certs/ca-certificates.crt", CANARY_BUNDLE),
        Node::symlink("etc/ssl/cert.pem", "certs/ca-certificates.crt"),
        Node::dir("etc/pki/ca-trust/source/anchors"),
        Node::file("usr/local/share/ca-certificates/canary.crt", CANARY_BUNDLE),
        Node::dir("usr/local/bin"),
    ]
}

/// Placeholders in node paths, link targets and checks, filled in per run.
struct Vars {
    /// `@CANARY@`: absolute host path of the canary directory.
    canary: String,
    /// `@CANARY_REL@`: the same without the leading slash.
    canary_rel: String,
    /// `@CWD_UP@`: enough `../` to go from the process's working directory up to `/`.
    cwd_up: String,
}

impl Vars {
    fn new(canary: &Path) -> Vars {
        let canary = canary.to_str().expect("UTF-8 temporary path").to_owned();
        let cwd = std::fs::canonicalize(std::env::current_dir().expect("cwd")).expect("canonical cwd");
        Vars {
            canary_rel: canary.trim_start_matches('/').to_owned(),
            canary,
            cwd_up: "../".repeat(cwd.components().count() - 1),
        }
    }

    fn pairs(&self) -> [(&str, &str); 3] {
        [
            ("@CANARY_REL@", &self.canary_rel),
            ("@CANARY@", &self.canary),
            ("@CWD_UP@", &self.cwd_up),
        ]
    }

    fn sub(&self, s: &str) -> String {
        self.pairs().iter().fold(s.to_owned(), |acc, (k, v)| acc.replace(k, v))
    }
}

/// The ways a link can point out of the root at the canary.
#[derive(Clone, Copy, Debug)]
enum Escape {
    /// The canary's absolute host path.
    Absolute,
    /// Exactly enough `..` to climb out of the rootfs on the host, then `canary/...`.
    DotDot,
    /// Far more `..` than needed (the host walk stops at `/`), then the canary's full path.
    DeepDotDot,
    /// `/proc/self/root` followed by the canary's host path.
    ProcRoot,
    /// `/proc/self/cwd`, `..` up to `/`, then the canary's host path.
    ProcCwd,
}

impl Escape {
    const ALL: [Escape; 5] = [
        Escape::Absolute,
        Escape::DotDot,
        Escape::DeepDotDot,
        Escape::ProcRoot,
        Escape::ProcCwd,
    ];

    fn label(self) -> &'static str {
        match self {
            Escape::Absolute => "abs",
            Escape::DotDot => "dotdot",
            Escape::DeepDotDot => "deep-dotdot",
            Escape::ProcRoot => "proc-self-root",
            Escape::ProcCwd => "proc-self-cwd",
        }
    }

    /// The target for a link at `at` (relative to the rootfs) that, followed on the host,
    /// reaches `at` in the canary.
    fn target(self, at: &str) -> String {
        let depth = at.split('/').count();
        match self {
            Escape::Absolute => format!("@CANARY@/{at}"),
            Escape::DotDot => format!("{}canary/{at}", "../".repeat(depth)),
            Escape::DeepDotDot => format!("{}@CANARY_REL@/{at}", "../".repeat(depth + 12)),
            Escape::ProcRoot => format!("/proc/self/root@CANARY@/{at}"),
            Escape::ProcCwd => format!("/proc/self/cwd/@CWD_UP@@CANARY_REL@/{at}"),
        }
    }

    /// Where, relative to the rootfs, the same target leads when it is resolved inside the root.
    /// `None` for targets whose in-root resolution climbs (`..`) out of a directory that does
    /// not exist, which the walk refuses: it cannot be resolved.
    fn in_root(self) -> Option<&'static str> {
        match self {
            Escape::Absolute | Escape::DeepDotDot => Some("@CANARY_REL@"),
            Escape::DotDot => Some("canary"),
            Escape::ProcRoot => Some("proc/self/root/@CANARY_REL@"),
            Escape::ProcCwd => None,
        }
    }
}

/// What must be true inside the rootfs (host view, placeholders allowed) after an install.
#[derive(Clone, Debug)]
enum Check {
    /// A regular file with exactly these bytes.
    Bytes(&'static str, Vec<u8>),
    /// A regular file ending with the appended certificate.
    EndsWithPem(&'static str),
    /// A regular file, dynamic path.
    BytesAt(String, Vec<u8>),
    /// A directory, dynamic path.
    DirAt(String),
    /// Permission bits.
    Mode(&'static str, u32),
    /// A symbolic link with this target.
    Link(&'static str, &'static str),
    /// A host path outside the temporary directory that must not exist.
    HostAbsent(&'static str),
}

type ErrorPredicate = fn(&Error) -> bool;

#[derive(Clone)]
enum Expect {
    /// Succeeds; the plan's entries read back correctly through the root, and these hold.
    Installs(Vec<Check>),
    /// Fails with an error matching the pattern (named for the report), changing nothing.
    Refuses(&'static str, ErrorPredicate),
}

macro_rules! refuses {
    ($($pattern:tt)+) => {
        Expect::Refuses(stringify!($($pattern)+), |e| matches!(e, $($pattern)+))
    };
}

fn not_found() -> Expect {
    refuses!(Error::Io { cause, .. } if cause.kind() == ErrorKind::NotFound)
}

fn unsafe_tree() -> Expect {
    refuses!(Error::SafetyViolation { .. })
}

fn exists() -> Expect {
    refuses!(Error::AlreadyExists { .. })
}

struct Case {
    name: String,
    nodes: Vec<Node>,
    plan: Plan,
    expect: Expect,
}

fn case(name: impl Into<String>, nodes: Vec<Node>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        nodes,
        plan: plan(),
        expect,
    }
}

/// Which part of the plan a component belongs to, which decides the outcome when a link there
/// leads to a place that does not exist inside the root.
#[derive(Clone, Copy)]
enum Role {
    /// On the way to the bundle: the edit cannot find it.
    Bundle,
    /// On the way to the anchor directory: `mkdir -p` follows it and creates the rest inside the root.
    AnchorDir,
    /// On the way to the extra directory: likewise.
    ExtraDir,
    /// A name the plan creates: the existing link is never followed, the create refused.
    Final,
}

const COMPONENTS: &[(&str, Role)] = &[
    ("etc", Role::Bundle),
    ("etc/ssl", Role::Bundle),
    ("etc/ssl/certs", Role::Bundle),
    ("etc/ssl/certs/ca-certificates.crt", Role::Bundle),
    ("etc/ssl/cert.pem", Role::Bundle),
    ("usr", Role::AnchorDir),
    ("usr/local", Role::AnchorDir),
    ("usr/local/share", Role::AnchorDir),
    ("usr/local/share/ca-certificates", Role::AnchorDir),
    ("etc/pki", Role::ExtraDir),
    ("etc/pki/ca-trust/source/anchors", Role::ExtraDir),
    ("usr/local/share/ca-certificates/x.crt", Role::Final),
    ("etc/ssl/certs/x.pem", Role::Final),
    ("etc/ssl/certs/a1b2c3d4.0", Role::Final),
];

/// An escape link of every kind at every component of every path the plan touches.
fn escape_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for &(at, role) in COMPONENTS {
        for kind in Escape::ALL {
            let nodes = image_with(&[at], vec![Node::symlink(at, &kind.target(at))]);
            let expect = match (role, kind.in_root()) {
                (Role::Final, _) => exists(),
                (_, None) => unsafe_tree(),
                (Role::Bundle, Some(_)) => not_found(),
                (Role::AnchorDir, Some(prefix)) => {
                    Expect::Installs(vec![Check::BytesAt(format!("{prefix}{ANCHOR}"), PEM.to_vec())])
                }
                (Role::ExtraDir, Some(prefix)) => Expect::Installs(vec![Check::DirAt(format!("{prefix}{EXTRA_DIR}"))]),
            };
            out.push(case(format!("escape:{}:{at}", kind.label()), nodes, expect));
        }
    }
    out
}

/// A chain of `n` links starting at `from` (in directory `dir`) and ending at `target`.
fn chain(dir: &str, from: &str, n: usize, target: &str) -> Vec<Node> {
    let name = |i: usize| if i == 0 { from.to_owned() } else { format!("chain{i}") };
    (0..n)
        .map(|i| {
            let to = if i + 1 == n { target.to_owned() } else { name(i + 1) };
            Node::symlink(&format!("{dir}/{}", name(i)), &to)
        })
        .collect()
}

fn special_cases() -> Vec<Case> {
    let bundle = "etc/ssl/certs/ca-certificates.crt";
    let with = image_with;
    vec![
        case(
            "plain image",
            image(),
            Expect::Installs(vec![Check::EndsWithPem(bundle)]),
        ),
        // Legitimate absolute links must be resolved inside the root.
        case(
            "legit: cert.pem -> absolute in-root bundle",
            with(
                &["etc/ssl/cert.pem"],
                vec![Node::symlink("etc/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt")],
            ),
            Expect::Installs(vec![
                Check::EndsWithPem(bundle),
                Check::Link("etc/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt"),
            ]),
        ),
        case(
            "legit: etc/ssl/certs -> absolute in-root store",
            with(
                &["etc/ssl/certs"],
                vec![
                    Node::file("usr/share/ca-store/ca-certificates.crt", IMAGE_BUNDLE),
                    Node::symlink("etc/ssl/certs", "/usr/share/ca-store"),
                ],
            ),
            Expect::Installs(vec![
                Check::EndsWithPem("usr/share/ca-store/ca-certificates.crt"),
                Check::Link("usr/share/ca-store/x.pem", ANCHOR),
                Check::Bytes("usr/share/ca-store/a1b2c3d4.0", PEM.to_vec()),
            ]),
        ),
        case(
            "legit: ./ components in the bundle link",
            with(
                &["etc/ssl/cert.pem"],
                vec![Node::symlink("etc/ssl/cert.pem", "./certs/./ca-certificates.crt")],
            ),
            Expect::Installs(vec![Check::EndsWithPem(bundle)]),
        ),
        case(
            "legit: Alpine layout, the bundle links to cert.pem",
            with(
                &["etc/ssl/cert.pem", bundle],
                vec![
                    Node::file("etc/ssl/cert.pem", IMAGE_BUNDLE),
                    Node::symlink(bundle, "../cert.pem"),
                ],
            ),
            Expect::Installs(vec![
                Check::EndsWithPem("etc/ssl/cert.pem"),
                Check::Link(bundle, "../cert.pem"),
            ]),
        ),
        case(
            "legit: macOS-style etc -> private/etc",
            with(
                &["etc"],
                vec![
                    Node::file("private/etc/ssl/certs/ca-certificates.crt", IMAGE_BUNDLE),
                    Node::symlink("private/etc/ssl/cert.pem", "certs/ca-certificates.crt"),
                    Node::symlink("etc", "private/etc"),
                ],
            ),
            Expect::Installs(vec![
                Check::EndsWithPem("private/etc/ssl/certs/ca-certificates.crt"),
                Check::Link("private/etc/ssl/certs/x.pem", ANCHOR),
            ]),
        ),
        case(
            "empty bundle",
            with(&[bundle], vec![Node::file(bundle, "")]),
            Expect::Installs(vec![Check::Bytes(bundle, PEM.to_vec())]),
        ),
        // `..` above the root clamps to the root.
        case(
            "clamp: etc/ssl/certs -> ../../../../../etc/ssl/real",
            with(
                &["etc/ssl/certs"],
                vec![
                    Node::file("etc/ssl/real/ca-certificates.crt", IMAGE_BUNDLE),
                    Node::symlink("etc/ssl/certs", "../../../../../etc/ssl/real"),
                ],
            ),
            Expect::Installs(vec![
                Check::EndsWithPem("etc/ssl/real/ca-certificates.crt"),
                Check::Link("etc/ssl/real/x.pem", ANCHOR),
                Check::HostAbsent("/etc/ssl/real"),
            ]),
        ),
        case(
            "clamp: usr/local -> /../../../../usr/local2",
            with(
                &["usr/local"],
                vec![
                    Node::dir("usr/local2"),
                    Node::symlink("usr/local", "/../../../../usr/local2"),
                ],
            ),
            Expect::Installs(vec![Check::Bytes(
                "usr/local2/share/ca-certificates/x.crt",
                PEM.to_vec(),
            )]),
        ),
        case(
            "clamp: etc/ssl -> ../../../../../../../etc/ssl (the host's, a loop inside)",
            with(
                &["etc/ssl"],
                vec![Node::symlink("etc/ssl", "../../../../../../../etc/ssl")],
            ),
            unsafe_tree(),
        ),
        case(
            "clamp: etc/ssl/certs -> / (the root itself)",
            with(&["etc/ssl/certs"], vec![Node::symlink("etc/ssl/certs", "/")]),
            not_found(),
        ),
        case(
            "clamp: etc -> . (the root itself)",
            with(&["etc"], vec![Node::symlink("etc", ".")]),
            not_found(),
        ),
        case(
            "clamp: usr -> / (anchor lands in /local)",
            with(&["usr"], vec![Node::symlink("usr", "/")]),
            Expect::Installs(vec![Check::Bytes("local/share/ca-certificates/x.crt", PEM.to_vec())]),
        ),
        case(
            "clamp: cert.pem -> / (the root is not a file)",
            with(&["etc/ssl/cert.pem"], vec![Node::symlink("etc/ssl/cert.pem", "/")]),
            unsafe_tree(),
        ),
        // Escape targets that happen to exist inside the root too: the in-root copy is used.
        case(
            "mirror: etc/ssl/certs -> canary by absolute path, present inside the root",
            with(
                &["etc/ssl/certs"],
                vec![
                    Node::file("@CANARY_REL@/etc/ssl/certs/ca-certificates.crt", MIRROR_BUNDLE),
                    Node::symlink("etc/ssl/certs", "@CANARY@/etc/ssl/certs"),
                ],
            ),
            Expect::Installs(vec![
                Check::BytesAt(
                    "@CANARY_REL@/etc/ssl/certs/ca-certificates.crt".into(),
                    [MIRROR_BUNDLE, PEM].concat(),
                ),
                Check::BytesAt("@CANARY_REL@/etc/ssl/certs/a1b2c3d4.0".into(), PEM.to_vec()),
            ]),
        ),
        case(
            "mirror: etc -> ../canary/etc, present inside the root",
            with(
                &["etc"],
                vec![
                    Node::file("canary/etc/ssl/certs/ca-certificates.crt", MIRROR_BUNDLE),
                    Node::symlink("canary/etc/ssl/cert.pem", "certs/ca-certificates.crt"),
                    Node::symlink("etc", "../canary/etc"),
                ],
            ),
            Expect::Installs(vec![
                Check::BytesAt(
                    "canary/etc/ssl/certs/ca-certificates.crt".into(),
                    [MIRROR_BUNDLE, PEM].concat(),
                ),
                Check::DirAt(format!("canary{EXTRA_DIR}")),
            ]),
        ),
        case(
            "mirror: in-root proc/self/root -> /, etc/ssl -> /proc/self/root/etc/ssl-real",
            with(
                &["etc/ssl"],
                vec![
                    Node::symlink("proc/self/root", "/"),
                    Node::file("etc/ssl-real/certs/ca-certificates.crt", IMAGE_BUNDLE),
                    Node::symlink("etc/ssl-real/cert.pem", "certs/ca-certificates.crt"),
                    Node::symlink("etc/ssl", "/proc/self/root/etc/ssl-real"),
                ],
            ),
            Expect::Installs(vec![
                Check::EndsWithPem("etc/ssl-real/certs/ca-certificates.crt"),
                Check::Link("etc/ssl-real/certs/x.pem", ANCHOR),
            ]),
        ),
        case(
            "proc: in-root proc -> /proc (a loop), etc/ssl -> /proc/self/root/...",
            with(
                &["etc/ssl"],
                vec![
                    Node::symlink("proc", "/proc"),
                    Node::symlink("etc/ssl", "/proc/self/root@CANARY@/etc/ssl"),
                ],
            ),
            unsafe_tree(),
        ),
        case(
            "dangling dir on the mkdir -p chain: etc/pki -> /opt/pki",
            with(&[], vec![Node::symlink("etc/pki", "/opt/pki")]),
            Expect::Installs(vec![Check::DirAt("opt/pki/ca-trust/source/anchors".into())]),
        ),
        // Loops.
        case(
            "loop: bundle -> itself",
            with(&[bundle], vec![Node::symlink(bundle, "ca-certificates.crt")]),
            unsafe_tree(),
        ),
        case(
            "loop: etc/ssl -> ssl",
            with(&["etc/ssl"], vec![Node::symlink("etc/ssl", "ssl")]),
            unsafe_tree(),
        ),
        case(
            "loop: usr/local/share -> /usr/local/share",
            with(&[], vec![Node::symlink("usr/local/share", "/usr/local/share")]),
            unsafe_tree(),
        ),
        case(
            "loop: cert.pem <-> certs/loop",
            with(
                &["etc/ssl/cert.pem"],
                vec![
                    Node::symlink("etc/ssl/cert.pem", "certs/loop"),
                    Node::symlink("etc/ssl/certs/loop", "/etc/ssl/cert.pem"),
                ],
            ),
            unsafe_tree(),
        ),
        case(
            "loop: usr/local <-> usr/local2",
            with(
                &["usr/local"],
                vec![
                    Node::symlink("usr/local", "local2"),
                    Node::symlink("usr/local2", "/usr/local"),
                ],
            ),
            unsafe_tree(),
        ),
        case(
            "loop: bundle -> /etc/ssl/cert.pem -> bundle",
            with(&[bundle], vec![Node::symlink(bundle, "/etc/ssl/cert.pem")]),
            unsafe_tree(),
        ),
        case(
            "chain: 40 links to the bundle (the kernel's limit) is followed",
            with(
                &["etc/ssl/cert.pem"],
                chain("etc/ssl", "cert.pem", 40, "certs/ca-certificates.crt"),
            ),
            Expect::Installs(vec![Check::EndsWithPem(bundle)]),
        ),
        case(
            "chain: 41 links to the bundle",
            with(
                &["etc/ssl/cert.pem"],
                chain("etc/ssl", "cert.pem", 41, "certs/ca-certificates.crt"),
            ),
            unsafe_tree(),
        ),
        case(
            "chain: 60 links for usr/local",
            with(
                &["usr/local"],
                [
                    vec![Node::dir("usr/local-real")],
                    chain("usr", "local", 60, "local-real"),
                ]
                .concat(),
            ),
            unsafe_tree(),
        ),
        // Something at a name the plan creates: never replaced, never followed.
        case(
            "final: x.crt dangling -> /nonexistent",
            with(
                &[],
                vec![Node::symlink(
                    "usr/local/share/ca-certificates/x.crt",
                    "/nonexistent/x.crt",
                )],
            ),
            exists(),
        ),
        case(
            "final: x.crt dangling -> y.crt beside it (creatable through the link)",
            with(
                &[],
                vec![Node::symlink("usr/local/share/ca-certificates/x.crt", "y.crt")],
            ),
            exists(),
        ),
        case(
            "final: x.crt -> the canary's passwd by absolute host path",
            with(
                &[],
                vec![Node::symlink(
                    "usr/local/share/ca-certificates/x.crt",
                    "@CANARY@/etc/passwd",
                )],
            ),
            exists(),
        ),
        case(
            "final: hash name -> the canary's passwd by a .. chain",
            with(
                &[],
                vec![Node::symlink(
                    "etc/ssl/certs/a1b2c3d4.0",
                    "../../../../canary/etc/passwd",
                )],
            ),
            exists(),
        ),
        case(
            "final: x.pem dangling -> relative",
            with(&[], vec![Node::symlink("etc/ssl/certs/x.pem", "missing/x.pem")]),
            exists(),
        ),
        case(
            "final: hash link -> /etc/passwd",
            with(&[], vec![Node::symlink("etc/ssl/certs/a1b2c3d4.0", "/etc/passwd")]),
            exists(),
        ),
        case(
            "final: x.pem is a regular file",
            with(&[], vec![Node::file("etc/ssl/certs/x.pem", "not ours\n")]),
            exists(),
        ),
        case(
            "final: x.crt is a FIFO",
            with(&[], vec![Node::Fifo("usr/local/share/ca-certificates/x.crt".into())]),
            exists(),
        ),
        case(
            "final: hash name is a socket",
            with(&[], vec![Node::Socket("etc/ssl/certs/a1b2c3d4.0".into())]),
            exists(),
        ),
        case(
            "final: x.crt is a directory",
            with(&[], vec![Node::dir("usr/local/share/ca-certificates/x.crt")]),
            exists(),
        ),
        // Special files where the bundle is expected.
        case(
            "special: bundle is a FIFO",
            with(&[bundle], vec![Node::Fifo(bundle.into())]),
            unsafe_tree(),
        ),
        case(
            "special: bundle is a FIFO behind an absolute link",
            with(
                &[bundle, "etc/ssl/cert.pem"],
                vec![
                    Node::Fifo(bundle.into()),
                    Node::symlink("etc/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt"),
                ],
            ),
            unsafe_tree(),
        ),
        case(
            "special: bundle is a socket",
            with(&[bundle], vec![Node::Socket(bundle.into())]),
            unsafe_tree(),
        ),
        case(
            "special: bundle is /dev/zero (1,5)",
            with(&[bundle], vec![Node::CharDevice(bundle.into(), 1, 5)]),
            unsafe_tree(),
        ),
        case(
            "special: bundle is /dev/tty (5,0)",
            with(&[bundle], vec![Node::CharDevice(bundle.into(), 5, 0)]),
            unsafe_tree(),
        ),
        case(
            "special: bundle -> /dev/zero inside the root",
            with(
                &[bundle],
                vec![
                    Node::CharDevice("dev/zero".into(), 1, 5),
                    Node::symlink(bundle, "/dev/zero"),
                ],
            ),
            unsafe_tree(),
        ),
        case(
            "special: bundle is a directory",
            with(&[bundle], vec![Node::dir(bundle)]),
            unsafe_tree(),
        ),
        case(
            "special: cert.pem -> certs (a directory)",
            with(&["etc/ssl/cert.pem"], vec![Node::symlink("etc/ssl/cert.pem", "certs")]),
            unsafe_tree(),
        ),
        case(
            "special: anchor dir is a FIFO",
            with(&[], vec![Node::Fifo("usr/local/share/ca-certificates".into())]),
            unsafe_tree(),
        ),
        case(
            "special: usr/local/share is a socket",
            with(&[], vec![Node::Socket("usr/local/share".into())]),
            unsafe_tree(),
        ),
        case(
            "special: etc/pki/ca-trust is /dev/zero",
            with(&[], vec![Node::CharDevice("etc/pki/ca-trust".into(), 1, 5)]),
            unsafe_tree(),
        ),
        // Regular files where directories are expected.
        case(
            "file for dir: etc/ssl is a file",
            with(&["etc/ssl"], vec![Node::file("etc/ssl", "x")]),
            unsafe_tree(),
        ),
        case(
            "file for dir: etc/ssl/certs is a file",
            with(&["etc/ssl/certs"], vec![Node::file("etc/ssl/certs", "x")]),
            unsafe_tree(),
        ),
        case(
            "file for dir: usr/local is a file",
            with(&["usr/local"], vec![Node::file("usr/local", "x")]),
            unsafe_tree(),
        ),
        case(
            "file for dir: etc/pki is a file",
            with(&[], vec![Node::file("etc/pki", "x")]),
            unsafe_tree(),
        ),
        case(
            "file for dir: usr is a file",
            with(&["usr"], vec![Node::file("usr", "x")]),
            unsafe_tree(),
        ),
        // Hard links: the edit replaces the bundle's name, never writes through the inode.
        case(
            "hardlink: bundle is etc/passwd",
            with(&[bundle], vec![Node::Hardlink(bundle.into(), "etc/passwd".into())]),
            Expect::Installs(vec![
                Check::Bytes("etc/passwd", PASSWD.to_vec()),
                Check::EndsWithPem(bundle),
            ]),
        ),
        case(
            "hardlink: bundle is the canary's bundle",
            with(
                &[bundle],
                vec![Node::Hardlink(
                    bundle.into(),
                    "@CANARY@/etc/ssl/certs/ca-certificates.crt".into(),
                )],
            ),
            Expect::Installs(vec![Check::Bytes(bundle, [CANARY_BUNDLE, PEM].concat())]),
        ),
        // Size.
        case(
            "size: 1 GiB sparse bundle",
            with(&[bundle], vec![Node::Sparse(bundle.into(), 1 << 30)]),
            refuses!(Error::TooLarge { .. }),
        ),
        case(
            "size: 65 MiB sparse file behind an absolute link",
            with(
                &["etc/ssl/cert.pem"],
                vec![
                    Node::Sparse("var/big".into(), 65 << 20),
                    Node::symlink("etc/ssl/cert.pem", "/var/big"),
                ],
            ),
            refuses!(Error::TooLarge { .. }),
        ),
        // Permissions: the hook runs as root, which read-only modes do not stop.
        case(
            "mode: bundle 0444",
            with(&[bundle], vec![Node::File(bundle.into(), IMAGE_BUNDLE.to_vec(), 0o444)]),
            Expect::Installs(vec![Check::EndsWithPem(bundle), Check::Mode(bundle, 0o444)]),
        ),
        case(
            "mode: bundle 0000",
            with(&[bundle], vec![Node::File(bundle.into(), IMAGE_BUNDLE.to_vec(), 0)]),
            Expect::Installs(vec![Check::EndsWithPem(bundle), Check::Mode(bundle, 0)]),
        ),
        case(
            "mode: etc/ssl/certs 0555",
            with(&[], vec![Node::Chmod("etc/ssl/certs".into(), 0o555)]),
            Expect::Installs(vec![Check::EndsWithPem(bundle), Check::Mode("etc/ssl/certs", 0o555)]),
        ),
        case(
            "mode: usr/local 0555 and usr 0500",
            with(
                &[],
                vec![Node::Chmod("usr/local".into(), 0o555), Node::Chmod("usr".into(), 0o500)],
            ),
            Expect::Installs(vec![
                Check::Mode("usr/local", 0o555),
                Check::Mode("usr/local/share", 0o755),
            ]),
        ),
    ]
}

fn cases() -> Vec<Case> {
    let mut all = escape_cases();
    all.extend(special_cases());
    all
}

/// Runs `f` on its own thread; an error if it panics or does not return within `limit`.
fn guarded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(what.to_owned())
        .spawn(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        })
        .expect("spawn");
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(panic)) => Err(format!("{what} panicked: {}", panic_message(&*panic))),
        Err(RecvTimeoutError::Timeout) => Err(format!("{what} hung: no result after {limit:?}")),
        Err(RecvTimeoutError::Disconnected) => Err(format!("{what}: thread vanished")),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic".into())
}

/// A test directory: `rootfs/`, `canary/` and the journal's place, beside each other.
struct Lab {
    _tmp: tempfile::TempDir,
    rootfs: PathBuf,
    canary: PathBuf,
    state: PathBuf,
    vars: Vars,
}

impl Lab {
    fn new(nodes: &[Node]) -> Lab {
        let tmp = tempfile::tempdir().expect("tempdir");
        let top = std::fs::canonicalize(tmp.path()).expect("canonical tempdir");
        let (rootfs, canary, state) = (top.join("rootfs"), top.join("canary"), top.join("state"));
        std::fs::create_dir(&rootfs).expect("mkdir rootfs");
        std::fs::create_dir(&canary).expect("mkdir canary");
        let vars = Vars::new(&canary);
        build(&canary, &canary_tree());
        let nodes: Vec<Node> = nodes.iter().map(|n| n.with_vars(&vars.pairs())).collect();
        build(&rootfs, &nodes);
        age(&canary);
        age(&rootfs);
        Lab {
            _tmp: tmp,
            rootfs,
            canary,
            state,
            vars,
        }
    }

    fn journal(&self) -> PathBuf {
        self.state.join("journal.json")
    }

    /// Nothing of the journal (or its backups) is left.
    fn assert_no_journal(&self, ctx: &str) {
        let left: Vec<_> = match std::fs::read_dir(&self.state) {
            Ok(entries) => entries.map(|e| e.expect("entry").file_name()).collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read_dir {}: {e}", self.state.display()),
        };
        assert!(left.is_empty(), "{ctx}: journal files left behind: {left:?}");
    }
}

/// The bundle after appending `PEM` to `before`, as `Edit::Append` defines it.
fn appended(before: &[u8]) -> Vec<u8> {
    let mut out = before.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(PEM);
    out
}

fn run_case(case: &Case, backend: Backend) -> Result<(), String> {
    let lab = Lab::new(&case.nodes);
    let canary_before = Snapshot::take(&lab.canary);
    let root_before = Snapshot::take(&lab.rootfs);
    let open = |lab: &Lab| ContainerRoot::open_with_backend(&lab.rootfs, backend).expect("open root");
    let bundle_before = match case.expect {
        Expect::Installs(_) => Some(
            open(&lab)
                .read_file(BUNDLE_VIA)
                .map_err(|e| format!("the case's bundle is not readable before install: {e}"))?,
        ),
        Expect::Refuses(..) => None,
    };

    let (rootfs, journal, plan) = (lab.rootfs.clone(), lab.journal(), case.plan.clone());
    let outcome = guarded("install", HANG_LIMIT, move || {
        let root = ContainerRoot::open_with_backend(&rootfs, backend)?;
        install(&root, &plan, &journal, &Options::default())
    })?;
    canary_before.assert_same(&Snapshot::take(&lab.canary), "canary after install");

    match &case.expect {
        Expect::Refuses(label, matches) => {
            match outcome {
                Ok(report) => return Err(format!("expected {label}, but it installed: {report:?}")),
                Err(e) if !matches(&e) => return Err(format!("expected {label}, got {e:?}")),
                Err(_) => {}
            }
            root_before.assert_same(&Snapshot::take(&lab.rootfs), "rootfs after a refused install");
            lab.assert_no_journal("after a refused install");
            Ok(())
        }
        Expect::Installs(checks) => {
            outcome.map_err(|e| format!("expected to install, got {e:?}"))?;
            let root = open(&lab);
            let read = |p: &str| root.read_file(p).map_err(|e| format!("{p} after install: {e}"));
            for path in [ANCHOR, LINK, HASH_LINK] {
                if read(path)? != PEM {
                    return Err(format!("{path} does not read back as the certificate"));
                }
            }
            let link = root.read_link(LINK).map_err(|e| format!("{LINK}: {e}"))?;
            if link != Path::new(ANCHOR) {
                return Err(format!("{LINK} -> {}", link.display()));
            }
            match root.metadata(EXTRA_DIR) {
                Ok(Some(m)) if m.kind == FileKind::Dir => {}
                other => return Err(format!("{EXTRA_DIR} is not a directory: {other:?}")),
            }
            if read(BUNDLE_VIA)? != appended(bundle_before.as_deref().expect("read before")) {
                return Err(format!(
                    "{BUNDLE_VIA} does not read back as the bundle plus the certificate"
                ));
            }
            for check in checks {
                run_check(&lab, check)?;
            }
            drop(root);

            let (rootfs, journal) = (lab.rootfs.clone(), lab.journal());
            let report = guarded("uninstall", HANG_LIMIT, move || {
                let root = ContainerRoot::open_with_backend(&rootfs, backend)?;
                uninstall(&root, &journal)
            })?
            .map_err(|e| format!("uninstall failed: {e:?}"))?;
            if !report.kept.is_empty() {
                return Err(format!("uninstall kept entries: {:?}", report.kept));
            }
            root_before.assert_same(&Snapshot::take(&lab.rootfs), "rootfs after uninstall");
            canary_before.assert_same(&Snapshot::take(&lab.canary), "canary after uninstall");
            lab.assert_no_journal("after uninstall");
            Ok(())
        }
    }
}

fn run_check(lab: &Lab, check: &Check) -> Result<(), String> {
    let host = |p: &str| lab.rootfs.join(lab.vars.sub(p));
    let bytes = |p: &str| std::fs::read(host(p)).map_err(|e| format!("check {p}: {e}"));
    let ok = match check {
        Check::Bytes(p, want) => &bytes(p)? == want,
        Check::BytesAt(p, want) => &bytes(p)? == want,
        Check::EndsWithPem(p) => bytes(p)?.ends_with(PEM),
        Check::DirAt(p) => std::fs::symlink_metadata(host(p)).is_ok_and(|m| m.is_dir()),
        Check::Mode(p, mode) => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::symlink_metadata(host(p)).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
        }
        Check::Link(p, target) => std::fs::read_link(host(p)).is_ok_and(|t| t == Path::new(target)),
        Check::HostAbsent(p) => std::fs::symlink_metadata(p).is_err(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {check:?}"))
    }
}

#[test]
fn hostile_trees_neither_escape_nor_hang_nor_leave_a_trace() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names must be unique");

    // `HOSTILE_CASE=substring` runs only the matching cases, when working on one.
    let only = std::env::var("HOSTILE_CASE").unwrap_or_default();
    let runs: Vec<(&Case, Backend)> = cases
        .iter()
        .filter(|c| c.name.contains(&only))
        .flat_map(|c| BACKENDS.map(|b| (c, b)))
        .collect();
    // The canary catches escapes by the hostile links; the host's own files at the paths the plan
    // names catch the rest (a legitimate absolute in-root link such as `/etc/ssl/cert.pem ->
    // /etc/ssl/certs/ca-certificates.crt` leads to the host's bundle if it is ever followed on the
    // host).
    let host_before = host_files();
    // Runs wait mostly on fsync; a few at a time keep the wall time down.
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                while let Some(&(case, backend)) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let result = catch_unwind(AssertUnwindSafe(|| run_case(case, backend)))
                        .unwrap_or_else(|panic| Err(panic_message(&*panic)));
                    if let Err(msg) = result {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("[{backend:?}] {}: {msg}", case.name));
                    }
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    if host_files() != host_before {
        failures.push("the HOST's own files at the planned paths changed".into());
    }
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} runs failed ({:?}):\n{}",
        failures.len(),
        runs.len(),
        started.elapsed(),
        failures.join("\n")
    );
}

/// Contents and metadata of the host's own files at the paths the plan touches, and the listing
/// of the host's local anchor directory.
fn host_files() -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/ssl/cert.pem",
        "/etc/passwd",
        "/etc/ssl/certs",
        "/usr/local/share/ca-certificates",
    ] {
        let line = match std::fs::symlink_metadata(path) {
            Err(e) => format!("{path}: {e}"),
            Ok(m) => {
                let contents = if m.is_file() {
                    std::fs::read(path).map(|b| b.len()).unwrap_or(0).to_string()
                } else if m.is_dir() {
                    let mut names: Vec<_> = std::fs::read_dir(path)
                        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
                        .unwrap_or_default();
                    names.sort();
                    format!("{names:?}")
                } else {
                    String::new()
                };
                format!(
                    "{path}: ino {} mtime {}.{} {contents}",
                    m.ino(),
                    m.mtime(),
                    m.mtime_nsec()
                )
            }
        };
        out.push(line);
    }
    out
}

/// The corpus is only worth something if its escape links really escape when the host follows
/// them: each one, opened by the host, must be the canary's entry.
#[test]
fn escape_links_reach_the_canary_when_the_host_follows_them() {
    use std::os::unix::fs::MetadataExt;
    for &(at, _) in COMPONENTS {
        for kind in Escape::ALL {
            let lab = Lab::new(&[Node::symlink(at, &kind.target(at))]);
            let target = lab.canary.join(at);
            // The names the plan creates do not exist in the canary; give them something to reach.
            if std::fs::symlink_metadata(&target).is_err() {
                std::fs::write(&target, "reached\n").expect("canary final name");
            }
            let got = std::fs::metadata(lab.rootfs.join(at)).unwrap_or_else(|e| panic!("{}:{at}: {e}", kind.label()));
            let want = std::fs::metadata(&target).expect("canary entry");
            assert_eq!(
                (got.dev(), got.ino()),
                (want.dev(), want.ino()),
                "{}:{at} does not reach the canary on the host",
                kind.label()
            );
        }
    }
}

/// Reading special files through the root: refused before anything is read, and promptly.
#[test]
fn read_file_refuses_special_files_promptly() {
    let nodes = [
        Node::Fifo("dev/fifo".into()),
        Node::Socket("dev/socket".into()),
        Node::CharDevice("dev/zero".into(), 1, 5),
        Node::CharDevice("dev/tty".into(), 5, 0),
        Node::Sparse("var/big".into(), 1 << 30),
        Node::dir("var/dir"),
        Node::symlink("etc/fifo-link", "/dev/fifo"),
        Node::symlink("etc/zero-link", "../../../../dev/zero"),
        Node::symlink("etc/big-link", "/proc/self/root/var/big"),
        Node::symlink("proc/self/root", "/"),
    ];
    type Pred = fn(&Error) -> bool;
    let special: Pred = |e| matches!(e, Error::SafetyViolation { .. });
    let too_large: Pred = |e| matches!(e, Error::TooLarge { size, .. } if *size == 1 << 30);
    let table: [(&str, Pred); 9] = [
        ("/dev/fifo", special),
        ("/dev/socket", special),
        ("/dev/zero", special),
        ("/dev/tty", special),
        ("/var/big", too_large),
        ("/var/dir", special),
        ("/etc/fifo-link", special),
        ("/etc/zero-link", special),
        ("/etc/big-link", too_large),
    ];
    let lab = Lab::new(&nodes);
    let mut failures = Vec::new();
    for backend in BACKENDS {
        for (path, expected) in table {
            let rootfs = lab.rootfs.clone();
            let result = guarded("read_file", READ_LIMIT, move || {
                let root = ContainerRoot::open_with_backend(&rootfs, backend).expect("open root");
                let meta = root.metadata(path).map(|m| m.map(|m| m.kind));
                (meta, root.read_file(path).map(|b| b.len()))
            });
            match result {
                Ok((Ok(Some(_)), Err(e))) if expected(&e) => {}
                Ok((meta, read)) => failures.push(format!("[{backend:?}] {path}: metadata {meta:?}, read {read:?}")),
                Err(msg) => failures.push(format!("[{backend:?}] {path}: {msg}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `canonicalize`, `metadata` and `read_file` follow escape links inside the root: they name and
/// reach the in-root place, never the canary.
#[test]
fn read_side_resolves_escape_links_inside_the_root() {
    let mut failures = Vec::new();
    for backend in BACKENDS {
        for kind in Escape::ALL {
            for at in ["etc", "etc/ssl/certs", "etc/ssl/certs/ca-certificates.crt"] {
                let ctx = format!("[{backend:?}] {}:{at}", kind.label());
                let mut nodes = image_with(&[at], vec![Node::symlink(at, &kind.target(at))]);
                let lab = Lab::new(&nodes);
                let root = ContainerRoot::open_with_backend(&lab.rootfs, backend).expect("open root");
                let path = "/etc/ssl/certs/ca-certificates.crt";
                let canonical = root.canonicalize(path);
                match (kind.in_root(), &canonical) {
                    (Some(prefix), Ok(p)) if *p == Path::new(&lab.vars.sub(&format!("/{prefix}{path}"))) => {}
                    (None, Err(Error::SafetyViolation { .. })) => {}
                    _ => failures.push(format!("{ctx}: canonicalize gave {canonical:?}")),
                }
                match root.metadata(path) {
                    Ok(None) => {}
                    Err(Error::SafetyViolation { .. }) if kind.in_root().is_none() => {}
                    other => failures.push(format!("{ctx}: metadata gave {other:?}")),
                }
                match root.read_file(path) {
                    Err(Error::Io { cause, .. }) if cause.kind() == ErrorKind::NotFound => {}
                    other => failures.push(format!("{ctx}: read_file gave {:?}", other.map(String::from_utf8))),
                }
                // A listing of the directory the link replaced, or leads through, is never the
                // canary's; where the link is the bundle, the image's directory holds it.
                let listing = root.read_dir_if_dir("/etc/ssl/certs");
                match (&listing, at.ends_with(".crt")) {
                    (Ok(None), false) => {}
                    (Err(Error::SafetyViolation { .. }), false) if kind.in_root().is_none() => {}
                    (Ok(Some(entries)), true)
                        if entries
                            .iter()
                            .any(|e| e.name == "ca-certificates.crt" && e.kind == FileKind::Symlink) => {}
                    _ => failures.push(format!("{ctx}: read_dir_if_dir gave {listing:?}")),
                }
                // With the same path present inside the root, that copy is what is read.
                if let Some(prefix) = kind.in_root() {
                    nodes.push(Node::file(
                        &format!("{prefix}/etc/ssl/certs/ca-certificates.crt"),
                        MIRROR_BUNDLE,
                    ));
                    if at == "etc" {
                        nodes.push(Node::symlink(
                            &format!("{prefix}/etc/ssl/cert.pem"),
                            "certs/ca-certificates.crt",
                        ));
                    }
                    let lab = Lab::new(&nodes);
                    let root = ContainerRoot::open_with_backend(&lab.rootfs, backend).expect("open root");
                    for p in [path, BUNDLE_VIA] {
                        match root.read_file(p) {
                            Ok(b) if b == MIRROR_BUNDLE => {}
                            other => failures.push(format!("{ctx}: read_file {p} with an in-root copy gave {other:?}")),
                        }
                    }
                }
            }
        }
        // `..` above the root stays at the root, in paths and in link targets alike.
        let lab = Lab::new(&image_with(
            &["etc/ssl/certs"],
            vec![
                Node::file("etc/ssl/real/ca-certificates.crt", MIRROR_BUNDLE),
                Node::symlink("etc/ssl/certs", "../../../../../etc/ssl/real"),
            ],
        ));
        let root = ContainerRoot::open_with_backend(&lab.rootfs, backend).expect("open root");
        for (given, want) in [
            ("/../../../etc/passwd", "/etc/passwd"),
            (
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/ssl/real/ca-certificates.crt",
            ),
            ("/etc/ssl/cert.pem", "/etc/ssl/real/ca-certificates.crt"),
        ] {
            match root.canonicalize(given) {
                Ok(p) if p == Path::new(want) => {}
                other => failures.push(format!(
                    "[{backend:?}] canonicalize {given} gave {other:?}, want {want}"
                )),
            }
        }
        match root.read_file("/etc/ssl/cert.pem") {
            Ok(b) if b == MIRROR_BUNDLE => {}
            other => failures.push(format!("[{backend:?}] clamped read gave {other:?}")),
        }
        // Listed through the clamped link; a file or nothing is no directory.
        for (given, want) in [
            ("/etc/ssl/certs", Some(vec!["ca-certificates.crt"])),
            ("/etc/ssl/certs/ca-certificates.crt", None),
            ("/etc/ssl/nothing/here", None),
        ] {
            let names = root
                .read_dir_if_dir(given)
                .map(|l| l.map(|l| l.into_iter().map(|e| e.name.into_string().unwrap()).collect::<Vec<_>>()));
            let want = want.map(|w| w.into_iter().map(String::from).collect::<Vec<_>>());
            if !matches!(&names, Ok(n) if *n == want) {
                failures.push(format!(
                    "[{backend:?}] read_dir_if_dir {given} gave {names:?}, want {want:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The layout for the real-procfs test: escape links through `/proc/self/root`, with `/proc` a
/// mount point.
fn procfs_layout() -> Vec<Node> {
    image_with(
        &["etc", "usr/local"],
        vec![
            Node::dir("proc"),
            Node::symlink("etc", "/proc/self/root@CANARY@/etc"),
            Node::symlink("usr/local", "/proc/self/root@CANARY@/usr/local"),
        ],
    )
}

/// With a real procfs mounted at the root's `/proc`, as in a running container, the magic links
/// under `/proc/self` are still resolved inside the root: their text (`/`, a host path) is taken
/// as an in-root path, never followed by the kernel. The checks run in a child process with its
/// own mount namespace, so the mount never reaches the host's mount table.
#[test]
fn real_procfs_inside_the_root_does_not_lead_out() {
    let lab = Lab::new(&procfs_layout());
    let canary_before = Snapshot::take(&lab.canary);
    let root_before = Snapshot::take(&lab.rootfs);
    let script = r#"mount -t proc proc "$HOSTILE_PROCFS_ROOT/proc" && exec "$0" --exact procfs_child --include-ignored --nocapture --test-threads 1"#;
    let (rootfs, state) = (lab.rootfs.clone(), lab.state.clone());
    let out = guarded("procfs child", HANG_LIMIT * 2, move || {
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script])
            .arg(std::env::current_exe().expect("test binary"))
            .env("HOSTILE_PROCFS_ROOT", &rootfs)
            .env("HOSTILE_PROCFS_STATE", &state)
            .output()
            .expect("run unshare")
    })
    .unwrap_or_else(|msg| panic!("{msg}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    canary_before.assert_same(&Snapshot::take(&lab.canary), "canary");
    root_before.assert_same(&Snapshot::take(&lab.rootfs), "rootfs");
    lab.assert_no_journal("after the child");
}

/// The part of [`real_procfs_inside_the_root_does_not_lead_out`] that runs in the child.
#[test]
#[ignore = "run by real_procfs_inside_the_root_does_not_lead_out in a private mount namespace"]
fn procfs_child() {
    let rootfs = PathBuf::from(std::env::var_os("HOSTILE_PROCFS_ROOT").expect("HOSTILE_PROCFS_ROOT"));
    let state = PathBuf::from(std::env::var_os("HOSTILE_PROCFS_STATE").expect("HOSTILE_PROCFS_STATE"));
    let vars = Vars::new(&rootfs.parent().expect("parent").join("canary"));
    let self_link = std::fs::read_link(rootfs.join("proc/self")).expect("procfs mounted in the root");
    assert!(
        self_link.to_str().is_some_and(|p| p.parse::<u32>().is_ok()),
        "{self_link:?}"
    );
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    let mut failures = Vec::new();
    for backend in BACKENDS {
        let root = ContainerRoot::open_with_backend(&rootfs, backend).expect("open root");
        let want = vars.sub(&format!("@CANARY@{bundle}"));
        match root.canonicalize(bundle) {
            Ok(p) if p == Path::new(&want) => {}
            other => failures.push(format!("[{backend:?}] canonicalize gave {other:?}, want {want}")),
        }
        match root.metadata(bundle) {
            Ok(None) | Err(Error::SafetyViolation { .. }) => {}
            other => failures.push(format!("[{backend:?}] metadata gave {other:?}")),
        }
        match root.read_file(bundle) {
            Err(Error::Io { cause, .. }) if cause.kind() == ErrorKind::NotFound => {}
            other => failures.push(format!("[{backend:?}] read_file gave {other:?}")),
        }
        let before = Snapshot::take(&rootfs.join("usr"));
        match install(&root, &plan(), &state.join("journal.json"), &Options::default()) {
            Err(Error::Io { cause, .. }) if cause.kind() == ErrorKind::NotFound => {}
            other => failures.push(format!("[{backend:?}] install gave {other:?}")),
        }
        before.assert_same(&Snapshot::take(&rootfs.join("usr")), "usr after a refused install");
        let names: Vec<_> = std::fs::read_dir(&rootfs)
            .expect("read_dir")
            .map(|e| e.unwrap().file_name())
            .collect();
        if names.len() != 3 {
            failures.push(format!("[{backend:?}] root entries after a refused install: {names:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
