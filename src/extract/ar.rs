//! Unix ar archives (`!<arch>`): static libraries, Debian packages. GNU
//! long names (`//` table, `/N` references) and BSD ones (`#1/N`, name at
//! the start of the data) are resolved; the symbol tables are skipped.

use super::{Budget, Child, ExtractError, Extracted, display_name};

const FORMAT: &str = "ar";
pub const MAGIC: &[u8] = b"!<arch>\n";
const HEADER: usize = 60;

fn field(h: &[u8], a: usize, b: usize) -> &str {
    std::str::from_utf8(&h[a..b]).unwrap_or("").trim_end()
}

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    if !data.starts_with(MAGIC) {
        return Err(ExtractError::malformed(FORMAT, "no !<arch> magic"));
    }
    let mut out = Extracted::default();
    let mut long_names: &[u8] = &[];
    let mut at = MAGIC.len();
    let mut headers = 0usize;
    while at + HEADER <= data.len() {
        if !out.room(budget) {
            break;
        }
        let h = &data[at..at + HEADER];
        if &h[58..60] != b"`\n" {
            if out.children.is_empty() && long_names.is_empty() {
                return Err(ExtractError::malformed(FORMAT, "bad entry header"));
            }
            break;
        }
        let Ok(size) = field(h, 48, 58).parse::<u64>() else {
            return Err(ExtractError::malformed(FORMAT, "bad size field"));
        };
        headers += 1;
        let start = at + HEADER;
        let available = (data.len() - start) as u64;
        let len = size.min(available) as usize;
        let mut body = &data[start..start + len];
        let raw_name = field(h, 0, 16);
        let name: Option<String> = if raw_name == "/"
            || raw_name == "/SYM64/"
            || raw_name == "__.SYMDEF"
            || raw_name.starts_with("__.SYMDEF ")
        {
            None
        } else if raw_name == "//" {
            long_names = body;
            None
        } else if let Some(n) = raw_name.strip_prefix("#1/") {
            // BSD: the name is the first N bytes of the data.
            let n = n.parse::<usize>().unwrap_or(0).min(body.len());
            let (name, rest) = body.split_at(n);
            body = rest;
            Some(
                String::from_utf8_lossy(name)
                    .trim_end_matches('\0')
                    .to_string(),
            )
        } else if let Some(off) = raw_name
            .strip_prefix('/')
            .and_then(|o| o.parse::<usize>().ok())
        {
            let tail = long_names.get(off..).unwrap_or_default();
            let end = tail
                .windows(2)
                .position(|w| w == b"/\n")
                .or_else(|| tail.iter().position(|&b| b == b'\n'))
                .unwrap_or(tail.len());
            Some(String::from_utf8_lossy(&tail[..end]).to_string())
        } else {
            Some(raw_name.trim_end_matches('/').to_string())
        };
        if let Some(name) = name {
            let (bytes, stop) = budget
                .read_capped(body, body.len().max(1) as u64)
                .map_err(|e| ExtractError::malformed(FORMAT, e))?;
            let child = Child {
                name: Some(display_name(&name)),
                data: bytes,
                ..Default::default()
            };
            if out.add(child, stop) {
                break;
            }
        }
        if (len as u64) < size {
            break;
        }
        // Data is padded to an even offset.
        at = start + len + (len & 1);
    }
    // Bytes after the magic that hold no entry at all: not an archive we
    // read, and not to be passed as an empty one.
    if headers == 0 && data.len() > MAGIC.len() {
        return Err(ExtractError::malformed(FORMAT, "no entry header"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::test_budget as budget;

    #[test]
    fn gnu_and_bsd_long_names_and_odd_sizes() {
        let long = "a-member-name-longer-than-sixteen-bytes.o";
        let files: &[(&str, &[u8])] = &[
            ("odd.txt", b"abc"),
            (long, b"long one"),
            ("debian-binary", b"2.0\n"),
        ];
        for archive in [crate::samples::ar_gnu(files), crate::samples::ar_bsd(files)] {
            let out = extract(&archive, &mut budget()).unwrap();
            let got = crate::extract::named(out);
            assert_eq!(got, crate::extract::owned(files));
        }
    }

    #[test]
    fn truncation_and_junk_are_handled() {
        let archive = crate::samples::ar_gnu(&[("x.txt", &[1u8; 99]), ("y.txt", b"y")]);
        for cut in 0..archive.len() {
            let _ = extract(&archive[..cut], &mut budget());
        }
        assert!(
            extract(
                b"!<arch>\nnot a header at all, sixty bytes or more of junk here....",
                &mut budget()
            )
            .is_err()
        );
        let mut lying = archive.clone();
        lying[8 + 48..8 + 58].copy_from_slice(b"9999999999");
        let out = extract(&lying, &mut budget()).unwrap();
        assert_eq!(out.children.len(), 1);
    }
}
