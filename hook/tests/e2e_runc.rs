//! End to end under real runtimes: a Debian bookworm rootfs, a loopback TLS server whose
//! certificate is signed by a throwaway CA, and `curl` in the container. With the hook, curl
//! trusts the server; without it, curl fails with exit 60 (certificate problem). After the
//! container is gone (poststop ran), the rootfs is exactly as before.
//!
//! Needs root, runc, podman, mmdebstrap, openssl, and Debian's package mirror the first time (the
//! rootfs is cached under `target/test-rootfs/<hash of the mmdebstrap arguments>/`).
//! In the hook crate so that Cargo hands it the binary's path.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cacerts_testkit::Snapshot;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cacerts-hook");
const MMDEBSTRAP_ARGS: &[&str] = &[
    "--variant=minbase",
    "--include=ca-certificates,curl,openssl",
    "bookworm",
];

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// FNV-1a, enough for a cache key.
fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[track_caller]
fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cached Debian rootfs, built once (under a lock, so concurrent test processes wait).
fn debian_rootfs() -> PathBuf {
    let dir = target_dir().join("test-rootfs").join(fnv(&MMDEBSTRAP_ARGS.join(" ")));
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join("lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let rootfs = dir.join("rootfs");
    if !dir.join("done").exists() {
        let temp = dir.join("rootfs.tmp");
        let _ = std::fs::remove_dir_all(&temp);
        let _ = std::fs::remove_dir_all(&rootfs);
        run(Command::new("mmdebstrap")
            .arg("--quiet")
            .args(MMDEBSTRAP_ARGS)
            .arg(&temp));
        std::fs::rename(&temp, &rootfs).unwrap();
        std::fs::write(dir.join("done"), MMDEBSTRAP_ARGS.join(" ")).unwrap();
    }
    rootfs
}

/// A scratch directory on the same disk as the cache (not a tmpfs), removed on drop.
fn scratch() -> tempfile::TempDir {
    let base = target_dir().join("test-work");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

/// A private copy of the cached rootfs.
fn copy_rootfs(to: &Path) {
    run(Command::new("cp").arg("-a").arg(debian_rootfs()).arg(to));
}

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it.
fn pki(dir: &Path) -> Pki {
    let ca = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "30",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .args(["-subj", "/CN=cacerts-hook e2e CA", "-keyout"])
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    Pki { ca, cert, key }
}

/// `openssl s_server` on a free loopback port; killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(pki: &Pki) -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("openssl")
            .args(["s_server", "-www", "-quiet", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&pki.cert)
            .arg("-key")
            .arg(&pki.key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "s_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, port }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The hook's configuration: the CA, a private state dir and log.
fn hook_config(dir: &Path, ca: &Path) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "certs = [{:?}]\nstate_dir = {:?}\nlog = {:?}\non_error = \"fail\"\n",
            ca,
            dir.join("state"),
            dir.join("hook.log")
        ),
    )
    .unwrap();
    config
}

/// A runc bundle from `runc spec`: runs `args`, host network, with or without our hooks.
fn runc_bundle(dir: &Path, rootfs: &Path, args: &[&str], config: Option<&Path>) -> PathBuf {
    let bundle = dir.join(if config.is_some() {
        "bundle-hook"
    } else {
        "bundle-plain"
    });
    std::fs::create_dir_all(&bundle).unwrap();
    run(Command::new("runc").arg("spec").current_dir(&bundle));
    let path = bundle.join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["root"]["path"] = json!(rootfs);
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(args);
    let namespaces = spec["linux"]["namespaces"].as_array_mut().unwrap();
    namespaces.retain(|n| n["type"] != "network");
    if let Some(config) = config {
        let hook = |stage: &str| json!([{"path": BIN, "args": [BIN, "--config", config, stage], "timeout": 30}]);
        spec["hooks"] = json!({"createRuntime": hook("createRuntime"), "poststop": hook("poststop")});
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    bundle
}

/// `runc run`; the container's exit code.
fn runc_run(state_root: &Path, bundle: &Path, id: &str) -> (i32, String) {
    let out = Command::new("runc")
        .arg("--root")
        .arg(state_root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn runc_container_trusts_the_ca_only_with_the_hook_and_keeps_no_trace() {
    let work = scratch();
    let rootfs = work.path().join("rootfs");
    copy_rootfs(&rootfs);
    let pki = pki(work.path());
    let server = Server::start(&pki);
    let config = hook_config(work.path(), &pki.ca);
    let curl = ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", &server.url()];
    let runc_root = work.path().join("runc");

    // Control: without the hook, curl does not trust the server.
    let plain = runc_bundle(work.path(), &rootfs, &curl, None);
    let (code, text) = runc_run(&runc_root, &plain, &format!("cacerts-e2e-plain-{}", std::process::id()));
    assert_eq!(code, 60, "curl without the CA: {text}");

    let before = Snapshot::take(&rootfs);
    let hooked = runc_bundle(work.path(), &rootfs, &curl, Some(&config));
    let id = format!("cacerts-e2e-hook-{}", std::process::id());
    let (code, text) = runc_run(&runc_root, &hooked, &id);
    let log = std::fs::read_to_string(work.path().join("hook.log")).unwrap_or_default();
    assert_eq!(code, 0, "curl with the hook: {text}\nhook log:\n{log}");
    assert!(log.contains(&format!("stage=createRuntime id={id} ")), "{log}");
    assert!(log.contains(&format!("stage=poststop id={id} ")), "{log}");
    assert!(!log.contains("result=error"), "{log}");

    before.assert_same(&Snapshot::take(&rootfs), "rootfs after runc run with the hook");
    let left: Vec<_> = std::fs::read_dir(work.path().join("state"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "state left behind: {left:?}");
}

/// A hooks.d directory with our two stages (oci-hooks(5)).
fn hooks_dir(dir: &Path, config: &Path) -> PathBuf {
    let hooks = dir.join("hooks.d");
    std::fs::create_dir_all(&hooks).unwrap();
    for stage in ["createRuntime", "poststop"] {
        let file = json!({
            "version": "1.0.0",
            "hook": {"path": BIN, "args": [BIN, "--config", config, stage], "timeout": 30},
            "when": {"always": true},
            "stages": [stage],
        });
        std::fs::write(hooks.join(format!("50-cacerts-hook-{stage}.json")), file.to_string()).unwrap();
    }
    hooks
}

fn podman_run(hooks: &Path, rootfs: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new("podman")
        .arg("--hooks-dir")
        .arg(hooks)
        .args(["--runtime", "runc", "run", "--rm", "--network", "host"])
        .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"])
        .arg("--rootfs")
        .arg(rootfs)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn podman_container_trusts_the_ca_only_with_the_hook() {
    let work = scratch();
    let rootfs = work.path().join("rootfs");
    copy_rootfs(&rootfs);
    let pki = pki(work.path());
    let server = Server::start(&pki);
    let config = hook_config(work.path(), &pki.ca);
    let curl = ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", &server.url()];

    let empty = work.path().join("no-hooks.d");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, text) = podman_run(&empty, &rootfs, &curl);
    assert_eq!(code, 60, "curl without the hook: {text}");

    let bundle_file = rootfs.join("etc/ssl/certs/ca-certificates.crt");
    let bundle_before = std::fs::read(&bundle_file).unwrap();
    let hooks = hooks_dir(work.path(), &config);
    let (code, text) = podman_run(&hooks, &rootfs, &curl);
    let log = std::fs::read_to_string(work.path().join("hook.log")).unwrap_or_default();
    assert_eq!(code, 0, "curl with the hook: {text}\nhook log:\n{log}");
    assert!(log.contains("stage=createRuntime"), "{log}");
    assert!(log.contains("stage=poststop"), "{log}");
    assert!(!log.contains("result=error"), "{log}");
    assert_eq!(
        std::fs::read(&bundle_file).unwrap(),
        bundle_before,
        "poststop took the CA back out"
    );
}
