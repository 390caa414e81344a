//! OneNote (`.one`): the embedded files. In early 2023 OneNote pages with
//! an embedded .hta, .bat or .exe behind a "double-click to view" button
//! were the most mailed malware lure. Each FileDataStoreObject becomes an
//! object, found by scanning for its header GUID, which also finds objects
//! a damaged (or doctored) index no longer references. Names live deep in
//! the revision store's property sets and are not read: the objects are
//! named by position and identified by content.

pub mod store;

use super::{Budget, Child, ExtractError, Extracted};
use crate::model::{FindingKind, LimitKind};

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let (found, cut) = store::embedded_files(data, budget.limits.max_objects);
    let mut out = Extracted::default();
    if found.iter().any(|e| e.truncated) {
        // Its length runs past the file: cut off in transit, or a length
        // made to confuse readers. Either way, not what OneNote shows.
        out.findings.push(FindingKind::Unopenable {
            format: "onenote: embedded file cut short".into(),
        });
    }
    for (i, embedded) in found.iter().enumerate() {
        if !out.room(budget) {
            break;
        }
        let child = Child {
            name: Some(format!("embedded-file-{}", i + 1)),
            data: embedded.bytes(data).to_vec(),
            ..Default::default()
        };
        if out.add_charged(budget, child) {
            break;
        }
    }
    if cut && out.stopped.is_none() {
        out.stopped = Some(LimitKind::Objects);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{named, owned, test_budget};

    #[test]
    fn embedded_files_come_out_in_order() {
        let one = store::build(&[b"<hta:application>", b"", b"MZ"]);
        let out = extract(&one, &mut test_budget()).unwrap();
        assert_eq!(
            named(out),
            owned(&[
                ("embedded-file-1", b"<hta:application>"),
                ("embedded-file-2", b""),
                ("embedded-file-3", b"MZ")
            ])
        );
        let mut b = test_budget();
        b.limits.max_objects = 2;
        let out = extract(&one, &mut b).unwrap();
        assert_eq!(out.children.len(), 2);
        assert_eq!(out.stopped, Some(LimitKind::Objects));
    }
}
