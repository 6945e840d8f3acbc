//! The shipped registration files agree with the binary: the hooks.d files podman and CRI-O read
//! name the path the packages install to and a stage the binary accepts, and parse as
//! oci-hooks(5) wants them.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cacerts-hook");
const INSTALLED: &str = "/usr/libexec/oci/hooks.d/cacerts-hook";

fn packaging() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging"))
}

#[test]
fn hooks_d_files_name_the_installed_binary_and_one_stage_each() {
    let mut stages = Vec::new();
    for entry in std::fs::read_dir(packaging().join("hooks.d")).unwrap() {
        let path = entry.unwrap().path();
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let ctx = path.display();
        assert_eq!(json["version"], "1.0.0", "{ctx}");
        assert_eq!(json["hook"]["path"], INSTALLED, "{ctx}");
        assert_eq!(json["when"]["always"], true, "{ctx}");
        assert!(
            json["hook"]["timeout"].as_u64().is_some_and(|t| t > 0),
            "{ctx}: a timeout"
        );
        let stage = json["stages"][0].as_str().unwrap().to_owned();
        assert_eq!(json["stages"].as_array().unwrap().len(), 1, "{ctx}");
        let args = json["hook"]["args"].as_array().unwrap();
        assert_eq!(args.last().unwrap(), &serde_json::Value::from(stage.clone()), "{ctx}");
        // The binary accepts the stage as its subcommand.
        let help = Command::new(BIN).arg(&stage).arg("--help").output().unwrap();
        assert!(help.status.success(), "{ctx}: `{stage} --help` fails");
        stages.push(stage);
    }
    stages.sort();
    assert_eq!(stages, ["createRuntime", "poststop"]);
}

#[test]
fn cdi_spec_hooks_point_at_the_installed_binary_by_default() {
    let out = Command::new(BIN).arg("cdi").output().unwrap();
    assert!(out.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hooks = spec["devices"][0]["containerEdits"]["hooks"].as_array().unwrap();
    assert_eq!(spec["devices"][0]["name"], "default");
    let mut names: Vec<&str> = hooks.iter().map(|h| h["hookName"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["createRuntime", "poststop"]);
    assert!(hooks.iter().all(|h| h["path"] == INSTALLED), "{spec}");
    assert!(hooks.iter().all(|h| h["timeout"] == 10), "{spec}");
}

#[test]
fn deb_and_rpm_install_the_same_files() {
    let cargo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let rpm = std::fs::read_to_string(packaging().join("rpm/cacerts-hook.spec")).unwrap();
    for file in [
        "cacerts-hook-createruntime.json",
        "cacerts-hook-poststop.json",
        "cacerts-hook.conf",
        "config.toml",
    ] {
        assert!(cargo.contains(file), "cargo-deb assets miss {file}");
        assert!(rpm.contains(file), "the RPM spec misses {file}");
    }
    assert!(cargo.contains("usr/libexec/oci/hooks.d/cacerts-hook"));
    assert!(
        cargo.contains("etc/cacerts-hook/certs.d/"),
        "the deb makes the certificate directory"
    );
    assert!(
        rpm.contains("%{_sysconfdir}/cacerts-hook/certs.d"),
        "the RPM makes the certificate directory"
    );
    assert!(rpm.contains("%{_libexecdir}/oci/hooks.d/cacerts-hook"));
}

#[test]
fn containerd_base_spec_is_containerd_default_spec_plus_our_hooks() {
    let out = Command::new(packaging().join("containerd/make-base-spec"))
        .arg(BIN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // A whole spec (the CRI plugin starts every container from it), from containerd's own default.
    let default: serde_json::Value =
        serde_json::from_slice(&Command::new("ctr").args(["oci", "spec"]).output().unwrap().stdout).unwrap();
    for key in ["ociVersion", "process", "root", "mounts", "linux"] {
        assert_eq!(spec[key], default[key], "{key} is containerd's default");
    }
    for stage in ["createRuntime", "poststop"] {
        let hooks = spec["hooks"][stage].as_array().unwrap();
        assert_eq!(hooks.len(), 1, "{stage}");
        assert_eq!(hooks[0]["path"], BIN);
        assert_eq!(hooks[0]["args"], serde_json::json!(["cacerts-hook", stage]));
        assert_eq!(hooks[0]["timeout"], 10);
        // The binary accepts what the spec passes it.
        let help = Command::new(BIN).arg(stage).arg("--help").output().unwrap();
        assert!(help.status.success(), "{stage}");
    }
}

/// The hook runs at every container start: it must not pay for loading and binding OpenSSL's
/// shared libraries (once a third of its process time). Its ELF dynamic section names what the
/// loader maps; neither libssl nor libcrypto may be among it.
#[test]
fn the_binary_does_not_load_openssl() {
    let out = Command::new("readelf")
        .args(["--dynamic", "--wide", BIN])
        .output()
        .expect("readelf (binutils) must be installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let needed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(
        needed.iter().any(|n| n.starts_with("libc.so")),
        "readelf output read: {text}"
    );
    for lib in &needed {
        assert!(
            !lib.starts_with("libssl") && !lib.starts_with("libcrypto"),
            "{BIN} needs {lib}: {needed:?}"
        );
    }
}

/// The binary that ships (`scripts/build-release`): `CACERTS_HOOK_BIN` when set, as `scripts/test`
/// does after building it, else built here (in its own target directory, so it never waits on
/// this test run's lock).
fn shipped_binary() -> std::path::PathBuf {
    if let Some(bin) = std::env::var_os("CACERTS_HOOK_BIN") {
        return bin.into();
    }
    let script = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/build-release"));
    let out = Command::new(script).output().expect("run scripts/build-release");
    assert!(
        out.status.success(),
        "scripts/build-release failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().into()
}

/// Statically linked (no loader to pay for at each of the two starts per container), and still
/// position-independent: the kernel loads it at a random address, as it would a dynamic one.
#[test]
fn the_shipped_binary_is_static_and_runs() {
    let bin = shipped_binary();
    let out = Command::new("readelf")
        .args(["--file-header", "--dynamic", "--program-headers", "--wide"])
        .arg(&bin)
        .output()
        .expect("readelf (binutils) must be installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("LOAD"), "readelf output read: {text}");
    assert!(
        !text.contains("(NEEDED)"),
        "{} needs shared libraries:\n{text}",
        bin.display()
    );
    assert!(
        !text.contains("INTERP"),
        "{} asks for a dynamic loader:\n{text}",
        bin.display()
    );
    let kind = text.lines().find(|l| l.trim_start().starts_with("Type:"));
    assert!(
        kind.is_some_and(|l| l.contains("DYN")),
        "{} is not position-independent (static-pie): {kind:?}",
        bin.display()
    );
    let out = Command::new(&bin).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("cacerts-hook "));
}
