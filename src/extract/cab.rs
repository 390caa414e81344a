//! Windows cabinets (.cab), through the `cab` crate: stored, MSZIP and LZX
//! folders. Quantum folders (rare, 1990s) are listed by name only.
//!
//! Every count and size in a cabinet header is 16 or 32 bits and the crate
//! allocates by them at most per data block (64 KiB), so the header cannot
//! buy much memory; output goes through the budget as usual. The LZX
//! decoder is third-party code fed attacker bytes, so the whole cabinet is
//! read under `catch_unwind`: a panic there makes the cabinet unopenable,
//! not the process gone.

use super::{Budget, Child, ExtractError, Extracted, Stop};
use crate::model::{FindingKind, Outcome};
use cab::{Cabinet, CompressionType};
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

const FORMAT: &str = "cab";

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    catch_unwind(AssertUnwindSafe(|| read(data, budget)))
        .unwrap_or_else(|_| Err(ExtractError::malformed(FORMAT, "the decoder gave up on it")))
}

fn read(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut cabinet =
        Cabinet::new(Cursor::new(data)).map_err(|e| ExtractError::malformed(FORMAT, e))?;
    let entries: Vec<(String, bool)> = cabinet
        .folder_entries()
        .flat_map(|folder| {
            let quantum = matches!(folder.compression_type(), CompressionType::Quantum(..));
            folder
                .file_entries()
                .map(move |file| (file.name().to_string(), quantum))
        })
        .collect();
    let mut out = Extracted::default();
    let mut names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        // Readers differ on which of two same-named files they extract.
        out.findings.push(FindingKind::AmbiguousArchive {
            reason: "duplicate entry names".into(),
        });
    }
    let mut unsupported = false;
    for (raw_name, quantum) in &entries {
        if !out.room(budget) {
            break;
        }
        let name = super::display_name(raw_name);
        if *quantum {
            unsupported = true;
            out.children.push(Child {
                name: Some(name),
                stopped: Some(Stop::NotRead(Outcome::Unsupported {
                    format: "cab (Quantum)".into(),
                })),
                ..Default::default()
            });
            continue;
        }
        let read = cabinet
            .read_file(raw_name)
            .and_then(|reader| budget.read_capped(reader, data.len() as u64));
        match read {
            Ok((bytes, stop)) => {
                let child = Child {
                    name: Some(name),
                    data: bytes,
                    ..Default::default()
                };
                if out.add(child, stop) {
                    break;
                }
            }
            Err(e) => {
                // A checksum or decoding error in one folder must not hide
                // the files of the others.
                out.findings.push(FindingKind::Unopenable {
                    format: format!("{FORMAT} entry {name}: {e}"),
                });
                out.children.push(Child {
                    name: Some(name),
                    stopped: Some(Stop::NotRead(Outcome::Malformed {
                        error: e.to_string(),
                    })),
                    ..Default::default()
                });
            }
        }
    }
    if unsupported {
        out.findings.push(FindingKind::Unopenable {
            format: "cab: Quantum-compressed folder".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{named, owned, test_budget};
    use crate::model::LimitKind;
    use crate::samples::cabinet;

    #[test]
    fn stored_and_mszip_folders() {
        let files: &[(&str, &[u8])] = &[
            ("setup.exe", b"MZ not really"),
            ("docs\\readme.txt", &[b'a'; 5000]),
        ];
        // The crate writes no LZX, so LZX decoding is covered by the fuzz target only.
        for method in [CompressionType::None, CompressionType::MsZip] {
            let data = cabinet(files, method);
            let out = extract(&data, &mut test_budget()).unwrap();
            assert!(out.findings.is_empty(), "{method:?}: {:?}", out.findings);
            assert_eq!(named(out), owned(files), "{method:?}");
        }
    }

    #[test]
    fn caps_apply_while_inflating() {
        let big = vec![0u8; 2 << 20];
        let data = cabinet(&[("big.bin", &big)], CompressionType::MsZip);
        let mut b = test_budget();
        b.limits.max_object_bytes = 100_000;
        let out = extract(&data, &mut b).unwrap();
        assert_eq!(out.children[0].data.len(), 100_000);
        assert_eq!(
            out.children[0].stopped,
            Some(Stop::Limit(LimitKind::ObjectBytes))
        );
    }

    /// Found by the extract fuzz target (2026-11-27): a folder whose block
    /// sizes disagree makes cab 0.6's FolderReader subtract past zero
    /// (folder.rs:232; an index panic without overflow checks). The panic
    /// stays inside the cabinet: it is unopenable, nothing more.
    #[test]
    fn a_cab_crate_panic_is_contained() {
        let hex: String = [
            "144d53434600000000b9000000000000002c0000000000000003010100020000",
            "0000000000600000000101000072000000000000000000225800002000736574",
            "75702e696e660044000000090000000000000000000000000000000000000000",
            "00000000000000000000000000000022580000200065696361722e636f6d00ff",
            "c255ac51004d00434b8b0e4b2d2acecccf8b8d30f5570c5075700c8836890988",
            "8a3035d10888d3347776d634af5571f574760cd20d0e71f473710c72d175f40b",
            "f10cf30c0a0dd60d710d0ed175f3f4715554f1d0f6d00200",
        ]
        .concat();
        let data = hex::decode(hex).unwrap();
        // The fuzz input's first byte picked the format.
        let cab = &data[1..];
        assert!(cab.starts_with(b"MSCF"));
        match extract(cab, &mut test_budget()) {
            Err(ExtractError::Malformed { message, .. }) => assert!(message.contains("gave up")),
            other => panic!("expected a contained panic, got {other:?}"),
        }
    }

    #[test]
    fn truncated_and_mutated_cabinets_never_panic() {
        let data = cabinet(
            &[
                ("a.txt", b"hello world hello world"),
                ("b.bin", &[7u8; 900]),
            ],
            CompressionType::MsZip,
        );
        for cut in 0..data.len() {
            let _ = extract(&data[..cut], &mut test_budget());
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut d = data.clone();
            for _ in 0..1 + (seed % 8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % d.len();
                d[at] = (seed >> 40) as u8;
            }
            if let Ok(out) = extract(&d, &mut test_budget()) {
                assert!(out.children.len() <= 2);
            }
        }
    }
}
