//! PDF: the streams that hide things. Two kinds become objects:
//!
//! - embedded files (`/Type /EmbeddedFile`): the attachments a PDF
//!   carries, decoded, so they are identified, scanned and unpacked;
//! - object streams (`/Type /ObjStm`): compressed PDF objects, where
//!   `/JavaScript`, `/OpenAction` and `/Launch` hide from a scan of the raw
//!   file. Decoded, the PDF rules read them like the file itself.
//!
//! Page contents, fonts and images are left alone: they are most of a PDF,
//! and unpacking them would only spend the budget (and the object limit)
//! on ordinary documents.
//!
//! This is a tolerant token scan, not a full parser: a stream is found by
//! its `stream` keyword, its dictionary is the text since the preceding
//! `obj`, and its end is `/Length` when that is a plain number and lands
//! on `endstream`, else the next `endstream`. Filters: FlateDecode and
//! ASCIIHexDecode, in chains; a stream with any other filter is skipped.
//!
//! Encrypted PDFs (the Standard security handler, RC4 and AES, [`crypt`])
//! are opened with the empty user password (the common case: the reader
//! opens them without asking, the gateway sees only ciphertext) or a
//! password from the message; streams are decrypted with their object's
//! key before the filters. One that stays locked is reported encrypted.

pub mod crypt;

use super::{Budget, Child, ExtractError, Extracted, Stop};
use crate::model::{FindingKind, LimitKind};

const FORMAT: &str = "pdf";

/// What a stream's dictionary says, as far as we use it.
struct Dict {
    kind: Option<Kind>,
    length: Option<usize>,
    filters: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    EmbeddedFile,
    ObjectStream,
}

/// PDF names may spell characters as `#xx`: `/J#61vaScript`.
fn name_value(raw: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'#'
            && let Some(h) = raw.get(i + 1..i + 3)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(h).unwrap_or("zz"), 16)
        {
            out.push(v as char);
            i += 3;
            continue;
        }
        out.push(raw[i] as char);
        i += 1;
    }
    out
}

/// The names in a dictionary's text, in order, `#xx` decoded.
fn names(dict: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < dict.len() {
        if dict[i] == b'/' {
            let start = i + 1;
            let mut j = start;
            while j < dict.len() && !b"/<>[]() \t\r\n%{}".contains(&dict[j]) {
                j += 1;
            }
            out.push(name_value(&dict[start..j]));
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn parse_dict(dict: &[u8]) -> Dict {
    let list = names(dict);
    let kind = list
        .windows(2)
        .find_map(|w| match (w[0].as_str(), w[1].as_str()) {
            ("Type", "EmbeddedFile") => Some(Kind::EmbeddedFile),
            ("Type", "ObjStm") => Some(Kind::ObjectStream),
            _ => None,
        });
    let filters = list
        .iter()
        .skip_while(|n| n.as_str() != "Filter")
        .skip(1)
        .take_while(|n| {
            n.ends_with("Decode")
                || matches!(n.as_str(), "Fl" | "AHx" | "A85" | "LZW" | "RL" | "DCT")
        })
        .cloned()
        .collect();
    // `/Length 123` (a direct number; `/Length 9 0 R` is not used).
    let length = memchr::memmem::find(dict, b"/Length").and_then(|at| {
        let rest = &dict[at + 7..];
        let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let after = &rest[digits..];
        let next = after.iter().find(|b| !b.is_ascii_whitespace());
        // "9 0 R" is a reference: the second number gives it away.
        if next.is_some_and(|b| b.is_ascii_digit()) {
            return None;
        }
        std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
    });
    Dict {
        kind,
        length,
        filters,
    }
}

fn hex_decode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut high: Option<u8> = None;
    for &b in data {
        if b == b'>' {
            break;
        }
        if let Some(v) = (b as char).to_digit(16) {
            match high.take() {
                Some(h) => out.push((h << 4) | v as u8),
                None => high = Some(v as u8),
            }
        }
    }
    if let Some(h) = high {
        out.push(h << 4);
    }
    out
}

/// Decoded bytes, and the limit that cut them short if one did.
type Decoded = (Vec<u8>, Option<LimitKind>);

/// Undoes the filters, first to last, on the budget. `None` for a filter
/// we do not decode, or a damaged stream.
fn decode(raw: &[u8], filters: &[String], budget: &mut Budget) -> Option<Decoded> {
    let mut data = raw.to_vec();
    let mut stop = None;
    for f in filters {
        match f.as_str() {
            "FlateDecode" | "Fl" => {
                let reader = flate2::read::ZlibDecoder::new(data.as_slice());
                // A damaged deflate stream: what came out before the damage
                // is not returned by read_capped, so the stream is skipped.
                let (out, s) = budget.read_capped(reader, data.len() as u64).ok()?;
                data = out;
                stop = stop.or(s);
            }
            "ASCIIHexDecode" | "AHx" => {
                data = hex_decode(&data);
                stop = stop.or(budget.charge(&mut data));
            }
            _ => return None,
        }
        if stop.is_some() {
            break;
        }
    }
    if filters.is_empty() {
        stop = budget.charge(&mut data);
    }
    Some((data, stop))
}

/// `N G obj` ending where `obj` starts at `at`: the object's number and
/// generation, which an encrypted stream's key is made from.
fn object_id(data: &[u8], at: usize) -> Option<(u32, u16)> {
    let before = data.get(..at)?;
    let mut end = before.len();
    let number = |end: &mut usize| -> Option<u64> {
        while *end > 0 && before[*end - 1].is_ascii_whitespace() {
            *end -= 1;
        }
        let digits_end = *end;
        while *end > 0 && before[*end - 1].is_ascii_digit() && digits_end - *end < 10 {
            *end -= 1;
        }
        std::str::from_utf8(&before[*end..digits_end])
            .ok()?
            .parse()
            .ok()
    };
    let generation = number(&mut end)?;
    let num = number(&mut end)?;
    Some((u32::try_from(num).ok()?, u16::try_from(generation).ok()?))
}

/// How the document's streams are locked, once a password opened them.
struct Lock {
    params: crypt::Params,
    key: crypt::Key,
}

/// Opens an encrypted document's lock: `Ok(None)` when it is not
/// encrypted, `Err(())` when no password fits (or the handler is not one
/// we speak).
fn unlock(data: &[u8], budget: &mut Budget, out: &mut Extracted) -> Result<Option<Lock>, ()> {
    let Some(found) = crypt::find(data) else {
        return Ok(None);
    };
    let params = found.map_err(|_| ())?;
    let (key, password) = budget
        .try_passwords(&[""], |_, password| {
            crypt::authenticate(&params, password.as_bytes())
        })
        .ok_or(())?;
    if !password.is_empty() {
        out.findings.push(FindingKind::Decrypted {
            format: FORMAT.into(),
            password,
        });
    }
    Ok(Some(Lock { params, key }))
}

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let Some(header) = memchr::memmem::find(&data[..data.len().min(1024)], b"%PDF-") else {
        return Err(ExtractError::malformed(FORMAT, "no %PDF- header"));
    };
    let mut out = Extracted::default();
    let lock = match unlock(data, budget, &mut out) {
        Ok(lock) => lock,
        Err(()) => {
            out.children.push(Child {
                name: Some("(encrypted content)".into()),
                stopped: Some(Stop::Encrypted),
                ..Default::default()
            });
            return Ok(out);
        }
    };
    let finder = memchr::memmem::Finder::new(b"stream");
    let (mut embedded, mut objstm) = (0usize, 0usize);
    let mut from = header;
    while let Some(found) = finder.find(&data[from..]) {
        let kw = from + found;
        from = kw + 6;
        // `endstream` also contains "stream"; a stream keyword is followed
        // by an end of line.
        if kw >= 3 && &data[kw - 3..kw] == b"end" {
            continue;
        }
        let start = match data.get(kw + 6..kw + 8) {
            Some([b'\r', b'\n']) => kw + 8,
            Some([b'\n', _]) | Some([b'\r', _]) => kw + 7,
            _ => continue,
        };
        let window_start = kw.saturating_sub(4096);
        let obj_at =
            memchr::memmem::rfind(&data[window_start..kw], b"obj").map(|p| window_start + p);
        let dict_start = obj_at.map_or(window_start, |p| p + 3);
        let dict = parse_dict(&data[dict_start..kw]);
        let by_length = dict.length.and_then(|n| {
            let end = start.checked_add(n)?;
            let tail = data.get(end..)?;
            let tail = &tail[tail
                .iter()
                .take(2)
                .take_while(|b| b.is_ascii_whitespace())
                .count()..];
            tail.starts_with(b"endstream").then_some(end)
        });
        let end = by_length
            .or_else(|| memchr::memmem::find(&data[start..], b"endstream").map(|p| start + p))
            .unwrap_or(data.len());
        from = end.max(from);
        let Some(kind) = dict.kind else { continue };
        if !out.room(budget) {
            break;
        }
        let mut raw = &data[start..end];
        if by_length.is_none() {
            // The end of line before `endstream` is not data: AES would
            // see a torn block.
            raw = raw.strip_suffix(b"\n").unwrap_or(raw);
            raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        }
        let plain;
        if let Some(lock) = &lock {
            let method = match kind {
                Kind::EmbeddedFile => lock.params.embedded_file_method,
                Kind::ObjectStream => lock.params.stream_method,
            };
            let Some((num, generation)) = obj_at.and_then(|at| object_id(data, at)) else {
                continue;
            };
            let Ok(p) = crypt::decrypt(&lock.params, &lock.key, &method, num, generation, raw)
            else {
                continue;
            };
            plain = p;
            raw = &plain;
        }
        let Some((bytes, stop)) = decode(raw, &dict.filters, budget) else {
            continue;
        };
        let name = match kind {
            Kind::EmbeddedFile => {
                embedded += 1;
                format!("embedded-file-{embedded}")
            }
            Kind::ObjectStream => {
                objstm += 1;
                format!("object-stream-{objstm}")
            }
        };
        let child = Child {
            name: Some(name),
            declared_type: (kind == Kind::ObjectStream).then(|| "application/x-pdf-objects".into()),
            data: bytes,
            ..Default::default()
        };
        if out.add(child, stop) {
            break;
        }
    }
    Ok(out)
}

/// A PDF encrypted with `params`/`key` carrying `file` as an embedded
/// file (Flate-compressed, then encrypted), for the sample generators.
pub fn encrypted_with_attachment(params: &crypt::Params, key: &crypt::Key, file: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to memory cannot fail.
    let _ = z.write_all(file);
    let compressed = z.finish().unwrap_or_default();
    let stream = crypt::encrypt(params, key, &params.embedded_file_method, 4, 0, &compressed);
    let name = crypt::encrypt(params, key, &params.string_method, 5, 0, b"attachment.bin");
    let objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles << /Names [(a) 5 0 R] >> >> >>"
            .to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>".to_vec(),
        {
            let mut s = format!(
                "<< /Type /EmbeddedFile /Filter /FlateDecode /Length {} >>\nstream\n",
                stream.len()
            )
            .into_bytes();
            s.extend_from_slice(&stream);
            s.extend_from_slice(b"\nendstream");
            s
        },
        format!(
            "<< /Type /Filespec /F <{}> /EF << /F 4 0 R >> >>",
            hex::encode(&name)
        )
        .into_bytes(),
        crypt::dict_text(params).into_bytes(),
    ];
    let mut out: Vec<u8> = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    let id = hex::encode(&params.id0);
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R /Encrypt 6 0 R /ID [<{id}> <{id}>] >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::test_budget as budget;

    #[test]
    fn embedded_files_and_object_streams_are_decoded() {
        let pdf =
            crate::samples::pdf_with(b"attached bytes", Some("/OpenAction 5 0 R /JavaScript"));
        let out = extract(&pdf, &mut budget()).unwrap();
        let find = |n: &str| {
            out.children
                .iter()
                .find(|c| c.name.as_deref() == Some(n))
                .unwrap()
        };
        assert_eq!(find("embedded-file-1").data, b"attached bytes");
        assert!(String::from_utf8_lossy(&find("object-stream-1").data).contains("/JavaScript"));
    }

    #[test]
    fn hex_names_references_and_damage() {
        assert_eq!(
            names(b"<</Type/Embedded#46ile/Length 9 0 R>>")[1],
            "EmbeddedFile"
        );
        assert!(parse_dict(b"<</Length 9 0 R>>").length.is_none());
        assert_eq!(parse_dict(b"<</Length 12>>").length, Some(12));
        let pdf = crate::samples::pdf_with(&[7u8; 500], None);
        for cut in 0..pdf.len() {
            let _ = extract(&pdf[..cut], &mut budget());
        }
    }
}
