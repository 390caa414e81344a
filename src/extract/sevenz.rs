//! 7z, through sevenz-rust2 (LZMA, LZMA2, PPMd, BZip2, Deflate, Zstd, the
//! BCJ filters, AES-256).
//!
//! Three guards sit around the decoder. Its memory limit bounds the header
//! buffers and each coder's dictionary, which a hostile header can declare
//! at 4 GiB. Output goes through [`Budget::read_capped`], and when a limit
//! cuts an entry short the rest of its block is abandoned rather than
//! drained (draining a bomb is exactly the work the limit exists to
//! refuse); the entries left in that block are still listed by name. And a
//! password attempt decodes at most one entry.
//!
//! Encryption comes in two strengths: content only (names readable: each
//! locked entry is listed as encrypted), and headers too (`7z a -mhe`:
//! nothing but the fact of encryption is visible). Either way the passwords
//! learnt from the message are tried first.

use super::{Budget, Child, ExtractError, Extracted, Stop};
use crate::model::{FindingKind, LimitKind, Outcome};
use sevenz_rust2::{Archive, ArchiveEntry, BlockDecoder, Error, Password};
use std::io::{Cursor, Read};

const FORMAT: &str = "7z";
/// Per coder dictionary and per header buffer, in KiB. 7-Zip's ultra
/// setting uses a 64 MiB dictionary; anything above is not ordinary mail.
const MEMORY_LIMIT_KB: usize = 256 << 10;
/// Decoded by a password attempt before it is believed: a wrong AES key
/// makes the LZMA stream fail within its first bytes, and a short entry is
/// read whole and checked against its CRC.
const PROBE_BYTES: u64 = 1 << 20;

fn password(p: &str) -> Password {
    if p.is_empty() {
        Password::empty()
    } else {
        Password::from(p)
    }
}

fn read_archive(data: &[u8], pw: &Password) -> Result<Archive, Error> {
    Archive::read_with_memory_limit(&mut Cursor::new(data), pw, MEMORY_LIMIT_KB)
}

fn locked(e: &Error) -> bool {
    matches!(e, Error::PasswordRequired | Error::MaybeBadPassword(_))
}

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut out = Extracted::default();
    let archive = match read_archive(data, &Password::empty()) {
        Ok(archive) => archive,
        Err(e) if locked(&e) => {
            // Encrypted headers: the names are ciphertext too.
            let opened = budget.try_passwords(&[], &[], |_, candidate| {
                let pw = password(candidate);
                read_archive(data, &pw).ok().map(|a| (a, pw))
            });
            let Some(((archive, pw), candidate)) = opened else {
                out.children.push(Child {
                    name: Some("(names encrypted)".into()),
                    stopped: Some(Stop::Encrypted),
                    ..Default::default()
                });
                return Ok(out);
            };
            out.findings.push(decrypted(&candidate));
            entries(&archive, data, &pw, budget, &mut out);
            return Ok(out);
        }
        Err(e) => return Err(ExtractError::malformed(FORMAT, e)),
    };
    let first_locked = (0..archive.files.len()).find(|&i| archive.is_file_encrypted(i));
    let mut pw = Password::empty();
    if let Some(target) = first_locked {
        let opened = budget.try_passwords(&[], &[], |_, candidate| {
            let pw = password(candidate);
            probe(&archive, data, &pw, target).then_some(pw)
        });
        if let Some((found, candidate)) = opened {
            out.findings.push(decrypted(&candidate));
            pw = found;
        }
    }
    entries(&archive, data, &pw, budget, &mut out);
    Ok(out)
}

fn decrypted(password: &str) -> FindingKind {
    FindingKind::Decrypted {
        format: FORMAT.into(),
        password: password.into(),
    }
}

/// Index of `entry` in `files`, from its address: the decoder hands out
/// references into the archive's own list, and names may repeat.
fn index_of(files: &[ArchiveEntry], entry: &ArchiveEntry) -> Option<usize> {
    let size = std::mem::size_of::<ArchiveEntry>().max(1);
    let offset = (entry as *const ArchiveEntry as usize).checked_sub(files.as_ptr() as usize)?;
    let i = offset / size;
    (offset % size == 0 && i < files.len()).then_some(i)
}

fn block_of(archive: &Archive, file: usize) -> Option<usize> {
    archive
        .stream_map
        .file_block_index
        .get(file)
        .copied()
        .flatten()
}

/// Whether `pw` decodes entry `target`: its first [`PROBE_BYTES`] decode,
/// and if that is all of it, its CRC matches.
fn probe(archive: &Archive, data: &[u8], pw: &Password, target: usize) -> bool {
    let Some(block) = block_of(archive, target) else {
        return false;
    };
    let mut source = Cursor::new(data);
    let decoder =
        BlockDecoder::new_with_memory_limit(1, MEMORY_LIMIT_KB, block, archive, pw, &mut source);
    let mut ok = false;
    let result = decoder.for_each_entries(&mut |entry, r| {
        if index_of(&archive.files, entry) != Some(target) {
            // Entries before the target in a solid block must be decoded
            // to reach it.
            return Ok(true);
        }
        let mut sink = Vec::new();
        r.take(PROBE_BYTES).read_to_end(&mut sink)?;
        ok = sink.len() as u64 == entry.size.min(PROBE_BYTES);
        // Read whole, returning true lets the decoder check the CRC;
        // returning false abandons the rest of a large entry.
        Ok(sink.len() as u64 == entry.size)
    });
    result.is_ok() && ok
}

/// Reads every entry block by block. Blocks that stay locked are skipped,
/// their entries listed as encrypted; a damaged block does not hide the
/// blocks after it.
fn entries(
    archive: &Archive,
    data: &[u8],
    pw: &Password,
    budget: &mut Budget,
    out: &mut Extracted,
) {
    let files = &archive.files;
    let mut seen = vec![false; files.len()];
    // A block abandoned for a limit: the entries left in it get that limit.
    let mut cut: Vec<Option<LimitKind>> = vec![None; archive.blocks.len()];
    let input = data.len() as u64;
    let locked_block = |b: usize| {
        pw.is_empty()
            && archive
                .stream_map
                .block_first_file_index
                .get(b)
                .is_some_and(|&f| archive.is_file_encrypted(f))
    };
    'blocks: for (b, cut) in cut.iter_mut().enumerate() {
        if locked_block(b) {
            continue;
        }
        let mut halt = false;
        let mut source = Cursor::new(data);
        let decoder =
            BlockDecoder::new_with_memory_limit(1, MEMORY_LIMIT_KB, b, archive, pw, &mut source);
        let result = decoder.for_each_entries(&mut |entry, r| {
            let Some(i) = index_of(files, entry) else {
                return Ok(true);
            };
            seen[i] = true;
            if entry.is_directory || entry.is_anti_item {
                return Ok(true);
            }
            if !out.room(budget) {
                halt = true;
                return Ok(false);
            }
            let (bytes, stop) = budget.read_capped(r, input)?;
            let child = Child {
                name: Some(super::display_name(&entry.name)),
                data: bytes,
                ..Default::default()
            };
            halt = out.add(child, stop);
            // On a limit the rest of the block is abandoned, not drained.
            *cut = stop;
            Ok(stop.is_none())
        });
        if let Err(e) = result {
            // Entries read before the damage stand; the rest are listed.
            out.findings.push(FindingKind::Unopenable {
                format: format!("{FORMAT} block {b}: {e}"),
            });
        }
        if halt {
            break 'blocks;
        }
    }
    if out.stopped.is_some() {
        return;
    }
    // Entries the blocks did not reach: empty files (no block), locked
    // ones, and those behind a limit or damage.
    for (i, f) in files.iter().enumerate() {
        if seen[i] || f.is_directory || f.is_anti_item {
            continue;
        }
        if !out.room(budget) {
            break;
        }
        let block = block_of(archive, i);
        let stopped = match block {
            _ if !f.has_stream => None,
            Some(b) if locked_block(b) => Some(Stop::Encrypted),
            Some(b) => cut.get(b).copied().flatten().map(Stop::Limit),
            None => None,
        };
        // A stream the blocks never delivered: its block failed to decode.
        let stopped = if f.has_stream && stopped.is_none() {
            Some(Stop::NotRead(Outcome::Malformed {
                error: "its block could not be decoded".into(),
            }))
        } else {
            stopped
        };
        out.children.push(Child {
            name: Some(super::display_name(&f.name)),
            stopped,
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{named, owned, test_budget};
    use crate::samples::sevenz;

    #[test]
    fn plain_solid_and_empty_entries() {
        let files: &[(&str, &[u8])] = &[
            ("a.txt", b"hello"),
            ("dir/b.bin", &[9u8; 3000]),
            ("empty", b""),
        ];
        for solid in [false, true] {
            let data = sevenz(files, None, solid);
            let out = extract(&data, &mut test_budget()).unwrap();
            assert!(out.findings.is_empty(), "{:?}", out.findings);
            let mut got = named(out);
            got.sort();
            assert_eq!(
                got,
                owned(&[
                    ("a.txt", b"hello"),
                    ("dir/b.bin", &[9u8; 3000]),
                    ("empty", b"")
                ])
            );
        }
    }

    #[test]
    fn passwords_from_the_message_open_content_and_headers() {
        let files: &[(&str, &[u8])] = &[("invoice.exe", b"MZ payload")];
        for encrypt_header in [false, true] {
            let data = sevenz(files, Some(("Secret99", encrypt_header)), false);
            // Without the password: listed (content encryption) or not even that.
            let out = extract(&data, &mut test_budget()).unwrap();
            assert_eq!(out.children.len(), 1);
            assert_eq!(out.children[0].stopped, Some(Stop::Encrypted));
            let expected = if encrypt_header {
                "(names encrypted)"
            } else {
                "invoice.exe"
            };
            assert_eq!(out.children[0].name.as_deref(), Some(expected));

            let mut b = test_budget();
            b.passwords
                .learn("Hi, the archive password is Secret99 as agreed");
            let out = extract(&data, &mut b).unwrap();
            assert!(
                matches!(&out.findings[0], FindingKind::Decrypted { password, .. } if password == "Secret99")
            );
            assert_eq!(named(out), owned(&[("invoice.exe", b"MZ payload")]));
        }
    }

    #[test]
    fn a_limit_abandons_the_block_but_lists_the_rest() {
        let big = vec![0u8; 3 << 20];
        let data = sevenz(&[("big", &big), ("after", b"x")], None, true);
        let mut b = test_budget();
        b.limits.max_object_bytes = 1 << 20;
        let out = extract(&data, &mut b).unwrap();
        assert_eq!(out.children.len(), 2);
        assert_eq!(out.children[0].data.len(), 1 << 20);
        assert_eq!(
            out.children[0].stopped,
            Some(Stop::Limit(LimitKind::ObjectBytes))
        );
        assert_eq!(out.children[1].name.as_deref(), Some("after"));
        assert_eq!(
            out.children[1].stopped,
            Some(Stop::Limit(LimitKind::ObjectBytes))
        );
    }

    #[test]
    fn truncated_and_corrupt_archives_never_panic() {
        let data = sevenz(
            &[("a.txt", b"hello world"), ("b", &[1u8; 500])],
            None,
            false,
        );
        for cut in 0..data.len() {
            let _ = extract(&data[..cut], &mut test_budget());
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..500 {
            let mut d = data.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % d.len();
                d[at] = (seed >> 32) as u8;
            }
            let _ = extract(&d, &mut test_budget());
        }
    }
}
