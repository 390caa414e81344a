//! TNEF (`winmail.dat`, `application/ms-tnef`): Outlook's wrapper that
//! hides a message's real attachments from clients that do not speak it.
//! Attachments are read from the attribute stream: `attAttachRendData`
//! starts one, `attAttachTitle` names it, `attAttachData` is its content.
//! MAPI property blocks (long file names, embedded messages) are not
//! decoded: the 8.3 title is the name.

use super::{Budget, Child, ExtractError, Extracted, display_name};

const FORMAT: &str = "tnef";
pub const SIGNATURE: [u8; 4] = [0x78, 0x9f, 0x3e, 0x22];
const LVL_ATTACHMENT: u8 = 2;
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_DATA: u32 = 0x0006_800f;

struct Pending {
    name: Option<String>,
    data: Option<Vec<u8>>,
}

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    if !data.starts_with(&SIGNATURE) || data.len() < 6 {
        return Err(ExtractError::malformed(FORMAT, "no TNEF signature"));
    }
    let mut out = Extracted::default();
    let mut pending: Vec<Pending> = Vec::new();
    let mut at = 6; // signature, key
    let mut attributes = 0usize;
    while at + 9 <= data.len() {
        let level = data[at];
        let id = u32::from_le_bytes([data[at + 1], data[at + 2], data[at + 3], data[at + 4]]);
        let len =
            u32::from_le_bytes([data[at + 5], data[at + 6], data[at + 7], data[at + 8]]) as usize;
        let start = at + 9;
        let Some(value) = start.checked_add(len).and_then(|end| data.get(start..end)) else {
            if attributes == 0 {
                return Err(ExtractError::malformed(
                    FORMAT,
                    "attribute runs past the end",
                ));
            }
            break;
        };
        attributes += 1;
        if level == LVL_ATTACHMENT {
            match id {
                ATT_ATTACH_REND_DATA => pending.push(Pending {
                    name: None,
                    data: None,
                }),
                ATT_ATTACH_TITLE => {
                    if let Some(p) = pending.last_mut() {
                        let v = value.strip_suffix(b"\0").unwrap_or(value);
                        p.name = Some(String::from_utf8_lossy(v).into_owned());
                    }
                }
                ATT_ATTACH_DATA => {
                    if let Some(p) = pending.last_mut() {
                        p.data = Some(value.to_vec());
                    }
                }
                _ => {}
            }
        }
        // Value, then a 16-bit checksum (not verified: Outlook does not).
        at = start + len + 2;
    }
    for (i, p) in pending.into_iter().enumerate() {
        let Some(bytes) = p.data else { continue };
        if !out.room(budget) {
            break;
        }
        let child = Child {
            name: Some(display_name(
                &p.name.unwrap_or_else(|| format!("attachment-{}", i + 1)),
            )),
            data: bytes,
            ..Default::default()
        };
        if out.add_charged(budget, child) {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::test_budget as budget;

    #[test]
    fn attachments_come_out_with_their_titles() {
        let files: &[(&str, &[u8])] = &[("REPORT.PDF", b"%PDF-1.4 tiny"), ("SETUP.EXE", b"MZ")];
        let tnef = crate::samples::tnef(files);
        let out = extract(&tnef, &mut budget()).unwrap();
        let got = crate::extract::named(out);
        assert_eq!(got, crate::extract::owned(files));
    }

    #[test]
    fn truncated_and_lying_lengths() {
        let tnef = crate::samples::tnef(&[("A.TXT", &[b'a'; 200])]);
        for cut in 0..tnef.len() {
            let _ = extract(&tnef[..cut], &mut budget());
        }
        let mut lying = tnef.clone();
        lying[6 + 5..6 + 9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(extract(&lying, &mut budget()).is_err());
    }
}
