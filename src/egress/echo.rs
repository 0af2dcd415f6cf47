//! Secrets that a response echoes back, in the encodings a program could undo cheaply.
//!
//! A rule's headers (credentials) go to the endpoint, never to the program; an endpoint
//! that echoes requests (httpbin's `/headers`, a debug endpoint, a hostile server) would
//! hand them back. What is caught: the secret as sent, in base64 (standard and URL-safe,
//! at any alignment inside a longer base64 text), in hex (either case) and percent-encoded,
//! and any of those inside a gzip, zlib or raw-deflate body. What cannot be caught: an
//! endpoint that cooperates with the program can always transform the secret in a way no
//! check recognises (XOR, encryption, a few characters per response, a second request);
//! send a rule's headers only to endpoints you trust not to echo them.

use std::io::Read;

use base64::Engine as _;

/// What a secret is replaced with.
pub(super) const WITHHELD: &[u8] = b"[withheld]";

/// What a whole body becomes when a compressed copy of a secret is in it.
const WITHHELD_BODY: &[u8] =
    b"[withheld: the response held a compressed copy of a credential this egress rule adds]";

/// The forms of one secret to look for.
pub(super) fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![secret.to_vec()];
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        // Inside a longer text the secret starts at byte offset 0, 1 or 2 of a 3-byte
        // group: the characters that depend on the secret's bytes alone are the same
        // whatever surrounds it.
        for offset in 0..3usize {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(secret);
            let encoded = engine.encode(&padded);
            let skip = if offset == 0 { 0 } else { offset + 1 };
            // Only whole 3-byte groups: a partial last group's characters depend on what
            // follows the secret.
            let end = ((padded.len() / 3) * 4).min(encoded.len());
            if end > skip + 4 {
                forms.push(encoded.as_bytes()[skip..end].to_vec());
            }
        }
    }
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    forms.push(hex.clone().into_bytes());
    forms.push(hex.to_ascii_uppercase().into_bytes());
    // Percent-encoded, with the escapes' hex in either case.
    for upper in [true, false] {
        let percent: String = secret
            .iter()
            .map(|&b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    char::from(b).to_string()
                } else if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect();
        forms.push(percent.into_bytes());
    }
    // As a JSON encoder that escapes slashes writes it (PHP's json_encode).
    if secret.contains(&b'/') {
        let escaped: Vec<u8> = secret
            .iter()
            .flat_map(|&b| {
                if b == b'/' {
                    vec![b'\\', b'/']
                } else {
                    vec![b]
                }
            })
            .collect();
        forms.push(escaped);
    }
    forms.retain(|form| form.len() >= 4);
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.dedup();
    forms
}

/// `bytes` with every form in `forms` replaced by [`WITHHELD`]; a body that decompresses
/// (within `max_bytes`) to something holding a form is withheld whole.
pub(super) fn withhold(forms: &[Vec<u8>], bytes: Vec<u8>, max_bytes: usize) -> Vec<u8> {
    if forms.is_empty() {
        return bytes;
    }
    if let Some(inflated) = decompressed(&bytes, max_bytes)
        && forms.iter().any(|form| contains(&inflated, form))
    {
        return WITHHELD_BODY.to_vec();
    }
    let mut bytes = bytes;
    for form in forms {
        bytes = replace_all(&bytes, form, WITHHELD);
    }
    bytes
}

/// The body decompressed, when it is gzip, zlib or raw deflate, at most `max_bytes` of it.
fn decompressed(bytes: &[u8], max_bytes: usize) -> Option<Vec<u8>> {
    let limit = u64::try_from(max_bytes).unwrap_or(u64::MAX);
    let read = |mut reader: Box<dyn Read + '_>| {
        let mut out = Vec::new();
        match reader.by_ref().take(limit).read_to_end(&mut out) {
            Ok(_) if !out.is_empty() => Some(out),
            // A body cut short still shows what it held so far.
            Err(_) if !out.is_empty() => Some(out),
            _ => None,
        }
    };
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return read(Box::new(flate2::read::MultiGzDecoder::new(bytes)));
    }
    // zlib: a deflate method in the low nibble and a header checksum.
    if bytes.len() >= 2
        && bytes[0] & 0x0f == 8
        && (u16::from(bytes[0]) << 8 | u16::from(bytes[1])) % 31 == 0
        && let Some(out) = read(Box::new(flate2::read::ZlibDecoder::new(bytes)))
    {
        return Some(out);
    }
    // Raw deflate has no header to recognise it by: try it; text is rarely valid deflate,
    // and when it is, what it inflates to is only looked at.
    read(Box::new(flate2::read::DeflateDecoder::new(bytes)))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return haystack.to_vec();
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const SECRET: &[u8] = b"s3cr3t-token-value";

    fn withheld_whole(body: Vec<u8>) -> bool {
        withhold(&forms(SECRET), body, 1 << 20) == WITHHELD_BODY
    }

    #[test]
    fn every_cheap_encoding_is_withheld() {
        let b64 = base64::engine::general_purpose::STANDARD;
        for prefix in ["", "a", "ab", "abc"] {
            let mut plain = prefix.as_bytes().to_vec();
            plain.extend_from_slice(SECRET);
            plain.extend_from_slice(b"tail");
            let encoded = b64.encode(&plain);
            let out = withhold(&forms(SECRET), encoded.clone().into_bytes(), 1 << 20);
            assert_ne!(out, encoded.as_bytes(), "base64 after {prefix:?}");
            let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&plain);
            let out = withhold(&forms(SECRET), url.clone().into_bytes(), 1 << 20);
            assert_ne!(out, url.as_bytes(), "url-safe base64 after {prefix:?}");
        }
        let hex: String = SECRET.iter().map(|b| format!("{b:02x}")).collect();
        for text in [hex.clone(), hex.to_ascii_uppercase()] {
            let out = withhold(&forms(SECRET), text.clone().into_bytes(), 1 << 20);
            assert!(!contains(&out, text.as_bytes()), "{text}");
        }
        let out = withhold(
            &forms(b"a b/c=d+e"),
            b"x=a%20b%2Fc%3Dd%2Be".to_vec(),
            1 << 20,
        );
        assert_eq!(out, b"x=[withheld]");
        let out = withhold(
            &forms(b"a b/c=d+e"),
            b"x=a%20b%2fc%3dd%2be".to_vec(),
            1 << 20,
        );
        assert_eq!(out, b"x=[withheld]");
        let out = withhold(
            &forms(b"key/with/slashes"),
            br#"{"auth":"key\/with\/slashes"}"#.to_vec(),
            1 << 20,
        );
        assert_eq!(out, br#"{"auth":"[withheld]"}"#);
    }

    #[test]
    fn compressed_copies_withhold_the_body() {
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(b"{\"authorization\":\"Bearer s3cr3t-token-value\"}")
            .unwrap();
        assert!(withheld_whole(gzip.finish().unwrap()));
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        zlib.write_all(SECRET).unwrap();
        assert!(withheld_whole(zlib.finish().unwrap()));
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(SECRET).unwrap();
        assert!(withheld_whole(raw.finish().unwrap()));
    }

    #[test]
    fn bodies_without_the_secret_are_untouched() {
        let body = b"{\"ok\":true,\"text\":\"nothing to see\"}".to_vec();
        assert_eq!(withhold(&forms(SECRET), body.clone(), 1 << 20), body);
    }
}
