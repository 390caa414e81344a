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
//! on `endstream`, else the next `endstream`. Filters: FlateDecode,
//! ASCIIHexDecode, ASCII85Decode and LZWDecode, in chains (no predictors);
//! a stream with any other filter is skipped. An embedded file takes the
//! name its file specification gives it (`/UF`, `/F`), else
//! `embedded-file-N`.
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

/// ASCII85 (`<~ … ~>` without the brackets): five characters for four
/// bytes, `z` for four zeros. `None` on a character outside the alphabet.
fn ascii85_decode(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 5 * 4 + 4);
    let mut group = [0u8; 5];
    let mut n = 0;
    let body = data.strip_prefix(b"<~").unwrap_or(data);
    for &b in body {
        match b {
            b'~' => break,
            b'z' if n == 0 => out.extend_from_slice(&[0; 4]),
            b'!'..=b'u' => {
                group[n] = b - b'!';
                n += 1;
                if n == 5 {
                    let v = group.iter().fold(0u64, |acc, &d| acc * 85 + u64::from(d));
                    // Five digits can exceed 32 bits only in damaged data.
                    out.extend_from_slice(&(v as u32).to_be_bytes());
                    n = 0;
                }
            }
            b if b.is_ascii_whitespace() => {}
            _ => return None,
        }
    }
    if n > 1 {
        // A final partial group is padded with 'u' and yields n-1 bytes.
        for d in group.iter_mut().skip(n) {
            *d = 84;
        }
        let v = group.iter().fold(0u64, |acc, &d| acc * 85 + u64::from(d));
        out.extend_from_slice(&(v as u32).to_be_bytes()[..n - 1]);
    }
    Some(out)
}

/// PDF's LZW (TIFF-style codes of 9 to 12 bits, 256 clear, 257 end, the
/// code width growing one code early as /EarlyChange 1, the default,
/// says). At most `cap` bytes; true when that cut the output.
fn lzw_decode(data: &[u8], cap: usize) -> (Vec<u8>, bool) {
    let mut out: Vec<u8> = Vec::new();
    // Each entry: (prefix code or u16::MAX, last byte, length).
    let mut table: Vec<(u16, u8, u32)> = Vec::with_capacity(4096);
    let reset = |table: &mut Vec<(u16, u8, u32)>| {
        table.clear();
        table.extend((0..=255u8).map(|b| (u16::MAX, b, 1)));
        table.push((u16::MAX, 0, 0));
        table.push((u16::MAX, 0, 0));
    };
    reset(&mut table);
    let (mut bits, mut acc, mut width) = (0u32, 0u32, 9u32);
    let mut prev: Option<u16> = None;
    let mut scratch: Vec<u8> = Vec::new();
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= width {
            let code = ((acc >> (bits - width)) & ((1 << width) - 1)) as u16;
            bits -= width;
            acc &= (1 << bits) - 1;
            match code {
                256 => {
                    reset(&mut table);
                    width = 9;
                    prev = None;
                    continue;
                }
                257 => return (out, false),
                _ => {}
            }
            // The string for `code`; the KwKwK case is the one code not in
            // the table yet.
            let first_of = |table: &[(u16, u8, u32)], mut c: u16| -> u8 {
                while let Some(&(p, byte, _)) = table.get(usize::from(c)) {
                    if p == u16::MAX {
                        return byte;
                    }
                    c = p;
                }
                0
            };
            let known = usize::from(code) < table.len();
            let entry = match (known, prev) {
                (true, _) => code,
                (false, Some(p)) if usize::from(code) == table.len() => {
                    let first = first_of(&table, p);
                    let len = table[usize::from(p)].2 + 1;
                    table.push((p, first, len));
                    prev = None;
                    code
                }
                // Damage: a code from nowhere ends the stream.
                _ => return (out, false),
            };
            scratch.clear();
            let mut c = entry;
            while let Some(&(p, byte, _)) = table.get(usize::from(c)) {
                scratch.push(byte);
                if p == u16::MAX || scratch.len() > 4096 {
                    break;
                }
                c = p;
            }
            scratch.reverse();
            if let Some(p) = prev
                && table.len() < 4096
            {
                let len = table[usize::from(p)].2 + 1;
                table.push((p, scratch[0], len));
            }
            let room = cap.saturating_sub(out.len());
            if scratch.len() > room {
                out.extend_from_slice(&scratch[..room]);
                return (out, true);
            }
            out.extend_from_slice(&scratch);
            prev = Some(entry);
            // EarlyChange: the width grows when the next code would need it.
            width = match table.len() + 1 {
                n if n >= 4096 => 12,
                n if n >= 2048 => 12,
                n if n >= 1024 => 11,
                n if n >= 512 => 10,
                _ => 9,
            };
        }
    }
    (out, false)
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
            "ASCII85Decode" | "A85" => {
                data = ascii85_decode(&data)?;
                stop = stop.or(budget.charge(&mut data));
            }
            "LZWDecode" | "LZW" => {
                let (cap, kind) = budget.cap();
                let (mut out, cut) = lzw_decode(&data, usize::try_from(cap).unwrap_or(usize::MAX));
                stop = stop.or(budget.charge(&mut out)).or(cut.then_some(kind));
                data = out;
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
    let (num, generation) = crypt::obj_header_before(data, at)?;
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
        .try_passwords(&[""], &[], |_, password| {
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
    let names = crypt::embedded_file_names(data, lock.as_ref().map(|l| (&l.params, &l.key)));
    let finder = memchr::memmem::Finder::new(b"stream");
    // Built once: a searcher per stream costs more than the search.
    let obj_back = memchr::memmem::FinderRev::new(b"obj");
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
        let obj_at = obj_back
            .rfind(&data[window_start..kw])
            .map(|p| window_start + p);
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
                let own = obj_at
                    .and_then(|at| object_id(data, at))
                    .and_then(|(num, _)| names.iter().find(|(n, _)| *n == num))
                    .map(|(_, name)| super::display_name(name));
                own.unwrap_or_else(|| format!("embedded-file-{embedded}"))
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
    let id = hex::encode(&params.id0);
    crypt::write_pdf(&objects, &format!("/Encrypt 6 0 R /ID [<{id}> <{id}>]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain LZW encoder (EarlyChange 1), to test the decoder against.
    fn lzw_encode(data: &[u8]) -> Vec<u8> {
        use std::collections::HashMap;
        let mut dict: HashMap<Vec<u8>, u16> =
            (0..=255u8).map(|b| (vec![b], u16::from(b))).collect();
        let mut next = 258u16;
        let (mut acc, mut bits, mut width) = (0u64, 0u32, 9u32);
        let mut out = Vec::new();
        let mut emit = |code: u16, width: u32, acc: &mut u64, bits: &mut u32| {
            *acc = (*acc << width) | u64::from(code);
            *bits += width;
            while *bits >= 8 {
                out.push((*acc >> (*bits - 8)) as u8);
                *bits -= 8;
            }
        };
        emit(256, width, &mut acc, &mut bits);
        let mut w: Vec<u8> = Vec::new();
        for &b in data {
            let mut wb = w.clone();
            wb.push(b);
            if dict.contains_key(&wb) {
                w = wb;
                continue;
            }
            emit(dict[&w], width, &mut acc, &mut bits);
            dict.insert(wb, next);
            next += 1;
            if next + 1 >= 4096 {
                emit(256, width, &mut acc, &mut bits);
                dict.retain(|k, _| k.len() == 1);
                next = 258;
                width = 9;
            } else if u32::from(next) >= (1 << width) {
                // The decoder's table is one entry behind ours, and it
                // widens one code early (EarlyChange 1): the same code.
                width += 1;
            }
            w = vec![b];
        }
        if !w.is_empty() {
            emit(dict[&w], width, &mut acc, &mut bits);
        }
        emit(257, width, &mut acc, &mut bits);
        if bits > 0 {
            out.push((acc << (8 - bits)) as u8);
        }
        out
    }

    #[test]
    fn encrypted_documents_open_with_the_right_password_only() {
        for (r, user) in [(2, ""), (3, "pw-7"), (4, ""), (6, "pw-7")] {
            let (params, key) = crypt::new_params(r, user.as_bytes(), b"owner");
            let pdf = encrypted_with_attachment(&params, &key, b"payload bytes");
            let mut b = budget();
            b.passwords.learn("the password is pw-7");
            let out = extract(&pdf, &mut b).unwrap();
            assert_eq!(out.children.len(), 1, "r{r}");
            // The name comes from the (encrypted) file specification.
            assert_eq!(
                out.children[0].name.as_deref(),
                Some("attachment.bin"),
                "r{r}"
            );
            assert_eq!(out.children[0].data, b"payload bytes", "r{r}");
            assert_eq!(
                out.findings.is_empty(),
                user.is_empty(),
                "r{r}: {:?}",
                out.findings
            );

            if !user.is_empty() {
                let out = extract(&pdf, &mut budget()).unwrap();
                assert_eq!(out.children[0].stopped, Some(Stop::Encrypted), "r{r}");
                assert!(out.children[0].data.is_empty());
            }
        }
    }

    #[test]
    fn lzw_and_ascii85_decode() {
        // The example of ISO 32000-1 §7.4.4.2 encodes "-----A---B" as these
        // nine-bit codes: 256 45 258 258 65 259 66 257.
        let codes = [256u16, 45, 258, 258, 65, 259, 66, 257];
        let mut packed = Vec::new();
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in codes {
            acc = (acc << 9) | u32::from(c);
            bits += 9;
            while bits >= 8 {
                packed.push((acc >> (bits - 8)) as u8);
                bits -= 8;
                acc &= (1 << bits) - 1;
            }
        }
        packed.push((acc << (8 - bits)) as u8);
        assert_eq!(lzw_decode(&packed, 1000), (b"-----A---B".to_vec(), false));

        let text: Vec<u8> = (0..20_000u32)
            .map(|i| b"abcabcabd"[(i % 9) as usize] ^ (i / 997) as u8)
            .collect();
        assert_eq!(
            lzw_decode(&lzw_encode(&text), usize::MAX),
            (text.clone(), false)
        );
        assert_eq!(
            lzw_decode(&lzw_encode(&text), 100),
            (text[..100].to_vec(), true)
        );
        for cut in 0..200 {
            let _ = lzw_decode(&lzw_encode(&text)[..cut], usize::MAX);
        }

        assert_eq!(ascii85_decode(b"BOu!rDZ~>"), Some(b"hello".to_vec()));
        assert_eq!(ascii85_decode(b"<~z!!~>"), Some(vec![0, 0, 0, 0, 0]));
        assert_eq!(ascii85_decode(b"BOu!\n rDZ"), Some(b"hello".to_vec()));
        assert_eq!(ascii85_decode(b"BO{u"), None);
    }
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
        // Named by its file specification's /F.
        assert_eq!(find("attachment.bin").data, b"attached bytes");
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
