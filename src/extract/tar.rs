//! tar (ustar, GNU, pax). Only regular files become objects; links and
//! devices are names, never followed. The header's size field is read but the
//! bytes come through the budget like any other.

use super::{Budget, Child, ExtractError, Extracted, display_name};

pub fn extract(data: &[u8], budget: &mut Budget) -> Result<Extracted, ExtractError> {
    let mut archive = tar::Archive::new(data);
    let entries = archive
        .entries()
        .map_err(|e| ExtractError::malformed("tar", e))?;
    let mut out = Extracted::default();
    for entry in entries {
        if !out.room(budget) {
            break;
        }
        let entry = match entry {
            Ok(e) => e,
            // A truncated tail after good entries: keep what we have, but
            // only call the whole thing malformed if nothing was readable.
            Err(e) if out.children.is_empty() => {
                return Err(ExtractError::malformed("tar", e));
            }
            Err(_) => break,
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = display_name(&String::from_utf8_lossy(&entry.path_bytes()));
        let declared = entry.header().size().unwrap_or(0);
        let (bytes, stop) = budget
            .read_capped(entry, declared.max(1))
            .map_err(|e| ExtractError::malformed("tar", e))?;
        let child = Child {
            name: Some(name),
            data: bytes,
            ..Default::default()
        };
        if out.add(child, stop) {
            break;
        }
    }
    Ok(out)
}
