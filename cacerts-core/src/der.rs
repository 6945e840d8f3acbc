//! A minimal DER reader and writer, for the few structures looked into without a full parser:
//! the entries of a distinguished name, the shape of a private key.
//!
//! Single-byte tags and definite lengths of at most four bytes only; every length is checked
//! against the bytes that remain.

/// One element: its tag byte, its contents, and the whole encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    /// The identifier octet (class, constructed bit, tag number below 31).
    pub tag: u8,
    /// The contents octets.
    pub content: &'a [u8],
    /// Identifier, length and contents octets.
    pub raw: &'a [u8],
}

pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;
pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;

/// The first element of `input` and the bytes after it; `None` when `input` does not start with
/// an element this reader understands.
pub(crate) fn split(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *input.first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = input
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let raw = input.get(..end)?;
    Some((
        Tlv {
            tag,
            content: &raw[header..],
            raw,
        },
        &input[end..],
    ))
}

/// The elements `content` is made of, in order; `None` when any of them is malformed.
pub(crate) fn elements(mut content: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tlv, rest) = split(content)?;
        out.push(tlv);
        content = rest;
    }
    Some(out)
}

/// The DER encoding of an element with a single-byte `tag`.
pub(crate) fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    push_header(&mut out, tag, content.len());
    out.extend_from_slice(content);
    out
}

/// Appends to `out` the identifier and length octets of an element with a single-byte `tag` and
/// `len` bytes of contents.
pub(crate) fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// How many bytes [`push_header`] appends for `len` bytes of contents.
pub(crate) fn header_len(len: usize) -> usize {
    if len < 0x80 {
        2
    } else {
        2 + len.to_be_bytes().iter().skip_while(|b| **b == 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for n in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536, 1 << 20] {
            let content = vec![7u8; n];
            let enc = encode(OCTET_STRING, &content);
            assert_eq!(header_len(n), enc.len() - n);
            let (tlv, rest) = split(&enc).unwrap();
            assert_eq!(
                (tlv.tag, tlv.content, tlv.raw, rest),
                (OCTET_STRING, &content[..], &enc[..], &[][..])
            );
        }
    }

    #[test]
    fn malformed_elements_are_refused() {
        assert_eq!(split(&[]), None);
        assert_eq!(split(&[0x30]), None);
        assert_eq!(split(&[0x30, 0x80, 0, 0]), None, "indefinite length");
        assert_eq!(split(&[0x30, 0x85, 1, 0, 0, 0, 0]), None, "five length bytes");
        assert_eq!(
            split(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 0]),
            None,
            "longer than the input"
        );
        assert_eq!(split(&[0x1f, 0x81, 0x00, 0x00]), None, "multi-byte tag");
        assert_eq!(elements(&[0x05, 0x00, 0x04]), None);
        let two = elements(&[0x05, 0x00, 0x04, 0x01, 0xaa]).unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].content, &[0xaa]);
    }
}
