//! End to end under runc, client by client: in a Debian bookworm container, every common TLS
//! client fails against a loopback server signed by a throwaway CA without the hook, and
//! succeeds with it. The clients (OpenSSL- and GnuTLS-based, Python, Java): curl, wget,
//! `openssl s_client`, Python's `ssl`
//! (urllib), `requests` with Debian's certifi (which points at the system bundle), `requests`
//! in a virtualenv with certifi from PyPI (its own `cacert.pem`), git over HTTPS (a clone over
//! the dumb HTTP protocol) and Java's `HttpsURLConnection`. `keytool` shows the entry in the
//! JDK's key store. After the container is gone (poststop ran) the rootfs is exactly as before
//! and the state directory is empty.
//!
//! One container run per side: a shell script in the image runs every client and prints one
//! block per client (`<<< NAME`, its output, `>>> NAME EXIT`); each client is then checked on
//! its own.
//!
//! Needs root, runc, mmdebstrap, openssl, git, javac and pip on the host (`scripts/setup`
//! installs them), Debian's mirror for the first run and PyPI for the first run (the rootfs
//! and the certifi wheel are cached under `target/test-rootfs/`). Test set-up runs the image's
//! own `python3 -m venv` in a chroot of the scratch copy; the hook never runs anything from
//! the image.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cacerts_testkit::containers::{
    certifi_wheel, hook_binary, hook_config, pki, run, runc_bundle_with, runc_run, scratch, Server,
};
use cacerts_testkit::rootfs::debian_rootfs;
use cacerts_testkit::Snapshot;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cacerts-hook");

/// The image: every client below, and the JDK with the key store ca-certificates-java makes.
const PACKAGES: &[&str] = &[
    "ca-certificates",
    "ca-certificates-java",
    "curl",
    "default-jre-headless",
    "git",
    "openssl",
    "python3",
    "python3-certifi",
    "python3-requests",
    "wget",
];

/// The virtualenv made in the image, and where pip would put certifi in it.
const VENV: &str = "/opt/venv";
const VENV_CERTIFI: &str = "/opt/venv/lib/python3.11/site-packages/certifi/cacert.pem";
/// Debian's certifi answers this from `where()`.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The alias the hook gives `ca.pem` in a key store; the probe lists it in the JDK's trust store
/// `/etc/ssl/certs/java/cacerts` (`/usr/lib/jvm/*/lib/security/cacerts` link there).
const ALIAS: &str = "cacerts-hook-ca";
/// What the server serves at `/hello.txt`, and what the repository's file holds.
const BODY: &str = "hello from the e2e server";
const REPO_FILE: &str = "trusted-clone";

/// Runs every client; `$1` is the server's port.
const PROBE_SH: &str = r#"#!/bin/sh
port=$1
base=https://127.0.0.1:$port
client() {
    name=$1
    shift
    out=$("$@" 2>&1)
    rc=$?
    printf '<<< %s\n%s\n>>> %s %s\n' "$name" "$out" "$name" "$rc"
}
s_client() {
    printf 'GET /hello.txt HTTP/1.0\r\n\r\n' |
        openssl s_client -connect 127.0.0.1:$port -verify_return_error -brief -ign_eof
}
git_clone() {
    rm -rf /tmp/clone && git clone -q $base/repo.git /tmp/clone && cat /tmp/clone/file.txt
}
client curl curl -sS --max-time 10 $base/hello.txt
client wget wget -nv -O - --timeout=10 --tries=1 $base/hello.txt
client openssl s_client
client python-ssl python3 /cacerts-e2e/probe.py ssl $base/hello.txt
client requests-debian python3 /cacerts-e2e/probe.py requests $base/hello.txt
client requests-pip /opt/venv/bin/python3 /cacerts-e2e/probe.py requests $base/hello.txt
client git git_clone
client java java -cp /cacerts-e2e Fetch $base/hello.txt
client keytool keytool -list -keystore /etc/ssl/certs/java/cacerts -storepass changeit -alias cacerts-hook-ca
"#;

/// Python clients: `ssl` (the standard library through urllib) or `requests`. Prints which
/// bundle certifi and requests use, then `body ...` or the exception's type.
const PROBE_PY: &str = r#"import os, sys
mode, url = sys.argv[1], sys.argv[2]
if mode == "ssl":
    import urllib.error, urllib.request
    try:
        body = urllib.request.urlopen(url, timeout=10).read()
    except urllib.error.URLError as e:
        r = e.reason
        print("error", type(r).__module__ + "." + type(r).__qualname__, r)
        sys.exit(3)
else:
    import certifi, requests
    print("certifi", certifi.where())
    print("requests-default", requests.utils.DEFAULT_CA_BUNDLE_PATH)
    print("env", [k for k in os.environ if k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")])
    try:
        body = requests.get(url, timeout=10).content
    except requests.exceptions.SSLError as e:
        print("error requests.exceptions.SSLError", e)
        sys.exit(3)
print("body", body.decode().strip())
"#;

/// Java's client: the JDK's default trust manager, nothing configured.
const FETCH_JAVA: &str = r#"import java.io.InputStream;
import java.net.URL;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.SSLException;

public class Fetch {
    public static void main(String[] args) throws Exception {
        HttpsURLConnection c = (HttpsURLConnection) new URL(args[0]).openConnection();
        c.setConnectTimeout(10000);
        c.setReadTimeout(10000);
        try (InputStream in = c.getInputStream()) {
            System.out.println("status " + c.getResponseCode());
            System.out.println("body " + new String(in.readAllBytes(), "UTF-8").trim());
        } catch (SSLException e) {
            System.out.println("error " + e.getClass().getName() + ": " + e.getMessage());
            System.exit(3);
        }
    }
}
"#;

/// The binary under test: the one that ships when `scripts/test` runs (see [`hook_binary`]).
fn bin() -> &'static Path {
    hook_binary(BIN)
}

/// `git -C dir args...` with a fixed identity and branch, whatever the host's configuration.
fn git(dir: &Path, args: &[&str]) {
    run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid"])
        .args(["-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null"));
}

/// The server's files: `hello.txt` and a bare repository `repo.git` served over git's dumb
/// HTTP protocol. `openssl s_server -WWW` keeps the query string in the file name, so the
/// ref advertisement is also stored under the name git asks for first.
fn docroot(dir: &Path) -> std::path::PathBuf {
    let www = dir.join("www");
    let src = dir.join("repo-src");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(www.join("hello.txt"), format!("{BODY}\n")).unwrap();
    std::fs::write(src.join("file.txt"), format!("{REPO_FILE}\n")).unwrap();
    git(&src, &["init", "-q"]);
    git(&src, &["add", "file.txt"]);
    git(&src, &["commit", "-q", "-m", "e2e"]);
    git(dir, &["clone", "-q", "--bare", "repo-src", "www/repo.git"]);
    let bare = www.join("repo.git");
    git(&bare, &["update-server-info"]);
    std::fs::copy(bare.join("info/refs"), bare.join("info/refs?service=git-upload-pack")).unwrap();
    www
}

/// Adds the test's programs to the image: the probe scripts, `Fetch.class` compiled on the
/// host, and a virtualenv (made by the image's own Python) holding certifi from PyPI.
fn prepare_image(rootfs: &Path, work: &Path) {
    let dir = rootfs.join("cacerts-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("probe.sh"), PROBE_SH).unwrap();
    std::fs::write(dir.join("probe.py"), PROBE_PY).unwrap();
    let java_src = work.join("java");
    std::fs::create_dir_all(&java_src).unwrap();
    std::fs::write(java_src.join("Fetch.java"), FETCH_JAVA).unwrap();
    // bookworm's default JRE is 17.
    run(Command::new("javac")
        .args(["--release", "17", "-d"])
        .arg(&dir)
        .arg(java_src.join("Fetch.java")));

    run(Command::new("chroot").arg(rootfs).args([
        "/usr/bin/python3",
        "-m",
        "venv",
        "--without-pip",
        "--system-site-packages",
        VENV,
    ]));
    let site = rootfs.join(VENV_CERTIFI.trim_start_matches('/'));
    let site = site.parent().unwrap().parent().unwrap();
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(certifi_wheel())
        .arg(site));
    assert!(site.join("certifi/cacert.pem").is_file());
}

/// The container's spec: the probe script, a read-only root with a tmpfs on `/tmp` (git clones
/// there, the JVM keeps its perf data there), `HOME=/tmp`.
fn spec_edit(spec: &mut Value) {
    spec["process"]["env"] = json!([
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/tmp",
        "LANG=C.UTF-8",
    ]);
    spec["root"]["readonly"] = json!(true);
    spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/tmp",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=1777", "size=64m"],
    }));
}

/// One client's result.
#[derive(Debug)]
struct Outcome {
    exit: i32,
    out: String,
}

/// Splits the probe script's output into one outcome per client.
fn parse(text: &str) -> BTreeMap<String, Outcome> {
    let mut results = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("<<< ") {
            current = Some((name.to_owned(), String::new()));
        } else if let Some(rest) = line.strip_prefix(">>> ") {
            let (name, exit) = rest.rsplit_once(' ').expect("exit line");
            let (open, out) = current.take().expect("block without a start");
            assert_eq!(open, name, "interleaved blocks in:\n{text}");
            results.insert(
                open,
                Outcome {
                    exit: exit.parse().expect("exit code"),
                    out,
                },
            );
        } else if let Some((_, out)) = &mut current {
            out.push_str(line);
            out.push('\n');
        }
    }
    results
}

const CLIENTS: &[&str] = &[
    "curl",
    "wget",
    "openssl",
    "python-ssl",
    "requests-debian",
    "requests-pip",
    "git",
    "java",
    "keytool",
];

/// Checks each client with `check`; returns every failure, one line per client.
fn check_all(results: &BTreeMap<String, Outcome>, check: impl Fn(&str, &Outcome) -> Result<(), String>) -> Vec<String> {
    CLIENTS
        .iter()
        .filter_map(|name| {
            let Some(o) = results.get(*name) else {
                return Some(format!("{name}: no result"));
            };
            check(name, o)
                .err()
                .map(|why| format!("{name} (exit {}): {why}\n{}", o.exit, o.out))
        })
        .collect()
}

/// The lines of the requests probe that say which bundle it uses.
fn requests_bundles(o: &Outcome, want: &str) -> Result<(), String> {
    for line in [
        format!("certifi {want}"),
        format!("requests-default {want}"),
        "env []".to_owned(),
    ] {
        if !o.out.lines().any(|l| l == line) {
            return Err(format!("expected the line {line:?}"));
        }
    }
    Ok(())
}

fn expect(cond: bool, why: &str) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(why.to_owned())
    }
}

/// Without the hook: each client fails, and fails on the certificate.
fn untrusted(name: &str, o: &Outcome) -> Result<(), String> {
    let out = &o.out;
    match name {
        "curl" => expect(
            o.exit == 60 && out.contains("SSL certificate problem"),
            "want exit 60 (peer certificate cannot be authenticated)",
        ),
        // bookworm's wget and git use GnuTLS (git through libcurl-gnutls), hence their words.
        "wget" => expect(
            o.exit == 5 && out.contains("is not trusted") && out.contains("doesn't have a known issuer"),
            "want exit 5 (SSL verification failure): not trusted, no known issuer",
        ),
        "openssl" => expect(
            o.exit != 0 && out.contains("verify error:num=20") && !out.contains(BODY),
            "want a verify error (unable to get local issuer certificate) and no body",
        ),
        "python-ssl" => expect(
            o.exit == 3
                && out.contains("error ssl.SSLCertVerificationError")
                && out.contains("CERTIFICATE_VERIFY_FAILED"),
            "want ssl.SSLCertVerificationError",
        ),
        "requests-debian" => requests_bundles(o, SYSTEM_BUNDLE).and(expect(
            o.exit == 3
                && out.contains("error requests.exceptions.SSLError")
                && out.contains("CERTIFICATE_VERIFY_FAILED"),
            "want requests.exceptions.SSLError",
        )),
        "requests-pip" => requests_bundles(o, VENV_CERTIFI).and(expect(
            o.exit == 3
                && out.contains("error requests.exceptions.SSLError")
                && out.contains("CERTIFICATE_VERIFY_FAILED"),
            "want requests.exceptions.SSLError",
        )),
        "git" => expect(
            o.exit == 128 && out.contains("server certificate verification failed"),
            "want exit 128: server certificate verification failed",
        ),
        "java" => expect(
            o.exit == 3
                && out.contains("error javax.net.ssl.SSLHandshakeException")
                && out.contains("PKIX path building failed"),
            "want SSLHandshakeException (PKIX path building failed)",
        ),
        "keytool" => expect(
            o.exit != 0 && out.contains(&format!("Alias <{ALIAS}> does not exist")),
            "want no such alias",
        ),
        _ => unreachable!("{name}"),
    }
}

/// With the hook: each client gets the body (or the clone), with verification on.
fn trusted(name: &str, o: &Outcome) -> Result<(), String> {
    let out = &o.out;
    let body = format!("body {BODY}");
    let ok = o.exit == 0;
    match name {
        "curl" | "wget" => expect(ok && out.lines().any(|l| l == BODY), "want exit 0 and the body"),
        "openssl" => expect(
            ok && out.contains("Verification: OK") && out.lines().any(|l| l == BODY),
            "want \"Verification: OK\" and the body",
        ),
        "python-ssl" => expect(ok && out.lines().any(|l| l == body), "want the body"),
        "requests-debian" => {
            requests_bundles(o, SYSTEM_BUNDLE).and(expect(ok && out.lines().any(|l| l == body), "want the body"))
        }
        "requests-pip" => {
            requests_bundles(o, VENV_CERTIFI).and(expect(ok && out.lines().any(|l| l == body), "want the body"))
        }
        "git" => expect(ok && out.lines().any(|l| l == REPO_FILE), "want the cloned file"),
        "java" => expect(
            ok && out.contains("status 200") && out.lines().any(|l| l == body),
            "want status 200 and the body",
        ),
        "keytool" => expect(
            ok && out.contains(ALIAS) && out.contains("trustedCertEntry"),
            "want our trusted-certificate entry",
        ),
        _ => unreachable!("{name}"),
    }
}

#[test]
fn every_client_trusts_the_ca_only_with_the_hook_and_no_trace_is_left() {
    let work = scratch();
    let rootfs = work.path().join("rootfs");
    debian_rootfs(&rootfs, "bookworm", PACKAGES);
    prepare_image(&rootfs, work.path());
    let pki = pki(work.path());
    let server = Server::start_files(&pki, &docroot(work.path()));
    let config = hook_config(work.path(), &pki.ca);
    let port = server.port.to_string();
    let args = ["/bin/sh", "/cacerts-e2e/probe.sh", &port];
    let runc_root = work.path().join("runc");
    let pid = std::process::id();

    // Control: without the hook, no client trusts the server.
    let plain = runc_bundle_with(bin(), work.path(), &rootfs, &args, None, spec_edit);
    let (code, text) = runc_run(&runc_root, &plain, &format!("cacerts-trust-plain-{pid}"));
    assert_eq!(code, 0, "probe script without the hook:\n{text}");
    let failures = check_all(&parse(&text), untrusted);
    assert!(failures.is_empty(), "without the hook:\n{}", failures.join("\n"));

    let before = Snapshot::take(&rootfs);
    let hooked = runc_bundle_with(bin(), work.path(), &rootfs, &args, Some(&config), spec_edit);
    let id = format!("cacerts-trust-hook-{pid}");
    let (code, text) = runc_run(&runc_root, &hooked, &id);
    let log = std::fs::read_to_string(work.path().join("hook.log")).unwrap_or_default();
    assert_eq!(code, 0, "probe script with the hook:\n{text}\nhook log:\n{log}");
    let failures = check_all(&parse(&text), trusted);
    assert!(
        failures.is_empty(),
        "with the hook:\n{}\nhook log:\n{log}",
        failures.join("\n")
    );
    assert!(log.contains(&format!("stage=createRuntime id={id} ")), "{log}");
    assert!(log.contains(&format!("stage=poststop id={id} ")), "{log}");
    assert!(!log.contains("result=error"), "{log}");

    before.assert_same(&Snapshot::take(&rootfs), "rootfs after the hooked run");
    let left: Vec<_> = std::fs::read_dir(work.path().join("state"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "state left behind: {left:?}");
}
