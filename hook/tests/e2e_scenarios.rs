//! End-to-end scenarios under real runc and podman: the hook in the situations production brings
//! (a read-only root, a user namespace, a volume over the trust store, a container that rewrites
//! the store itself, a killed container, a restarted podman container, an image's overlay, many
//! containers at once, other distributions' layouts, broken configuration and state).
//!
//! Every scenario runs with `on_error = "continue"` and checks the same things: the container
//! starts whatever goes wrong; where the hook installs, a client inside trusts the loopback server
//! and a control run without the hook does not; after the container is gone the rootfs snapshot
//! equals the one taken before (under podman: equals what a run without the hook leaves), and the
//! state directory is empty.
//!
//! Needs root, runc, podman, openssl, mmdebstrap and busybox-static (`scripts/setup` installs
//! them).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cacerts_testkit::containers::{
    exit_and_output, hook_binary, hooks_dir, pki, runc_bundle, runc_run, scratch, Pki, Server,
};
use cacerts_testkit::fixtures::{alpine_bundle, alpine_full, ubi, Base};
use cacerts_testkit::rootfs::debian_rootfs;
use cacerts_testkit::{age, build, Node, Snapshot};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cacerts-hook");
const PACKAGES: &[&str] = &["ca-certificates", "curl", "openssl"];
/// Where the Debian installer puts our anchor (the name is derived from the CA's subject).
const ANCHORS: &str = "/usr/local/share/ca-certificates";

/// The binary under test: the one that ships when `scripts/test` runs (see [`hook_binary`]).
fn bin() -> &'static Path {
    hook_binary(BIN)
}

/// One scenario's world: a scratch dir, a CA with a server, the hook's configuration
/// (`on_error = "continue"`, private state dir and log) and a runc state root.
struct Case {
    work: tempfile::TempDir,
    pki: Pki,
    server: Server,
    config: PathBuf,
    runc_root: PathBuf,
}

impl Case {
    fn new() -> Case {
        let work = scratch();
        let pki = pki(work.path());
        let server = Server::start(&pki);
        let config = work.path().join("config.toml");
        let case = Case {
            runc_root: work.path().join("runc"),
            work,
            pki,
            server,
            config,
        };
        case.write_config(&format!("certs = [{:?}]\n", case.pki.ca));
        case
    }

    fn dir(&self) -> &Path {
        self.work.path()
    }

    fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// Writes the configuration: `certs_line` plus our state dir, log and on_error=continue.
    fn write_config(&self, certs_line: &str) {
        std::fs::write(
            &self.config,
            format!(
                "{certs_line}state_dir = {:?}\nlog = {:?}\non_error = \"continue\"\n",
                self.state_dir(),
                self.dir().join("hook.log")
            ),
        )
        .unwrap();
    }

    /// A Debian bookworm rootfs with curl, at `<work>/<name>`.
    fn debian(&self, name: &str) -> PathBuf {
        let rootfs = self.dir().join(name);
        debian_rootfs(&rootfs, "bookworm", PACKAGES);
        rootfs
    }

    /// `curl` of the server, quietly; exit 0 when it trusts it, 60 when it does not.
    fn curl(&self) -> Vec<String> {
        ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", &self.server.url()]
            .map(String::from)
            .to_vec()
    }

    /// `sh -c SCRIPT` with `$URL` set to the server's URL.
    fn sh(&self, script: &str) -> Vec<String> {
        vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("URL={}; {script}", self.server.url()),
        ]
    }

    /// A runc bundle under `<work>/<name>` running `args` on `rootfs`, with the hook or without,
    /// its `config.json` then changed by `edit`.
    fn bundle(&self, name: &str, rootfs: &Path, args: &[String], hook: bool, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = self.dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let bundle = runc_bundle(bin(), &dir, rootfs, &args, hook.then_some(self.config.as_path()));
        edit_spec(&bundle, edit);
        bundle
    }

    /// `runc run` of a bundle: exit code and output.
    fn run(&self, bundle: &Path, id: &str) -> (i32, String) {
        runc_run(&self.runc_root, bundle, id)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("hook.log")).unwrap_or_default()
    }

    /// The log lines of container `id`.
    fn log_of(&self, id: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(&format!(" id={id} ")))
            .map(str::to_owned)
            .collect()
    }

    /// Asserts that both stages of `id` ran and succeeded.
    #[track_caller]
    fn assert_hook_ok(&self, id: &str) {
        let lines = self.log_of(id);
        let joined = lines.join("\n");
        assert!(
            lines.iter().any(|l| l.contains("stage=createRuntime")),
            "no createRuntime line for {id}:\n{}",
            self.log()
        );
        assert!(
            lines.iter().any(|l| l.contains("stage=poststop")),
            "no poststop line for {id}:\n{joined}"
        );
        assert!(!joined.contains("result=error"), "{joined}");
    }

    /// Asserts that the state directory holds nothing (no journal, backup or record).
    #[track_caller]
    fn assert_state_empty(&self) {
        let left: Vec<OsString> = std::fs::read_dir(self.state_dir())
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "state left behind: {left:?}");
    }

    /// Asserts that the state directory holds nothing of container `id` (others may be running).
    #[track_caller]
    fn assert_no_state_of(&self, id: &str) {
        let left: Vec<OsString> = std::fs::read_dir(self.state_dir())
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        let prefix = format!("{id}.");
        let left: Vec<&OsString> = left
            .iter()
            .filter(|n| n.to_string_lossy().starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "state of {id} left behind: {left:?}");
    }

    /// The CA's base64 body, as it appears in any PEM file that contains it.
    fn ca_body(&self) -> String {
        let pem = std::fs::read_to_string(&self.pki.ca).unwrap();
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Rewrites a bundle's `config.json` through `edit`.
fn edit_spec(bundle: &Path, edit: impl FnOnce(&mut Value)) {
    let path = bundle.join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut spec);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
}

/// A container id unique to this process.
fn id(name: &str) -> String {
    format!("cacerts-e2e-{name}-{}", std::process::id())
}

/// Runs a command with no input; its exit code and output.
fn output(cmd: &mut Command) -> (i32, String) {
    exit_and_output(cmd.stdin(Stdio::null()))
}

/// What of ours is in the tree at `root` (snapshot `after`, `before` the container ran): entries
/// named `cacerts-hook-*`, and files changed since `before` that contain `needle` (a file the run
/// did not change cannot hold a CA made for this run).
fn traces(root: &Path, before: &Snapshot, after: &Snapshot, needle: &str) -> Vec<PathBuf> {
    let named = after.0.keys().filter(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("cacerts-hook-"))
    });
    let holding = changed_paths(before, after).into_iter().filter(|p| {
        after.0.get(p).is_some_and(|e| e.kind == "file")
            && std::fs::read_to_string(root.join(p)).is_ok_and(|text| text.contains(needle))
    });
    named.cloned().chain(holding).collect()
}

/// The paths whose entry differs between two snapshots (added, removed or changed).
fn changed_paths(before: &Snapshot, after: &Snapshot) -> BTreeSet<PathBuf> {
    after
        .0
        .keys()
        .chain(before.0.keys())
        .filter(|p| before.0.get(*p) != after.0.get(*p))
        .cloned()
        .collect()
}

// 1. A read-only root: runc remounts the root read-only inside the container after createRuntime,
// so the hook's writes (on the host path) land before it and poststop's after it.
#[test]
fn readonly_root() {
    let case = Case::new();
    let rootfs = case.debian("rootfs");
    let ro = |spec: &mut Value| spec["root"]["readonly"] = json!(true);
    let plain = case.bundle("plain", &rootfs, &case.curl(), false, ro);
    let (code, text) = case.run(&plain, &id("ro-plain"));
    assert_eq!(code, 60, "curl without the hook: {text}");

    let before = Snapshot::take(&rootfs);
    // The container proves its root is read-only, then trusts the server.
    let script = "if touch /etc/probe 2>/dev/null; then echo writable; exit 3; fi; \
                  curl -sS -o /dev/null --max-time 10 \"$URL\"";
    let hooked = case.bundle("hook", &rootfs, &case.sh(script), true, ro);
    let cid = id("ro");
    let (code, text) = case.run(&hooked, &cid);
    assert_eq!(code, 0, "read-only root with the hook: {text}\n{}", case.log());
    case.assert_hook_ok(&cid);
    before.assert_same(&Snapshot::take(&rootfs), "rootfs after a read-only run");
    case.assert_state_empty();
}

/// Shifts every entry's owner and group by `by` (a rootfs for a user namespace), without
/// following links.
fn shift_owners(root: &Path, by: u32) {
    let meta = std::fs::symlink_metadata(root).unwrap();
    std::os::unix::fs::lchown(root, Some(meta.uid() + by), Some(meta.gid() + by)).unwrap();
    if meta.is_dir() {
        for e in std::fs::read_dir(root).unwrap() {
            shift_owners(&e.unwrap().path(), by);
        }
    }
}

/// config.json changes for a user namespace mapping container root to host 100000 (65536 ids),
/// keeping the host network: sysfs cannot be mounted without a network namespace of our own, so
/// the host's /sys is bind-mounted instead (as `runc spec --rootless` does).
fn user_namespace(spec: &mut Value) {
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100_000, "size": 65_536}]);
    spec["linux"]["uidMappings"] = map.clone();
    spec["linux"]["gidMappings"] = map;
    let mounts = spec["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/sys" && m["destination"] != "/sys/fs/cgroup");
    mounts.push(json!({
        "destination": "/sys", "type": "none", "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
    }));
}

// 2. A user-namespaced container: what the hook creates belongs to the container's root.
#[test]
fn user_namespace_owners() {
    let case = Case::new();
    let rootfs = case.debian("rootfs");
    shift_owners(&rootfs, 100_000);
    // The mapped root must be able to reach its rootfs.
    for dir in [case.dir(), rootfs.as_path()] {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let plain = case.bundle("plain", &rootfs, &case.curl(), false, user_namespace);
    let (code, text) = case.run(&plain, &id("userns-plain"));
    assert_eq!(code, 60, "curl without the hook: {text}");

    let before = Snapshot::take(&rootfs);
    let script = format!(
        "for f in {ANCHORS}/cacerts-hook-* /etc/ssl/certs/cacerts-hook-* /etc/ssl/certs/ca-certificates.crt; do \
         echo \"owner $(stat -c %u:%g \"$f\") $f\"; done; \
         curl -sS -o /dev/null --max-time 10 \"$URL\""
    );
    let hooked = case.bundle("hook", &rootfs, &case.sh(&script), true, user_namespace);
    let cid = id("userns");
    let (code, text) = case.run(&hooked, &cid);
    assert_eq!(code, 0, "user namespace with the hook: {text}\n{}", case.log());
    let owners: Vec<&str> = text.lines().filter(|l| l.starts_with("owner ")).collect();
    assert_eq!(owners.len(), 3, "our anchor, its link and the edited bundle: {text}");
    for line in owners {
        assert!(line.starts_with("owner 0:0 "), "not the container's root: {line}");
    }
    case.assert_hook_ok(&cid);
    before.assert_same(&Snapshot::take(&rootfs), "rootfs after a user-namespaced run");
    case.assert_state_empty();
}

// 3. A volume over /etc/ssl/certs: the hook leaves the mount's source alone and says so; the
// container starts with the volume's store.
#[test]
fn volume_over_the_trust_store() {
    let case = Case::new();
    let rootfs = case.debian("rootfs");
    let volume = case.dir().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::copy(
        rootfs.join("etc/ssl/certs/ca-certificates.crt"),
        volume.join("ca-certificates.crt"),
    )
    .unwrap();
    let mount = |spec: &mut Value| {
        spec["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/etc/ssl/certs", "type": "bind", "source": volume,
            "options": ["rbind", "rw"],
        }))
    };
    let before = Snapshot::take(&rootfs);
    let volume_before = Snapshot::take(&volume);
    // The anchor outside the volume is written; the store the container reads is the volume's.
    let script =
        format!("ls {ANCHORS}/cacerts-hook-* && ls /etc/ssl/certs && curl -sS -o /dev/null --max-time 10 \"$URL\"");
    let hooked = case.bundle("hook", &rootfs, &case.sh(&script), true, mount);
    let cid = id("volume");
    let (code, text) = case.run(&hooked, &cid);
    assert_eq!(
        code,
        60,
        "the volume's store does not have our CA: {text}\n{}",
        case.log()
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("cacerts-hook-")).count(),
        0,
        "nothing of ours in the volume: {text}"
    );
    case.assert_hook_ok(&cid);
    let create = case
        .log_of(&cid)
        .into_iter()
        .find(|l| l.contains("stage=createRuntime"))
        .unwrap();
    assert!(
        !create.contains(" dropped=0 "),
        "changes under the mount are dropped and counted: {create}"
    );
    volume_before.assert_same(&Snapshot::take(&volume), "the volume's source");
    before.assert_same(&Snapshot::take(&rootfs), "rootfs after a run with a volume");
    case.assert_state_empty();
}

/// config.json change: a writable root (`runc spec` makes it read-only).
fn writable(spec: &mut Value) {
    spec["root"]["readonly"] = json!(false);
}

/// `runc` with our state root; panics unless it succeeds.
fn runc(case: &Case, args: &[&str]) -> String {
    let (code, text) = output(Command::new("runc").arg("--root").arg(&case.runc_root).args(args));
    assert_eq!(code, 0, "runc {args:?}: {text}");
    text
}

// 5. A container killed with SIGKILL: poststop runs when it is deleted.
#[test]
fn killed_container() {
    let case = Case::new();
    let rootfs = case.debian("rootfs");
    let before = Snapshot::take(&rootfs);
    let args = ["sleep", "1000"].map(String::from);
    let hooked = case.bundle("hook", &rootfs, &args, true, |_| {});
    let cid = id("killed");
    let (code, text) = output(
        Command::new("runc")
            .arg("--root")
            .arg(&case.runc_root)
            .args(["run", "-d", "--bundle"])
            .arg(&hooked)
            .arg(&cid)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert_eq!(code, 0, "runc run -d: {text}\n{}", case.log());
    let curl: Vec<String> = case.curl();
    let mut exec = vec!["exec", cid.as_str()];
    exec.extend(curl.iter().map(String::as_str));
    runc(&case, &exec);
    runc(&case, &["kill", &cid, "KILL"]);
    let start = Instant::now();
    while !runc(&case, &["state", &cid]).contains("\"stopped\"") {
        assert!(start.elapsed() < Duration::from_secs(20), "the container did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    runc(&case, &["delete", &cid]);
    case.assert_hook_ok(&cid);
    before.assert_same(&Snapshot::take(&rootfs), "rootfs after kill and delete");
    case.assert_state_empty();
}

// 4. The container changes the store itself: appends a line to the bundle, or regenerates it with
// update-ca-certificates (which keeps our anchor's CA in the bundle). poststop takes out our CA
// and keeps the container's change; nothing of ours is left. The same flow through the CLI's
// install and uninstall shows the report: the bundle stripped, nothing kept.
#[test]
fn container_rewrites_the_store() {
    let case = Case::new();
    let ca_body = case.ca_body();
    let store = "etc/ssl/certs/ca-certificates.crt";
    let curl = "curl -sS -o /dev/null --max-time 10 \"$URL\"";
    let variants = [
        (
            "append",
            format!("{curl} && echo '# mine' >> /{store}"),
            "# mine\n",
            &["./etc/ssl/certs/ca-certificates.crt"][..],
        ),
        // update-ca-certificates writes its temporary file in /tmp.
        (
            "update",
            format!("{curl} && update-ca-certificates && {curl}"),
            "",
            &["./etc/ssl/certs/ca-certificates.crt", "./tmp"][..],
        ),
    ];
    std::thread::scope(|scope| {
        for (name, script, added, changed) in variants {
            let case = &case;
            let ca_body = &ca_body;
            scope.spawn(move || rewrite_variant(case, ca_body, name, &script, added, changed));
        }
    });
    case.assert_state_empty();
}

fn rewrite_variant(case: &Case, ca_body: &str, name: &str, script: &str, added: &str, changed: &[&str]) {
    let store = "etc/ssl/certs/ca-certificates.crt";
    {
        let rootfs = case.debian(&format!("rootfs-{name}"));
        let original = std::fs::read_to_string(rootfs.join(store)).unwrap();
        let before = Snapshot::take(&rootfs);
        let hooked = case.bundle(&format!("hook-{name}"), &rootfs, &case.sh(script), true, writable);
        let cid = id(&format!("rewrite-{name}"));
        let (code, text) = case.run(&hooked, &cid);
        assert_eq!(code, 0, "{name}: {text}\n{}", case.log());
        case.assert_hook_ok(&cid);

        let after = Snapshot::take(&rootfs);
        let expected: BTreeSet<PathBuf> = changed.iter().map(PathBuf::from).collect();
        assert_eq!(
            changed_paths(&before, &after),
            expected,
            "{name}: only the container's own changes remain:\n{}",
            before.diff(&after).join("\n")
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join(store)).unwrap(),
            format!("{original}{added}"),
            "{name}: the store"
        );
        assert_eq!(
            traces(&rootfs, &before, &after, ca_body),
            Vec::<PathBuf>::new(),
            "{name}: left of ours"
        );
        case.assert_no_state_of(&cid);

        // The same through the CLI, on the tree as the container left it.
        let left_by_hook = std::fs::read_to_string(rootfs.join(store)).unwrap();
        let journal = case.dir().join(format!("cli-{name}.journal"));
        let (code, text) = output(
            Command::new(bin())
                .args(["install", "--rootfs"])
                .arg(&rootfs)
                .arg("--certs")
                .arg(&case.pki.ca)
                .arg("--journal")
                .arg(&journal),
        );
        assert_eq!(code, 0, "{name}: install: {text}");
        let plain = case.bundle(&format!("plain-{name}"), &rootfs, &case.sh(script), false, writable);
        let (code, text) = case.run(&plain, &id(&format!("rewrite-cli-{name}")));
        assert_eq!(code, 0, "{name}: container after install: {text}");
        let (code, report) = output(
            Command::new(bin())
                .args(["uninstall", "--rootfs"])
                .arg(&rootfs)
                .arg("--journal")
                .arg(&journal),
        );
        assert_eq!(code, 0, "{name}: uninstall: {report}");
        assert!(
            report.lines().any(|l| l == format!("stripped /{store}")),
            "{name}: {report}"
        );
        assert!(
            !report.lines().any(|l| l.starts_with("kept ")),
            "{name}: nothing to explain: {report}"
        );
        assert_eq!(
            std::fs::read_to_string(rootfs.join(store)).unwrap(),
            format!("{left_by_hook}{added}"),
            "{name}: the store after the CLI flow"
        );
        let last = Snapshot::take(&rootfs);
        assert_eq!(
            traces(&rootfs, &before, &last, ca_body),
            Vec::<PathBuf>::new(),
            "{name}: left of ours after the CLI flow"
        );
        assert!(!journal.exists(), "{name}: the journal is gone");
    }
}

// 10. Failures with a real start: a broken configuration, certificate paths that are missing or
// a FIFO, a corrupt journal left for the container's id. The container starts every time and the
// rootfs is untouched; a corrupt journal is left as it is for the operator (docs/hook.md: gc keeps
// it and reports it; neither stage can roll back what it cannot read).
#[test]
fn failures_still_start_the_container() {
    let case = Case::new();
    let rootfs = case.debian("rootfs");
    let before = Snapshot::take(&rootfs);
    let args = ["true".to_owned()];
    let bundle = case.bundle("hook", &rootfs, &args, true, |_| {});
    let start = |name: &str| {
        let cid = id(name);
        let (code, text) = case.run(&bundle, &cid);
        assert_eq!(code, 0, "{name}: the container starts: {text}\n{}", case.log());
        before.assert_same(&Snapshot::take(&rootfs), format!("rootfs after {name}"));
        cid
    };

    // A configuration that does not parse: the defaults apply (on_error continue), and nothing is
    // done. The configured log is unknown too; the hooks pass `--log` (as an operator's hooks.d
    // file may), so the error is found there rather than in this machine's /var/log.
    let fallback_log = case.dir().join("fallback.log");
    let bad_bundle = case.bundle("hook-log-override", &rootfs, &args, true, |spec| {
        for stage in ["createRuntime", "poststop"] {
            let hook_args = spec["hooks"][stage][0]["args"].as_array_mut().unwrap();
            let at = hook_args.len() - 1;
            hook_args.insert(at, serde_json::json!(fallback_log));
            hook_args.insert(at, serde_json::json!("--log"));
        }
    });
    std::fs::write(&case.config, "certs = [\"/etc/unterminated\"\non_error = \n").unwrap();
    let (code, text) = case.run(&bad_bundle, &id("bad-config"));
    assert_eq!(code, 0, "bad-config: the container starts: {text}");
    before.assert_same(&Snapshot::take(&rootfs), "rootfs after bad-config");
    let fallback = std::fs::read_to_string(&fallback_log).unwrap_or_default();
    let config_name = case.config.display().to_string();
    assert_eq!(
        fallback
            .lines()
            .filter(|l| l.contains(&config_name) && l.contains("result=error"))
            .count(),
        2,
        "both stages log the broken file:\n{fallback}"
    );
    assert!(case.log().is_empty(), "the configured log is unknown: {}", case.log());
    case.assert_state_empty();

    // Certificate paths that are missing, or a FIFO (never opened for reading: it would block).
    let fifo = case.dir().join("certs.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (name, certs) in [("missing-certs", case.dir().join("no-such-dir")), ("fifo-certs", fifo)] {
        case.write_config(&format!("certs = [{certs:?}]\n"));
        let began = Instant::now();
        let cid = start(name);
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "{name}: took {:?}",
            began.elapsed()
        );
        let lines = case.log_of(&cid);
        let create = lines.iter().find(|l| l.contains("stage=createRuntime")).unwrap();
        assert!(
            create.contains("result=error") && create.contains("no usable CA certificate"),
            "{create}"
        );
        assert!(create.contains(" changes=0 "), "{create}");
        case.assert_state_empty();
    }

    // A corrupt journal for the container's id.
    case.write_config(&format!("certs = [{:?}]\n", case.pki.ca));
    let cid = id("corrupt-journal");
    std::fs::create_dir_all(case.state_dir()).unwrap();
    let journal = case.state_dir().join(format!("{cid}.journal"));
    let garbage = b"{\"not\": \"a journal\"\n\x00\xff garbage\n".to_vec();
    std::fs::write(&journal, &garbage).unwrap();
    assert_eq!(start("corrupt-journal"), cid);
    let lines = case.log_of(&cid);
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert!(line.contains("result=error") && line.contains(" changes=0 "), "{line}");
    }
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        garbage,
        "the corrupt journal is kept as it was"
    );
    let left: Vec<OsString> = std::fs::read_dir(case.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![OsString::from(format!("{cid}.journal"))]);
    // gc reports it and keeps it too.
    let (code, text) = output(Command::new(bin()).arg("--config").arg(&case.config).arg("gc"));
    assert_eq!(code, 1, "gc: {text}");
    assert!(text.contains(&format!("error {cid}: ")), "gc: {text}");
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        garbage,
        "gc keeps the corrupt journal"
    );
}

/// A small rootfs from a fixture, with the static busybox of the host (package busybox-static)
/// as `/bin/busybox` and the mount points runc would otherwise create, aged.
fn small_rootfs(dir: &Path, nodes: &[Node]) -> PathBuf {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    build(&rootfs, nodes);
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("/bin/busybox (busybox-static)");
    age(&rootfs);
    rootfs
}

/// `busybox cat` of `paths`, the family's bundles as the container reads them.
fn cat(paths: &[&str]) -> Vec<String> {
    let mut args = vec!["/bin/busybox".to_owned(), "cat".to_owned()];
    args.extend(paths.iter().map(|p| (*p).to_owned()));
    args
}

// 8. 32 containers at once under runc, each on its own small Alpine rootfs, one state directory:
// all start, all see the CA, every rootfs is as before and no journal is left.
#[test]
fn many_containers_at_once() {
    let case = Case::new();
    let base = Base::new();
    let body = case.ca_body();
    let nodes = alpine_bundle(&base);
    std::thread::scope(|scope| {
        for i in 0..32 {
            let (case, nodes, body, base) = (&case, &nodes, &body, &base);
            scope.spawn(move || {
                let dir = case.dir().join(format!("c{i}"));
                let rootfs = small_rootfs(&dir, nodes);
                let before = Snapshot::take(&rootfs);
                let args = cat(&["/etc/ssl/certs/ca-certificates.crt"]);
                let bundle = case.bundle(&format!("c{i}"), &rootfs, &args, true, |_| {});
                let cid = id(&format!("many-{i}"));
                let (code, text) = case.run(&bundle, &cid);
                assert_eq!(code, 0, "container {i}: {text}");
                assert!(
                    text.contains(body.as_str()),
                    "container {i} does not see the CA; hook log:\n{}",
                    case.log()
                        .lines()
                        .filter(|l| l.contains("createRuntime"))
                        .map(|l| l.split(" id=").nth(1).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                assert!(
                    text.contains(base.cas[0].pem.as_str()),
                    "container {i}: the image's CAs"
                );
                case.assert_hook_ok(&cid);
                before.assert_same(&Snapshot::take(&rootfs), format!("rootfs of container {i}"));
                case.assert_no_state_of(&cid);
            });
        }
    });
    case.assert_state_empty();
    assert_eq!(case.log().lines().count(), 64, "one line per stage and container");
}

// 9. Other families' layouts under runc: the CA is in the family's bundle as the container reads
// it (through the image's links), and not without the hook; the rootfs is as before afterwards.
#[test]
fn alpine_and_rhel_layouts() {
    let case = Case::new();
    let base = Base::new();
    let body = case.ca_body();
    let families: [(&str, Vec<Node>, &[&str]); 2] = [
        (
            "alpine",
            alpine_full(&base),
            &["/etc/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt"],
        ),
        (
            "rhel",
            ubi(&base),
            &["/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"],
        ),
    ];
    for (name, nodes, bundles) in families {
        let rootfs = small_rootfs(&case.dir().join(name), &nodes);
        let before = Snapshot::take(&rootfs);
        let plain = case.bundle(&format!("{name}-plain"), &rootfs, &cat(bundles), false, |_| {});
        let (code, text) = case.run(&plain, &id(&format!("{name}-plain")));
        assert_eq!(code, 0, "{name} without the hook: {text}");
        assert!(!text.contains(body.as_str()), "{name}: the CA without the hook");
        before.assert_same(
            &Snapshot::take(&rootfs),
            format!("{name}: rootfs after a run without the hook"),
        );

        let hooked = case.bundle(&format!("{name}-hook"), &rootfs, &cat(bundles), true, |_| {});
        let cid = id(name);
        let (code, text) = case.run(&hooked, &cid);
        assert_eq!(code, 0, "{name} with the hook: {text}\n{}", case.log());
        assert_eq!(
            text.matches(body.as_str()).count(),
            bundles.len(),
            "{name}: the CA in {bundles:?}:\n{text}"
        );
        assert!(
            case.log_of(&cid)[0].contains(&format!(" family={name} ")),
            "{:?}",
            case.log_of(&cid)
        );
        case.assert_hook_ok(&cid);
        before.assert_same(&Snapshot::take(&rootfs), format!("{name}: rootfs after the hook"));
    }
    case.assert_state_empty();
}

/// `podman` with runc and the hooks in `hooks`; panics unless it succeeds.
fn podman(hooks: &Path, args: &[&str]) -> String {
    let (code, text) = output(
        Command::new("podman")
            .arg("--hooks-dir")
            .arg(hooks)
            .args(["--runtime", "runc"])
            .args(args),
    );
    assert_eq!(code, 0, "podman {args:?}: {text}");
    text
}

/// `podman run -d` options: host network, ulimits within what the runner allows.
const PODMAN_RUN: &[&str] = &[
    "run",
    "-d",
    "--network",
    "host",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// A container on `--rootfs` started, checked, stopped, started again, checked, stopped and
/// removed. `check` runs in it (`podman exec`) while it runs and must exit with `expect`.
fn podman_restart_cycle(hooks: &Path, rootfs: &Path, name: &str, check: &[String], expect: i32) {
    let _cleanup = PodmanCleanup {
        containers: vec![name.to_owned()],
        image: None,
    };
    let mut run: Vec<&str> = PODMAN_RUN.to_vec();
    let root = rootfs.to_str().unwrap();
    run.extend(["--name", name, "--rootfs", root, "sleep", "1000"]);
    podman(hooks, &run);
    let mut exec = vec!["exec", name];
    exec.extend(check.iter().map(String::as_str));
    for round in 0..2 {
        if round == 1 {
            podman(hooks, &["start", name]);
        }
        let (code, text) = output(Command::new("podman").args(&exec));
        assert_eq!(code, expect, "{name}, round {round}: {text}");
        podman(hooks, &["stop", "-t", "1", name]);
    }
    podman(hooks, &["rm", name]);
}

// 6. Podman with --rootfs, a container stopped and started again: createRuntime runs again on the
// same tree (the journal of the first start is rolled back first), the CA is trusted after the
// restart, and after rm the tree is as a run without the hook leaves it.
#[test]
fn podman_restart_on_rootfs() {
    let case = Case::new();
    let rootfs = case.debian("rootfs");
    let empty = case.dir().join("no-hooks.d");
    std::fs::create_dir_all(&empty).unwrap();
    let hooks = hooks_dir(bin(), case.dir(), &case.config);

    // Control: podman leaves files of its own in a --rootfs tree (/etc/hosts, /etc/mtab,
    // /run/.containerenv, mount points); after that, a run with the hook must change nothing.
    let first = Snapshot::take(&rootfs);
    podman_restart_cycle(&empty, &rootfs, &id("restart-plain"), &case.curl(), 60);
    let control = Snapshot::take(&rootfs);
    let podmans = changed_paths(&first, &control);
    assert!(podmans.contains(Path::new("./run/.containerenv")), "{podmans:?}");
    podman_restart_cycle(&hooks, &rootfs, &id("restart"), &case.curl(), 0);
    control.assert_same(
        &Snapshot::take(&rootfs),
        "rootfs after podman run, stop, start, stop, rm with the hook",
    );

    let log = case.log();
    assert_eq!(log.matches("stage=createRuntime").count(), 2, "{log}");
    assert_eq!(log.matches("stage=poststop").count(), 2, "{log}");
    assert!(!log.contains("result=error"), "{log}");
    case.assert_state_empty();
}

/// `podman diff` of a container: `(kind, path)` with kind `A`, `C` or `D`.
fn podman_diff(name: &str) -> BTreeSet<(String, String)> {
    let text = podman(Path::new("/nonexistent"), &["diff", name]);
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, p)| (k.to_owned(), p.to_owned()))
        .collect()
}

// 7. Podman with an image: after a run with the hook, `podman diff` shows nothing beyond a run
// without it except the image files the hook had to change (see docs/podman-diff.md).
#[test]
fn podman_image_diff() {
    let case = Case::new();
    let rootfs = case.debian("rootfs");
    let image = format!("localhost/cacerts-test:bookworm-{}", std::process::id());
    let (code, text) = output(
        Command::new("sh")
            .arg("-c")
            .arg(format!("tar -C '{}' -c . | podman import - {image}", rootfs.display())),
    );
    assert_eq!(code, 0, "podman import: {text}");
    let empty = case.dir().join("no-hooks.d");
    std::fs::create_dir_all(&empty).unwrap();
    let hooks = hooks_dir(bin(), case.dir(), &case.config);

    let run = |hooks: &Path, name: &str| {
        let mut args: Vec<&str> = PODMAN_RUN.iter().filter(|a| **a != "-d").copied().collect();
        args.extend(["--name", name, &image]);
        let curl = case.curl();
        args.extend(curl.iter().map(String::as_str));
        output(
            Command::new("podman")
                .arg("--hooks-dir")
                .arg(hooks)
                .args(["--runtime", "runc"])
                .args(&args),
        )
    };
    let plain = id("image-plain");
    let hooked = id("image-hook");
    let _cleanup = PodmanCleanup {
        containers: vec![plain.clone(), hooked.clone()],
        image: Some(image.clone()),
    };
    let (code, text) = run(&empty, &plain);
    assert_eq!(code, 60, "curl without the hook: {text}");
    let (code, text) = run(&hooks, &hooked);
    assert_eq!(code, 0, "curl with the hook: {text}\n{}", case.log());
    let full_id = podman(&empty, &["inspect", "--format", "{{.Id}}", &hooked]);
    case.assert_hook_ok(full_id.trim());
    case.assert_state_empty();

    // What overlay shows: the two containers' trees, mounted, are the same (entries, bytes,
    // modes, times), apart from the times of what podman itself makes in both, at different
    // moments: mount points for /etc/hosts and /run/.containerenv, the /etc/mtab link, and
    // their directories.
    let podmans: BTreeSet<PathBuf> = [
        ".",
        "./etc",
        "./etc/hosts",
        "./etc/mtab",
        "./run",
        "./run/.containerenv",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let mounted = |name: &str| Snapshot::take(Path::new(podman(&empty, &["mount", name]).trim()));
    let (plain_tree, hooked_tree) = (mounted(&plain), mounted(&hooked));
    podman(&empty, &["umount", &plain, &hooked]);
    let differ = changed_paths(&plain_tree, &hooked_tree);
    assert!(
        differ.is_subset(&podmans),
        "the container trees differ:\n{}",
        plain_tree.diff(&hooked_tree).join("\n")
    );

    // What `podman diff` shows: the overlay's upper layer, where a file modified in place and
    // restored is still a copy; so are the directories its replacement was renamed in.
    let control = podman_diff(&plain);
    let ours = podman_diff(&hooked);
    let extra: BTreeSet<(String, String)> = ours.difference(&control).cloned().collect();
    let expected: BTreeSet<(String, String)> = [("C", "/etc/ssl/certs"), ("C", "/etc/ssl/certs/ca-certificates.crt")]
        .iter()
        .map(|(k, p)| ((*k).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        extra, expected,
        "podman diff beyond the control run (control: {control:?})"
    );
}

/// Removes podman containers and an image when dropped (also when the test fails).
struct PodmanCleanup {
    containers: Vec<String>,
    image: Option<String>,
}

impl Drop for PodmanCleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = output(Command::new("podman").args(["rm", "-f", c]));
        }
        if let Some(image) = &self.image {
            let _ = output(Command::new("podman").args(["rmi", "-f", image]));
        }
    }
}
