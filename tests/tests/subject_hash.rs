//! The subject hashes our `HHHHHHHH.N` links are named by are the ones the real OpenSSL computes
//! (`openssl x509 -subject_hash` and `-subject_hash_old`): for every root of the host's CA
//! bundle, and for names that only hash right through OpenSSL's canonical form (case, white
//! space, every string type, multi-valued RDNs, empty values).

use std::path::Path;

use cacerts_core::certs;
use cacerts_core::subject_hash::{subject_hash, subject_hash_old};
use cacerts_testkit::ca::{build_ca, openssl_cli};
use openssl::asn1::Asn1Type;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Name, X509NameBuilder, X509};

const HOST_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What the `openssl` command prints for the certificate in `file`: (`-subject_hash`,
/// `-subject_hash_old`).
fn cli_hashes(file: &Path) -> (u32, u32) {
    let out = openssl_cli(&["x509", "-noout", "-subject_hash", "-subject_hash_old", "-in"], file);
    let lines: Vec<u32> = out
        .lines()
        .map(|l| u32::from_str_radix(l.trim(), 16).unwrap_or_else(|e| panic!("{out:?}: {e}")))
        .collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    (lines[0], lines[1])
}

/// Our hashes of `x`'s subject, read from its DER.
fn our_hashes(x: &X509) -> (u32, u32) {
    let name = x.subject_name().to_der().unwrap();
    let hash = subject_hash(&name).unwrap_or_else(|e| panic!("{e}: {}", hex::encode(&name)));
    (hash, subject_hash_old(&name))
}

#[test]
fn every_root_of_the_host_bundle() {
    let bundle = std::fs::read(HOST_BUNDLE).expect("the host's CA bundle (package ca-certificates)");
    let roots = X509::stack_from_pem(&bundle).unwrap();
    assert!(roots.len() > 100, "only {} certificates in {HOST_BUNDLE}", roots.len());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("root.pem");
    let mut expected = std::collections::HashMap::new();
    for x in &roots {
        std::fs::write(&file, x.to_pem().unwrap()).unwrap();
        let cli = cli_hashes(&file);
        assert_eq!(our_hashes(x), cli, "{:?}", x.subject_name());
        expected.insert(x.to_der().unwrap(), cli.0);
    }

    // And through loading: every root of the bundle is read, and gets the same hash.
    let loaded = certs::load(&[HOST_BUNDLE.into()]);
    for s in &loaded.skipped {
        assert!(s.reason.contains("expired"), "only expired roots are left out: {s}");
    }
    assert_eq!(loaded.certs.len() + loaded.skipped.len(), roots.len());
    for c in &loaded.certs {
        assert_eq!(Some(&c.subject_hash), expected.get(&c.der), "{}", c.subject);
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n @ 0..=0x7f => out.push(n as u8),
        n @ 0x80..=0xff => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

// Attribute types (OID contents) and string tags.
const CN: &[u8] = &[0x55, 0x04, 0x03];
const C: &[u8] = &[0x55, 0x04, 0x06];
const L: &[u8] = &[0x55, 0x04, 0x07];
const O: &[u8] = &[0x55, 0x04, 0x0a];
const OU: &[u8] = &[0x55, 0x04, 0x0b];
const SERIAL: &[u8] = &[0x55, 0x04, 0x05];
const DC: &[u8] = &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19];
const UTF8: u8 = 0x0c;
const NUMERIC: u8 = 0x12;
const PRINTABLE: u8 = 0x13;
const T61: u8 = 0x14;
const IA5: u8 = 0x16;
const UNIVERSAL: u8 = 0x1c;
const BMP: u8 = 0x1e;

/// One entry of a name: attribute type, string tag, contents.
struct E(&'static [u8], u8, Vec<u8>);

fn e(oid: &'static [u8], tag: u8, value: impl AsRef<[u8]>) -> E {
    E(oid, tag, value.as_ref().to_vec())
}

/// A name's DER, written out by hand: each inner slice is one RDN (a SET, its entries in the
/// order given, sorted or not).
fn name(rdns: &[&[E]]) -> Vec<u8> {
    let sets: Vec<u8> = rdns
        .iter()
        .flat_map(|rdn| {
            let entries: Vec<u8> = rdn
                .iter()
                .flat_map(|E(oid, tag, value)| tlv(0x30, &[tlv(0x06, oid), tlv(*tag, value)].concat()))
                .collect();
            tlv(0x31, &entries)
        })
        .collect();
    tlv(0x30, &sets)
}

fn bmp(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

fn ucs4(s: &str) -> Vec<u8> {
    s.chars().flat_map(|c| u32::from(c).to_be_bytes()).collect()
}

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// The names to check, by label: through OpenSSL's name builder with explicit string types, and
/// written by hand where the builder cannot (multi-valued RDNs, raw Latin-1, BMP and UCS-4).
/// (No VisibleString: OpenSSL refuses a certificate with one in a name.)
fn names() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();

    let mut b = X509NameBuilder::new().unwrap();
    b.append_entry_by_nid_with_type(Nid::COUNTRYNAME, "De", Asn1Type::PRINTABLESTRING)
        .unwrap();
    b.append_entry_by_nid_with_type(Nid::ORGANIZATIONNAME, "  Mixed   CASE  Org  ", Asn1Type::UTF8STRING)
        .unwrap();
    b.append_entry_by_nid_with_type(Nid::COMMONNAME, "Zürich  ÅB", Asn1Type::UTF8STRING)
        .unwrap();
    b.append_entry_by_text_with_type("emailAddress", "  PKI@Example.ORG ", Asn1Type::IA5STRING)
        .unwrap();
    b.append_entry_by_text_with_type("DC", "Example", Asn1Type::IA5STRING)
        .unwrap();
    b.append_entry_by_text_with_type("DC", "COM", Asn1Type::IA5STRING)
        .unwrap();
    out.push(("builder: types, case, spaces, UTF-8", b.build().to_der().unwrap()));

    let mut b = X509NameBuilder::new().unwrap();
    b.append_entry_by_nid_with_type(Nid::COMMONNAME, "\tTabbed\t\tName \r\n", Asn1Type::PRINTABLESTRING)
        .unwrap();
    b.append_entry_by_nid_with_type(
        Nid::ORGANIZATIONALUNITNAME,
        "\u{b}\u{c}VT  FF\u{c}",
        Asn1Type::T61STRING,
    )
    .unwrap();
    out.push(("builder: tabs and control white space", b.build().to_der().unwrap()));

    let mut b = X509NameBuilder::new().unwrap();
    b.append_entry_by_nid_with_type(Nid::COMMONNAME, "\0 \0M\0i\0X\0 \0 \0e\0D\0 ", Asn1Type::BMPSTRING)
        .unwrap();
    out.push(("builder: BMPString", b.build().to_der().unwrap()));

    out.push((
        "multi-valued RDNs, unsorted, one attribute twice in a set",
        name(&[
            &[e(C, PRINTABLE, b"DE")],
            &[e(O, UTF8, b"Zeta  Corp"), e(CN, UTF8, b"B Root"), e(OU, UTF8, b"x ")],
            &[e(OU, UTF8, b"  X"), e(OU, PRINTABLE, b"y"), e(OU, UTF8, b"X")],
            &[e(L, UTF8, b"Berlin")],
        ]),
    ));
    out.push((
        "the same attribute repeated in separate RDNs",
        name(&[
            &[e(CN, UTF8, b"Root")],
            &[e(CN, UTF8, b"ROOT ")],
            &[e(CN, PRINTABLE, b"root")],
        ]),
    ));
    out.push((
        "Latin-1 bytes in T61String and PrintableString",
        name(&[
            &[e(O, T61, b"M\xfcLLER  \xc5B  Gmbh")],
            &[e(CN, PRINTABLE, b"  Caf\xe9 \xa0 CA ")],
        ]),
    ));
    out.push((
        "BMPString and UniversalString beyond ASCII",
        name(&[
            &[e(O, BMP, bmp("  Zürich   ÅB  Straße "))],
            &[e(OU, UNIVERSAL, ucs4(" Émoji \u{1f600}  Unit "))],
            &[e(CN, BMP, bmp("\u{3000}Full\u{3000}Width\u{3000}"))],
        ]),
    ));
    out.push((
        "empty and blank values, types kept as they are",
        name(&[
            &[e(CN, PRINTABLE, b"   ")],
            &[e(O, UTF8, b"")],
            &[e(SERIAL, NUMERIC, b" 12  34 ")],
            &[e(DC, IA5, b"\t\t")],
            &[e(L, UTF8, b"Last")],
        ]),
    ));
    out.push(("an empty name", name(&[])));
    out
}

#[test]
fn generated_names_need_the_canonical_form() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    for (i, (label, der)) in names().into_iter().enumerate() {
        let subject = X509Name::from_der(&der).unwrap_or_else(|e| panic!("{label}: {e}"));
        let x = build_ca(&subject, &key, MessageDigest::sha256(), 30, false);
        assert_eq!(x.subject_name().to_der().unwrap(), der, "{label}: the name as written");
        let file = dir.path().join(format!("name-{i}.pem"));
        std::fs::write(&file, x.to_pem().unwrap()).unwrap();
        let cli = cli_hashes(&file);
        assert_eq!(our_hashes(&x), cli, "{label}: {}", hex::encode(&der));

        // Loading the file gives its certificate that hash too.
        let loaded = certs::load(std::slice::from_ref(&file));
        assert!(loaded.skipped.is_empty(), "{label}: {:?}", loaded.skipped);
        assert_eq!(loaded.certs[0].subject_hash, cli.0, "{label}");
    }
}

/// Names OpenSSL deems equal (case, white space, string type) share a hash; names it does not,
/// do not. Checked with the `openssl` command and with ours alike.
#[test]
fn names_equal_to_openssl_hash_alike() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let hashes = |names: &[Vec<u8>]| -> Vec<((u32, u32), (u32, u32))> {
        names
            .iter()
            .enumerate()
            .map(|(i, der)| {
                let x = build_ca(
                    &X509Name::from_der(der).unwrap(),
                    &key,
                    MessageDigest::sha256(),
                    30,
                    false,
                );
                let file = dir.path().join(format!("eq-{i}.pem"));
                std::fs::write(&file, x.to_pem().unwrap()).unwrap();
                (cli_hashes(&file), our_hashes(&x))
            })
            .collect()
    };
    let same = [
        name(&[&[e(CN, UTF8, b"corp root ca")], &[e(O, UTF8, b"acme")]]),
        name(&[&[e(CN, PRINTABLE, b"  Corp   ROOT\tCA ")], &[e(O, IA5, b"ACME")]]),
        name(&[&[e(CN, BMP, bmp("CORP ROOT CA"))], &[e(O, T61, b" Acme ")]]),
        name(&[&[e(CN, UNIVERSAL, ucs4("Corp Root  CA"))], &[e(O, UTF8, b"aCmE")]]),
    ];
    let got = hashes(&same);
    for (cli, ours) in &got {
        assert_eq!(cli, ours);
        assert_eq!(cli.0, got[0].0 .0, "OpenSSL deems these names equal");
    }
    assert!(
        got.iter().skip(1).all(|(cli, _)| cli.1 != got[0].0 .1),
        "the old hash does not fold"
    );

    let different = [
        name(&[&[e(CN, UTF8, b"corp root ca")]]),
        // Not white space to OpenSSL: a no-break space.
        name(&[&[e(CN, UTF8, "corp\u{a0}root ca".as_bytes())]]),
        // Non-ASCII letters are not folded.
        name(&[&[e(CN, UTF8, "ÄCME".as_bytes())]]),
        name(&[&[e(CN, UTF8, "äcme".as_bytes())]]),
        // NumericString is kept as it is.
        name(&[&[e(SERIAL, NUMERIC, b"1 2")]]),
        name(&[&[e(SERIAL, NUMERIC, b"1  2")]]),
        // Two RDNs are not one multi-valued RDN.
        name(&[&[e(CN, UTF8, b"a"), e(O, UTF8, b"b")]]),
        name(&[&[e(CN, UTF8, b"a")], &[e(O, UTF8, b"b")]]),
    ];
    let got = hashes(&different);
    let mut seen = std::collections::HashSet::new();
    for (cli, ours) in &got {
        assert_eq!(cli, ours);
        assert!(seen.insert(cli.0), "distinct names, distinct hashes: {got:x?}");
    }
}
