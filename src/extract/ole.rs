//! OLE2 / Compound File Binary (doc, xls, ppt, msg, vbaProject.bin, and
//! the objects other documents embed): every stream becomes an object,
//! with three readings on top:
//!
//! - VBA module streams give their source code, decompressed (MS-OVBA
//!   2.4.1), instead of the compiled p-code, so rules read the macro as
//!   text (`Sub AutoOpen()`, `Shell`, …);
//! - `\x01Ole10Native` streams (Packager objects) give the embedded file
//!   under its original name;
//! - `EncryptionInfo` + `EncryptedPackage` (a password-protected OOXML
//!   document) is decrypted with a password from the message when one
//!   fits (MS-OFFCRYPTO agile and standard AES, [`crypto`]), else reported
//!   encrypted, with its own policy.
//!
//! The container itself is scanned whole as well, by the pipeline.

pub mod crypto;

use super::{Budget, Child, ExtractError, Extracted, Stop, display_name};
use crate::model::FindingKind;
use std::io::{Cursor, Read};
use std::time::Instant;

/// Excel opens a workbook encrypted with this password without asking:
/// "encryption" that only hides the content from gateways.
const EXCEL_DEFAULT_PASSWORD: &str = "VelvetSweatshop";
/// Office writes 100 000; the specification allows up to 10 million.
const MAX_SPIN_COUNT: u32 = 10_000_000;

/// The plain package of an encrypted document, if a password fits.
fn decrypt_package(
    cf: &mut cfb::CompoundFile<Cursor<&[u8]>>,
    budget: &mut Budget,
) -> Option<(Vec<u8>, Option<crate::model::LimitKind>, String)> {
    let mut read = |name: &str| -> Option<Vec<u8>> {
        let mut bytes = Vec::new();
        let limit = budget.limits.max_object_bytes.saturating_add(4096);
        cf.open_stream(name)
            .ok()?
            .take(limit)
            .read_to_end(&mut bytes)
            .ok()?;
        Some(bytes)
    };
    let info = read("/EncryptionInfo")?;
    let package = read("/EncryptedPackage")?;
    let scheme = crypto::parse(&info).ok()?;
    let until = Instant::now() + budget.passwords.time_left().min(budget.remaining_time());
    let (key, password) = budget.try_passwords(&[], &[EXCEL_DEFAULT_PASSWORD], |_, password| {
        crypto::unlock(&scheme, password, MAX_SPIN_COUNT, until)
            .ok()
            .flatten()
    })?;
    let (cap, kind) = budget.cap();
    let (mut plain, cut) = crypto::decrypt(
        &scheme,
        &key,
        &package,
        usize::try_from(cap).unwrap_or(usize::MAX),
    )
    .ok()?;
    let stop = budget.charge(&mut plain).or(cut.then_some(kind));
    Some((plain, stop, password))
}

const FORMAT: &str = "ole2";

/// MS-OVBA compressed container → bytes, at most `cap` of them. `None`
/// when it is not one (bad signature byte). Corrupt input ends early
/// rather than failing: what was decoded so far is returned.
pub fn decompress(data: &[u8], cap: usize) -> Option<Vec<u8>> {
    if data.first() != Some(&0x01) {
        return None;
    }
    let mut out: Vec<u8> = Vec::new();
    let mut pos = 1;
    while pos + 2 <= data.len() && out.len() < cap {
        let chunk_start = pos;
        let header = u16::from_le_bytes([data[pos], data[pos + 1]]);
        pos += 2;
        let size = usize::from(header & 0x0fff) + 3;
        let chunk_end = (chunk_start + size).min(data.len());
        let out_start = out.len();
        if header & 0x8000 == 0 {
            // A raw chunk: 4096 bytes as they are.
            let end = (pos + 4096).min(data.len());
            let take = (end - pos).min(cap - out.len());
            out.extend_from_slice(&data[pos..pos + take]);
            pos = end;
            continue;
        }
        while pos < chunk_end && out.len() < cap {
            let flags = data[pos];
            pos += 1;
            for bit in 0..8 {
                if pos >= chunk_end || out.len() >= cap {
                    break;
                }
                if flags & (1 << bit) == 0 {
                    out.push(data[pos]);
                    pos += 1;
                    continue;
                }
                if pos + 2 > chunk_end {
                    return Some(out);
                }
                let token = u16::from_le_bytes([data[pos], data[pos + 1]]);
                pos += 2;
                let done = out.len() - out_start;
                let bits = (usize::BITS - done.saturating_sub(1).leading_zeros()).max(4);
                let length_mask = 0xffffu16 >> bits;
                let length = usize::from(token & length_mask) + 3;
                let offset = usize::from(token >> (16 - bits)) + 1;
                if offset > done {
                    // Points before the chunk: corrupt.
                    return Some(out);
                }
                let from = out.len() - offset;
                for i in 0..length {
                    if out.len() >= cap {
                        break;
                    }
                    out.push(out[from + i]);
                }
            }
        }
        pos = pos.max(chunk_end);
    }
    Some(out)
}

/// The source code in a VBA module stream: after the p-code, where a
/// compressed container starts whose first tokens are the literal
/// "Attribut" (every module begins `Attribute VB_Name`). Finding it by
/// that mark rather than through the `dir` stream's offsets also reads
/// modules whose `dir` was damaged or tampered with.
pub fn vba_source(stream: &[u8], cap: usize) -> Option<Vec<u8>> {
    let mark = memchr::memmem::find(stream, b"\x00Attribut")?;
    let start = mark.checked_sub(3)?;
    let src = decompress(&stream[start..], cap)?;
    src.starts_with(b"Attribut").then_some(src)
}

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut cf = cfb::CompoundFile::open(Cursor::new(data))
        .map_err(|e| ExtractError::malformed(FORMAT, e))?;
    let streams: Vec<(std::path::PathBuf, u64)> = cf
        .walk()
        .filter(|e| e.is_stream())
        .map(|e| (e.path().to_path_buf(), e.len()))
        .collect();
    let mut out = Extracted::default();
    let has = |name: &str| {
        streams
            .iter()
            .any(|(p, _)| p == std::path::Path::new("/").join(name).as_path())
    };
    let encrypted = has("EncryptionInfo") && has("EncryptedPackage");
    for (path, len) in &streams {
        if !out.room(budget) {
            break;
        }
        let label = display_name(path.to_string_lossy().trim_start_matches('/'));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if encrypted && name == "EncryptedPackage" {
            match decrypt_package(&mut cf, budget) {
                Some((plain, stop, password)) => {
                    out.findings.push(FindingKind::Decrypted {
                        format: "office".into(),
                        password,
                    });
                    let child = Child {
                        name: Some(format!("{label} [decrypted]")),
                        data: plain,
                        ..Default::default()
                    };
                    if out.add(child, stop) {
                        break;
                    }
                }
                None => out.children.push(Child {
                    name: Some(label),
                    stopped: Some(Stop::Encrypted),
                    ..Default::default()
                }),
            }
            continue;
        }
        let stream = match cf.open_stream(path) {
            Ok(s) => s,
            Err(_) => continue,
        };
        let (bytes, stop) = budget
            .read_capped(stream, (*len).max(1))
            .map_err(|e| ExtractError::malformed(FORMAT, e))?;
        let in_vba = path
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|p| p.eq_ignore_ascii_case("VBA"));
        let vba_module = in_vba
            && !name.eq_ignore_ascii_case("dir")
            && !name.starts_with("_VBA_PROJECT")
            && !name.starts_with("__SRP_");
        let cap = budget.limits.max_object_bytes as usize;
        let (child, stop) = if vba_module && let Some(mut src) = vba_source(&bytes, cap) {
            let stop = budget.charge(&mut src).or(stop);
            let child = Child {
                name: Some(format!("{label} [VBA source]")),
                declared_type: Some("text/plain".into()),
                data: src,
                ..Default::default()
            };
            (child, stop)
        } else if name == "\u{1}Ole10Native"
            && let Some((file_name, file)) = bytes.get(4..).and_then(super::rtf::package)
        {
            let child = Child {
                name: Some(display_name(&file_name)),
                data: file.to_vec(),
                ..Default::default()
            };
            (child, stop)
        } else {
            let child = Child {
                name: Some(label),
                data: bytes,
                ..Default::default()
            };
            (child, stop)
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
    use crate::extract::test_budget;

    #[test]
    fn decompresses_the_ms_ovba_example() {
        // MS-OVBA 3.2.3, "Example of compressed data": copy tokens at
        // several positions in the chunk.
        let compressed = [
            0x01, 0x2f, 0xb0, 0x00, 0x23, 0x61, 0x61, 0x61, 0x62, 0x63, 0x64, 0x65, 0x82, 0x66,
            0x00, 0x70, 0x61, 0x67, 0x68, 0x69, 0x6a, 0x01, 0x38, 0x08, 0x61, 0x6b, 0x6c, 0x00,
            0x30, 0x6d, 0x6e, 0x6f, 0x70, 0x06, 0x71, 0x02, 0x70, 0x04, 0x10, 0x72, 0x73, 0x74,
            0x75, 0x76, 0x10, 0x77, 0x78, 0x79, 0x7a, 0x00, 0x3c,
        ];
        let out = decompress(&compressed, 1 << 20).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa"
        );
    }

    #[test]
    fn round_trips_our_literal_compressor_and_stops_at_the_cap() {
        let text = b"Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\nEnd Sub\r\n".repeat(200);
        let packed = crate::samples::ovba_compress(&text);
        assert_eq!(decompress(&packed, 1 << 20).unwrap(), text);
        assert_eq!(decompress(&packed, 100).unwrap().len(), 100);
        for cut in 0..packed.len().min(300) {
            let _ = decompress(&packed[..cut], 1 << 20);
        }
    }

    #[test]
    fn a_vba_project_gives_module_source_and_packager_files() {
        let doc = crate::samples::ole_document(
            &[(
                "Module1",
                "Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\n  MsgBox 1\r\nEnd Sub\r\n",
            )],
            Some(("payload.exe", b"MZ harmless")),
        );
        let out = extract(&doc, &mut test_budget()).unwrap();
        let find = |n: &str| out.children.iter().find(|c| c.name.as_deref() == Some(n));
        let src = find("Macros/VBA/Module1 [VBA source]").expect("module source");
        assert!(String::from_utf8_lossy(&src.data).contains("Sub AutoOpen()"));
        assert_eq!(
            find("payload.exe").expect("packager file").data,
            b"MZ harmless"
        );
        assert!(find("WordDocument").is_some());
    }

    #[test]
    fn encrypted_ooxml_is_reported_encrypted() {
        let doc = crate::samples::encrypted_office();
        let out = extract(&doc, &mut test_budget()).unwrap();
        assert!(
            out.children
                .iter()
                .any(|c| c.stopped == Some(Stop::Encrypted))
        );
    }
}
