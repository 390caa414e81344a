//! Zip and OOXML. Entries are read from the central directory; declared
//! sizes decide nothing (the compressed one feeds the ratio check as the
//! input size), and an entry whose content is longer or shorter than its
//! declared size is flagged; stored, deflated, bzip2, zstd and xz ones are
//! read whole even when the zip crate refuses them.
//! Encrypted entries (ZipCrypto and WinZip AES) are opened with the
//! passwords learnt from the message, else listed by name. Archives that two readers would
//! unpack differently (overlapping entries, local headers that disagree with
//! the central directory, duplicate names) are flagged: that disagreement is
//! how attachments slip past one scanner and open in another program.

use super::{Budget, Child, ExtractError, Extracted, Stop, display_name};
use crate::model::{FindingKind, LimitKind};
use std::io::Cursor;
use zip::result::ZipError;

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut archive =
        zip::ZipArchive::new(Cursor::new(data)).map_err(|e| ExtractError::malformed("zip", e))?;
    let mut out = Extracted::default();

    let mut ambiguity = Vec::new();
    if archive.has_duplicate_names() {
        ambiguity.push("duplicate entry names");
    }
    match archive.has_overlapping_entries() {
        Ok(true) => ambiguity.push("overlapping entries"),
        Ok(false) => {}
        Err(_) => ambiguity.push("entry ranges out of bounds"),
    }
    if !archive.has_duplicate_names() && archive.validate_header_consistency().is_err() {
        ambiguity.push("local headers disagree with the central directory");
    }
    if !ambiguity.is_empty() {
        out.findings.push(FindingKind::AmbiguousArchive {
            reason: ambiguity.join(", "),
        });
    }

    let mut decrypted_with: Vec<String> = Vec::new();
    for i in 0..archive.len() {
        if !out.room(budget) {
            break;
        }
        let (name, encrypted, is_dir, compressed) = match archive.by_index_raw(i) {
            Ok(f) => (
                display_name(&String::from_utf8_lossy(f.name_raw())),
                f.encrypted(),
                f.is_dir(),
                f.compressed_size(),
            ),
            Err(e) => {
                // One broken entry must not hide the others.
                out.findings.push(FindingKind::AmbiguousArchive {
                    reason: format!("entry {i} unreadable: {e}"),
                });
                continue;
            }
        };
        if is_dir {
            continue;
        }
        if encrypted {
            let opened = budget.try_passwords(&[], &[], |budget, password| {
                let entry = archive.by_index_decrypt(i, password.as_bytes()).ok()?;
                // A wrong ZipCrypto password passes the one-byte check once
                // in 256 tries; the CRC (or AES's HMAC) at the end rejects it.
                budget.read_capped(entry, compressed).ok()
            });
            match opened {
                Some(((data, stop), password)) => {
                    if !decrypted_with.contains(&password) {
                        out.findings.push(FindingKind::Decrypted {
                            format: "zip".into(),
                            password: password.clone(),
                        });
                        decrypted_with.push(password);
                    }
                    let child = Child {
                        name: Some(name),
                        data,
                        ..Default::default()
                    };
                    if out.add(child, stop) {
                        break;
                    }
                }
                None => out.children.push(Child {
                    name: Some(name),
                    stopped: Some(Stop::Encrypted),
                    ..Default::default()
                }),
            }
            continue;
        }
        let entry = match archive.by_index(i) {
            Ok(entry) => entry,
            Err(ZipError::UnsupportedArchive(msg)) if msg == ZipError::PASSWORD_REQUIRED => {
                out.children.push(Child {
                    name: Some(name),
                    stopped: Some(Stop::Encrypted),
                    ..Default::default()
                });
                continue;
            }
            Err(e) => {
                out.findings.push(FindingKind::Unopenable {
                    format: format!("zip entry {name}: {e}"),
                });
                continue;
            }
        };
        let declared = entry.size();
        let method = entry.compression();
        let charged = budget.unpacked();
        let (data, stop) = match budget.read_capped(entry, compressed) {
            Ok(read) => read,
            Err(e) => {
                // The zip crate stops at a CRC mismatch or at more bytes
                // than declared; the recipient's unzip may well extract
                // the entry anyway, so its content is read by our own
                // decoders (stored, deflated, bzip2, zstd, xz; other methods
                // stay unopened) and scanned. The error stays a finding
                // unless a size that disagrees explains it (flagged
                // below). What the failed read produced is discarded, so
                // it is not charged twice.
                budget.refund(budget.unpacked().saturating_sub(charged));
                let read = reread(&mut archive, i, method, compressed, budget);
                let explained = read
                    .as_ref()
                    .is_some_and(|(data, stop)| stop.is_none() && data.len() as u64 != declared);
                if !explained {
                    out.findings.push(FindingKind::Unopenable {
                        format: format!("zip entry {name}: {e}"),
                    });
                }
                match read {
                    Some(read) => read,
                    None => continue,
                }
            }
        };
        // Readers that trust the declared size stop short of (or pad
        // past) the content we scanned: the same archive, two files.
        if stop.is_none() && data.len() as u64 != declared {
            out.findings.push(FindingKind::AmbiguousArchive {
                reason: format!(
                    "entry {name} declares {declared} bytes and holds {}",
                    data.len()
                ),
            });
        }
        let hit_total = stop == Some(LimitKind::TotalBytes);
        out.children.push(Child {
            name: Some(name),
            data,
            stopped: stop.map(Stop::Limit),
            ..Default::default()
        });
        if hit_total || stop == Some(LimitKind::Time) {
            out.stopped = stop;
            break;
        }
    }
    Ok(out)
}

/// An unencrypted entry read straight from its raw bytes, without the zip
/// crate's size and CRC checks: stored, deflated, and the methods whose
/// data is a plain stream of a format we already decode (bzip2, zstd, xz),
/// with the same decoder memory bounds as `compress`.
fn reread(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    i: usize,
    method: zip::CompressionMethod,
    compressed: u64,
    budget: &mut Budget,
) -> Option<(Vec<u8>, Option<LimitKind>)> {
    use zip::CompressionMethod as M;
    let raw = archive.by_index_raw(i).ok()?;
    match method {
        M::Stored => budget.read_capped(raw, compressed).ok(),
        M::Deflated => budget
            .read_capped(flate2::read::DeflateDecoder::new(raw), compressed)
            .ok(),
        M::Bzip2 => budget
            .read_capped(bzip2::read::BzDecoder::new(raw), compressed)
            .ok(),
        M::Xz => budget
            .read_capped(super::compress::xz_reader(raw), compressed)
            .ok(),
        M::Zstd => budget
            .read_capped(super::compress::zstd_reader(raw).ok()?, compressed)
            .ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use std::time::Instant;

    /// A deflated one-entry zip whose headers (local and central) declare
    /// `declared` uncompressed bytes; the stream holds `content`.
    fn lying(content: &[u8], declared: u32) -> Vec<u8> {
        lying_with(zip::CompressionMethod::Deflated, content, declared)
    }

    fn lying_with(method: zip::CompressionMethod, content: &[u8], declared: u32) -> Vec<u8> {
        let mut zip = crate::samples::zip_methods(&[("a.txt", method, content)]);
        let local = 0;
        zip[local + 22..local + 26].copy_from_slice(&declared.to_le_bytes());
        let central = zip
            .windows(4)
            .position(|w| w == b"PK\x01\x02")
            .expect("central header");
        zip[central + 24..central + 28].copy_from_slice(&declared.to_le_bytes());
        zip
    }

    fn open(zip: &[u8]) -> Extracted {
        extract(zip, &mut Budget::new(Limits::default(), Instant::now())).expect("zip opens")
    }

    fn size_findings(out: &Extracted) -> Vec<String> {
        out.findings
            .iter()
            .filter_map(|f| match f {
                FindingKind::AmbiguousArchive { reason } if reason.contains("declares") => {
                    Some(reason.clone())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn honest_sizes_raise_nothing() {
        let out = open(&lying(&[7u8; 5000], 5000));
        assert_eq!(out.children[0].data.len(), 5000);
        assert!(out.findings.is_empty(), "{:?}", out.findings);
    }

    #[test]
    fn an_entry_larger_than_declared_is_read_whole_and_flagged() {
        // Readers that trust the declared size stop after 100 bytes; the
        // other 4 900 are what we must still see.
        let mut content = vec![b'a'; 100];
        content.extend_from_slice(&[b'z'; 4900]);
        let out = open(&lying(&content, 100));
        let found = size_findings(&out);
        assert_eq!(found.len(), 1, "{:?}", out.findings);
        assert!(found[0].contains("a.txt"), "{found:?}");
        assert_eq!(out.children[0].data, content);
    }

    #[test]
    fn larger_than_declared_is_read_whole_for_every_stream_method() {
        let mut content = vec![b'a'; 100];
        content.extend_from_slice(&[b'z'; 4900]);
        for method in [
            zip::CompressionMethod::Stored,
            zip::CompressionMethod::Bzip2,
            zip::CompressionMethod::Zstd,
            zip::CompressionMethod::Xz,
        ] {
            let out = open(&lying_with(method, &content, 100));
            assert_eq!(
                size_findings(&out).len(),
                1,
                "{method:?}: {:?}",
                out.findings
            );
            assert_eq!(out.children[0].data, content, "{method:?}");
        }
    }

    #[test]
    fn an_entry_smaller_than_declared_is_flagged() {
        let out = open(&lying(&[7u8; 100], 5000));
        assert_eq!(size_findings(&out).len(), 1, "{:?}", out.findings);
        assert_eq!(out.children[0].data.len(), 100);
    }
}
