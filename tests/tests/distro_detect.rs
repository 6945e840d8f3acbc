//! Detection of every family: os-release IDs and quoting, ID_LIKE, marker files, store layouts,
//! and images that are hostile or have nothing at all.

use std::path::PathBuf;

use cacerts_core::distro::{detect, Detection, Evidence, Family};
use cacerts_core::ContainerRoot;
use cacerts_testkit::fixtures::{self, Base};
use cacerts_testkit::{build, Node};

fn detect_nodes(nodes: &[Node]) -> Detection {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), nodes);
    detect(&ContainerRoot::open(tmp.path()).unwrap()).unwrap()
}

fn os(text: &str) -> Vec<Node> {
    vec![Node::file("etc/os-release", text)]
}

#[test]
fn fixtures_are_recognised() {
    let base = Base::new();
    type Case<'a> = (&'a str, Vec<Node>, Family, Option<&'a str>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "debian base",
            fixtures::debian_base(),
            Family::Debian,
            Some("debian"),
            Some("12"),
        ),
        (
            "debian",
            fixtures::debian(&base),
            Family::Debian,
            Some("debian"),
            Some("12"),
        ),
        (
            "distroless",
            fixtures::distroless(&base),
            Family::Debian,
            Some("debian"),
            Some("12"),
        ),
        (
            "alpine bundle",
            fixtures::alpine_bundle(&base),
            Family::Alpine,
            Some("alpine"),
            Some("3.20.3"),
        ),
        (
            "alpine full",
            fixtures::alpine_full(&base),
            Family::Alpine,
            Some("alpine"),
            Some("3.20.3"),
        ),
        (
            "wolfi",
            fixtures::wolfi(&base),
            Family::Alpine,
            Some("wolfi"),
            Some("20230201"),
        ),
        ("ubi", fixtures::ubi(&base), Family::Rhel, Some("rhel"), Some("9.4")),
        (
            "ubi-micro",
            fixtures::ubi_micro(),
            Family::Rhel,
            Some("rhel"),
            Some("9.4"),
        ),
        (
            "suse",
            fixtures::suse(&base),
            Family::Suse,
            Some("opensuse-leap"),
            Some("15.6"),
        ),
        ("arch", fixtures::arch(&base), Family::Arch, Some("arch"), None),
        ("busybox", fixtures::busybox(), Family::None, None, None),
        ("scratch", fixtures::scratch(), Family::None, None, None),
    ];
    for (what, nodes, family, id, version) in cases {
        let d = detect_nodes(&nodes);
        assert_eq!(d.family, family, "{what}: {d:?}");
        assert_eq!(d.id.as_deref(), id, "{what}");
        assert_eq!(d.version.as_deref(), version, "{what}");
    }
}

#[test]
fn stores_found_are_reported() {
    let base = Base::new();
    let d = detect_nodes(&fixtures::ubi(&base));
    for p in [
        "/etc/pki/ca-trust/source/anchors",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/pki/ca-trust/extracted/pem/directory-hash",
        "/etc/pki/ca-trust/extracted/openssl/ca-bundle.trust.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        assert!(d.stores.contains(&PathBuf::from(p)), "{p} in {:?}", d.stores);
    }
    assert_eq!(d.evidence, Evidence::Id("rhel".into()));
    assert_eq!(d.id_like, vec!["fedora"]);
    assert_eq!(d.os_release, Some(PathBuf::from("/etc/os-release")));
    assert!(detect_nodes(&fixtures::ubi_micro()).stores.is_empty());

    // The CLI prints this.
    let json = serde_json::to_string(&d).unwrap();
    assert!(json.contains("\"family\":\"rhel\""), "{json}");
    assert!(
        json.contains("\"evidence\":{\"by\":\"id\",\"value\":\"rhel\"}"),
        "{json}"
    );
}

#[test]
fn ids_quoting_and_id_like() {
    let cases: &[(&str, Family, Option<&str>)] = &[
        ("ID=ubuntu\nVERSION_ID=\"24.04\"\n", Family::Debian, Some("24.04")),
        ("ID='rocky'\nVERSION_ID='9.3'\n", Family::Rhel, Some("9.3")),
        ("ID=\"almalinux\"\n", Family::Rhel, None),
        ("ID=ol\nVERSION_ID=\"8.9\"\n", Family::Rhel, Some("8.9")),
        ("ID=amzn\nVERSION_ID=\"2023\"\n", Family::Rhel, Some("2023")),
        ("ID=fedora\nVERSION_ID=40\n", Family::Rhel, Some("40")),
        ("ID=\"centos\"\n", Family::Rhel, None),
        (
            "ID=\"opensuse-tumbleweed\"\nVERSION_ID=\"20240101\"\n",
            Family::Suse,
            Some("20240101"),
        ),
        ("ID=\"sles\"\nVERSION_ID=\"15.5\"\n", Family::Suse, Some("15.5")),
        ("ID=manjaro\nID_LIKE=arch\n", Family::Arch, None),
        ("ID=endeavouros\n", Family::Arch, None),
        ("ID=postmarketos\n", Family::Alpine, None),
        ("ID=wolfi\n", Family::Alpine, None),
        ("ID=distroless\n", Family::Debian, None),
        // ID_LIKE decides for derivatives, the first known word wins.
        ("ID=pop\nID_LIKE=\"ubuntu debian\"\n", Family::Debian, None),
        ("ID=linuxmint\nID_LIKE=ubuntu\n", Family::Debian, None),
        ("ID=\"navy\"\nID_LIKE=\"rhel centos fedora\"\n", Family::Rhel, None),
        ("ID=\"myos\"\nID_LIKE='suse opensuse'\n", Family::Suse, None),
        ("ID=steamos\nID_LIKE=arch\n", Family::Arch, None),
        // Escapes (inside double quotes a backslash escapes only `"`, `\`, `$` and backquote),
        // comments, upper case, no line continuation.
        ("# comment\n  ID=De\\bian\n", Family::Debian, None),
        ("ID=\"fe\\dora\"\n", Family::None, None),
        ("ID=UBUNTU\n", Family::Debian, None),
        ("NAME=x\nID=deb\\\nian\n", Family::None, None),
    ];
    for (text, family, version) in cases {
        let d = detect_nodes(&os(text));
        assert_eq!(d.family, *family, "{text:?}: {d:?}");
        assert_eq!(d.version.as_deref(), *version, "{text:?}");
    }
    let d = detect_nodes(&os("ID=pop\nID_LIKE=\"ubuntu debian\"\n"));
    assert_eq!(d.evidence, Evidence::IdLike("ubuntu".into()));
    assert_eq!(d.id.as_deref(), Some("pop"));
}

#[test]
fn usr_lib_os_release_is_the_fallback() {
    let d = detect_nodes(&[Node::file("usr/lib/os-release", "ID=alpine\nVERSION_ID=3.19.1\n")]);
    assert_eq!(d.family, Family::Alpine);
    assert_eq!(d.os_release, Some(PathBuf::from("/usr/lib/os-release")));
    // /etc wins over /usr/lib.
    let d = detect_nodes(&[
        Node::file("usr/lib/os-release", "ID=alpine\n"),
        Node::file("etc/os-release", "ID=fedora\n"),
    ]);
    assert_eq!(d.family, Family::Rhel);
}

#[test]
fn markers_without_os_release() {
    let cases = [
        ("etc/alpine-release", Family::Alpine),
        ("etc/debian_version", Family::Debian),
        ("etc/redhat-release", Family::Rhel),
        ("etc/system-release", Family::Rhel),
        ("etc/SuSE-release", Family::Suse),
        ("etc/arch-release", Family::Arch),
    ];
    for (marker, family) in cases {
        let d = detect_nodes(&[Node::file(marker, "x\n")]);
        assert_eq!(d.family, family, "{marker}");
        assert_eq!(d.evidence, Evidence::Marker(PathBuf::from("/").join(marker)));
    }
}

#[test]
fn store_layout_without_os_release_or_markers() {
    let pem = cacerts_testkit::ca::TestCa::new("Layout Root").pem;
    let cases = [
        ("etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", Family::Rhel),
        ("var/lib/ca-certificates/ca-bundle.pem", Family::Suse),
        ("etc/ca-certificates/extracted/tls-ca-bundle.pem", Family::Arch),
        ("usr/share/ca-certificates/mozilla/X.crt", Family::Debian),
        // Only a bundle of Go's list: an unknown distribution.
        ("etc/ssl/certs/ca-certificates.crt", Family::Generic),
        ("etc/pki/tls/cacert.pem", Family::Generic),
    ];
    for (file, family) in cases {
        let d = detect_nodes(&[Node::file(file, &pem)]);
        assert_eq!(d.family, family, "{file}: {d:?}");
    }
    // Unknown ID, no ID_LIKE, a bundle: generic; nothing: none.
    let mut nodes = os("ID=gentoo\n");
    nodes.push(Node::file("etc/ssl/cert.pem", &pem));
    let d = detect_nodes(&nodes);
    assert_eq!(d.family, Family::Generic);
    assert_eq!(d.id.as_deref(), Some("gentoo"));
    assert_eq!(d.stores, vec![PathBuf::from("/etc/ssl/cert.pem")]);
    assert_eq!(detect_nodes(&os("ID=gentoo\n")).family, Family::None);
}

#[test]
fn hostile_os_release_is_tolerated() {
    let pem = cacerts_testkit::ca::TestCa::new("Hostile Root").pem;
    let bundle = Node::file("etc/ssl/certs/ca-certificates.crt", &pem);
    // Binary garbage.
    let d = detect_nodes(&[
        Node::file("etc/os-release", [0u8, 0xff, 0xfe, b'=', b'\n', 0x80]),
        bundle.clone(),
    ]);
    assert_eq!(d.family, Family::Generic);
    // A FIFO: not opened for reading (would hang), the fallback is read instead.
    let d = detect_nodes(&[
        Node::Fifo("etc/os-release".into()),
        Node::file("usr/lib/os-release", "ID=alpine\n"),
    ]);
    assert_eq!(d.family, Family::Alpine);
    // A device, a huge sparse file, a directory: ignored.
    for node in [
        Node::CharDevice("etc/os-release".into(), 1, 5),
        Node::Sparse("etc/os-release".into(), 1 << 30),
        Node::dir("etc/os-release"),
    ] {
        let d = detect_nodes(&[node.clone(), bundle.clone()]);
        assert_eq!(d.family, Family::Generic, "{node:?}");
    }
    // A symlink that climbs out resolves inside the root.
    let d = detect_nodes(&[
        Node::symlink("etc/os-release", "../../../../../../usr/lib/os-release"),
        Node::file("usr/lib/os-release", "ID=arch\n"),
    ]);
    assert_eq!(d.family, Family::Arch);
    // A bundle of garbage still names a generic store.
    let d = detect_nodes(&[Node::file("etc/ssl/cert.pem", "not a certificate")]);
    assert_eq!(d.family, Family::Generic);
}

#[test]
fn loops_and_escapes_in_probed_paths_are_absent_not_errors() {
    let d = detect_nodes(&[
        Node::symlink("etc/os-release", "os-release"),
        Node::symlink("etc/alpine-release", "/etc/alpine-release"),
        Node::symlink("etc/pki", "/proc/self/root/etc/pki"),
        Node::symlink("etc/ssl/certs/ca-certificates.crt", "loop"),
        Node::symlink("etc/ssl/certs/loop", "ca-certificates.crt"),
    ]);
    assert_eq!(d.family, Family::None);
    assert!(d.stores.is_empty());
}
