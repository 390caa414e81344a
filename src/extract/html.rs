//! HTML smuggling: files carried inside a page and assembled by the
//! browser. Two shapes become objects:
//!
//! - `data:` URIs (`data:application/zip;base64,UEsDB…`, or percent-encoded
//!   text), in attributes, CSS or script;
//! - long base64 string literals in the page (what `atob()` and `new
//!   Blob([…])` turn into a download), including ones split into several
//!   quoted pieces joined with `+`.
//!
//! Short strings are ignored (ids, hashes, tracking pixels): a blob must
//! decode to at least [`MIN_BLOB`] bytes. Decoding only shrinks its input,
//! so the budget's per-object and total caps bound the output.

use super::{Budget, Child, ExtractError, Extracted, display_name};
use base64::Engine as _;

/// Smallest decoded blob worth an object.
pub const MIN_BLOB: usize = 48;

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
}

fn decode_b64(text: &[u8]) -> Option<Vec<u8>> {
    let clean: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace() && !matches!(b, b'\\'))
        .map(|b| match b {
            b'-' => b'+',
            b'_' => b'/',
            other => other,
        })
        .filter(|&b| b != b'=')
        .collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&clean)
        .ok()
        .or_else(|| {
            // A trailing partial quantum: drop it rather than the blob.
            let cut = clean.len() - clean.len() % 4;
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(&clean[..cut])
                .ok()
        })
}

fn percent_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%'
            && let Some(h) = text.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

/// `data:` URIs: (media type, decoded bytes).
fn data_uris(html: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let finder = memchr::memmem::Finder::new(b"data:");
    let mut from = 0;
    // Each URI's body is skipped before looking for the next, so a page of
    // "data:data:data:…" is read once, not once per match.
    while let Some(found) = finder.find(&html[from..]) {
        let pos = from + found;
        from = pos + 5;
        let rest = &html[pos + 5..];
        let Some(comma) = rest.iter().take(256).position(|&b| b == b',') else {
            continue;
        };
        let meta = String::from_utf8_lossy(&rest[..comma]).to_ascii_lowercase();
        if meta.contains(['"', '\'', '<', '>', ' ']) {
            continue;
        }
        let body = &rest[comma + 1..];
        let end = body
            .iter()
            .position(|&b| matches!(b, b'"' | b'\'' | b')' | b'<' | b'>' | b'`'))
            .unwrap_or(body.len());
        let body = &body[..end];
        from = pos + 5 + comma + 1 + end;
        let mime = meta.split(';').next().unwrap_or("").trim().to_string();
        let decoded = if meta.split(';').any(|p| p.trim() == "base64") {
            match decode_b64(body) {
                Some(d) => d,
                None => continue,
            }
        } else {
            percent_decode(body)
        };
        if decoded.len() >= MIN_BLOB {
            out.push((mime, decoded));
        }
    }
    out
}

/// Long base64 string literals, with `"…" + "…"` pieces joined.
fn script_blobs(html: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    let min_text = MIN_BLOB * 4 / 3;
    while i < html.len() {
        let q = html[i];
        if !matches!(q, b'"' | b'\'' | b'`') {
            i += 1;
            continue;
        }
        // Collect a literal and any `+ "…"` continuations.
        let mut text = Vec::new();
        let mut j = i;
        let mut ok = true;
        loop {
            let quote = html[j];
            let start = j + 1;
            let Some(len) = html[start..].iter().position(|&b| b == quote) else {
                ok = false;
                break;
            };
            let piece = &html[start..start + len];
            if !piece
                .iter()
                .all(|&b| is_b64(b) || b == b'\\' || b.is_ascii_whitespace())
            {
                // Not base64: go on after its closing quote, so the text
                // between two literals is never taken for one.
                ok = false;
                j = start + len + 1;
                break;
            }
            text.extend_from_slice(piece);
            j = start + len + 1;
            // `+` then another quoted piece (whitespace and newlines allowed).
            let mut k = j;
            while k < html.len() && html[k].is_ascii_whitespace() {
                k += 1;
            }
            if html.get(k) != Some(&b'+') {
                break;
            }
            k += 1;
            while k < html.len() && html[k].is_ascii_whitespace() {
                k += 1;
            }
            if !html
                .get(k)
                .is_some_and(|b| matches!(b, b'"' | b'\'' | b'`'))
            {
                break;
            }
            j = k;
        }
        if ok && text.len() >= min_text {
            // Mostly letters and digits with no spaces: prose is not base64.
            if let Some(d) = decode_b64(&text).filter(|d| d.len() >= MIN_BLOB) {
                out.push(d);
            }
        }
        i = j.max(i + 1);
    }
    out
}

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut out = Extracted::default();
    // Names without extensions: the page says nothing about them, so
    // nothing should be inferred from one. A data: URI's media type is its
    // declared type (an "image" that is a zip is a mismatch).
    let mut found: Vec<(String, Option<String>, Vec<u8>)> = data_uris(data)
        .into_iter()
        .enumerate()
        .map(|(i, (mime, d))| (format!("data-uri-{}", i + 1), Some(mime), d))
        .collect();
    found.extend(
        script_blobs(data)
            .into_iter()
            .enumerate()
            .map(|(i, d)| (format!("script-blob-{}", i + 1), None, d)),
    );
    // One blob can be both (a data: URI inside a string literal).
    let mut seen = std::collections::HashSet::new();
    for (name, declared_type, bytes) in found {
        if !seen.insert(bytes.clone()) {
            continue;
        }
        if !out.room(budget) {
            break;
        }
        let child = Child {
            name: Some(display_name(&name)),
            declared_type: declared_type.filter(|t| !t.is_empty()),
            data: bytes,
            ..Default::default()
        };
        if out.add_charged(budget, child) {
            break;
        }
    }
    // Never an error: a page with nothing smuggled is simply a page.
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::test_budget as budget;

    #[test]
    fn data_uris_and_split_script_literals_become_objects() {
        let payload = b"PK\x03\x04 pretend this is a zip with enough bytes to count as a blob";
        let html = crate::samples::html_smuggling(payload);
        let out = extract(&html, &mut budget()).unwrap();
        let datas: Vec<&[u8]> = out.children.iter().map(|c| c.data.as_slice()).collect();
        assert!(datas.contains(&&payload[..]), "{:?}", out.children);
        let uri = format!(
            "<img src=\"data:application/zip;base64,{}\">",
            base64::engine::general_purpose::STANDARD.encode(payload)
        );
        let out = extract(uri.as_bytes(), &mut budget()).unwrap();
        assert_eq!(out.children.len(), 1);
        assert_eq!(out.children[0].name.as_deref(), Some("data-uri-1"));
        assert_eq!(
            out.children[0].declared_type.as_deref(),
            Some("application/zip")
        );
        assert_eq!(out.children[0].data, payload);
    }

    #[test]
    fn ordinary_pages_give_nothing() {
        let page = br#"<html><body class="main" id="abc123"><p>Hello, "world" - see https://example.com/a/b?c=d</p>
            <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><script>var x = 'short';</script></body></html>"#;
        let out = extract(page, &mut budget()).unwrap();
        assert!(out.children.is_empty(), "{:?}", out.children);
        for cut in 0..page.len() {
            let _ = extract(&page[..cut], &mut budget());
        }
    }
}
