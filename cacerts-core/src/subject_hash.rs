//! OpenSSL's subject hashes, computed without OpenSSL: the `HHHHHHHH` of the `HHHHHHHH.N` links
//! in OpenSSL hash directories (`openssl rehash`, `c_rehash`, p11-kit's extracts), by which
//! OpenSSL finds an issuer's certificate.
//!
//! [`subject_hash`] is OpenSSL's `X509_NAME_hash` (1.0 and later): the first four bytes of the
//! SHA-1 of the name's [canonical encoding](canonical), read as a little-endian number.
//! [`subject_hash_old`] is `X509_NAME_hash_old` (before 1.0, still linked by p11-kit): the same
//! over the MD5 of the name's DER as it is.

use md5::Md5;
use sha1::{Digest, Sha1};

use crate::der::{self, Tlv};

const UTF8_STRING: u8 = 0x0c;
const NUMERIC_STRING: u8 = 0x12;
const PRINTABLE_STRING: u8 = 0x13;
const T61_STRING: u8 = 0x14;
const IA5_STRING: u8 = 0x16;
const VISIBLE_STRING: u8 = 0x1a;
const UNIVERSAL_STRING: u8 = 0x1c;
const BMP_STRING: u8 = 0x1e;

/// A name OpenSSL would not read: not DER, or a string value that is not valid in its type (a
/// BMPString of odd length, a UTF8String that is not UTF-8, a code point that is no character).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed distinguished name: {0}")]
pub struct MalformedName(&'static str);

/// `X509_NAME_hash` of the DER-encoded `Name` (a SEQUENCE, as found in a certificate).
pub fn subject_hash(name_der: &[u8]) -> Result<u32, MalformedName> {
    let digest = Sha1::digest(canonical(name_der)?);
    Ok(u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]))
}

/// `X509_NAME_hash_old` of the DER-encoded `Name`: no canonical form, the bytes as they are.
pub fn subject_hash_old(name_der: &[u8]) -> u32 {
    let digest = Md5::digest(name_der);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// OpenSSL's canonical encoding of a name, which two names that OpenSSL deems equal share: the
/// DER of each relative distinguished name as a SET, concatenated without the outer SEQUENCE. In
/// each entry, a value of one of the string types (UTF8String, BMPString, UniversalString,
/// PrintableString, T61String, IA5String, VisibleString) becomes a UTF8String holding the
/// characters (T61String read as Latin-1) with ASCII white space trimmed at both ends, inner runs
/// of it collapsed to one space, and ASCII letters lower-cased; other values are kept. The
/// entries of a multi-valued RDN are sorted by their encodings, as DER sorts a SET OF. An empty
/// name has an empty encoding.
pub fn canonical(name_der: &[u8]) -> Result<Vec<u8>, MalformedName> {
    let (name, rest) = der::split(name_der).ok_or(NOT_DER)?;
    if name.tag != der::SEQUENCE || !rest.is_empty() {
        return Err(MalformedName("not a SEQUENCE"));
    }
    let rdns = der::elements(name.content).ok_or(NOT_DER)?;
    // Buffers the size of the name, kept from one entry to the next: allocated once, unless a
    // value grows past them in UTF-8 (Latin-1 and BMP characters take more bytes there).
    let room = name.content.len() + 16;
    let mut out = Vec::with_capacity(room);
    let mut scratch = Scratch {
        text: String::with_capacity(room),
        folded: Vec::with_capacity(room),
    };
    let mut entries: Vec<Vec<u8>> = Vec::new();
    for rdn in rdns {
        if rdn.tag != der::SET {
            return Err(MalformedName("a relative name is not a SET"));
        }
        let mut count = 0;
        let mut items = rdn.content;
        while !items.is_empty() {
            let (entry, rest) = der::split(items).ok_or(NOT_DER)?;
            items = rest;
            if count == entries.len() {
                entries.push(Vec::with_capacity(room));
            }
            entries[count].clear();
            canonical_entry(entry, &mut scratch, &mut entries[count])?;
            count += 1;
        }
        // OpenSSL keeps entries, not sets: a set without entries leaves no trace.
        if count == 0 {
            continue;
        }
        let entries = &mut entries[..count];
        entries.sort();
        der::push_header(&mut out, der::SET, entries.iter().map(Vec::len).sum());
        for entry in entries.iter() {
            out.extend_from_slice(entry);
        }
    }
    Ok(out)
}

const NOT_DER: MalformedName = MalformedName("not DER");

/// Room for one entry's value while it is made canonical.
struct Scratch {
    text: String,
    folded: Vec<u8>,
}

/// One `AttributeTypeAndValue`, canonical, appended to `out`.
fn canonical_entry(entry: Tlv<'_>, scratch: &mut Scratch, out: &mut Vec<u8>) -> Result<(), MalformedName> {
    let shape = MalformedName("an entry is not SEQUENCE { OID, value }");
    if entry.tag != der::SEQUENCE {
        return Err(shape);
    }
    let [oid, value] = der::elements(entry.content).ok_or(NOT_DER)?[..] else {
        return Err(shape);
    };
    if oid.tag != der::OID {
        return Err(shape);
    }
    // The value: a string as UTF-8, folded; another primitive with its length in DER's
    // shortest form; anything constructed as it is.
    let (tag, content) = if is_canonicalised(value.tag) {
        scratch.text.clear();
        push_string_value(value.tag, value.content, &mut scratch.text)
            .ok_or(MalformedName("a string value is not valid in its type"))?;
        scratch.folded.clear();
        fold_into(scratch.text.as_bytes(), &mut scratch.folded);
        (Some(UTF8_STRING), &scratch.folded[..])
    } else if value.tag & 0x20 == 0 {
        (Some(value.tag), value.content)
    } else {
        (None, value.raw)
    };
    let value_len = match tag {
        Some(_) => der::header_len(content.len()) + content.len(),
        None => content.len(),
    };
    let oid_len = der::header_len(oid.content.len()) + oid.content.len();
    der::push_header(out, der::SEQUENCE, oid_len + value_len);
    der::push_header(out, der::OID, oid.content.len());
    out.extend_from_slice(oid.content);
    if let Some(tag) = tag {
        der::push_header(out, tag, content.len());
    }
    out.extend_from_slice(content);
    Ok(())
}

/// The string types OpenSSL converts to canonical UTF-8 (NumericString is not one of them).
fn is_canonicalised(tag: u8) -> bool {
    matches!(
        tag,
        UTF8_STRING | BMP_STRING | UNIVERSAL_STRING | PRINTABLE_STRING | T61_STRING | IA5_STRING | VISIBLE_STRING
    )
}

/// The characters of a string value as OpenSSL's `ASN1_STRING_to_UTF8` reads them: UTF8String
/// as UTF-8, BMPString as UCS-2 and UniversalString as UCS-4 (both big-endian), the one-byte
/// types (PrintableString, T61String, IA5String, VisibleString, NumericString) as Latin-1.
/// `None` for other types and for values invalid in their type.
pub(crate) fn string_value(tag: u8, content: &[u8]) -> Option<String> {
    let mut text = String::new();
    push_string_value(tag, content, &mut text)?;
    Some(text)
}

/// [`string_value`], appended to `out`; `None` (and `out` partly written) when invalid.
fn push_string_value(tag: u8, content: &[u8], out: &mut String) -> Option<()> {
    match tag {
        UTF8_STRING => out.push_str(std::str::from_utf8(content).ok()?),
        PRINTABLE_STRING | T61_STRING | IA5_STRING | VISIBLE_STRING | NUMERIC_STRING => {
            out.extend(content.iter().map(|b| char::from(*b)))
        }
        BMP_STRING if content.len() % 2 == 0 => {
            for c in content.chunks(2) {
                out.push(char::from_u32(u32::from(u16::from_be_bytes([c[0], c[1]])))?);
            }
        }
        UNIVERSAL_STRING if content.len() % 4 == 0 => {
            for c in content.chunks(4) {
                out.push(char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))?);
            }
        }
        _ => return None,
    }
    Some(())
}

/// ASCII white space (space, tab, LF, VT, FF, CR) trimmed and inner runs of it made one space,
/// ASCII letters lower-cased; bytes of multi-byte characters are left alone.
#[cfg(test)]
fn fold(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    fold_into(text, &mut out);
    out
}

/// [`fold`], appended to `out`.
fn fold_into(text: &[u8], out: &mut Vec<u8>) {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = text.iter().position(|b| !is_space(b)).unwrap_or(text.len());
    let end = text.iter().rposition(|b| !is_space(b)).map_or(start, |i| i + 1);
    out.reserve(end - start);
    let mut in_space = false;
    for b in &text[start..end] {
        if is_space(b) {
            if !in_space {
                out.push(b' ');
            }
            in_space = true;
        } else {
            out.push(b.to_ascii_lowercase());
            in_space = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding() {
        assert_eq!(fold(b"  Foo \t\r\n BAR  "), b"foo bar");
        assert_eq!(fold(b" \t "), b"");
        assert_eq!(fold(b""), b"");
        assert_eq!(fold("Zürich  ÅB".as_bytes()), "zürich Åb".as_bytes());
        // A no-break space (U+00A0, C2 A0 in UTF-8) is not ASCII white space.
        assert_eq!(fold("\u{a0}X\u{a0}".as_bytes()), "\u{a0}x\u{a0}".as_bytes());
    }

    #[test]
    fn string_types() {
        assert_eq!(string_value(T61_STRING, b"M\xfcller").as_deref(), Some("Müller"));
        assert_eq!(string_value(BMP_STRING, &[0, b'A', 0x00, 0xe9]).as_deref(), Some("Aé"));
        assert_eq!(string_value(BMP_STRING, &[0, b'A', 0]), None, "odd length");
        assert_eq!(
            string_value(BMP_STRING, &[0xd8, 0x3d, 0xde, 0x00]),
            None,
            "UCS-2 has no surrogates"
        );
        assert_eq!(
            string_value(UNIVERSAL_STRING, &[0, 1, 0xf6, 0x00]).as_deref(),
            Some("\u{1f600}")
        );
        assert_eq!(
            string_value(UNIVERSAL_STRING, &[0, 0x11, 0, 0]),
            None,
            "beyond U+10FFFF"
        );
        assert_eq!(string_value(UTF8_STRING, b"\xc0\x80"), None, "overlong");
        assert_eq!(string_value(0x04, b"x"), None, "OCTET STRING is no string type");
    }

    #[test]
    fn the_empty_name_hashes_the_empty_string() {
        assert_eq!(canonical(&[0x30, 0x00]).unwrap(), b"");
        // SHA-1("") = da39a3ee...
        assert_eq!(subject_hash(&[0x30, 0x00]).unwrap(), 0xeea339da);
    }

    #[test]
    fn canonical_form_of_a_name() {
        // SEQUENCE { SET { SEQUENCE { 2.5.4.3, PrintableString "  Ab  C " } } }
        let atv = der::encode(
            der::SEQUENCE,
            &[
                der::encode(der::OID, &[0x55, 0x04, 0x03]),
                der::encode(PRINTABLE_STRING, b"  Ab  C "),
            ]
            .concat(),
        );
        let name = der::encode(der::SEQUENCE, &der::encode(der::SET, &atv));
        let want_atv = der::encode(
            der::SEQUENCE,
            &[
                der::encode(der::OID, &[0x55, 0x04, 0x03]),
                der::encode(UTF8_STRING, b"ab c"),
            ]
            .concat(),
        );
        assert_eq!(canonical(&name).unwrap(), der::encode(der::SET, &want_atv));
        // Trailing bytes, a SET for the name, an RDN that is not a SET: refused.
        assert!(canonical(&[name.clone(), vec![0]].concat()).is_err());
        assert!(canonical(&der::encode(der::SET, &der::encode(der::SET, &atv))).is_err());
        assert!(canonical(&der::encode(der::SEQUENCE, &der::encode(der::SEQUENCE, &atv))).is_err());
        let bad = der::encode(
            der::SEQUENCE,
            &[
                der::encode(der::OID, &[0x55, 0x04, 0x03]),
                der::encode(BMP_STRING, b"abc"),
            ]
            .concat(),
        );
        assert!(subject_hash(&der::encode(der::SEQUENCE, &der::encode(der::SET, &bad))).is_err());
    }
}
