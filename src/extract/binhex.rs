//! BinHex 4.0 (`.hqx`, `application/mac-binhex40`), as an attachment or
//! inline in a text body: old, and for that reason skipped by scanners that
//! an attacker wants to get past. Both forks become objects: the resource
//! fork is where classic Mac payloads lived.

pub mod codec;

use super::{Budget, Child, ExtractError, Extracted};
use crate::model::FindingKind;

const FORMAT: &str = "binhex";

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let cap = budget
        .limits
        .max_object_bytes
        .saturating_mul(2)
        .min(budget.limits.max_total_bytes) as usize;
    let decoded = codec::decode(data, cap).map_err(|e| ExtractError::malformed(FORMAT, e))?;
    let mut out = Extracted::default();
    if !decoded.cut && (!decoded.crc_ok || !decoded.complete) {
        // What a Mac decoder would refuse, and what we scan anyway.
        out.findings.push(FindingKind::MalformedMime {
            detail: format!(
                "{FORMAT} block of {} {}",
                decoded.name,
                if decoded.complete {
                    "fails its CRC"
                } else {
                    "is cut short"
                }
            ),
        });
    }
    let name = super::display_name(&decoded.name);
    let forks = [
        (name.clone(), decoded.data),
        (format!("{name} [resource fork]"), decoded.resource),
    ];
    for (i, (name, bytes)) in forks.into_iter().enumerate() {
        if i == 1 && bytes.is_empty() {
            break;
        }
        if !out.room(budget) {
            break;
        }
        let child = Child {
            name: Some(name),
            data: bytes,
            ..Default::default()
        };
        if out.add_charged(budget, child) {
            break;
        }
    }
    Ok(out)
}

/// A BinHex block inside a text body, if there is one.
pub fn in_text(text: &[u8], budget: &mut Budget) -> Option<Extracted> {
    let at = codec::find(text)?;
    extract(&text[at..], budget).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{named, owned, test_budget};
    use crate::model::LimitKind;

    #[test]
    fn both_forks_come_out() {
        let hqx = codec::encode("report.exe", b"MZ data fork", b"resource bytes");
        let out = extract(&hqx, &mut test_budget()).unwrap();
        assert!(out.findings.is_empty());
        assert_eq!(
            named(out),
            owned(&[
                ("report.exe", b"MZ data fork"),
                ("report.exe [resource fork]", b"resource bytes")
            ])
        );
        let mut text = b"Hello,\r\nsee below.\r\n\r\n".to_vec();
        text.extend_from_slice(&codec::encode("a.txt", b"inline", b""));
        let out = in_text(&text, &mut test_budget()).unwrap();
        assert_eq!(named(out), owned(&[("a.txt", b"inline")]));
    }

    #[test]
    fn damage_is_reported_and_runs_are_capped() {
        let mut hqx = codec::encode("a.bin", &[0u8; 100_000], b"");
        let len = hqx.len();
        hqx.truncate(len - 40);
        let out = extract(&hqx, &mut test_budget()).unwrap();
        assert!(matches!(
            &out.findings[..],
            [FindingKind::MalformedMime { .. }]
        ));

        let hqx = codec::encode("a.bin", &[0u8; 300_000], b"");
        let mut b = test_budget();
        b.limits.max_object_bytes = 1000;
        let out = extract(&hqx, &mut b).unwrap();
        assert_eq!(out.children[0].data.len(), 1000);
        assert_eq!(
            out.children[0].stopped,
            Some(crate::extract::Stop::Limit(LimitKind::ObjectBytes))
        );
    }
}
