//! Single-stream compressions: gzip, bzip2, xz, zstd. Each yields one child
//! named after the container (`report.pdf.gz` holds `report.pdf`), or after
//! the name stored in the gzip header.
//!
//! Decoder memory is bounded separately from output: xz and zstd both let a
//! header ask for a huge dictionary or window, which would be allocated
//! before a single byte comes out.

use super::{Budget, Child, ExtractError, Extracted, Stop};
use crate::pipeline::identify::FileType;

/// 64 MiB of decoder dictionary/window: more than any real-world setting
/// (xz -9 uses 64 MiB), far less than a forged header can ask for.
const XZ_MEM_LIMIT_KIB: u32 = 64 * 1024;
const ZSTD_WINDOW_LOG_MAX: u32 = 26;

/// An xz decoder over `r` with the dictionary bound (also for zip entries).
pub(super) fn xz_reader<R: std::io::Read>(r: R) -> lzma_rust2::XzReader<R> {
    lzma_rust2::XzReader::new_mem_limit(r, true, XZ_MEM_LIMIT_KIB)
}

/// A zstd decoder over `r` with the window bound (also for zip entries).
pub(super) fn zstd_reader<R: std::io::Read>(
    r: R,
) -> std::io::Result<zstd::stream::read::Decoder<'static, std::io::BufReader<R>>> {
    let mut decoder = zstd::stream::read::Decoder::new(r)?;
    decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
    Ok(decoder)
}

pub fn extract(
    t: &FileType,
    data: &[u8],
    name: Option<&str>,
    budget: &mut Budget,
) -> Result<Extracted, ExtractError> {
    let input = data.len() as u64;
    let (format, stored_name, result) = match t {
        FileType::Gzip => {
            let decoder = flate2::read::MultiGzDecoder::new(data);
            let stored = decoder
                .header()
                .and_then(|h| h.filename())
                .map(|f| String::from_utf8_lossy(f).into_owned());
            ("gzip", stored, budget.read_capped(decoder, input))
        }
        FileType::Bzip2 => {
            let decoder = bzip2::read::MultiBzDecoder::new(data);
            ("bzip2", None, budget.read_capped(decoder, input))
        }
        FileType::Xz => ("xz", None, budget.read_capped(xz_reader(data), input)),
        FileType::Zstd => {
            let decoder = zstd_reader(data).map_err(|e| ExtractError::malformed("zstd", e))?;
            ("zstd", None, budget.read_capped(decoder, input))
        }
        _ => return Ok(Extracted::default()),
    };
    let (out, stop) = result.map_err(|e| ExtractError::malformed(format, e))?;
    let child_name = stored_name
        .map(|n| super::display_name(&n))
        .or_else(|| name.map(strip_suffix));
    Ok(Extracted {
        children: vec![Child {
            name: child_name,
            data: out,
            stopped: stop.map(Stop::Limit),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn strip_suffix(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    for (suffix, replacement) in [
        (".tgz", ".tar"),
        (".tbz2", ".tar"),
        (".txz", ".tar"),
        (".gz", ""),
        (".bz2", ""),
        (".xz", ""),
        (".zst", ""),
    ] {
        if lower.ends_with(suffix) && name.len() > suffix.len() {
            return format!("{}{replacement}", &name[..name.len() - suffix.len()]);
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn member_names() {
        assert_eq!(super::strip_suffix("a.pdf.gz"), "a.pdf");
        assert_eq!(super::strip_suffix("logs.tgz"), "logs.tar");
        assert_eq!(super::strip_suffix(".gz"), ".gz");
    }
}
