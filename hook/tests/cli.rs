//! The real `cacerts-hook` binary on fixture trees: the operator's subcommands, configuration
//! errors, and hook mode under every state variant the runtimes send.
//!
//! These tests live in the hook crate (not in `tests/tests/`) because only here does Cargo hand
//! a test the path of the freshly built binary (`CARGO_BIN_EXE_cacerts-hook`).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cacerts_testkit::{age, build, Node, Snapshot};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cacerts-hook");
const IMAGE_BUNDLE: &str = "-----BEGIN CERTIFICATE-----\nIMAGE\n-----END CERTIFICATE-----\n";

/// One test's world: a rootfs in a bundle, a CA, a state dir, a log and a configuration.
struct World {
    tmp: tempfile::TempDir,
    bundle: PathBuf,
    rootfs: PathBuf,
    certs: PathBuf,
    state: PathBuf,
    log: PathBuf,
    config: PathBuf,
    ca_pem: String,
}

/// A self-signed CA certificate made with the openssl tool.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.with_file_name(format!("{name}.key"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
        ])
        .args(["-subj", &format!("/CN=cacerts-hook test {name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(st.success());
    cert
}

impl World {
    fn new(tree: &[Node]) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        build(&rootfs, tree);
        age(&rootfs);
        let certs = tmp.path().join("certs.d");
        let ca = make_ca(&certs, "ca");
        let ca_pem = std::fs::read_to_string(ca).unwrap();
        let w = World {
            bundle,
            rootfs,
            certs,
            state: tmp.path().join("state"),
            log: tmp.path().join("hook.log"),
            config: tmp.path().join("config.toml"),
            ca_pem,
            tmp,
        };
        w.write_config("");
        w.write_spec(json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"env": ["PATH=/bin"]}}));
        w
    }

    /// The configuration pointing at this world, plus `extra` lines.
    fn write_config(&self, extra: &str) {
        std::fs::write(
            &self.config,
            format!(
                "certs = [{:?}]\nstate_dir = {:?}\nlog = {:?}\n{extra}",
                self.certs, self.state, self.log
            ),
        )
        .unwrap();
    }

    fn write_spec(&self, spec: Value) {
        std::fs::write(self.bundle.join("config.json"), spec.to_string()).unwrap();
    }

    fn state(&self, id: &str) -> Value {
        json!({"ociVersion": "1.0.2", "id": id, "status": "creating", "pid": 4242, "bundle": self.bundle, "annotations": {}})
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir("/")
            .env_clear()
            .output()
            .unwrap()
    }

    fn hook(&self, stage: &str, stdin: &[u8]) -> Output {
        self.spawn_hook(stage, stdin).wait_with_output().unwrap()
    }

    /// Starts the hook for `stage` with this world's configuration and `stdin` written to it.
    fn spawn_hook(&self, stage: &str, stdin: &[u8]) -> std::process::Child {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .arg(stage)
            .current_dir("/")
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child
    }

    fn hook_json(&self, stage: &str, state: &Value) -> Output {
        self.hook(stage, state.to_string().as_bytes())
    }

    fn bundle_file(&self) -> String {
        std::fs::read_to_string(self.rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn journal(&self, id: &str) -> PathBuf {
        self.state.join(format!("{id}.journal"))
    }
}

fn debian() -> Vec<Node> {
    vec![
        Node::file(
            "etc/os-release",
            "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12\"\n",
        ),
        Node::file("etc/debian_version", "12.7\n"),
        Node::file("etc/ssl/certs/ca-certificates.crt", IMAGE_BUNDLE),
        Node::dir("usr/local/share/ca-certificates"),
        Node::dir("bin"),
    ]
}

fn generic() -> Vec<Node> {
    vec![
        Node::file("etc/ssl/certs/ca-certificates.crt", IMAGE_BUNDLE),
        Node::dir("bin"),
    ]
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------------
// The operator's subcommands.

#[test]
fn install_then_uninstall_leaves_no_trace() {
    let w = World::new(&debian());
    let before = Snapshot::take(&w.rootfs);
    let journal = w.tmp.path().join("j/install.journal");
    let out = w.cli(&[
        "install",
        "--rootfs",
        w.rootfs.to_str().unwrap(),
        "--certs",
        w.certs.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
    ]);
    let stdout = ok(&out);
    assert!(
        stdout.contains("edited /etc/ssl/certs/ca-certificates.crt") || stdout.contains("created "),
        "{stdout}"
    );
    assert!(w.bundle_file().contains(w.ca_pem.trim()), "the CA is in the bundle");
    assert!(w.bundle_file().starts_with(IMAGE_BUNDLE), "the image's own CAs stay");
    assert!(journal.exists());

    // Installing again with the same journal is the same as installing once.
    let once = w.bundle_file();
    let again = ok(&w.cli(&[
        "install",
        "--rootfs",
        w.rootfs.to_str().unwrap(),
        "--certs",
        w.certs.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
    ]));
    assert!(again.contains("rolled back the earlier install"), "{again}");
    assert_eq!(w.bundle_file(), once);

    let out = w.cli(&[
        "uninstall",
        "--rootfs",
        w.rootfs.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
    ]);
    ok(&out);
    before.assert_same(&Snapshot::take(&w.rootfs), "after CLI uninstall");
    assert!(!journal.exists());
    // Uninstalling again without a journal is a no-op, not an error.
    ok(&w.cli(&[
        "uninstall",
        "--rootfs",
        w.rootfs.to_str().unwrap(),
        "--journal",
        journal.to_str().unwrap(),
    ]));
}

#[test]
fn install_without_usable_certs_fails_and_changes_nothing() {
    let w = World::new(&debian());
    let before = Snapshot::take(&w.rootfs);
    let junk = w.tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let out = w.cli(&[
        "install",
        "--rootfs",
        w.rootfs.to_str().unwrap(),
        "--certs",
        junk.to_str().unwrap(),
        "--journal",
        w.tmp.path().join("j").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no usable CA certificate"), "{}", stderr(&out));
    before.assert_same(&Snapshot::take(&w.rootfs), "failed install");
}

/// An error says its cause once: the library's messages name their cause themselves, so they
/// do not hand it on as a source for the chain to print again.
#[test]
fn an_error_says_its_cause_once() {
    let w = World::new(&debian());
    let missing = w.tmp.path().join("no-such-rootfs");
    let out = w.cli(&[
        "install",
        "--rootfs",
        missing.to_str().unwrap(),
        "--certs",
        w.certs.to_str().unwrap(),
        "--journal",
        w.tmp.path().join("j").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    let cause = std::io::Error::from_raw_os_error(2).to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert_eq!(text.matches(&cause).count(), 1, "{text}");
}

#[test]
fn detect_prints_family_stores_and_planned_changes() {
    let w = World::new(&debian());
    let before = Snapshot::take(&w.rootfs);
    let out = w.cli(&["detect", "--rootfs", w.rootfs.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    for key in ["family", "id", "version", "stores", "certs", "skipped", "changes"] {
        assert!(v.get(key).is_some(), "missing {key} in {v:#}");
    }
    assert!(v["family"].is_string());
    assert!(v["stores"]
        .as_array()
        .unwrap()
        .contains(&json!("/etc/ssl/certs/ca-certificates.crt")));
    assert_eq!(v["certs"].as_array().unwrap().len(), 1, "certs from the configuration");
    let changes = v["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    assert!(changes.iter().all(Value::is_string));
    before.assert_same(&Snapshot::take(&w.rootfs), "detect changes nothing");

    // Explicit --certs that hold nothing: no changes, and the skipped input is reported.
    let empty = w.tmp.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let out = w.cli(&[
        "detect",
        "--rootfs",
        w.rootfs.to_str().unwrap(),
        "--certs",
        empty.to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["changes"], json!([]));
}

#[test]
fn cdi_spec_shape() {
    let w = World::new(&generic());
    let out = w.cli(&["cdi", "--hook-path", "/opt/bin/cacerts-hook"]);
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["cdiVersion"], "0.6.0");
    assert_eq!(v["kind"], "cacerts-hook.dev/ca");
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["name"], "default");
    let hooks = devices[0]["containerEdits"]["hooks"].as_array().unwrap();
    let names: Vec<_> = hooks.iter().map(|h| h["hookName"].as_str().unwrap()).collect();
    assert_eq!(names, ["createRuntime", "poststop"]);
    for h in hooks {
        assert_eq!(h["path"], "/opt/bin/cacerts-hook");
        let args: Vec<_> = h["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args[0], "/opt/bin/cacerts-hook");
        assert_eq!(args[1], "--config");
        assert_eq!(args[2], w.config.to_str().unwrap());
        assert_eq!(args[3], h["hookName"].as_str().unwrap());
    }
    // Without --config or --hook-path: the defaults.
    let out = Command::new(BIN).arg("cdi").output().unwrap();
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    let h = &v["devices"][0]["containerEdits"]["hooks"][0];
    assert_eq!(h["path"], "/usr/libexec/oci/hooks.d/cacerts-hook");
    assert_eq!(
        h["args"],
        json!(["/usr/libexec/oci/hooks.d/cacerts-hook", "createRuntime"])
    );
}

#[test]
fn help_and_usage_exit_codes() {
    for sub in [
        &[][..],
        &["createRuntime"],
        &["prestart"],
        &["poststop"],
        &["install"],
        &["uninstall"],
        &["detect"],
        &["gc"],
        &["cdi"],
    ] {
        let out = Command::new(BIN).args(sub).arg("--help").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{sub:?} --help");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage:"), "{sub:?}");
    }
    for bad in [
        &["bogus"][..],
        &[],
        &["install", "--rootfs", "/x"],
        &["detect"],
        &["gc", "--what"],
    ] {
        let out = Command::new(BIN).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
    }
}

#[test]
fn config_errors_name_file_and_line() {
    let w = World::new(&generic());
    let cases = [
        ("bogus_key = 1\n", "line 4"),
        ("on_error = \"sometimes\"\n", "line 4"),
        ("create_store_when_none = \"yes\"\n", "line 4"),
        ("\n\nlog = \"relative.log\"\n", "line 6"),
        ("[section]\n", "line 4"),
    ];
    for (extra, line) in cases {
        w.write_config(extra);
        let out = w.cli(&["detect", "--rootfs", w.rootfs.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let err = stderr(&out);
        assert!(err.contains(w.config.to_str().unwrap()), "{extra:?}: {err}");
        assert!(err.contains(line), "{extra:?}: expected {line} in {err}");
    }
    // A missing file means the defaults.
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/cacerts-hook.toml", "detect", "--rootfs"])
        .arg(&w.rootfs)
        .output()
        .unwrap();
    ok(&out);
}

// ---------------------------------------------------------------------------------------------
// Hook mode.

#[test]
fn hook_runc_state_installs_then_poststop_leaves_no_trace() {
    let w = World::new(&debian());
    let before = Snapshot::take(&w.rootfs);
    let out = w.hook_json("createRuntime", &w.state("runc-1"));
    ok(&out);
    assert!(w.bundle_file().contains(w.ca_pem.trim()));
    assert!(w.journal("runc-1").exists());
    let record: Value = serde_json::from_slice(&std::fs::read(w.state.join("runc-1.json")).unwrap()).unwrap();
    assert_eq!(record["bundle"], json!(w.bundle));

    let mut poststop = w.state("runc-1");
    poststop["status"] = json!("stopped");
    ok(&w.hook_json("poststop", &poststop));
    before.assert_same(&Snapshot::take(&w.rootfs), "after poststop");
    assert!(!w.journal("runc-1").exists());
    assert!(!w.state.join("runc-1.json").exists());

    let log = w.log_text();
    let lines: Vec<_> = log.lines().collect();
    assert_eq!(lines.len(), 2, "one line per invocation: {log}");
    assert!(lines[0].contains("stage=createRuntime id=runc-1 "), "{log}");
    assert!(lines[0].contains("result=ok"), "{log}");
    assert!(lines[0].contains("duration_ms="), "{log}");
    assert!(!lines[0].contains("changes=0 "), "{log}");
    assert!(lines[1].contains("stage=poststop id=runc-1 "), "{log}");
    assert!(lines[1].contains("result=ok"), "{log}");
}

/// Many containers' stages at once, as a node starting a deployment sees them: every stage
/// succeeds, each root gets the CA and ends as it was, and the state directory ends empty (no
/// journal, bundle record or lock file left). Stages of different containers hold different
/// locks, so they run side by side.
#[test]
fn many_containers_at_once_each_get_the_ca_and_leave_nothing() {
    const N: usize = 16;
    let w = World::new(&debian());
    let containers: Vec<(String, PathBuf, PathBuf)> = (0..N)
        .map(|i| {
            let bundle = w.tmp.path().join(format!("bundle-{i}"));
            let rootfs = bundle.join("rootfs");
            std::fs::create_dir_all(&rootfs).unwrap();
            build(&rootfs, &debian());
            age(&rootfs);
            std::fs::write(
                bundle.join("config.json"),
                json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}}).to_string(),
            )
            .unwrap();
            (format!("many-{i}"), bundle, rootfs)
        })
        .collect();
    let before: Vec<Snapshot> = containers.iter().map(|(_, _, r)| Snapshot::take(r)).collect();
    let stage_all = |stage: &str| {
        let children: Vec<_> = containers
            .iter()
            .map(|(id, bundle, _)| {
                let state =
                    json!({"ociVersion": "1.0.2", "id": id, "status": "creating", "pid": 4242, "bundle": bundle});
                w.spawn_hook(stage, state.to_string().as_bytes())
            })
            .collect();
        for child in children {
            ok(&child.wait_with_output().unwrap());
        }
    };
    stage_all("createRuntime");
    for (_, _, rootfs) in &containers {
        let bundle = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
        assert!(bundle.contains(w.ca_pem.trim()), "{}", rootfs.display());
    }
    stage_all("poststop");
    for ((id, _, rootfs), before) in containers.iter().zip(&before) {
        before.assert_same(&Snapshot::take(rootfs), id);
    }
    let left: Vec<_> = std::fs::read_dir(&w.state)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in the state directory: {left:?}");
    let log = w.log_text();
    assert_eq!(log.matches("result=ok").count(), 2 * N, "{log}");
}

#[test]
fn hook_crun_state_with_root_and_created_status() {
    let w = World::new(&generic());
    let before = Snapshot::take(&w.rootfs);
    let state = json!({"ociVersion": "1.0.0", "id": "crun-1", "status": "created", "pid": 77,
        "bundle": w.bundle, "root": w.rootfs, "annotations": {"io.podman": "x"}});
    ok(&w.hook_json("createRuntime", &state));
    assert!(w.bundle_file().contains(w.ca_pem.trim()));
    // podman's own poststop: no pid.
    let post = json!({"ociVersion": "1.0.0", "id": "crun-1", "status": "stopped", "bundle": w.bundle});
    ok(&w.hook_json("poststop", &post));
    before.assert_same(&Snapshot::take(&w.rootfs), "crun round trip");
    assert!(
        w.log_text().lines().all(|l| l.contains("result=ok")),
        "{}",
        w.log_text()
    );
}

#[test]
fn hook_prestart_alias_and_old_bundle_path() {
    let w = World::new(&generic());
    let before = Snapshot::take(&w.rootfs);
    let state = json!({"ociVersion": "1.0.0", "id": "old-1", "pid": 5, "bundlePath": w.bundle});
    ok(&w.hook_json("prestart", &state));
    assert!(w.bundle_file().contains(w.ca_pem.trim()));
    ok(&w.hook_json("poststop", &json!({"id": "old-1", "bundlePath": w.bundle})));
    before.assert_same(&Snapshot::take(&w.rootfs), "bundlePath round trip");
}

#[test]
fn hook_absolute_root_path_and_env() {
    let w = World::new(&generic());
    // root.path absolute, somewhere else than <bundle>/rootfs.
    let other = w.tmp.path().join("elsewhere");
    std::fs::rename(&w.rootfs, &other).unwrap();
    w.write_spec(json!({"root": {"path": other}, "process": {"env": ["JAVA_HOME=/opt/java"]}}));
    let before = Snapshot::take(&other);
    ok(&w.hook_json("createRuntime", &w.state("abs-1")));
    let bundle = std::fs::read_to_string(other.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert!(bundle.contains(w.ca_pem.trim()));
    ok(&w.hook_json("poststop", &w.state("abs-1")));
    before.assert_same(&Snapshot::take(&other), "absolute root.path");
}

/// Every failure under on_error=continue: exit 0, one error line, the rootfs untouched.
#[test]
fn hook_failures_exit_zero_and_touch_nothing() {
    let w = World::new(&debian());
    let before = Snapshot::take(&w.rootfs);
    let check = |what: &str, out: Output| {
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        before.assert_same(&Snapshot::take(&w.rootfs), what);
        let log = w.log_text();
        let last = log.lines().last().unwrap_or_default().to_owned();
        assert!(last.contains("result=error"), "{what}: {log}");
        last
    };

    check("malformed JSON", w.hook("createRuntime", b"{\"id\": \"x\", "));
    check("empty stdin", w.hook("createRuntime", b""));
    let last = check(
        "id with a slash",
        w.hook_json("createRuntime", &json!({"id": "../../etc", "bundle": w.bundle})),
    );
    assert!(last.contains("invalid container id"), "{last}");
    check(
        "missing bundle",
        w.hook_json(
            "createRuntime",
            &json!({"id": "m-1", "bundle": w.tmp.path().join("gone")}),
        ),
    );
    check("no bundle at all", w.hook_json("createRuntime", &json!({"id": "m-2"})));
    check(
        "relative bundle",
        w.hook_json("createRuntime", &json!({"id": "m-3", "bundle": "bundle"})),
    );

    // A corrupt journal for this id: install refuses to guess.
    std::fs::create_dir_all(&w.state).unwrap();
    std::fs::write(w.journal("corrupt-1"), "garbage\n").unwrap();
    check("corrupt journal", w.hook_json("createRuntime", &w.state("corrupt-1")));
    check(
        "corrupt journal at poststop",
        w.hook_json("poststop", &w.state("corrupt-1")),
    );
    assert!(
        w.journal("corrupt-1").exists(),
        "a corrupt journal is kept for the operator"
    );

    // Certificates that cannot be read.
    std::fs::write(
        &w.config,
        format!(
            "certs = [\"/nonexistent/certs.d\"]\nstate_dir = {:?}\nlog = {:?}\n",
            w.state, w.log
        ),
    )
    .unwrap();
    let last = check("unreadable certs", w.hook_json("createRuntime", &w.state("nocerts-1")));
    assert!(last.contains("no usable CA certificate"), "{last}");
    assert!(!w.journal("nocerts-1").exists());

    // A broken configuration: defaults apply, so on_error is continue. Its `log` is unknown as
    // well; `--log` says where the error goes.
    std::fs::write(&w.config, format!("log = {:?}\nbogus = true\n", w.log)).unwrap();
    let other_log = w.log.with_extension("override");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&w.config)
        .arg("--log")
        .arg(&other_log)
        .arg("createRuntime")
        .current_dir("/")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // With its configuration unreadable the hook logs and exits without reading the state, so
    // the write may find the pipe already closed.
    let written = child
        .stdin
        .take()
        .unwrap()
        .write_all(w.state("badconf-1").to_string().as_bytes());
    assert!(
        written.as_ref().is_ok()
            || written
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
        "{written:?}"
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let logged = std::fs::read_to_string(&other_log).unwrap_or_default();
    assert!(
        logged.contains("result=error") && logged.contains("unknown field `bogus`"),
        "{logged}"
    );
    before.assert_same(&Snapshot::take(&w.rootfs), "bad config");
}

#[test]
fn hook_on_error_fail_exits_one_with_message() {
    let w = World::new(&generic());
    w.write_config("on_error = \"fail\"\n");
    let before = Snapshot::take(&w.rootfs);
    let out = w.hook("createRuntime", b"not json");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid container state JSON"),
        "{}",
        stderr(&out)
    );
    before.assert_same(&Snapshot::take(&w.rootfs), "on_error=fail");
    assert!(w.log_text().contains("result=error"));
}

#[test]
fn hook_never_waits_for_stdin_forever() {
    let w = World::new(&generic());
    let before = Snapshot::take(&w.rootfs);
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&w.config)
        .arg("createRuntime")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Keep stdin open: the runtime "never closes" it.
    let _stdin = child.stdin.take().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("the hook hangs on an open stdin");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(start.elapsed() >= Duration::from_secs(4));
    before.assert_same(&Snapshot::take(&w.rootfs), "stdin timeout");
    assert!(w.log_text().contains("stdin was not closed"), "{}", w.log_text());
}

/// A stage whose work blocks gives up at its deadline: exit 0 under on_error=continue, one error
/// line that says so, the rootfs untouched. Here `gc` holds the state directory's lock, which
/// every stage waits for (the `flock` tool holds it, as gc would).
#[test]
fn hook_gives_up_at_its_deadline() {
    let w = World::new(&generic());
    let before = Snapshot::take(&w.rootfs);
    std::fs::create_dir_all(&w.state).unwrap();
    let mut holder = Command::new("flock")
        .arg("--exclusive")
        .arg(&w.state)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    // Until the lock is taken, a non-blocking attempt succeeds.
    let held = Instant::now();
    while Command::new("flock")
        .args(["--nonblock", "--exclusive"])
        .arg(&w.state)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(held.elapsed() < Duration::from_secs(10), "flock never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let out = w.hook_json("createRuntime", &w.state("deadline-1"));
    let took = start.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    ok(&out);
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(20),
        "gave up after {took:?}"
    );
    let log = w.log_text();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(
        log.contains("stage=createRuntime") && log.contains("result=error"),
        "{log}"
    );
    assert!(log.contains("gave up after 8 s"), "{log}");
    before.assert_same(&Snapshot::take(&w.rootfs), "deadline");
}

#[test]
fn hook_opt_out_annotation_skips_the_container() {
    let w = World::new(&generic());
    let before = Snapshot::take(&w.rootfs);
    let mut state = w.state("skip-1");
    state["annotations"] = json!({"cacerts-hook.dev/skip": "true"});
    ok(&w.hook_json("createRuntime", &state));
    before.assert_same(&Snapshot::take(&w.rootfs), "opted out by state annotation");
    assert!(w.log_text().contains("note=\"skipped"), "{}", w.log_text());

    w.write_spec(json!({"root": {"path": "rootfs"}, "annotations": {"cacerts-hook.dev/skip": "true"}}));
    ok(&w.hook_json("createRuntime", &w.state("skip-2")));
    before.assert_same(&Snapshot::take(&w.rootfs), "opted out by config.json annotation");

    // Any other value does not opt out.
    w.write_spec(json!({"root": {"path": "rootfs"}, "annotations": {"cacerts-hook.dev/skip": "false"}}));
    ok(&w.hook_json("createRuntime", &w.state("skip-3")));
    assert!(w.bundle_file().contains(w.ca_pem.trim()));
}

#[test]
fn hook_restart_recovers_the_stale_journal() {
    let w = World::new(&debian());
    let before = Snapshot::take(&w.rootfs);
    ok(&w.hook_json("createRuntime", &w.state("again-1")));
    let once_bundle = w.bundle_file();
    // A restart on the same writable layer without poststop in between.
    ok(&w.hook_json("createRuntime", &w.state("again-1")));
    assert_eq!(w.bundle_file(), once_bundle, "installed once, not twice");
    assert_eq!(w.bundle_file().matches(w.ca_pem.trim()).count(), 1);
    assert!(w.log_text().lines().last().unwrap().contains("recovered=true"));
    ok(&w.hook_json("poststop", &w.state("again-1")));
    before.assert_same(&Snapshot::take(&w.rootfs), "after restart and poststop");
    // poststop without a journal is a no-op.
    ok(&w.hook_json("poststop", &w.state("again-1")));
    assert!(w.log_text().lines().last().unwrap().contains("no journal"));
}

/// A host file bind-mounted over the image's bundle (in the namespace the install runs in) is
/// never written through: in-place appends are only for files on the root's own mount, and
/// renaming over a mount point fails, so the install stops and rolls back. The mount is made in a
/// private mount namespace (`unshare`), so it never reaches the host's mount table.
#[test]
fn install_never_writes_through_a_bind_mounted_bundle() {
    let w = World::new(&debian());
    let host_file = w.tmp.path().join("host-bundle.crt");
    std::fs::write(&host_file, IMAGE_BUNDLE).unwrap();
    let stamp = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
    };
    let host_before = stamp(&host_file);
    let journal = w.tmp.path().join("j/install.journal");
    let script =
        r#"mount --bind "$1" "$2" && exec "$3" --config "$4" install --rootfs "$5" --certs "$6" --journal "$7""#;
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&host_file)
        .arg(w.rootfs.join("etc/ssl/certs/ca-certificates.crt"))
        .arg(BIN)
        .arg(&w.config)
        .arg(&w.rootfs)
        .arg(&w.certs)
        .arg(&journal)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ca-certificates.crt"), "the error names the file: {err}");
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), IMAGE_BUNDLE);
    assert_eq!(
        stamp(&host_file),
        host_before,
        "the host file behind the mount is untouched"
    );
    assert!(!journal.exists(), "rolled back");
}

#[test]
fn hook_does_not_write_under_mounts() {
    // The bundle file is a symlink into /etc/pki, where the container gets a mount.
    let w = World::new(&[
        Node::file("etc/pki/tls/certs/ca-bundle.crt", IMAGE_BUNDLE),
        Node::symlink("etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"),
        Node::dir("bin"),
    ]);
    let before = Snapshot::take(&w.rootfs);
    w.write_spec(json!({"root": {"path": "rootfs"}, "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "etc/pki/", "type": "bind", "source": "/host/pki", "options": ["rbind"]},
    ]}));
    ok(&w.hook_json("createRuntime", &w.state("mnt-1")));
    before.assert_same(&Snapshot::take(&w.rootfs), "the only store is under a mount");
    let last = w.log_text().lines().last().unwrap().to_owned();
    assert!(last.contains("dropped=1"), "{last}");
    assert!(last.contains("result=ok"), "{last}");

    // Directly at the mount destination.
    let w = World::new(&generic());
    let before = Snapshot::take(&w.rootfs);
    w.write_spec(json!({"root": {"path": "rootfs"}, "mounts": [
        {"destination": "/etc/ssl/certs/ca-certificates.crt", "type": "bind", "source": "/x"},
    ]}));
    ok(&w.hook_json("createRuntime", &w.state("mnt-2")));
    before.assert_same(&Snapshot::take(&w.rootfs), "store file is a mount");

    // A mount elsewhere does not stop the install.
    w.write_spec(json!({"root": {"path": "rootfs"}, "mounts": [
        {"destination": "/etc/ssl/certsX", "type": "bind", "source": "/x"},
    ]}));
    ok(&w.hook_json("createRuntime", &w.state("mnt-3")));
    assert!(w.bundle_file().contains(w.ca_pem.trim()));
}

#[test]
fn hook_user_namespace_owners() {
    // A rootfs for a user namespace: everything owned by the mapped root, 100000.
    let w = World::new(&[Node::dir("etc"), Node::dir("bin")]);
    for p in ["", "etc", "bin"] {
        std::os::unix::fs::lchown(w.rootfs.join(p), Some(100_000), Some(100_000)).unwrap();
    }
    age(&w.rootfs);
    let before = Snapshot::take(&w.rootfs);
    w.write_spec(json!({"root": {"path": "rootfs"}, "linux": {
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}}));
    ok(&w.hook_json("createRuntime", &w.state("userns-1")));
    for p in ["etc/ssl", "etc/ssl/certs", "etc/ssl/certs/ca-certificates.crt"] {
        let m = std::fs::symlink_metadata(w.rootfs.join(p)).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            (100_000, 100_000),
            "{p} is owned by the mapped root"
        );
    }
    assert!(w.bundle_file().contains(w.ca_pem.trim()));
    ok(&w.hook_json("poststop", &w.state("userns-1")));
    before.assert_same(&Snapshot::take(&w.rootfs), "userns round trip");
}

// ---------------------------------------------------------------------------------------------
// gc.

#[test]
fn gc_collects_journals_of_gone_containers_only() {
    let w = World::new(&generic());
    let pristine = Snapshot::take(&w.rootfs);

    // Container A: still running (bundle and rootfs exist).
    ok(&w.hook_json("createRuntime", &w.state("live-a")));

    // Container B: its bundle is gone, its rootfs (a podman --rootfs directory) is not.
    let b_bundle = w.tmp.path().join("bundle-b");
    std::fs::create_dir(&b_bundle).unwrap();
    let b_rootfs = w.tmp.path().join("rootfs-b");
    std::fs::create_dir(&b_rootfs).unwrap();
    build(&b_rootfs, &generic());
    age(&b_rootfs);
    let b_before = Snapshot::take(&b_rootfs);
    std::fs::write(
        b_bundle.join("config.json"),
        json!({"root": {"path": b_rootfs}}).to_string(),
    )
    .unwrap();
    let mut b_state = w.state("gone-b");
    b_state["bundle"] = json!(b_bundle);
    ok(&w.hook_json("createRuntime", &b_state));
    assert!(w.journal("gone-b").exists());
    std::fs::remove_dir_all(&b_bundle).unwrap();

    // Container C: its rootfs is gone altogether.
    let c_bundle = w.tmp.path().join("bundle-c");
    let c_rootfs = c_bundle.join("rootfs");
    std::fs::create_dir_all(&c_rootfs).unwrap();
    build(&c_rootfs, &generic());
    std::fs::write(
        c_bundle.join("config.json"),
        json!({"root": {"path": "rootfs"}}).to_string(),
    )
    .unwrap();
    let mut c_state = w.state("gone-c");
    c_state["bundle"] = json!(c_bundle);
    // With a second name, the bundle is replaced rather than appended to in place, and its
    // original is backed up beside the journal; the backup must go too.
    std::fs::hard_link(
        c_rootfs.join("etc/ssl/certs/ca-certificates.crt"),
        c_rootfs.join("etc/ssl/second-name.crt"),
    )
    .unwrap();
    ok(&w.hook_json("createRuntime", &c_state));
    // A lock file left by a stage that was killed: nothing holds it while gc runs.
    std::fs::write(w.state.join("killed-d.lock"), "").unwrap();
    let names = || -> Vec<String> {
        std::fs::read_dir(&w.state)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    assert!(
        names().iter().any(|n| n.starts_with("gone-c.journal.orig-")),
        "{:?}",
        names()
    );
    let backups_before = names().len();
    std::fs::remove_dir_all(&c_bundle).unwrap();

    let out = w.cli(&["gc"]);
    let stdout = ok(&out);
    assert!(stdout.contains("kept live-a"), "{stdout}");
    assert!(stdout.contains("collected gone-b: bundle"), "{stdout}");
    assert!(stdout.contains("collected gone-c: rootfs"), "{stdout}");
    b_before.assert_same(&Snapshot::take(&b_rootfs), "gc rolled back B");
    assert!(w.journal("live-a").exists());
    assert!(w.bundle_file().contains(w.ca_pem.trim()), "A untouched");
    let left = names();
    assert!(left.len() < backups_before, "{left:?}");
    assert!(
        left.iter().all(|n| n.starts_with("live-a.")),
        "only A's files are left: {left:?}"
    );
    assert!(w
        .log_text()
        .lines()
        .last()
        .unwrap()
        .contains("stage=gc collected=2 kept=1 errors=0"));

    // gc is idempotent, and poststop of A still works after it.
    assert!(ok(&w.cli(&["gc"])).contains("kept live-a"));
    ok(&w.hook_json("poststop", &w.state("live-a")));
    pristine.assert_same(&Snapshot::take(&w.rootfs), "A after poststop");
    assert_eq!(ok(&w.cli(&["gc"])), "");
}

#[test]
fn gc_reports_corrupt_journals_and_keeps_them() {
    let w = World::new(&generic());
    std::fs::create_dir_all(&w.state).unwrap();
    std::fs::write(w.journal("bad-1"), "{not json\n").unwrap();
    let out = w.cli(&["gc"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("error bad-1"));
    assert!(w.journal("bad-1").exists());
    // No state directory at all: nothing to do.
    w.write_config("");
    std::fs::remove_dir_all(&w.state).unwrap();
    ok(&w.cli(&["gc"]));
}
