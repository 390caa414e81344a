//! cpio: the "new" ASCII format (`070701`, and `070702` with checksums),
//! the old portable ASCII format (`070707`) and the old binary format, in
//! both byte orders. Only regular files become objects; the trailer ends
//! the archive. Sizes come from headers an attacker wrote, so every one is
//! checked against the bytes actually there before anything is sliced.

use super::{Budget, Child, ExtractError, Extracted, display_name};

const FORMAT: &str = "cpio";
const TRAILER: &[u8] = b"TRAILER!!!";
const S_IFMT: u64 = 0o170000;
const S_IFREG: u64 = 0o100000;

/// One header, decoded.
struct Header {
    mode: u64,
    name_len: usize,
    size: u64,
    /// Bytes of header before the name.
    header_len: usize,
    /// Name and data are each padded to this (4 for newc, 2 for binary).
    align: usize,
}

fn hex(field: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(field).ok()?, 16).ok()
}

fn octal(field: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(field).ok()?, 8).ok()
}

fn header(data: &[u8]) -> Result<Header, String> {
    let head = |n: usize| data.get(..n).ok_or_else(|| "truncated header".to_string());
    if data.starts_with(b"070701") || data.starts_with(b"070702") {
        let h = head(110)?;
        let field = |i: usize| hex(&h[6 + i * 8..14 + i * 8]).ok_or("bad hex field");
        return Ok(Header {
            mode: field(1)?,
            size: field(6)?,
            name_len: field(11)? as usize,
            header_len: 110,
            align: 4,
        });
    }
    if data.starts_with(b"070707") {
        let h = head(76)?;
        let f = |a: usize, b: usize| octal(&h[a..b]).ok_or("bad octal field");
        return Ok(Header {
            mode: f(18, 24)?,
            name_len: f(59, 65)? as usize,
            size: f(65, 76)?,
            header_len: 76,
            align: 1,
        });
    }
    let h = head(26)?;
    let le = match (h[0], h[1]) {
        (0xc7, 0x71) => true,
        (0x71, 0xc7) => false,
        _ => return Err("not a cpio header".into()),
    };
    let u16_at = |i: usize| {
        let b = [h[i], h[i + 1]];
        u64::from(if le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    Ok(Header {
        mode: u16_at(6),
        name_len: u16_at(20) as usize,
        // Two 16-bit halves, most significant first, in either byte order.
        size: (u16_at(22) << 16) | u16_at(24),
        header_len: 26,
        align: 2,
    })
}

fn pad(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut out = Extracted::default();
    let mut at = 0usize;
    let mut entries = 0usize;
    while at < data.len() {
        if !out.room(budget) {
            break;
        }
        let rest = &data[at..];
        let h = match header(rest) {
            Ok(h) => h,
            Err(e) if entries == 0 => return Err(ExtractError::malformed(FORMAT, e)),
            // Junk after good entries: what we read stands.
            Err(_) => break,
        };
        entries += 1;
        let name_end = h
            .header_len
            .checked_add(h.name_len)
            .filter(|e| *e <= rest.len());
        let Some(name_end) = name_end else {
            if out.children.is_empty() {
                return Err(ExtractError::malformed(FORMAT, "name runs past the end"));
            }
            break;
        };
        let raw_name = &rest[h.header_len..name_end];
        let raw_name = raw_name.strip_suffix(b"\0").unwrap_or(raw_name);
        if raw_name == TRAILER {
            break;
        }
        let data_start = pad(name_end, h.align);
        let available = rest.len().saturating_sub(data_start) as u64;
        let truncated = h.size > available;
        let len = h.size.min(available) as usize;
        let body = rest.get(data_start..data_start + len).unwrap_or_default();
        if h.mode & S_IFMT == S_IFREG {
            let (bytes, stop) = budget
                .read_capped(body, len.max(1) as u64)
                .map_err(|e| ExtractError::malformed(FORMAT, e))?;
            let child = Child {
                name: Some(display_name(&String::from_utf8_lossy(raw_name))),
                data: bytes,
                ..Default::default()
            };
            if out.add(child, stop) {
                break;
            }
        }
        if truncated {
            // The last entry was cut off: scanned as far as it goes.
            break;
        }
        at += pad(data_start + len, h.align);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::test_budget as budget;

    #[test]
    fn reads_newc_odc_and_binary() {
        let files: &[(&str, &[u8])] = &[("a/readme.txt", b"hello"), ("b.bin", b"\x00\x01\x02")];
        for archive in [
            crate::samples::cpio_newc(files),
            crate::samples::cpio_odc(files),
            crate::samples::cpio_binary(files, true),
            crate::samples::cpio_binary(files, false),
        ] {
            let out = extract(&archive, &mut budget()).unwrap();
            let got = crate::extract::named(out);
            assert_eq!(got, crate::extract::owned(files));
        }
    }

    #[test]
    fn lying_sizes_and_truncation_never_slice_out_of_bounds() {
        let archive = crate::samples::cpio_newc(&[("x", &[7u8; 100])]);
        for cut in 0..archive.len() {
            let _ = extract(&archive[..cut], &mut budget());
        }
        // A size field claiming 4 GiB: read what is there.
        let mut lying = archive.clone();
        lying[54..62].copy_from_slice(b"FFFFFFFF");
        let out = extract(&lying, &mut budget()).unwrap();
        assert!(out.children[0].data.len() <= lying.len());
        assert!(extract(b"070701zzzz", &mut budget()).is_err());
    }
}
