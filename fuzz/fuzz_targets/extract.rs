//! Each unpacker on its own, on arbitrary bytes: the first byte picks the
//! format, the rest is the container. Must never panic, and never produce
//! more than the budget allows (per object and in total).
#![no_main]

mod contain;

use libfuzzer_sys::fuzz_target;
use portcullis::config::Limits;
use portcullis::extract::{Budget, extract, text_children};
use portcullis::pipeline::identify::FileType;
use std::time::{Duration, Instant};

const FORMATS: [FileType; 26] = [
    FileType::Mail,
    FileType::Zip,
    FileType::Ooxml,
    FileType::Gzip,
    FileType::Bzip2,
    FileType::Xz,
    FileType::Zstd,
    FileType::Tar,
    FileType::Cpio,
    FileType::Ar,
    FileType::Rtf,
    FileType::Html,
    FileType::Hta,
    FileType::Lnk,
    FileType::Ole2,
    FileType::Pdf,
    FileType::Mbox,
    FileType::Tnef,
    FileType::SevenZip,
    FileType::Rar,
    FileType::Cab,
    FileType::Iso,
    FileType::FatImage,
    FileType::OneNote,
    FileType::BinHex,
    FileType::Text,
];

fuzz_target!(|data: &[u8]| {
    contain::third_party_panics();
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let format = &FORMATS[pick as usize % FORMATS.len()];
    let limits = Limits {
        max_depth: 4,
        max_objects: 64,
        max_object_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        max_ratio: 100,
        ratio_floor_bytes: 64 << 10,
        time_budget: Duration::from_secs(2),
        max_password_candidates: 4,
        password_time: Duration::from_millis(200),
    };
    // Locked containers are tried with these: the decrypt paths get fuzzed too.
    let mut budget = Budget::new(limits.clone(), Instant::now());
    budget.passwords.learn("password: fuzz");
    let out = if *format == FileType::Text {
        Ok(text_children(body, &mut budget))
    } else {
        extract(format, body, Some("fuzz"), &mut budget)
    };
    if let Ok(out) = out {
        let total: usize = out.children.iter().map(|c| c.data.len()).sum();
        assert!(out.children.len() <= limits.max_objects);
        assert!(out.children.iter().all(|c| c.data.len() as u64 <= limits.max_object_bytes));
        assert!(total as u64 <= limits.max_total_bytes);
    }
});
