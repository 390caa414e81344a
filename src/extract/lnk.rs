//! Windows shortcuts ([MS-SHLLINK]): what a `.lnk` runs is spread over a
//! LinkInfo path, StringData (UTF-16 or ANSI) and an environment-variable
//! block. They are collected into one text object, `shortcut.txt`, one
//! `field: value` line each, so rules match the decoded command line
//! (`arguments: -w hidden -enc …`) whatever the encoding and padding in
//! the file.

use super::{Budget, Child, ExtractError, Extracted};

const FORMAT: &str = "lnk";
const HEADER: usize = 0x4c;

const HAS_ID_LIST: u32 = 0x1;
const HAS_LINK_INFO: u32 = 0x2;
const HAS_NAME: u32 = 0x4;
const HAS_RELATIVE_PATH: u32 = 0x8;
const HAS_WORKING_DIR: u32 = 0x10;
const HAS_ARGUMENTS: u32 = 0x20;
const HAS_ICON: u32 = 0x40;
const IS_UNICODE: u32 = 0x80;
const ENVIRONMENT_BLOCK: u32 = 0xa000_0001;

// Offsets come from the file: every addition is checked.
fn u16_at(d: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_le_bytes(d.get(at..at.checked_add(2)?)?.try_into().ok()?) as usize)
}

fn u32_at(d: &[u8], at: usize) -> Option<usize> {
    Some(u32::from_le_bytes(d.get(at..at.checked_add(4)?)?.try_into().ok()?) as usize)
}

/// A NUL-terminated ANSI string at `at`, at most `max` bytes.
fn ansi_z(d: &[u8], at: usize, max: usize) -> Option<String> {
    let s = d.get(at..)?;
    let s = &s[..s.len().min(max)];
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    Some(String::from_utf8_lossy(&s[..end]).into_owned())
}

/// A NUL-terminated UTF-16LE string at `at`, at most `max` bytes.
fn utf16_z(d: &[u8], at: usize, max: usize) -> Option<String> {
    let s = d.get(at..)?;
    let s = &s[..s.len().min(max)];
    let units: Vec<u16> = s
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    Some(String::from_utf16_lossy(&units))
}

/// The fields of a shortcut, in the order they appear.
pub fn fields(d: &[u8]) -> Result<Vec<(&'static str, String)>, String> {
    if u32_at(d, 0) != Some(HEADER) {
        return Err("not a shell link header".into());
    }
    let flags = u32_at(d, 0x14).ok_or("truncated header")? as u32;
    let mut out = Vec::new();
    let mut at = HEADER;
    if flags & HAS_ID_LIST != 0 {
        at += 2 + u16_at(d, at).ok_or("truncated id list")?;
        // (at most 76 + 2 + 65535: no overflow)
    }
    if flags & HAS_LINK_INFO != 0 {
        let size = u32_at(d, at).ok_or("truncated link info")?;
        let info = d
            .get(at..at.saturating_add(size).min(d.len()))
            .unwrap_or_default();
        let header_size = u32_at(info, 4).unwrap_or(0);
        let path = |off: Option<usize>, wide: bool| {
            off.filter(|o| *o > 0 && *o < info.len())
                .and_then(|o| {
                    if wide {
                        utf16_z(info, o, 2048)
                    } else {
                        ansi_z(info, o, 1024)
                    }
                })
                .filter(|s| !s.is_empty())
        };
        let base = if header_size >= 0x24 {
            path(u32_at(info, 28), true).or_else(|| path(u32_at(info, 16), false))
        } else {
            path(u32_at(info, 16), false)
        };
        let suffix = if header_size >= 0x24 {
            path(u32_at(info, 32), true).or_else(|| path(u32_at(info, 24), false))
        } else {
            path(u32_at(info, 24), false)
        };
        if let Some(base) = base {
            out.push(("target", format!("{base}{}", suffix.unwrap_or_default())));
        }
        at = at.saturating_add(size.max(4));
    }
    let unicode = flags & IS_UNICODE != 0;
    for (flag, label) in [
        (HAS_NAME, "description"),
        (HAS_RELATIVE_PATH, "relative_path"),
        (HAS_WORKING_DIR, "working_dir"),
        (HAS_ARGUMENTS, "arguments"),
        (HAS_ICON, "icon"),
    ] {
        if flags & flag == 0 {
            continue;
        }
        let Some(count) = u16_at(d, at) else { break };
        at = at.saturating_add(2);
        let bytes = if unicode { count * 2 } else { count };
        let Some(raw) = at.checked_add(bytes).and_then(|end| d.get(at..end)) else {
            // Cut off: what is there is still worth reading.
            let rest = d.get(at..).unwrap_or_default();
            let text = if unicode {
                utf16_z(rest, 0, rest.len())
            } else {
                ansi_z(rest, 0, rest.len())
            };
            out.push((label, text.unwrap_or_default()));
            return Ok(out);
        };
        let text = if unicode {
            utf16_z(raw, 0, raw.len())
        } else {
            ansi_z(raw, 0, raw.len())
        };
        out.push((label, text.unwrap_or_default()));
        at = at.saturating_add(bytes);
    }
    // Extra data blocks: size, signature, payload; a size under 4 ends them.
    let mut blocks = 0;
    while let (Some(size), Some(sig)) = (u32_at(d, at), u32_at(d, at.saturating_add(4))) {
        if size < 8 || blocks > 64 {
            break;
        }
        blocks += 1;
        if sig as u32 == ENVIRONMENT_BLOCK {
            let ansi = ansi_z(d, at.saturating_add(8), 260).filter(|s| !s.is_empty());
            let wide = utf16_z(d, at.saturating_add(268), 520).filter(|s| !s.is_empty());
            if let Some(t) = wide.or(ansi) {
                out.push(("environment_target", t));
            }
        }
        at = at.saturating_add(size);
    }
    Ok(out)
}

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let found = fields(data).map_err(|e| ExtractError::malformed(FORMAT, e))?;
    let mut out = Extracted::default();
    if found.is_empty() {
        return Ok(out);
    }
    let text: Vec<u8> = found
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", v.replace(['\r', '\n'], " ")))
        .collect::<String>()
        .into_bytes();
    let child = Child {
        name: Some("shortcut.txt".into()),
        declared_type: Some("text/plain".into()),
        data: text,
        ..Default::default()
    };
    out.add_charged(budget, child);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::test_budget;

    #[test]
    fn target_arguments_and_environment_block() {
        let lnk = crate::samples::lnk(
            "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "-w hidden -enc SQBFAFgA",
            "%TEMP%",
        );
        let f = fields(&lnk).unwrap();
        let get = |k: &str| f.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("target"),
            Some("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe")
        );
        assert_eq!(get("arguments"), Some("-w hidden -enc SQBFAFgA"));
        assert_eq!(get("working_dir"), Some("%TEMP%"));
        assert_eq!(
            get("environment_target"),
            Some("%windir%\\System32\\WindowsPowerShell\\v1.0\\powershell.exe")
        );
        let out = extract(&lnk, &mut test_budget()).unwrap();
        let text = String::from_utf8(out.children[0].data.clone()).unwrap();
        assert!(
            text.contains("arguments: -w hidden -enc SQBFAFgA\n"),
            "{text}"
        );
    }

    #[test]
    fn truncated_and_lying_shortcuts_do_not_panic() {
        let lnk = crate::samples::lnk("C:\\a.exe", &"x".repeat(300), "C:\\");
        for cut in 0..lnk.len() {
            let _ = extract(&lnk[..cut], &mut test_budget());
        }
        let mut lying = lnk.clone();
        lying[HEADER..HEADER + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let _ = fields(&lying);
    }
}
