//! uuencoded files inside text bodies (`begin 644 name` ... `end`).
//! mail-parser does not decode them, and some mailers and malware kits still
//! send them, so a text body that carries one is a container.

use super::{Budget, Child, Extracted, Stop};

/// At most this many uuencoded blocks per text body; more is noise.
const MAX_BLOCKS: usize = 64;

pub fn extract(data: &[u8], budget: &mut Budget) -> Extracted {
    let mut out = Extracted::default();
    let mut lines = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    while let Some(line) = lines.next() {
        let Some(name) = begin_line(line) else {
            continue;
        };
        if out.children.len() >= MAX_BLOCKS {
            break;
        }
        let mut decoded = Vec::new();
        for body in lines.by_ref() {
            if body == b"end" || body.is_empty() {
                break;
            }
            if body == b"`" || body == b" " {
                continue;
            }
            decode_line(body, &mut decoded);
        }
        let stopped = budget.charge(&mut decoded);
        out.children.push(Child {
            name: Some(super::display_name(&name)),
            data: decoded,
            stopped: stopped.map(Stop::Limit),
            ..Default::default()
        });
        if stopped.is_some() {
            out.stopped = stopped;
            break;
        }
    }
    out
}

/// `begin <octal mode> <name>`; also `begin-base64` is not uuencode.
fn begin_line(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"begin ")?;
    let text = std::str::from_utf8(rest).ok()?;
    let (mode, name) = text.trim().split_once(' ')?;
    if !(3..=4).contains(&mode.len()) || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

fn decode_line(line: &[u8], out: &mut Vec<u8>) {
    let Some((&len_char, rest)) = line.split_first() else {
        return;
    };
    let len = (len_char.wrapping_sub(b' ') & 0x3f) as usize;
    let val = |c: u8| c.wrapping_sub(b' ') & 0x3f;
    let mut produced = 0;
    for group in rest.chunks(4) {
        let g = [
            group.first().copied().map_or(0, val),
            group.get(1).copied().map_or(0, val),
            group.get(2).copied().map_or(0, val),
            group.get(3).copied().map_or(0, val),
        ];
        let bytes = [
            (g[0] << 2) | (g[1] >> 4),
            (g[1] << 4) | (g[2] >> 2),
            (g[2] << 6) | g[3],
        ];
        for b in bytes {
            if produced < len {
                out.push(b);
                produced += 1;
            }
        }
    }
}

/// Encoder for the sample generator and tests.
pub fn encode(name: &str, data: &[u8]) -> String {
    let enc = |v: u8| if v == 0 { '`' } else { (v + b' ') as char };
    let mut s = format!("begin 644 {name}\n");
    for chunk in data.chunks(45) {
        s.push(enc(chunk.len() as u8));
        for g in chunk.chunks(3) {
            let b = [
                g[0],
                g.get(1).copied().unwrap_or(0),
                g.get(2).copied().unwrap_or(0),
            ];
            s.push(enc(b[0] >> 2));
            s.push(enc(((b[0] & 3) << 4) | (b[1] >> 4)));
            s.push(enc(((b[1] & 0xf) << 2) | (b[2] >> 6)));
            s.push(enc(b[2] & 0x3f));
        }
        s.push('\n');
    }
    s.push_str("`\nend\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use std::time::Instant;

    #[test]
    fn round_trip() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = format!("Hello,\n\n{}\nbye\n", encode("x.bin", &data));
        let mut budget = Budget::new(Limits::default(), Instant::now());
        let out = extract(text.as_bytes(), &mut budget);
        assert_eq!(out.children.len(), 1);
        assert_eq!(out.children[0].name.as_deref(), Some("x.bin"));
        assert_eq!(out.children[0].data, data);
    }

    #[test]
    fn not_a_begin_line() {
        assert!(begin_line(b"begin here we go").is_none());
        assert!(begin_line(b"begin 644 ").is_none());
        assert_eq!(
            begin_line(b"begin 0755 a b.exe").as_deref(),
            Some("a b.exe")
        );
    }
}
