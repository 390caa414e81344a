//! RAR 4 and RAR 5: every name listed, stored entries extracted.
//!
//! No permissively licensed RAR decompressor exists, and unrar's licence
//! forbids re-creating the algorithm, so compressed entries are listed by
//! name with the outcome `unsupported`, and the archive carries one
//! `UNOPENABLE` finding saying how many were left closed. Listing still
//! matters: name and extension checks judge every entry, and the report
//! shows what was inside. Entries stored without compression (`rar a -m0`,
//! which droppers use) are read and checked against their CRC.
//!
//! The header walk ([`format`]) is our own, from the published format
//! descriptions.

pub mod format;

use super::{Budget, Child, ExtractError, Extracted, Stop};
use crate::model::{FindingKind, LimitKind, Outcome};

const FORMAT: &str = "rar";

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let listing = format::list(data, budget.limits.max_objects)
        .map_err(|e| ExtractError::malformed(FORMAT, e))?;
    let mut out = Extracted::default();
    if listing.headers_encrypted {
        out.children.push(Child {
            name: Some("(names encrypted)".into()),
            stopped: Some(Stop::Encrypted),
            ..Default::default()
        });
        return Ok(out);
    }
    let mut closed = 0usize;
    for entry in &listing.entries {
        if entry.is_dir {
            continue;
        }
        if !out.room(budget) {
            break;
        }
        let name = Some(super::display_name(&entry.name));
        if entry.encrypted {
            out.children.push(Child {
                name,
                stopped: Some(Stop::Encrypted),
                ..Default::default()
            });
            continue;
        }
        // Stored bytes are a slice of the input, so reading them whole
        // costs no more than the input; the budget then cuts them.
        match format::read_stored(data, entry, usize::MAX) {
            Some(Ok((bytes, _))) => {
                let child = Child {
                    name,
                    data: bytes,
                    ..Default::default()
                };
                if out.add_charged(budget, child) {
                    break;
                }
            }
            Some(Err(e)) => {
                out.findings.push(FindingKind::Unopenable {
                    format: format!("{FORMAT} entry {}: {e}", entry.name),
                });
                out.children.push(Child {
                    name,
                    stopped: Some(Stop::NotRead(Outcome::Malformed {
                        error: e.to_string(),
                    })),
                    ..Default::default()
                });
            }
            None => {
                closed += 1;
                let why = if entry.split {
                    "rar (continues in another volume)"
                } else {
                    "rar (compressed)"
                };
                out.children.push(Child {
                    name,
                    stopped: Some(Stop::NotRead(Outcome::Unsupported { format: why.into() })),
                    ..Default::default()
                });
            }
        }
    }
    if closed > 0 {
        out.findings.push(FindingKind::Unopenable {
            format: format!("{FORMAT}: {closed} compressed entries listed, not unpacked"),
        });
    }
    if listing.truncated {
        out.findings.push(FindingKind::Unopenable {
            format: format!("{FORMAT}: archive cut short or damaged"),
        });
    }
    if listing.entries_cut && out.stopped.is_none() {
        out.stopped = Some(LimitKind::Objects);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{named, owned, test_budget};

    #[test]
    fn stored_entries_are_read_and_compressed_ones_listed() {
        let files: &[(&str, &[u8])] = &[("docs/", b""), ("docs/a.txt", b"alpha"), ("b.exe", b"MZ")];
        for data in [
            format::build_rar5_stored(files),
            format::build_rar4_stored(files),
        ] {
            let out = extract(&data, &mut test_budget()).unwrap();
            assert!(out.findings.is_empty(), "{:?}", out.findings);
            assert_eq!(
                named(out),
                owned(&[("docs/a.txt", b"alpha"), ("b.exe", b"MZ")])
            );
        }
        // Mark the second file compressed by hand: RAR 4's method byte.
        let mut data = format::build_rar4_stored(&[("a.txt", b"alpha"), ("b.exe", b"MZ")]);
        let listing = format::list(&data, 10).unwrap();
        let second = listing.entries[1].packed.0 as usize;
        // FILE_HEAD: method at +25 of the header, name follows at +32.
        let head = second - 32 - "b.exe".len();
        data[head + 25] = 0x33;
        let out = extract(&data, &mut test_budget()).unwrap();
        assert_eq!(out.children.len(), 2);
        assert!(matches!(
            &out.children[1].stopped,
            Some(Stop::NotRead(Outcome::Unsupported { .. }))
        ));
        assert!(matches!(
            &out.findings[..],
            [FindingKind::Unopenable { format }] if format.contains("1 compressed")
        ));
        assert_eq!(out.children[0].data, b"alpha");
    }
}
