//! Finding the certificates in a PEM file without parsing them, from bytes in memory or fed in
//! chunks as a file is read, in memory bounded by the largest block, not the file.
//!
//! A block starts at a line `-----BEGIN <label>-----` and ends at the line
//! `-----END <label>-----` (leading and trailing ASCII white space, a carriage return included,
//! are ignored on both). Blocks labelled `CERTIFICATE`, `X509 CERTIFICATE` and
//! `TRUSTED CERTIFICATE` yield the first DER element of their decoded body (a trusted
//! certificate's trust settings follow it); other blocks, and blocks that do not decode, yield
//! nothing. A file without any certificate block is taken as one DER certificate.
//!
//! A block that decodes to something other than a certificate yields bytes no certificate of
//! ours hashes to, so fingerprints taken from these match DER-encoded certificates only. A
//! certificate in a BER encoding (which a full parser would re-encode) is not recognised; an
//! install then appends a duplicate, which is harmless.

use std::collections::HashSet;

use base64::alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// Base64 as PEM bodies use it; as lenient as OpenSSL's decoder about the unused bits of the
/// last character.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Longest base64 body of one block that is decoded (a certificate is a few kilobytes).
const MAX_BODY: usize = 1 << 20;
/// Base64 of a certificate of 3 KB, more than most have: what a body has room for at its start.
const TYPICAL_BODY: usize = 4 << 10;
/// Bytes of input searched with memchr's portable routines before its vector ones. The vector
/// routines first ask the CPU what it supports, with `cpuid` instructions that a hypervisor
/// traps: about 60 µs of a hook's start on the machine of BENCHMARKS.md, more than the portable
/// routines take over a CA file or a bundle of a few hundred certificates. Past a mebibyte the
/// vector routines pay for themselves.
pub(crate) const VECTOR_AFTER: u64 = 1 << 20;

/// memchr's searches, portable or vector.
#[derive(Clone, Copy)]
struct Search {
    vector: bool,
}

impl Search {
    fn memchr(self, byte: u8, haystack: &[u8]) -> Option<usize> {
        if self.vector {
            memchr::memchr(byte, haystack)
        } else {
            memchr::arch::all::memchr::One::new(byte).find(haystack)
        }
    }

    fn memrchr(self, byte: u8, haystack: &[u8]) -> Option<usize> {
        if self.vector {
            memchr::memrchr(byte, haystack)
        } else {
            memchr::arch::all::memchr::One::new(byte).rfind(haystack)
        }
    }

    fn memchr3(self, a: u8, b: u8, c: u8, haystack: &[u8]) -> Option<usize> {
        if self.vector {
            memchr::memchr3(a, b, c, haystack)
        } else {
            memchr::arch::all::memchr::Three::new(a, b, c).find(haystack)
        }
    }
}

/// Longest line kept; longer lines are neither markers nor part of a certificate.
const MAX_LINE: usize = 64 << 10;
/// Bytes kept from the start of the input, for a DER file (no PEM block at all).
const MAX_DER: usize = 64 << 10;

/// A certificate block being read.
struct Block {
    label: Vec<u8>,
    /// Base64 text without white space; `None` once the block is known not to be wanted.
    body: Option<Vec<u8>>,
    /// Whether the body is a certificate followed by trust settings.
    trusted: bool,
}

/// Scans PEM text for certificates, fed in chunks of any size.
pub(crate) struct Scanner {
    /// Base64 lengths of the `CERTIFICATE` blocks worth decoding; `None` decodes all.
    lengths: Option<HashSet<usize>>,
    /// The longest body of a plain block worth keeping.
    longest: usize,
    /// Whether `TRUSTED CERTIFICATE` blocks are read.
    trusted: bool,
    carry: Vec<u8>,
    overlong: bool,
    block: Option<Block>,
    any_block: bool,
    /// The start of the input, kept while it may still be one DER certificate (no block seen,
    /// and its first byte a SEQUENCE tag): `None` once it cannot be. A PEM file starts with other
    /// bytes, so a bundle's first chunk is not copied.
    head: Option<Vec<u8>>,
    ders: Vec<Vec<u8>>,
    /// The buffer of the last body, reused for the next (one allocation per scan, not per block).
    spare: Vec<u8>,
    /// Bytes fed so far.
    fed: u64,
    /// How bytes are searched now.
    search: Search,
}

impl Scanner {
    /// A scanner that yields every certificate.
    pub fn new() -> Scanner {
        Scanner {
            lengths: None,
            longest: MAX_BODY,
            trusted: true,
            carry: Vec::new(),
            overlong: false,
            block: None,
            any_block: false,
            head: Some(Vec::new()),
            ders: Vec::new(),
            spare: Vec::new(),
            fed: 0,
            search: Search { vector: false },
        }
    }

    /// A scanner that only decodes the plain certificate blocks that could hold one of the
    /// certificates given by DER length: any other one cannot be one of them. Trusted blocks are
    /// always decoded (their body holds more than the certificate).
    pub fn looking_for(der_lengths: impl IntoIterator<Item = usize>) -> Scanner {
        let lengths: HashSet<usize> = der_lengths.into_iter().map(|n| n.div_ceil(3) * 4).collect();
        Scanner {
            longest: lengths.iter().copied().max().unwrap_or(0).min(MAX_BODY),
            lengths: Some(lengths),
            ..Scanner::new()
        }
    }

    /// Feeds the next bytes of the input.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        self.fed += chunk.len() as u64;
        self.search.vector = self.fed > VECTOR_AFTER;
        let search = self.search;
        if let Some(head) = &mut self.head {
            if self.any_block || (head.is_empty() && chunk.first().is_some_and(|&b| b != crate::der::SEQUENCE)) {
                self.head = None;
            } else {
                let take = chunk.len().min(MAX_DER - head.len());
                head.extend_from_slice(&chunk[..take]);
            }
        }
        loop {
            if self.carry.is_empty() && !self.overlong && self.skipping() {
                // Only a marker line can change anything now, and a marker line holds a '-',
                // which no base64 body does: go straight to the line of the next '-'.
                match search.memchr(b'-', chunk) {
                    Some(dash) => {
                        let start = search.memrchr(b'\n', &chunk[..dash]).map_or(0, |nl| nl + 1);
                        chunk = &chunk[start..];
                    }
                    None => {
                        // The last line may go on in the next chunk, where its '-' may be.
                        let start = search.memrchr(b'\n', chunk).map_or(0, |nl| nl + 1);
                        self.push_carry(&chunk[start..]);
                        return;
                    }
                }
            }
            let Some(nl) = search.memchr(b'\n', chunk) else {
                break;
            };
            if self.carry.is_empty() && !self.overlong {
                self.line(&chunk[..nl]);
            } else {
                self.push_carry(&chunk[..nl]);
                let line = std::mem::take(&mut self.carry);
                if !std::mem::take(&mut self.overlong) {
                    self.line(&line);
                }
                self.carry = line;
                self.carry.clear();
            }
            chunk = &chunk[nl + 1..];
        }
        self.push_carry(chunk);
    }

    /// Whether the lines read now matter only if they are markers: outside any block, and in a
    /// block whose body is not wanted (or no longer: too long to be one of ours).
    fn skipping(&self) -> bool {
        self.block.as_ref().map_or(true, |b| b.body.is_none())
    }

    fn push_carry(&mut self, bytes: &[u8]) {
        if self.overlong || self.carry.len() + bytes.len() > MAX_LINE {
            self.overlong = true;
            self.carry.clear();
        } else {
            self.carry.extend_from_slice(bytes);
        }
    }

    /// The DER encoding of every certificate found, in order.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
        if !self.carry.is_empty() && !self.overlong {
            let line = std::mem::take(&mut self.carry);
            self.line(&line);
        }
        if let Some(head) = self.head.as_deref().filter(|_| !self.any_block) {
            self.ders.extend(first_element(head).map(<[u8]>::to_vec));
        }
        self.ders
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.trim_ascii();
        if let Some(block) = &mut self.block {
            if let Some(label) = line.strip_prefix(b"-----END ").and_then(|l| l.strip_suffix(b"-----")) {
                let block = self.block.take().expect("in a block");
                if label == block.label.as_slice() {
                    self.end(block);
                }
                return;
            }
            if line.starts_with(b"-----BEGIN ") {
                // Unterminated before another block starts: neither is read.
                block.body = None;
            } else if let Some(body) = &mut block.body {
                // The ends are trimmed; white space inside a line is rare.
                if self.search.memchr3(b' ', b'\t', b'\r', line).is_none() {
                    body.extend_from_slice(line);
                } else {
                    body.extend(line.iter().filter(|b| !b.is_ascii_whitespace()));
                }
                // Past the longest length looked for, a plain block cannot be one of ours.
                let limit = if block.trusted { MAX_BODY } else { self.longest };
                if body.len() > limit {
                    self.spare = block.body.take().expect("a body");
                }
            }
            return;
        }
        if let Some(label) = line.strip_prefix(b"-----BEGIN ").and_then(|l| l.strip_suffix(b"-----")) {
            let trusted = self.trusted && label == b"TRUSTED CERTIFICATE";
            let wanted = trusted || label == b"CERTIFICATE" || label == b"X509 CERTIFICATE";
            self.any_block |= wanted;
            let body = wanted.then(|| {
                let mut body = std::mem::take(&mut self.spare);
                body.clear();
                // Room for a usual certificate at once, not grown line by line.
                body.reserve(TYPICAL_BODY);
                body
            });
            self.block = Some(Block {
                label: label.to_vec(),
                body,
                trusted,
            });
        }
    }

    fn end(&mut self, block: Block) {
        let Some(body) = block.body else {
            return;
        };
        let wanted = block.trusted || self.lengths.as_ref().map_or(true, |l| l.contains(&body.len()));
        if wanted {
            if let Ok(mut der) = BASE64.decode(&body) {
                if let Some(len) = first_element(&der).map(<[u8]>::len) {
                    der.truncate(len);
                    self.ders.push(der);
                }
            }
        }
        self.spare = body;
    }
}

/// The DER encoding of every certificate in `bytes` (see the module documentation).
pub fn cert_ders(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut s = Scanner::new();
    s.feed(bytes);
    s.finish()
}

/// The DER encoding of every `CERTIFICATE` and `X509 CERTIFICATE` block in `bytes`, skipping
/// `TRUSTED CERTIFICATE` blocks (or of the file as DER when it has no such block).
pub fn plain_cert_ders(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut s = Scanner::new();
    s.trusted = false;
    s.feed(bytes);
    s.finish()
}

/// `der` as a PEM block with the given label, 64 characters per line, newline-terminated.
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    let b64_len = der.len().div_ceil(3) * 4;
    let mut out = String::with_capacity(b64_len + b64_len.div_ceil(64) + 2 * label.len() + 32);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // 48 bytes make one line of 64 characters; each line is encoded into place.
    let mut line = [0u8; 64];
    for chunk in der.chunks(48) {
        let n = BASE64
            .encode_slice(chunk, &mut line)
            .expect("48 bytes fit 64 characters");
        out.push_str(std::str::from_utf8(&line[..n]).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// The first DER element of `der` when it is a SEQUENCE that fits.
fn first_element(der: &[u8]) -> Option<&[u8]> {
    crate::der::split(der)
        .filter(|(tlv, _)| tlv.tag == crate::der::SEQUENCE)
        .map(|(tlv, _)| tlv.raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n";

    /// Each line encoded into place gives what encoding the whole and cutting it into lines of
    /// 64 gives, for every length of the last line.
    #[test]
    fn pem_blocks_are_64_characters_a_line() {
        for n in 0..=200usize {
            let der: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            let b64 = BASE64.encode(&der);
            let mut want = String::from("-----BEGIN X-----\n");
            for line in b64.as_bytes().chunks(64) {
                want.push_str(std::str::from_utf8(line).unwrap());
                want.push('\n');
            }
            want.push_str("-----END X-----\n");
            assert_eq!(pem_block("X", &der), want, "{n} bytes");
        }
    }

    #[test]
    fn first_elements() {
        assert_eq!(
            first_element(&[0x30, 0x03, 1, 2, 3, 9, 9]),
            Some(&[0x30, 0x03, 1, 2, 3][..])
        );
        assert_eq!(first_element(&[0x30, 0x81, 0x01, 7]), Some(&[0x30, 0x81, 0x01, 7][..]));
        assert_eq!(first_element(&[0x30, 0x80, 0, 0]), None);
        assert_eq!(first_element(&[0x31, 0x00]), None);
        assert_eq!(first_element(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn blocks_decode_whatever_the_chunking() {
        let text = format!(
            "# comment\r\n{ONE}-----BEGIN PRIVATE KEY-----\nMAMCAQI=\n-----END PRIVATE KEY-----\n  \
             -----BEGIN X509 CERTIFICATE-----  \r\n MAMC\r\n AQM= \r\n-----END X509 CERTIFICATE-----"
        );
        let want = vec![vec![0x30, 3, 2, 1, 1], vec![0x30, 3, 2, 1, 3]];
        assert_eq!(cert_ders(text.as_bytes()), want);
        for size in [1, 2, 3, 7, 64] {
            let mut s = Scanner::new();
            for chunk in text.as_bytes().chunks(size) {
                s.feed(chunk);
            }
            assert_eq!(s.finish(), want, "chunks of {size}");
        }
    }

    #[test]
    fn garbage_has_no_certificates() {
        assert!(cert_ders(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_empty());
        assert!(cert_ders(b"-----BEGIN CERTIFICATE-----\nunterminated").is_empty());
        assert!(cert_ders(b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END OTHER-----\n").is_empty());
        assert!(cert_ders(&[0x30, 0x82, 0xff]).is_empty());
        // Not a whole certificate: its first element claims more bytes than there are.
        assert!(
            cert_ders(b"-----BEGIN CERTIFICATE-----\nMIIBVzCB/qADAgECAhQ=\n-----END CERTIFICATE-----\n").is_empty()
        );
        // A second BEGIN inside a block spoils the block.
        assert!(cert_ders(format!("-----BEGIN CERTIFICATE-----\n{ONE}").as_bytes()).is_empty());
    }

    #[test]
    fn blocks_round_trip_and_trusted_blocks_can_be_left_out() {
        let der = vec![0x30, 0x41]
            .into_iter()
            .chain((0..0x41).map(|i| i as u8))
            .collect::<Vec<_>>();
        let cert = pem_block("CERTIFICATE", &der);
        assert_eq!(cert.lines().nth(1).map(str::len), Some(64));
        let trusted = pem_block("TRUSTED CERTIFICATE", &[0x30, 0x00, 0x30, 0x00]);
        let both = format!("{trusted}{cert}");
        assert_eq!(cert_ders(both.as_bytes()), vec![vec![0x30, 0x00], der.clone()]);
        assert_eq!(plain_cert_ders(both.as_bytes()), vec![der]);
    }

    #[test]
    fn a_file_without_blocks_is_one_der_certificate() {
        assert_eq!(cert_ders(&[0x30, 0x01, 0x05, 0xff]), vec![vec![0x30, 0x01, 0x05]]);
        let mut s = Scanner::new();
        s.feed(&[0x30]);
        s.feed(&[0x01, 0x05]);
        assert_eq!(s.finish(), vec![vec![0x30, 0x01, 0x05]]);
        // An empty chunk first decides nothing.
        let mut s = Scanner::new();
        s.feed(&[]);
        s.feed(&[0x30, 0x01]);
        s.feed(&[0x05]);
        assert_eq!(s.finish(), vec![vec![0x30, 0x01, 0x05]]);
    }

    /// Text that does not start with a SEQUENCE tag cannot be a DER certificate: the start of a
    /// bundle is not kept (a copy of its first chunk, up to 64 KiB, on every scan), and a DER
    /// certificate later in the input is not one.
    #[test]
    fn only_input_that_starts_like_der_is_kept_for_it() {
        let mut s = Scanner::new();
        s.feed(b"# ");
        assert!(s.head.is_none());
        s.feed(&[0x30, 0x01, 0x05]);
        assert_eq!(s.finish(), Vec::<Vec<u8>>::new());
        let mut s = Scanner::new();
        s.feed(ONE.as_bytes());
        assert!(s.head.is_none());
        assert_eq!(s.finish(), vec![vec![0x30, 3, 2, 1, 1]]);
    }

    #[test]
    fn the_length_filter_skips_only_what_cannot_match() {
        let two = format!("{ONE}-----BEGIN CERTIFICATE-----\nMAUCAwEAAQ==\n-----END CERTIFICATE-----\n");
        let (five, seven) = (vec![0x30, 3, 2, 1, 1], vec![0x30, 5, 2, 3, 1, 0, 1]);
        assert_eq!(cert_ders(two.as_bytes()), vec![five.clone(), seven.clone()]);
        for (lengths, want) in [
            (vec![5], vec![five.clone()]),
            (vec![7], vec![seven.clone()]),
            (vec![], vec![]),
        ] {
            let mut s = Scanner::looking_for(lengths.clone());
            s.feed(two.as_bytes());
            assert_eq!(s.finish(), want, "{lengths:?}");
        }
        // A trusted block is decoded whatever its length.
        let trusted = "-----BEGIN TRUSTED CERTIFICATE-----\nMAMCAQEwAA==\n-----END TRUSTED CERTIFICATE-----\n";
        let mut s = Scanner::looking_for([99]);
        s.feed(trusted.as_bytes());
        assert_eq!(s.finish(), vec![five]);
    }

    /// What the scanner yields when every line is handed to it one by one: the definition the
    /// chunked scan, which jumps over lines that cannot be markers, must agree with.
    fn line_by_line(mut s: Scanner, text: &[u8]) -> Vec<Vec<u8>> {
        s.head = Some(text[..text.len().min(MAX_DER)].to_vec());
        let mut lines: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();
        let last = lines.pop().unwrap_or_default();
        for line in lines {
            if line.len() <= MAX_LINE {
                s.line(line);
            }
        }
        s.carry = last.to_vec();
        s.finish()
    }

    /// Past [`VECTOR_AFTER`] bytes the scanner searches with memchr's vector routines: what it
    /// finds is the same, on either side of the switch and across it.
    #[test]
    fn the_vector_search_finds_what_the_portable_one_does() {
        let cert = pem_block("CERTIFICATE", &[vec![0x30, 0x81, 0x90], vec![0x41; 0x90]].concat());
        let noise = "# a comment with - dashes\n-----BEGIN PRIVATE KEY-----\nMAMCAQI=\n-----END PRIVATE KEY-----\n";
        let mut text = String::new();
        let mut want = 0;
        while text.len() as u64 <= 3 * VECTOR_AFTER {
            text.push_str(&cert);
            text.push_str(noise);
            text.push_str("  \t");
            text.push_str(&cert.replace('\n', " \r\n"));
            want += 2;
        }
        let reference = line_by_line(Scanner::new(), text.as_bytes());
        assert_eq!(reference.len(), want);
        for size in [4096, 64 << 10, 1 << 20, text.len()] {
            let mut s = Scanner::new();
            for chunk in text.as_bytes().chunks(size) {
                s.feed(chunk);
            }
            assert!(s.search.vector, "chunks of {size}: past the threshold");
            assert_eq!(s.finish(), reference, "chunks of {size}");
        }
    }

    #[test]
    fn jumping_to_markers_agrees_with_reading_every_line() {
        let cert = pem_block("CERTIFICATE", &[0x30, 0x03, 2, 1, 7]);
        let long = pem_block("CERTIFICATE", &[vec![0x30, 0x81, 0x90], vec![0x41; 0x90]].concat());
        let pieces = [
            ONE.to_string(),
            cert.clone(),
            long.clone(),
            "# a comment with - dashes -----BEGIN CERTIFICATE-----\n".into(),
            "x-----BEGIN CERTIFICATE-----\nMAMCAQU=\n-----END CERTIFICATE-----\n".into(),
            "   \t-----BEGIN CERTIFICATE-----\nMAMCAQY=\n  -----END CERTIFICATE-----  \r\n".into(),
            "-----BEGIN PRIVATE KEY-----\nMAMCAQI=\n-----END PRIVATE KEY-----\n".into(),
            "-----BEGIN CERTIFICATE-----\nMAMC AQg=\n-----END CERTIFICATE-----\n".into(),
            "-----BEGIN CERTIFICATE-----\nMAMCAQk=\n-----END CERTIFICATE----- trailing\n".into(),
            pem_block("TRUSTED CERTIFICATE", &[0x30, 0x00, 0x30, 0x00]),
            "\n\n-----BEGIN CERTIFICATE-----\n".into(),
            "no newline at the end -----END CERTIFICATE-----".into(),
        ];
        // Every ordered pair and triple of pieces, so each shape follows each other one.
        let mut texts = Vec::new();
        for a in &pieces {
            for b in &pieces {
                texts.push(format!("{a}{b}"));
                for c in &pieces[..4] {
                    texts.push(format!("{a}{b}{c}"));
                }
            }
        }
        for text in &texts {
            let bytes = text.as_bytes();
            let scanners: [fn() -> Scanner; 3] = [
                Scanner::new,
                || Scanner::looking_for([5]),
                || Scanner::looking_for([0x93]),
            ];
            for make in scanners {
                let want = line_by_line(make(), bytes);
                for size in [1, 2, 3, 5, 8, 13, 64, bytes.len().max(1)] {
                    let mut s = make();
                    for chunk in bytes.chunks(size) {
                        s.feed(chunk);
                    }
                    assert_eq!(s.finish(), want, "chunks of {size} of {text:?}");
                }
            }
        }
    }

    #[test]
    fn overlong_lines_are_ignored_and_memory_stays_bounded() {
        let mut s = Scanner::new();
        s.feed(ONE.as_bytes());
        for _ in 0..64 {
            s.feed(&[b'A'; 4096]);
        }
        s.feed(b"\n");
        s.feed(ONE.as_bytes());
        assert!(s.carry.capacity() <= 2 * MAX_LINE);
        assert_eq!(s.finish().len(), 2);
    }
}
