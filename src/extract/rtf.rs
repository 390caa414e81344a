//! RTF embedded objects: every `\objdata` group is hex-decoded (RTF
//! readers skip whitespace, stray characters and `\binN` runs, and so do
//! we), then read as an OLE1 object: the class name and the native data.
//! A `Package` object (Windows Packager) carries a file with its original
//! name, which becomes the child's name so the name checks see
//! `invoice.pdf.exe`. Anything that does not parse as OLE1 is passed on
//! decoded, so YARA still sees it.

use super::{Budget, Child, ExtractError, Extracted, display_name};

const FORMAT: &str = "rtf";
const MARK: &[u8] = b"\\objdata";

/// The hex bytes of the group opened just before `from`, decoded, with
/// the offset where the group ends.
fn objdata(data: &[u8], from: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut depth = 1usize;
    let mut high: Option<u8> = None;
    let mut i = from;
    while i < data.len() {
        let b = data[i];
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return (out, i + 1);
                }
            }
            b'\\' => {
                // A control word inside objdata: skip it (and its number);
                // `\binN` is followed by N raw bytes, taken as they are.
                let start = i + 1;
                let mut j = start;
                while j < data.len() && data[j].is_ascii_alphabetic() {
                    j += 1;
                }
                let word = &data[start..j];
                let num_start = j;
                if j < data.len() && data[j] == b'-' {
                    j += 1;
                }
                while j < data.len() && data[j].is_ascii_digit() {
                    j += 1;
                }
                if word == b"bin" {
                    let n: usize = std::str::from_utf8(&data[num_start..j])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let j2 = if data.get(j) == Some(&b' ') { j + 1 } else { j };
                    let end = j2.saturating_add(n).min(data.len());
                    out.extend_from_slice(&data[j2..end]);
                    i = end;
                    continue;
                }
                i = if j == start { j + 1 } else { j };
                continue;
            }
            _ => {
                if let Some(v) = (b as char).to_digit(16) {
                    match high.take() {
                        Some(h) => out.push((h << 4) | v as u8),
                        None => high = Some(v as u8),
                    }
                }
            }
        }
        i += 1;
    }
    (out, data.len())
}

/// A length-prefixed ANSI string; `None` past the end or when absurd.
fn lp_string(d: &[u8], at: &mut usize) -> Option<Vec<u8>> {
    let n = u32::from_le_bytes(d.get(*at..*at + 4)?.try_into().ok()?) as usize;
    *at += 4;
    let s = d.get(*at..at.checked_add(n)?)?;
    *at += n;
    Some(s.strip_suffix(b"\0").unwrap_or(s).to_vec())
}

/// OLE1 ObjectHeader + embedded object ([MS-OLEDS] 2.2.4): class name and
/// native data.
fn ole1(d: &[u8]) -> Option<(String, &[u8])> {
    let mut at = 8; // OLEVersion, FormatID
    let class = lp_string(d, &mut at)?;
    lp_string(d, &mut at)?; // TopicName
    lp_string(d, &mut at)?; // ItemName
    let n = u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?) as usize;
    at += 4;
    let native = d.get(at..at + n.min(d.len() - at))?;
    Some((String::from_utf8_lossy(&class).to_string(), native))
}

fn cstring<'a>(d: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let rest = d.get(*at..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    *at += end + 1;
    Some(&rest[..end])
}

/// The Packager's native data (the `Ole10Native` layout): label, original
/// path, temporary path, then the file. Returns (name, contents).
pub fn package(d: &[u8]) -> Option<(String, &[u8])> {
    let mut at = 2; // signature
    let label = cstring(d, &mut at)?;
    let _source = cstring(d, &mut at)?;
    at += 4; // two reserved 16-bit values
    let tmp_len = u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?) as usize;
    at = at.checked_add(4 + tmp_len)?;
    let n = u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?) as usize;
    at += 4;
    let file = d.get(at..at.checked_add(n)?.min(d.len()))?;
    Some((String::from_utf8_lossy(label).to_string(), file))
}

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    if !data.starts_with(b"{\\rt") {
        return Err(ExtractError::malformed(FORMAT, "no {\\rtf header"));
    }
    let mut out = Extracted::default();
    let mut from = 0;
    while let Some(pos) = memchr::memmem::find(&data[from..], MARK) {
        if !out.room(budget) {
            break;
        }
        let start = from + pos + MARK.len();
        let (mut decoded, end) = objdata(data, start);
        from = end.max(start);
        if decoded.is_empty() {
            continue;
        }
        // Hex halves its input, so no ratio check; the caps still apply.
        let stop = budget.charge(&mut decoded);
        let n = out.children.len() + 1;
        // The OLE class (Word.Document.8, Package, Equation.3…) goes in
        // the declared type, not in a name the extension checks would read.
        let ole_type = |class: &str| Some(format!("application/x-oleobject; class={class}"));
        let (name, declared_type, bytes) = match ole1(&decoded) {
            Some((class, native)) if class.eq_ignore_ascii_case("Package") => {
                match package(native) {
                    Some((name, file)) => (name, None, file.to_vec()),
                    None => (format!("object{n}"), ole_type(&class), native.to_vec()),
                }
            }
            Some((class, native)) => (format!("object{n}"), ole_type(&class), native.to_vec()),
            None => (format!("objdata{n}"), None, decoded),
        };
        let child = Child {
            name: Some(display_name(&name)),
            declared_type,
            data: bytes,
            ..Default::default()
        };
        if out.add(child, stop) {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::test_budget as budget;

    #[test]
    fn package_objects_give_the_file_and_its_name() {
        let rtf = crate::samples::rtf_with_package("invoice.pdf.exe", b"MZ harmless payload");
        let out = extract(&rtf, &mut budget()).unwrap();
        assert_eq!(out.children.len(), 1);
        assert_eq!(out.children[0].name.as_deref(), Some("invoice.pdf.exe"));
        assert_eq!(out.children[0].data, b"MZ harmless payload");
    }

    #[test]
    fn hex_with_noise_control_words_and_bin() {
        let rtf = b"{\\rtf1{\\object{\\*\\objdata 4 1\r\n42{\\*\\foo}\\par 43\\bin2 XY44}}}";
        let out = extract(rtf, &mut budget()).unwrap();
        assert_eq!(out.children[0].data, b"ABCXYD");
        assert_eq!(out.children[0].name.as_deref(), Some("objdata1"));
    }

    #[test]
    fn truncated_and_lying_objects_do_not_panic() {
        let rtf = crate::samples::rtf_with_package("a.exe", &[b'x'; 300]);
        for cut in 0..rtf.len() {
            let _ = extract(&rtf[..cut.max(4)], &mut budget());
        }
        let unclosed = b"{\\rtf1 {\\*\\objdata 0100000002000000ffffffff";
        assert!(extract(unclosed, &mut budget()).is_ok());
    }
}
