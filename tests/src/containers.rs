//! Real containers for end-to-end tests: a throwaway PKI with a loopback TLS server, runc
//! bundles with or without the hook, podman runs with a hooks.d directory.
//!
//! Every function takes the hook binary's path: only the hook crate's own tests know it (Cargo
//! sets `CARGO_BIN_EXE_cacerts-hook` for them alone).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Runs a command to completion and panics with its output unless it succeeded.
#[track_caller]
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scratch directory on the same disk as the rootfs cache (not a tmpfs), removed on drop.
pub fn scratch() -> tempfile::TempDir {
    let base = crate::rootfs::cache_dir().join("../test-work");
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
pub struct Pki {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
}

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it.
pub fn pki(dir: &Path) -> Pki {
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
pub struct Server {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Server {
    /// Starts the server and waits until it accepts connections. Every request is answered
    /// with a status page (`-www`).
    pub fn start(pki: &Pki) -> Server {
        Server::spawn(pki, "-www", Path::new("."))
    }

    /// Starts a server that answers `GET /PATH` with the file `docroot/PATH` (`-WWW`): enough
    /// for plain downloads and for git's dumb HTTP protocol. It takes a query string as part
    /// of the file name (`info/refs?service=git-upload-pack`), and answers a missing file with
    /// status 200 and an error text.
    pub fn start_files(pki: &Pki, docroot: &Path) -> Server {
        Server::spawn(pki, "-WWW", docroot)
    }

    fn spawn(pki: &Pki, mode: &str, cwd: &Path) -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("openssl")
            .args(["s_server", mode, "-quiet", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&pki.cert)
            .arg("-key")
            .arg(&pki.key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir(cwd)
            .spawn()
            .unwrap();
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "s_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, port }
    }

    /// `https://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
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
pub fn hook_config(dir: &Path, ca: &Path) -> PathBuf {
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
pub fn runc_bundle(hook: &Path, dir: &Path, rootfs: &Path, args: &[&str], config: Option<&Path>) -> PathBuf {
    runc_bundle_with(hook, dir, rootfs, args, config, |_| {})
}

/// Like [`runc_bundle`], with `edit` applied to the finished `config.json` (extra mounts,
/// environment).
pub fn runc_bundle_with(
    hook: &Path,
    dir: &Path,
    rootfs: &Path,
    args: &[&str],
    config: Option<&Path>,
    edit: impl FnOnce(&mut Value),
) -> PathBuf {
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
        let hook = |stage: &str| json!([{"path": hook, "args": [hook, "--config", config, stage], "timeout": 30}]);
        spec["hooks"] = json!({"createRuntime": hook("createRuntime"), "poststop": hook("poststop")});
    }
    edit(&mut spec);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    bundle
}

/// Runs `cmd`: its exit code (-1 if killed by a signal) and its stdout followed by its stderr.
pub fn exit_and_output(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// `runc run`; the container's exit code.
pub fn runc_run(state_root: &Path, bundle: &Path, id: &str) -> (i32, String) {
    let mut cmd = Command::new("runc");
    cmd.arg("--root")
        .arg(state_root)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null());
    exit_and_output(&mut cmd)
}

/// A hooks.d directory with our two stages (oci-hooks(5)).
pub fn hooks_dir(hook: &Path, dir: &Path, config: &Path) -> PathBuf {
    let hooks = dir.join("hooks.d");
    std::fs::create_dir_all(&hooks).unwrap();
    for stage in ["createRuntime", "poststop"] {
        let file = json!({
            "version": "1.0.0",
            "hook": {"path": hook, "args": [hook, "--config", config, stage], "timeout": 30},
            "when": {"always": true},
            "stages": [stage],
        });
        std::fs::write(hooks.join(format!("50-cacerts-hook-{stage}.json")), file.to_string()).unwrap();
    }
    hooks
}

/// `podman run --rm` of `args` on `rootfs` with runc, host network, and the hooks in `hooks`;
/// the container's exit code and output.
pub fn podman_run(hooks: &Path, rootfs: &Path, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new("podman");
    cmd.arg("--hooks-dir")
        .arg(hooks)
        .args(["--runtime", "runc", "run", "--rm", "--network", "host"])
        .args(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"])
        .arg("--rootfs")
        .arg(rootfs)
        .args(args)
        .stdin(Stdio::null());
    exit_and_output(&mut cmd)
}

/// The newest certifi wheel from PyPI (`python3 -m pip download`), cached next to the root
/// filesystems so that only the first run needs the network.
pub fn certifi_wheel() -> PathBuf {
    let dir = crate::rootfs::cache_dir().join("wheels");
    let find = |dir: &Path| -> Option<PathBuf> {
        std::fs::read_dir(dir).ok()?.map(|e| e.unwrap().path()).find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("certifi-") && name.ends_with(".whl")
        })
    };
    if let Some(wheel) = find(&dir) {
        return wheel;
    }
    let tmp = crate::rootfs::cache_dir().join(format!("wheels.tmp-{}", std::process::id()));
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d"])
        .arg(&tmp)
        .arg("certifi"));
    // A concurrent run may have won the race: either copy is as good.
    let _ = std::fs::rename(&tmp, &dir);
    let _ = std::fs::remove_dir_all(&tmp);
    find(&dir).expect("pip download left no certifi wheel")
}

/// The hook binary to run end to end: `CACERTS_HOOK_BIN` when set (`scripts/test` and
/// `scripts/bench` set it to the statically linked build that ships, from
/// `scripts/build-release`), else `cargo_built`, the one Cargo built for the test or bench.
/// Decided once per process (each test or bench binary has one Cargo-built hook).
pub fn hook_binary(cargo_built: &str) -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var_os("CACERTS_HOOK_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(cargo_built))
    })
}
