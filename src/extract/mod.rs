//! Extract stage: one module per container format, all reading through one
//! [`Budget`] per submission.
//!
//! Unpackers never trust a declared size. Every decompressed byte goes
//! through [`Budget::read_capped`], which stops at the first of: the
//! per-object cap, the submission's remaining total, the expansion ratio, or
//! the deadline. A limit is not an error: the unpacker returns what it got
//! so far and says which limit stopped it, and policy decides what that
//! means.
//!
//! Entry names from archives are labels only. Nothing here touches the file
//! system, so `../../etc/passwd` is just a string in a report.

mod ar;
mod binhex;
mod cab;
mod compress;
mod cpio;
mod disk;
mod html;
mod lnk;
mod mail;
pub mod mbox;
mod ole;
mod onenote;
pub mod passwords;
mod pdf;
mod rar;
mod rtf;
mod sevenz;
mod tar;
mod tnef;
mod uuencode;
mod zip;

pub use ar::MAGIC as AR_MAGIC;
pub use disk::fat::is_fat;
pub use onenote::store::is_onenote;
pub use tnef::SIGNATURE as TNEF_SIGNATURE;
pub use uuencode::encode as uuencode_encode;

// Writers for the sample generators (crate::samples), kept beside the
// readers they mirror.
pub use binhex::codec::encode as binhex_encode;
pub use disk::fat::build_fat12 as fat_image;
pub use disk::iso::{build_bridge as iso_image, build_udf as udf_image};
pub use onenote::store::build as onenote_file;

/// A RAR 5 (`rar5`) or RAR 4 archive with the files stored uncompressed.
pub fn rar_stored(files: &[(&str, &[u8])], rar5: bool) -> Vec<u8> {
    if rar5 {
        rar::format::build_rar5_stored(files)
    } else {
        rar::format::build_rar4_stored(files)
    }
}

/// An Office package encrypted as Office 2010+ writes it (agile, AES-256,
/// SHA-512, 100 000 rounds): (EncryptionInfo, EncryptedPackage).
pub fn office_encrypt(package: &[u8], password: &str) -> (Vec<u8>, Vec<u8>) {
    ole::crypto::encrypt_agile(package, password, 100_000)
}

/// A PDF encrypted with revision `r` of the Standard security handler
/// (user password `user`) with `file` as an embedded file.
pub fn encrypted_pdf(file: &[u8], r: u32, user: &str) -> Vec<u8> {
    let (params, key) = pdf::crypt::new_params(r, user.as_bytes(), b"owner-secret");
    pdf::encrypted_with_attachment(&params, &key, file)
}

use crate::config::Limits;
use crate::model::{FindingKind, LimitKind, Outcome};
use crate::pipeline::identify::FileType;
use std::io::Read;
use std::time::Instant;

/// An object found inside a container, before it is identified.
#[derive(Debug, Default)]
pub struct Child {
    pub name: Option<String>,
    pub declared_type: Option<String>,
    pub data: Vec<u8>,
    /// Set when the entry could not be read in full (encrypted, a limit).
    pub stopped: Option<Stop>,
    /// The container says this child is a message (message/rfc822).
    pub is_mail: bool,
}

/// Why an entry or a container was not read to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Limit(LimitKind),
    Encrypted,
    /// Listed by name, content never read (a RAR entry we cannot
    /// decompress, a 7z block that failed). The container carries the one
    /// finding that explains it, so a hundred such entries do not add up
    /// to a hundred findings.
    NotRead(Outcome),
}

/// What one unpacker produced from one container.
#[derive(Debug, Default)]
pub struct Extracted {
    pub children: Vec<Child>,
    /// Findings about the container itself (ambiguous zip, sloppy MIME).
    pub findings: Vec<FindingKind>,
    /// A limit that stopped the container before all entries were read.
    pub stopped: Option<LimitKind>,
    /// What YARA should see of the container itself, when that is less
    /// than all of it (a message without its encoded bodies).
    pub scan_view: Option<Vec<u8>>,
}

impl Extracted {
    /// Asked before each entry: false, with the limit recorded on the
    /// container, when the budget allows no further object.
    pub fn room(&mut self, budget: &Budget) -> bool {
        match budget.before_entry(self.children.len()) {
            Some(kind) => {
                self.stopped = Some(kind);
                false
            }
            None => true,
        }
    }

    /// Adds a child whose bytes were decoded in memory (no reader to cap
    /// as it reads): the caps are applied to them first. True when the
    /// container must stop, as for [`add`](Self::add).
    pub fn add_charged(&mut self, budget: &mut Budget, mut child: Child) -> bool {
        let stop = budget.charge(&mut child.data);
        self.add(child, stop)
    }

    /// Adds a child whose bytes `read` copies out of the container, given
    /// the most it may copy: what the per-object cap and the remaining
    /// total allow. True when the container must stop, as for
    /// [`add`](Self::add).
    pub fn add_read(
        &mut self,
        budget: &mut Budget,
        name: String,
        read: impl FnOnce(usize) -> (Vec<u8>, bool),
    ) -> bool {
        let (cap, kind) = budget.cap();
        let (mut data, cut) = read(usize::try_from(cap).unwrap_or(usize::MAX));
        let stop = budget.charge(&mut data).or(cut.then_some(kind));
        let child = Child {
            name: Some(name),
            data,
            ..Default::default()
        };
        self.add(child, stop)
    }

    /// Adds a child, cut short by `stop` if a limit did. True when that
    /// limit ends the whole container (total bytes, time); it is then
    /// recorded on the container too, and the caller stops.
    pub fn add(&mut self, mut child: Child, stop: Option<LimitKind>) -> bool {
        child.stopped = stop.map(Stop::Limit);
        self.children.push(child);
        let halt = matches!(stop, Some(LimitKind::TotalBytes | LimitKind::Time));
        if halt {
            self.stopped = stop;
        }
        halt
    }
}

/// A small deterministic generator for the mutation tests of the format
/// readers.
#[cfg(test)]
pub(crate) struct XorShift(pub u64);

#[cfg(test)]
impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A budget with the default limits, for unpackers' unit tests.
#[cfg(test)]
pub(crate) fn test_budget() -> Budget {
    Budget::new(Limits::default(), Instant::now())
}

/// Children as (name, bytes), for unpackers' unit tests.
#[cfg(test)]
pub(crate) fn named(out: Extracted) -> Vec<(String, Vec<u8>)> {
    out.children
        .into_iter()
        .map(|c| (c.name.unwrap_or_default(), c.data))
        .collect()
}

/// `(name, bytes)` pairs as owned values, to compare with [`named`].
#[cfg(test)]
pub(crate) fn owned(files: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_vec()))
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The container could not be opened at all.
    #[error("{format}: {message}")]
    Malformed {
        format: &'static str,
        message: String,
    },
    #[error("limit reached: {}", .0.as_str())]
    Limit(LimitKind),
}

impl ExtractError {
    fn malformed(format: &'static str, e: impl std::fmt::Display) -> Self {
        ExtractError::Malformed {
            format,
            message: e.to_string(),
        }
    }
}

/// The limits of one submission and what has been spent of them.
#[derive(Debug)]
pub struct Budget {
    pub limits: Limits,
    deadline: Instant,
    unpacked: u64,
    /// Learnt from the messages unpacked so far, tried on what is locked.
    pub passwords: passwords::Passwords,
}

/// Read in chunks so the deadline and caps are checked while a bomb inflates,
/// not after.
const CHUNK: usize = 64 << 10;

impl Budget {
    pub fn new(limits: Limits, start: Instant) -> Budget {
        Budget {
            deadline: start + limits.time_budget,
            passwords: passwords::Passwords::new(
                limits.max_password_candidates,
                limits.password_time,
            ),
            limits,
            unpacked: 0,
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Tries the learnt passwords (after `first`, before `last`) with
    /// `attempt`, which may itself spend this budget. The password that
    /// worked comes back with what `attempt` returned.
    pub fn try_passwords<T>(
        &mut self,
        first: &[&str],
        last: &[&str],
        mut attempt: impl FnMut(&mut Budget, &str) -> Option<T>,
    ) -> Option<(T, String)> {
        let mut passwords = std::mem::take(&mut self.passwords);
        let deadline = self.deadline;
        let found = passwords.try_each(first, last, deadline, |pw| attempt(self, pw));
        self.passwords = passwords;
        found
    }

    pub fn unpacked(&self) -> u64 {
        self.unpacked
    }

    /// Takes back bytes charged for a read whose output was thrown away
    /// and is about to be read again another way.
    pub fn refund(&mut self, bytes: u64) {
        self.unpacked = self.unpacked.saturating_sub(bytes);
    }

    pub fn check_time(&self) -> Result<(), LimitKind> {
        if Instant::now() >= self.deadline {
            Err(LimitKind::Time)
        } else {
            Ok(())
        }
    }

    /// Checked by every unpacker before it reads its next entry: the
    /// deadline, and whether the tree could still hold another object (a
    /// container cannot have more children than the whole tree may).
    pub fn before_entry(&self, children_so_far: usize) -> Option<LimitKind> {
        if let Err(kind) = self.check_time() {
            return Some(kind);
        }
        (children_so_far >= self.limits.max_objects).then_some(LimitKind::Objects)
    }

    pub fn remaining_time(&self) -> std::time::Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Accounts for bytes produced without a reader (MIME and uuencode
    /// decoding, which shrink their input, so no ratio check). Cuts `data`
    /// to what the per-object cap and the remaining total allow, and says
    /// which limit did the cutting.
    pub fn charge(&mut self, data: &mut Vec<u8>) -> Option<LimitKind> {
        let remaining_total = self.limits.max_total_bytes.saturating_sub(self.unpacked);
        let len = data.len() as u64;
        let stop = if len > self.limits.max_object_bytes.min(remaining_total) {
            let kind = if self.limits.max_object_bytes <= remaining_total {
                LimitKind::ObjectBytes
            } else {
                LimitKind::TotalBytes
            };
            data.truncate(self.limits.max_object_bytes.min(remaining_total) as usize);
            Some(kind)
        } else {
            self.check_time().err()
        };
        self.unpacked += data.len() as u64;
        stop
    }

    /// Bytes the total limit still allows.
    pub fn remaining_total(&self) -> u64 {
        self.limits.max_total_bytes.saturating_sub(self.unpacked)
    }

    /// Accounts for bytes unpacked elsewhere (a result reused from the
    /// cache), as if unpacked here.
    pub fn spend(&mut self, bytes: u64) {
        self.unpacked = self.unpacked.saturating_add(bytes);
    }

    /// The most one more object may hold, and the limit that says so.
    pub fn cap(&self) -> (u64, LimitKind) {
        let remaining_total = self.limits.max_total_bytes.saturating_sub(self.unpacked);
        if self.limits.max_object_bytes <= remaining_total {
            (self.limits.max_object_bytes, LimitKind::ObjectBytes)
        } else {
            (remaining_total, LimitKind::TotalBytes)
        }
    }

    /// Reads a decompressing reader to the end or to the first limit.
    /// `input_len` is the compressed size the output came from, for the
    /// ratio check. On a limit the bytes read so far are returned with it:
    /// scanning a bomb's first megabytes is better than scanning nothing.
    pub fn read_capped(
        &mut self,
        mut reader: impl Read,
        input_len: u64,
    ) -> Result<(Vec<u8>, Option<LimitKind>), std::io::Error> {
        let (cap, cap_kind) = self.cap();
        let ratio_cap = input_len
            .max(1)
            .saturating_mul(self.limits.max_ratio)
            .max(self.limits.ratio_floor_bytes);
        let mut out: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; CHUNK];
        let stop = loop {
            if let Err(kind) = self.check_time() {
                break Some(kind);
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.unpacked += out.len() as u64;
                    return Err(e);
                }
            };
            let room = cap.saturating_sub(out.len() as u64) as usize;
            if n > room {
                out.extend_from_slice(&buf[..room]);
                break Some(cap_kind);
            }
            out.extend_from_slice(&buf[..n]);
            if out.len() as u64 > ratio_cap {
                break Some(LimitKind::Ratio);
            }
        };
        self.unpacked += out.len() as u64;
        Ok((out, stop))
    }
}

/// Whether we unpack this type.
pub fn is_container(t: &FileType) -> bool {
    matches!(
        t,
        FileType::Mail
            | FileType::SevenZip
            | FileType::Cab
            | FileType::Zip
            | FileType::Ooxml
            | FileType::Gzip
            | FileType::Bzip2
            | FileType::Xz
            | FileType::Zstd
            | FileType::Tar
            | FileType::Cpio
            | FileType::Ar
            | FileType::Rtf
            | FileType::Html
            | FileType::Hta
            | FileType::Lnk
            | FileType::Ole2
            | FileType::Pdf
            | FileType::Mbox
            | FileType::Tnef
            | FileType::Rar
            | FileType::BinHex
            | FileType::OneNote
            | FileType::FatImage
            | FileType::Iso
    )
}

/// Unpacks one container. `name` is the container's own name, used to name
/// the single member of a gzip/bzip2/xz/zstd stream.
pub fn extract(
    t: &FileType,
    data: &[u8],
    name: Option<&str>,
    budget: &mut Budget,
) -> Result<Extracted, ExtractError> {
    budget.check_time().map_err(ExtractError::Limit)?;
    match t {
        FileType::Mail => mail::extract(data, budget),
        FileType::Zip | FileType::Ooxml => zip::extract(data, budget),
        FileType::Tar => tar::extract(data, budget),
        FileType::SevenZip => sevenz::extract(data, budget),
        FileType::Cab => cab::extract(data, budget),
        FileType::Rar => rar::extract(data, budget),
        FileType::BinHex => binhex::extract(data, budget),
        FileType::OneNote => onenote::extract(data, budget),
        FileType::FatImage => disk::extract_fat(data, budget),
        FileType::Iso => disk::extract_iso(data, budget),
        FileType::Cpio => cpio::extract(data, budget),
        FileType::Ar => ar::extract(data, budget),
        FileType::Rtf => rtf::extract(data, budget),
        FileType::Html | FileType::Hta => html::extract(data, budget),
        FileType::Lnk => lnk::extract(data, budget),
        FileType::Ole2 => ole::extract(data, budget),
        FileType::Pdf => pdf::extract(data, budget),
        FileType::Mbox => mbox::extract(data, budget),
        FileType::Tnef => tnef::extract(data, budget),
        FileType::Gzip | FileType::Bzip2 | FileType::Xz | FileType::Zstd => {
            compress::extract(t, data, name, budget)
        }
        _ => Ok(Extracted::default()),
    }
}

/// Text bodies may carry uuencoded or BinHex files (old clients, some
/// malware kits).
pub fn text_children(data: &[u8], budget: &mut Budget) -> Extracted {
    let mut out = uuencode::extract(data, budget);
    if out.stopped.is_none()
        && let Some(hqx) = binhex::in_text(data, budget)
    {
        out.children.extend(hqx.children);
        out.findings.extend(hqx.findings);
        out.stopped = hqx.stopped;
    }
    out
}

/// Makes an archive entry name safe to print: control characters escaped,
/// length bounded. Bidi and zero-width characters are kept so the name
/// checks can see them.
pub fn display_name(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars().take(512) {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            max_object_bytes: 1000,
            max_total_bytes: 2500,
            max_ratio: 10,
            ratio_floor_bytes: 100,
            time_budget: Duration::from_secs(10),
            ..Limits::default()
        }
    }

    #[test]
    fn caps_per_object_total_and_ratio() {
        let mut b = Budget::new(limits(), Instant::now());
        let (out, stop) = b.read_capped(Cursor::new(vec![1u8; 5000]), 5000).unwrap();
        assert_eq!((out.len(), stop), (1000, Some(LimitKind::ObjectBytes)));
        let (out, stop) = b.read_capped(Cursor::new(vec![1u8; 900]), 900).unwrap();
        assert_eq!((out.len(), stop), (900, None));
        let (out, stop) = b.read_capped(Cursor::new(vec![1u8; 900]), 900).unwrap();
        assert_eq!((out.len(), stop), (600, Some(LimitKind::TotalBytes)));

        let mut b = Budget::new(limits(), Instant::now());
        let (_, stop) = b.read_capped(Cursor::new(vec![0u8; 900]), 20).unwrap();
        assert_eq!(stop, Some(LimitKind::Ratio));
    }

    #[test]
    fn charge_cuts_to_the_caps() {
        let mut b = Budget::new(limits(), Instant::now());
        let mut big = vec![0u8; 1500];
        assert_eq!(b.charge(&mut big), Some(LimitKind::ObjectBytes));
        assert_eq!(big.len(), 1000);
        let mut ok = vec![0u8; 900];
        assert_eq!(b.charge(&mut ok), None);
        let mut last = vec![0u8; 900];
        assert_eq!(b.charge(&mut last), Some(LimitKind::TotalBytes));
        assert_eq!(last.len(), 600);
        assert_eq!(b.unpacked(), 2500);
    }

    #[test]
    fn deadline_stops_reading() {
        let mut b = Budget::new(limits(), Instant::now() - Duration::from_secs(11));
        let (out, stop) = b.read_capped(Cursor::new(vec![1u8; 10]), 10).unwrap();
        assert_eq!((out.len(), stop), (0, Some(LimitKind::Time)));
    }

    /// Valid containers of every format we open ourselves, for mutation;
    /// made once (some are encrypted, and key derivation is slow).
    fn seeds() -> &'static [(FileType, Vec<u8>)] {
        static SEEDS: std::sync::OnceLock<Vec<(FileType, Vec<u8>)>> = std::sync::OnceLock::new();
        SEEDS.get_or_init(make_seeds)
    }

    fn make_seeds() -> Vec<(FileType, Vec<u8>)> {
        use crate::samples::*;
        let files: &[(&str, &[u8])] = &[
            ("a.txt", b"hello world"),
            ("long-name-for-the-table.bin", &[7u8; 40]),
        ];
        vec![
            (FileType::Cpio, cpio_newc(files)),
            (FileType::Cpio, cpio_odc(files)),
            (FileType::Cpio, cpio_binary(files, false)),
            (FileType::Ar, ar_gnu(files)),
            (FileType::Ar, ar_bsd(files)),
            (FileType::Rtf, rtf_with_package("x.exe", &[1u8; 80])),
            (FileType::Html, html_smuggling(&[2u8; 120])),
            (FileType::Lnk, lnk("C:\\Windows\\a.exe", "-x", "C:\\")),
            (FileType::Pdf, pdf_with(&[3u8; 200], Some("/Launch"))),
            (FileType::Tnef, tnef(&[("A.TXT", b"abc"), ("B.EXE", b"MZ")])),
            (
                FileType::Ole2,
                ole_document(
                    &[("M", "Attribute VB_Name = \"M\"\r\n")],
                    Some(("a.exe", b"MZ")),
                ),
            ),
            (FileType::SevenZip, sevenz(files, None, true)),
            (
                FileType::SevenZip,
                sevenz(files, Some(("pw", false)), false),
            ),
            (FileType::Cab, cabinet(files, ::cab::CompressionType::MsZip)),
            (FileType::Rar, rar_stored(files, true)),
            (FileType::Rar, rar_stored(files, false)),
            (FileType::Iso, iso_image(files)),
            (FileType::Iso, udf_image(files)),
            (FileType::FatImage, fat_image(files)),
            (
                FileType::OneNote,
                onenote_file(&[b"hello world", &[7u8; 40]]),
            ),
            (
                FileType::BinHex,
                binhex_encode("a.txt", b"hello world", &[7u8; 40]),
            ),
            (FileType::Ole2, encrypted_docx(&zip(files), "pw")),
            (FileType::Pdf, encrypted_pdf(&[3u8; 200], 4, "")),
            (FileType::Zip, zipcrypto_zip(files, "pw")),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Any bytes behind a format's magic, and valid containers with
        /// bytes overwritten: a result or an error, never a panic, and
        /// never more than the budget allows.
        #[test]
        fn mutated_containers_stay_within_the_budget(
            which in 0usize..24,
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..24),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let (t, data) = &seeds()[which];
            let (t, mut data) = (t.clone(), data.clone());
            for (at, b) in edits {
                let i = at % data.len();
                data[i] = b;
            }
            data.truncate(cut % (data.len() + 1));
            let mut b = Budget::new(limits(), Instant::now());
            b.passwords.learn("password: pw");
            if let Ok(out) = extract(&t, &data, None, &mut b) {
                let total: usize = out.children.iter().map(|c| c.data.len()).sum();
                proptest::prop_assert!(out.children.iter().all(|c| c.data.len() as u64 <= 1000));
                proptest::prop_assert!(total as u64 <= 2500);
            }
        }
    }
}
