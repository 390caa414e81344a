//! Identify stage: hashes, the true type by content, and what the name and
//! declared type claim. Findings here are about deception: a file that says it
//! is one thing and is another.

use crate::model::FindingKind;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// What an object is, by its bytes. Containers we unpack and types that
/// matter to policy are named; everything else is `Other(mime)` from `infer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileType {
    Mail,
    /// Messages in a row, each after a `From ` line.
    Mbox,
    Zip,
    /// A zip with `[Content_Types].xml`: docx, xlsx, pptx and their macro forms.
    Ooxml,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    Tar,
    Cpio,
    /// Outlook's winmail.dat.
    Tnef,
    /// Unix ar: static libraries, Debian packages.
    Ar,
    SevenZip,
    Rar,
    Cab,
    Iso,
    /// A raw disk or floppy image with FAT file systems (.img, fixed .vhd).
    FatImage,
    /// Mac BinHex 4.0 text.
    BinHex,
    OneNote,
    Ole2,
    Pdf,
    Rtf,
    Pe,
    Elf,
    MachO,
    Lnk,
    Html,
    Hta,
    JavaScript,
    VbScript,
    Wsf,
    PowerShell,
    Batch,
    ShellScript,
    Text,
    Other(&'static str),
    Unknown,
}

/// Coarse classes used to compare what a file is with what it claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Executable,
    Script,
    Archive,
    DiskImage,
    Document,
    Image,
    Audio,
    Video,
    Mail,
    Text,
    Unknown,
}

impl FileType {
    pub fn label(&self) -> &'static str {
        match self {
            FileType::Mail => "message/rfc822",
            FileType::Mbox => "application/mbox",
            FileType::Zip => "application/zip",
            FileType::Ooxml => "application/vnd.openxmlformats-officedocument",
            FileType::Gzip => "application/gzip",
            FileType::Bzip2 => "application/x-bzip2",
            FileType::Xz => "application/x-xz",
            FileType::Zstd => "application/zstd",
            FileType::Tar => "application/x-tar",
            FileType::Cpio => "application/x-cpio",
            FileType::Tnef => "application/ms-tnef",
            FileType::Ar => "application/x-archive",
            FileType::SevenZip => "application/x-7z-compressed",
            FileType::Rar => "application/vnd.rar",
            FileType::Cab => "application/vnd.ms-cab-compressed",
            FileType::Iso => "application/x-iso9660-image",
            FileType::BinHex => "application/mac-binhex40",
            FileType::FatImage => "application/x-raw-disk-image",
            FileType::OneNote => "application/onenote",
            FileType::Ole2 => "application/x-ole-storage",
            FileType::Pdf => "application/pdf",
            FileType::Rtf => "text/rtf",
            FileType::Pe => "application/x-msdownload",
            FileType::Elf => "application/x-elf",
            FileType::MachO => "application/x-mach-binary",
            FileType::Lnk => "application/x-ms-shortcut",
            FileType::Html => "text/html",
            FileType::Hta => "application/hta",
            FileType::JavaScript => "text/javascript",
            FileType::VbScript => "text/vbscript",
            FileType::Wsf => "text/x-wsf",
            FileType::PowerShell => "text/x-powershell",
            FileType::Batch => "text/x-msdos-batch",
            FileType::ShellScript => "text/x-shellscript",
            FileType::Text => "text/plain",
            FileType::Other(mime) => mime,
            FileType::Unknown => "application/octet-stream",
        }
    }

    pub fn category(&self) -> Category {
        match self {
            FileType::Pe | FileType::Elf | FileType::MachO | FileType::Lnk => Category::Executable,
            FileType::Hta
            | FileType::JavaScript
            | FileType::VbScript
            | FileType::Wsf
            | FileType::PowerShell
            | FileType::Batch
            | FileType::ShellScript => Category::Script,
            FileType::Zip
            | FileType::Gzip
            | FileType::Bzip2
            | FileType::Xz
            | FileType::Zstd
            | FileType::Tar
            | FileType::Cpio
            | FileType::Tnef
            | FileType::Ar
            | FileType::SevenZip
            | FileType::Rar
            | FileType::Cab
            | FileType::BinHex => Category::Archive,
            FileType::Iso | FileType::FatImage => Category::DiskImage,
            FileType::Ooxml
            | FileType::Ole2
            | FileType::Pdf
            | FileType::Rtf
            | FileType::OneNote => Category::Document,
            FileType::Html | FileType::Text => Category::Text,
            FileType::Mail | FileType::Mbox => Category::Mail,
            FileType::Other(mime) => {
                if mime.starts_with("image/") {
                    Category::Image
                } else if mime.starts_with("audio/") {
                    Category::Audio
                } else if mime.starts_with("video/") {
                    Category::Video
                } else if mime.starts_with("text/") {
                    Category::Text
                } else {
                    Category::Unknown
                }
            }
            FileType::Unknown => Category::Unknown,
        }
    }
}

pub struct Hashes {
    pub sha256: [u8; 32],
    pub sha1: Option<String>,
    pub md5: Option<String>,
}

/// sha256 is the identity of every object; sha1 and md5 are computed only
/// when asked for (see `Config::legacy_hashes`).
pub fn hashes(data: &[u8], sha1: bool, md5: bool) -> Hashes {
    Hashes {
        sha256: Sha256::digest(data).into(),
        sha1: sha1.then(|| hex::encode(Sha1::digest(data))),
        md5: md5.then(|| hex::encode(Md5::digest(data))),
    }
}

/// True type by content. Our own checks come first for what matters to
/// policy and what `infer` misses or gets too coarse (scripts, LNK, ISO at
/// offset 0x8001, OOXML versus plain zip, PE versus any `MZ`).
pub fn detect(data: &[u8]) -> FileType {
    let head = &data[..data.len().min(8192)];
    if let Some(t) = detect_binary(data) {
        return t;
    }
    if let Some(t) = detect_text(head) {
        return t;
    }
    match infer::get(data) {
        // infer calls anything starting "MZ" or "\x7fELF" a program; a text
        // that happens to start that way is not one (ours checked headers).
        Some(t)
            if looks_textual(head)
                && matches!(t.matcher_type(), infer::MatcherType::App)
                && t.mime_type() != "application/pdf" =>
        {
            FileType::Text
        }
        Some(t) => {
            let mime = t.mime_type();
            match mime {
                "application/zip" => FileType::Zip,
                "application/gzip" => FileType::Gzip,
                "application/x-bzip2" => FileType::Bzip2,
                "application/x-xz" => FileType::Xz,
                "application/zstd" => FileType::Zstd,
                "application/x-tar" => FileType::Tar,
                "application/x-7z-compressed" => FileType::SevenZip,
                "application/vnd.rar" => FileType::Rar,
                "application/vnd.ms-cab-compressed" => FileType::Cab,
                "application/pdf" => FileType::Pdf,
                "application/rtf" => FileType::Rtf,
                "application/x-executable" => FileType::Elf,
                "application/vnd.microsoft.portable-executable" => FileType::Pe,
                "application/x-mach-binary" => FileType::MachO,
                other => FileType::Other(other),
            }
        }
        None if looks_textual(head) => FileType::Text,
        None => FileType::Unknown,
    }
}

fn detect_binary(data: &[u8]) -> Option<FileType> {
    let at = |off: usize, magic: &[u8]| data.get(off..off + magic.len()) == Some(magic);
    if at(0, b"MZ") {
        // A real PE has "PE\0\0" where e_lfanew points; a bare "MZ" is text.
        let pe = data
            .get(0x3c..0x40)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .and_then(|off| data.get(off..off.checked_add(4)?));
        if pe == Some(b"PE\0\0") {
            return Some(FileType::Pe);
        }
    }
    if at(0, b"\x7fELF") {
        return Some(FileType::Elf);
    }
    for magic in [
        [0xfe, 0xed, 0xfa, 0xce],
        [0xfe, 0xed, 0xfa, 0xcf],
        [0xce, 0xfa, 0xed, 0xfe],
        [0xcf, 0xfa, 0xed, 0xfe],
    ] {
        if at(0, &magic) {
            return Some(FileType::MachO);
        }
    }
    // Universal Mach-O shares 0xcafebabe with Java classes; a small arch
    // count tells them apart.
    if at(0, &[0xca, 0xfe, 0xba, 0xbe]) && data.get(4..8).is_some_and(|b| b[0..3] == [0, 0, 0]) {
        return Some(FileType::MachO);
    }
    if at(0, &[0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0]) {
        return Some(FileType::Lnk);
    }
    if at(0, &[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
        return Some(FileType::Ole2);
    }
    if at(0, b"PK\x03\x04") || at(0, b"PK\x05\x06") {
        let window = &data[..data.len().min(64 << 10)];
        if memfind(window, b"[Content_Types].xml").is_some() {
            return Some(FileType::Ooxml);
        }
        return Some(FileType::Zip);
    }
    if at(0, b"%PDF-") || memfind(&data[..data.len().min(1024)], b"%PDF-").is_some() {
        return Some(FileType::Pdf);
    }
    if at(0, b"{\\rt") {
        return Some(FileType::Rtf);
    }
    if at(0, &[0x1f, 0x8b]) {
        return Some(FileType::Gzip);
    }
    if at(0, b"BZh") && data.get(3).is_some_and(|c| (b'1'..=b'9').contains(c)) {
        return Some(FileType::Bzip2);
    }
    if at(0, &[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Some(FileType::Xz);
    }
    if at(0, &[0x28, 0xb5, 0x2f, 0xfd]) {
        return Some(FileType::Zstd);
    }
    if at(257, b"ustar") {
        return Some(FileType::Tar);
    }
    if at(0, b"070701") || at(0, b"070702") || at(0, b"070707") {
        return Some(FileType::Cpio);
    }
    // The old binary cpio magic is two bytes: also require a plausible
    // first name (NUL-terminated where the header says), so that random
    // data starting with them is not sent to an unpacker that fails.
    if (at(0, &[0xc7, 0x71]) || at(0, &[0x71, 0xc7])) && data.len() >= 28 {
        let le = data[0] == 0xc7;
        let n = if le {
            u16::from_le_bytes([data[20], data[21]])
        } else {
            u16::from_be_bytes([data[20], data[21]])
        } as usize;
        if n >= 2 && data.get(26 + n - 1) == Some(&0) && !data[26..26 + n - 1].contains(&0) {
            return Some(FileType::Cpio);
        }
    }
    if at(0, &crate::extract::TNEF_SIGNATURE) {
        return Some(FileType::Tnef);
    }
    if at(0, crate::extract::AR_MAGIC) {
        return Some(FileType::Ar);
    }
    if at(0, b"7z\xbc\xaf\x27\x1c") {
        return Some(FileType::SevenZip);
    }
    if at(0, b"Rar!\x1a\x07") {
        return Some(FileType::Rar);
    }
    if at(0, b"MSCF\0\0\0\0") {
        return Some(FileType::Cab);
    }
    if crate::extract::is_onenote(data) {
        return Some(FileType::OneNote);
    }
    for off in [0x8001, 0x8801, 0x9001] {
        if at(off, b"CD001") || at(off, b"BEA01") || at(off, b"NSR02") || at(off, b"NSR03") {
            return Some(FileType::Iso);
        }
    }
    // Last: a boot sector is only a 55AA and a few plausible numbers.
    if crate::extract::is_fat(data) {
        return Some(FileType::FatImage);
    }
    None
}

/// Scripts and mail have no magic: sniff their first bytes. Conservative on
/// purpose: a false "script" on a harmless text file is a false positive.
fn detect_text(head: &[u8]) -> Option<FileType> {
    if !looks_textual(head) {
        return None;
    }
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("#!") {
        return Some(if lower.contains("pwsh") {
            FileType::PowerShell
        } else {
            FileType::ShellScript
        });
    }
    if looks_like_mail(trimmed) {
        // An mbox starts with its separator line; a message does not.
        return Some(if trimmed.starts_with("From ") {
            FileType::Mbox
        } else {
            FileType::Mail
        });
    }
    // Inline in a message body it stays text (the body is text); the
    // text stage decodes it there.
    // "…with BinHex 4.0)"; macutils writes "…; you knew that already.)".
    if lower.starts_with("(this file must be converted") {
        return Some(FileType::BinHex);
    }
    if lower.contains("<hta:application") {
        return Some(FileType::Hta);
    }
    if lower.starts_with("<job") || lower.starts_with("<package") && lower.contains("<job") {
        return Some(FileType::Wsf);
    }
    if lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
        || lower.starts_with("<head")
        || lower.starts_with("<body")
        || lower.starts_with("<script")
        || lower.starts_with("<meta")
        || lower.starts_with("<svg") && lower.contains("<script")
    {
        return Some(FileType::Html);
    }
    if lower.starts_with("@echo off") || lower.starts_with("@echo on") || lower.starts_with("rem ")
    {
        return Some(FileType::Batch);
    }
    let has = |s: &str| lower.contains(s);
    if has("wscript.") || has("createobject(") && (has("dim ") || has("set ")) {
        if has("new activexobject") || has("var ") || has("function(") {
            return Some(FileType::JavaScript);
        }
        return Some(FileType::VbScript);
    }
    if has("new activexobject") || has("eval(") && has("var ") && has("function") {
        return Some(FileType::JavaScript);
    }
    if has("invoke-expression")
        || has("new-object net.webclient")
        || has("[system.convert]::frombase64string")
        || has("set-executionpolicy")
        || has("invoke-webrequest")
        || has("start-process")
    {
        return Some(FileType::PowerShell);
    }
    None
}

/// A message starts with header fields: at least two `Name: value` lines,
/// one of them a header every message has.
fn looks_like_mail(text: &str) -> bool {
    let mut fields = 0;
    let mut known = false;
    for line in text.lines().take(40) {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        if line.starts_with("From ") && fields == 0 {
            // mbox separator line
            continue;
        }
        let Some((name, _)) = line.split_once(':') else {
            return false;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return false;
        }
        fields += 1;
        let n = name.to_ascii_lowercase();
        known |= matches!(
            n.as_str(),
            "from"
                | "to"
                | "subject"
                | "date"
                | "received"
                | "message-id"
                | "mime-version"
                | "return-path"
                | "content-type"
        );
    }
    fields >= 2 && known
}

pub fn looks_textual(head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    let bad = head
        .iter()
        .filter(|&&b| b == 0 || (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b)))
        .count();
    bad * 100 <= head.len()
}

pub(crate) fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Extensions that run code when opened on a common desktop.
const DANGEROUS: &[&str] = &[
    "exe",
    "scr",
    "com",
    "pif",
    "cpl",
    "msi",
    "msp",
    "msc",
    "dll",
    "sys",
    "drv",
    "ocx",
    "bat",
    "cmd",
    "js",
    "jse",
    "vbs",
    "vbe",
    "wsf",
    "wsh",
    "wsc",
    "hta",
    "ps1",
    "psm1",
    "psd1",
    "lnk",
    "url",
    "scf",
    "reg",
    "inf",
    "chm",
    "jar",
    "iso",
    "img",
    "vhd",
    "vhdx",
    "appx",
    "msix",
    "appinstaller",
    "application",
    "gadget",
    "xll",
    "library-ms",
    "settingcontent-ms",
    "one",
    "svg",
    "xbap",
    "sct",
    "msh",
    "iqy",
    "slk",
];

/// Extensions a person expects to be harmless; what a disguise imitates.
const DOCUMENTISH: &[&str] = &[
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "rtf", "txt", "csv", "jpg", "jpeg", "png",
    "gif", "bmp", "tif", "tiff", "mp3", "mp4", "avi", "mov", "wav", "odt", "ods", "zip", "rar",
    "htm", "html", "xml", "eml", "msg",
];

/// What a file extension promises, for comparing with the true type.
fn extension_category(ext: &str) -> Option<Category> {
    Some(match ext {
        "exe" | "dll" | "scr" | "com" | "pif" | "cpl" | "sys" | "ocx" | "drv" | "lnk" | "elf"
        | "so" | "dylib" => Category::Executable,
        "js" | "jse" | "vbs" | "vbe" | "wsf" | "hta" | "ps1" | "bat" | "cmd" | "sh" => {
            Category::Script
        }
        "zip" | "gz" | "tgz" | "bz2" | "xz" | "zst" | "tar" | "7z" | "rar" | "cab" => {
            Category::Archive
        }
        "iso" | "img" | "vhd" | "vhdx" => Category::DiskImage,
        "pdf" | "doc" | "docx" | "docm" | "xls" | "xlsx" | "xlsm" | "ppt" | "pptx" | "pptm"
        | "rtf" | "dot" | "dotm" | "xlsb" => Category::Document,
        "jpg" | "jpeg" | "png" | "gif" | "bmp" | "tif" | "tiff" | "webp" | "ico" => Category::Image,
        "eml" => Category::Mail,
        "txt" | "csv" | "log" => Category::Text,
        _ => return None,
    })
}

fn declared_category(content_type: &str) -> Option<Category> {
    let ct = content_type.to_ascii_lowercase();
    let ct = ct.split(';').next().unwrap_or("").trim();
    Some(match ct {
        "application/pdf" | "application/msword" | "application/rtf" | "text/rtf" => {
            Category::Document
        }
        c if c.starts_with("application/vnd.openxmlformats")
            || c.starts_with("application/vnd.ms-excel")
            || c.starts_with("application/vnd.ms-powerpoint")
            || c.starts_with("application/vnd.ms-word")
            || c.starts_with("application/vnd.oasis.opendocument") =>
        {
            Category::Document
        }
        c if c.starts_with("image/") && c != "image/svg+xml" => Category::Image,
        c if c.starts_with("audio/") => Category::Audio,
        c if c.starts_with("video/") => Category::Video,
        "application/x-msdownload" | "application/x-dosexec" | "application/x-executable" => {
            Category::Executable
        }
        _ => return None,
    })
}

/// The last extension, lower-cased, with the trailing dots and spaces that
/// Windows ignores stripped off first.
pub fn extension(name: &str) -> Option<String> {
    let name = name.trim_end_matches(['.', ' ']);
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() || ext.len() > 24 || ext.contains(['/', '\\']) {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

/// Invisible or direction-changing characters in names, used to make
/// `invoice\u{202e}fdp.exe` display as `invoiceexe.pdf`.
fn deceptive_chars(name: &str) -> Vec<String> {
    let mut found: Vec<String> = name
        .chars()
        .filter(|c| {
            matches!(
                c,
                '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
                    | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{180e}' | '\u{061c}'
            )
        })
        .map(|c| format!("U+{:04X}", c as u32))
        .collect();
    found.dedup();
    found
}

/// Name and declared-type checks for one object.
pub fn name_findings(
    name: Option<&str>,
    declared: Option<&str>,
    true_type: &FileType,
) -> Vec<FindingKind> {
    let mut out = Vec::new();
    let detected = true_type.category();
    let ext = name.and_then(extension);
    if let Some(name) = name {
        let chars = deceptive_chars(name);
        if !chars.is_empty() {
            out.push(FindingKind::DeceptiveName { characters: chars });
        }
        if let Some(ext) = &ext
            && DANGEROUS.contains(&ext.as_str())
        {
            out.push(FindingKind::DangerousExtension {
                extension: ext.clone(),
            });
            // "invoice.pdf.exe", "scan.jpg      .scr": a harmless-looking
            // extension right before a dangerous one.
            let trimmed = name.trim_end_matches(['.', ' ']);
            if let Some((stem, _)) = trimmed.rsplit_once('.')
                && let Some(inner) = extension(stem.trim_end())
                && DOCUMENTISH.contains(&inner.as_str())
            {
                out.push(FindingKind::DoubleExtension);
            }
        }
    }

    let claimed_ext = ext.as_deref().and_then(extension_category);
    let claimed_decl = declared.and_then(declared_category);
    let runs_code = matches!(detected, Category::Executable | Category::Script);
    let looks_benign = |c: Option<Category>| {
        matches!(
            c,
            Some(
                Category::Document
                    | Category::Image
                    | Category::Audio
                    | Category::Video
                    | Category::Text
            )
        )
    };
    if runs_code && (looks_benign(claimed_ext) || looks_benign(claimed_decl)) {
        out.push(FindingKind::DisguisedExecutable {
            detected: true_type.label().into(),
        });
    } else if detected != Category::Unknown && detected != Category::Text {
        // Only confident detections count; text matches too many claims.
        let mismatch = |claimed: Option<Category>| {
            claimed.is_some_and(|c| c != detected && !compatible(c, detected))
        };
        if mismatch(claimed_ext) || mismatch(claimed_decl) {
            let claim = match (&ext, declared) {
                (Some(e), Some(d)) => format!("{d} (.{e})"),
                (Some(e), None) => format!(".{e}"),
                (None, Some(d)) => d.to_string(),
                (None, None) => String::new(),
            };
            out.push(FindingKind::TypeMismatch {
                declared: claim,
                detected: true_type.label().into(),
            });
        }
    }
    out
}

/// Pairs that differ in category but are normal in real mail.
fn compatible(claimed: Category, detected: Category) -> bool {
    matches!(
        (claimed, detected),
        // docx/xlsx are zips; old .zip-named OOXML too.
        (Category::Document, Category::Archive)
            | (Category::Archive, Category::Document)
            | (Category::Text, _)
            | (Category::Mail, Category::Text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(findings: &[FindingKind]) -> Vec<String> {
        findings.iter().map(|f| f.name()).collect()
    }

    #[test]
    fn pe_needs_its_header_not_just_mz() {
        assert_eq!(detect(b"MZ is a text line\n"), FileType::Text);
        let mut pe = vec![0u8; 0x100];
        pe[0..2].copy_from_slice(b"MZ");
        pe[0x3c] = 0x80;
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        assert_eq!(detect(&pe), FileType::Pe);
    }

    #[test]
    fn scripts_and_mail_are_sniffed() {
        assert_eq!(
            detect(b"Set sh = CreateObject(\"WScript.Shell\")\nsh.Run \"calc\""),
            FileType::VbScript
        );
        assert_eq!(
            detect(b"var s = new ActiveXObject('WScript.Shell');"),
            FileType::JavaScript
        );
        assert_eq!(detect(b"@echo off\r\nstart x.exe"), FileType::Batch);
        assert_eq!(
            detect(b"From: a@b\r\nTo: c@d\r\nSubject: x\r\n\r\nbody"),
            FileType::Mail
        );
        assert_eq!(detect(b"just words: not mail\n"), FileType::Text);
    }

    #[test]
    fn double_extension_and_bidi() {
        let f = name_findings(Some("invoice.pdf.exe"), None, &FileType::Pe);
        assert!(names(&f).contains(&"DOUBLE_EXTENSION".into()), "{f:?}");
        let f = name_findings(Some("report\u{202e}fdp.exe"), None, &FileType::Pe);
        assert!(names(&f).contains(&"DECEPTIVE_NAME".into()), "{f:?}");
        let f = name_findings(Some("holiday.jpg"), Some("image/jpeg"), &FileType::Pe);
        assert!(names(&f).contains(&"DISGUISED_EXECUTABLE".into()), "{f:?}");
        let f = name_findings(Some("report.pdf"), Some("application/pdf"), &FileType::Pdf);
        assert!(f.is_empty(), "{f:?}");
        let f = name_findings(Some("report.docx"), None, &FileType::Ooxml);
        assert!(f.is_empty(), "{f:?}");
        let f = name_findings(Some("photo.png"), None, &FileType::Pdf);
        assert_eq!(names(&f), vec!["TYPE_MISMATCH".to_string()]);
    }
}
