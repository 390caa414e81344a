//! Zip and OOXML. Entries are read from the central directory; declared
//! sizes decide nothing (they only feed the ratio check as the input size).
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
        match budget.read_capped(entry, compressed) {
            Ok((data, stop)) => {
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
            Err(e) => {
                // CRC mismatch or a corrupt stream: what the recipient's
                // unzip does with it is anyone's guess.
                out.findings.push(FindingKind::Unopenable {
                    format: format!("zip entry {name}: {e}"),
                });
            }
        }
    }
    Ok(out)
}
