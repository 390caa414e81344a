//! Disk images: what Windows mounts with a double click. Before the 2022
//! updates, files inside a mounted image skipped Mark-of-the-Web, which
//! made .iso and .img the droppers' favourite wrapper; they still are.
//!
//! Both readers ([`fat`], [`iso`]) only list files as byte ranges of the
//! image, following cluster chains and directory trees with loop and depth
//! guards; the bytes are copied out here, through the budget.

pub mod fat;
pub mod iso;

use super::{Budget, ExtractError, Extracted};

/// The bytes of a file: its extents `(offset, length)` of `img` in order,
/// each clamped to the image, at most `max_bytes` in all; true when that
/// cut the copy.
fn copy_extents(img: &[u8], extents: &[(u64, u64)], max_bytes: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    for &(offset, len) in extents {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(img.len());
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(img.len());
        let piece = &img[start..end];
        let room = max_bytes.saturating_sub(out.len());
        if piece.len() > room {
            out.extend_from_slice(&piece[..room]);
            return (out, true);
        }
        out.extend_from_slice(piece);
    }
    (out, false)
}

/// One component of a path inside an image, from attacker-chosen bytes:
/// no separators, control characters or dot names that would forge
/// another path.
fn path_component(name: String) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.is_empty() || s == "." || s == ".." {
        "_".into()
    } else {
        s
    }
}
use crate::model::{FindingKind, LimitKind};

/// FAT12/16/32 volumes: a bare volume, or the FAT partitions of an MBR or
/// GPT disk.
pub fn extract_fat(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let listing = fat::list(data, budget.limits.max_objects)
        .map_err(|e| ExtractError::malformed("fat", e))?;
    let mut out = Extracted::default();
    let mut damaged = Vec::new();
    for entry in &listing.entries {
        if !out.room(budget) {
            break;
        }
        if entry.truncated {
            damaged.push(entry.path.clone());
        }
        let name = super::display_name(&entry.path);
        if out.add_read(budget, name, |cap| fat::read(data, entry, cap)) {
            break;
        }
    }
    if !damaged.is_empty() {
        // A chain that loops or leaves the image: Windows reads something
        // else than what we scanned.
        damaged.truncate(5);
        out.findings.push(FindingKind::AmbiguousArchive {
            reason: format!("fat: broken cluster chains ({})", damaged.join(", ")),
        });
    }
    if listing.entries_cut && out.stopped.is_none() {
        out.stopped = Some(LimitKind::Objects);
    }
    Ok(out)
}

/// ISO 9660 (with Joliet and Rock Ridge names) and UDF. A bridge image
/// carries both trees, and they can disagree: Windows shows the UDF tree,
/// many scanners read only ISO 9660. Every tree is read; a file in one and
/// not the other, or a name that points at different bytes, is an
/// ambiguity worth a finding of its own.
pub fn extract_iso(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let listing = iso::list(data, budget.limits.max_objects)
        .map_err(|e| ExtractError::malformed("iso", e))?;
    let mut out = Extracted::default();
    for entry in &listing.entries {
        if !out.room(budget) {
            break;
        }
        let name = super::display_name(&entry.path);
        if out.add_read(budget, name, |cap| iso::read(data, entry, cap)) {
            break;
        }
    }
    let disagreements: Vec<&String> = listing
        .anomalies
        .iter()
        .filter(|a| a.contains("but not by") || a.contains("point at different data"))
        .take(5)
        .collect();
    if !disagreements.is_empty() {
        out.findings.push(FindingKind::AmbiguousArchive {
            reason: format!(
                "iso: the image's file system trees disagree ({})",
                disagreements
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
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
    use crate::pipeline::identify::{FileType, detect};

    #[test]
    fn fat_images_and_partitions_are_unpacked() {
        let files: &[(&str, &[u8])] = &[
            ("DOCS/Invoice 2024.pdf.exe", b"MZ payload"),
            ("readme.txt", b"hi"),
        ];
        for img in [fat::build_fat12(files), fat::build_mbr_fat16(files)] {
            assert_eq!(detect(&img), FileType::FatImage);
            let mut got = named(extract_fat(&img, &mut test_budget()).unwrap());
            got.sort();
            assert_eq!(
                got,
                owned(&[
                    ("DOCS/Invoice 2024.pdf.exe", b"MZ payload"),
                    ("readme.txt", b"hi")
                ])
            );
        }
    }

    #[test]
    fn caps_apply_to_each_file() {
        let big = vec![7u8; 200_000];
        let img = fat::build_fat12(&[("big.bin", &big)]);
        let mut b = test_budget();
        b.limits.max_object_bytes = 1000;
        let out = extract_fat(&img, &mut b).unwrap();
        assert_eq!(out.children[0].data.len(), 1000);
        assert_eq!(
            out.children[0].stopped,
            Some(crate::extract::Stop::Limit(LimitKind::ObjectBytes))
        );
    }
}
