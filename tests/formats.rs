//! Containers made by the real tools people and attackers use (7-Zip,
//! Info-ZIP, genisoimage, mkfs.fat + mtools, gcab, qpdf, macutils' binhex,
//! msoffcrypto-tool), not by our own sample writers: a reader and a writer
//! from the same hands can share a misreading of a format; these cannot.
//! `scripts/test` installs the tools. RAR (the archiver is not free
//! software) and OneNote (no tool writes it here) are covered only by the
//! generated samples.

use crate::util::{engine, finding_names};
use portcullis::samples::{attachment, clean_pdf, eicar, message, zip};
use portcullis::{Action, Report, Submission};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a tool, failing the test with its output if it fails or is missing.
fn run(dir: &Path, program: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/test installs it)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A scratch directory holding `eicar.com` (written at run time: no live
/// test virus in git) and `readme.txt`.
fn workdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    std::fs::write(path.join("eicar.com"), eicar()).expect("write");
    std::fs::write(path.join("readme.txt"), b"nothing to see").expect("write");
    (dir, path)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Inspects a message with `file` attached and the given subject and body.
fn mail_with(subject: &str, body: &str, name: &str, file: &[u8]) -> Report {
    let mail = message(
        subject,
        body,
        &[attachment("application/octet-stream", name, file)],
    );
    engine().inspect(&Submission::mail(mail)).expect("inspect")
}

/// EICAR found inside, at the path we expect, and the message rejected.
fn assert_eicar_inside(report: &Report, inner_path: &str) {
    let names = finding_names(report);
    assert_eq!(
        report.verdict.action,
        Action::Reject,
        "{names:?}: {:#?}",
        report.objects
    );
    let hit = report
        .findings
        .iter()
        .find(|f| f.kind.name() == "EICAR_Test_File")
        .expect("EICAR finding");
    assert!(
        hit.path.ends_with(inner_path),
        "EICAR found at {}, expected …{inner_path}",
        hit.path
    );
}

#[test]
fn seven_zip_archives_from_7z() {
    let (_dir, d) = workdir();
    // LZMA2 solid, PPMd, BZip2, Deflate; then AES-256 with encrypted names.
    for (file, method) in [
        ("lzma2.7z", "-m0=LZMA2"),
        ("ppmd.7z", "-m0=PPMd"),
        ("bzip2.7z", "-m0=BZip2"),
        ("deflate.7z", "-m0=Deflate"),
    ] {
        run(
            &d,
            "7z",
            &[
                "a",
                "-bso0",
                "-t7z",
                method,
                file,
                "readme.txt",
                "eicar.com",
            ],
        );
        let report = mail_with("Files", "the files", file, &read(&d.join(file)));
        assert_eicar_inside(&report, &format!("{file} > eicar.com"));
    }
    run(
        &d,
        "7z",
        &[
            "a",
            "-bso0",
            "-t7z",
            "-mhe=on",
            "-pOrder#4471",
            "locked.7z",
            "eicar.com",
        ],
    );
    let locked = read(&d.join("locked.7z"));
    let report = mail_with(
        "Order",
        "Hello, the order is attached.\nPassword: Order#4471\nBest",
        "order.7z",
        &locked,
    );
    assert_eicar_inside(&report, "order.7z > eicar.com");
    assert!(finding_names(&report).contains(&"DECRYPTED".to_string()));

    let report = mail_with("Order", "the password comes by phone", "order.7z", &locked);
    assert_eq!(report.verdict.action, Action::Quarantine);
    assert!(finding_names(&report).contains(&"ENCRYPTED".to_string()));
}

#[test]
fn encrypted_zips_from_info_zip_and_7z() {
    let (_dir, d) = workdir();
    // Info-ZIP's -P is the traditional PKWARE cipher (ZipCrypto).
    run(
        &d,
        "zip",
        &[
            "-q",
            "-P",
            "8812",
            "zipcrypto.zip",
            "eicar.com",
            "readme.txt",
        ],
    );
    let report = mail_with(
        "Scan",
        "Dear customer, the document is protected (password: 8812).",
        "scan.zip",
        &read(&d.join("zipcrypto.zip")),
    );
    assert_eicar_inside(&report, "scan.zip > eicar.com");

    run(
        &d,
        "7z",
        &[
            "a",
            "-bso0",
            "-tzip",
            "-mem=AES256",
            "-pMz7kq2",
            "aes.zip",
            "eicar.com",
        ],
    );
    let aes = read(&d.join("aes.zip"));
    let report = mail_with("Payslip \"Mz7kq2\"", "see attached", "payslip.zip", &aes);
    assert_eicar_inside(&report, "payslip.zip > eicar.com");
    // Without the password, the names are still judged.
    let report = mail_with("Payslip", "see attached", "payslip.zip", &aes);
    assert_eq!(report.verdict.action, Action::Quarantine);
    let locked = report
        .objects
        .iter()
        .find(|o| o.name.as_deref() == Some("eicar.com"))
        .expect("listed");
    assert_eq!(locked.outcome, portcullis::model::Outcome::Encrypted);
}

#[test]
fn disk_images_from_genisoimage_and_mtools() {
    let (_dir, d) = workdir();
    let tree = d.join("tree");
    std::fs::create_dir_all(tree.join("payload")).expect("mkdir");
    std::fs::copy(d.join("eicar.com"), tree.join("payload/eicar.com")).expect("copy");
    std::fs::write(tree.join("Order Details.txt"), b"see payload").expect("write");
    // Joliet + Rock Ridge + UDF (a bridge image, as oscdimg also makes),
    // then Rock Ridge only.
    for (file, flags) in [
        ("bridge.iso", &["-J", "-R", "-udf"][..]),
        ("rr.iso", &["-R"][..]),
    ] {
        let mut args = vec!["-quiet", "-o", file];
        args.extend_from_slice(flags);
        args.push("tree");
        run(&d, "genisoimage", &args);
        let report = mail_with("Order", "order details", file, &read(&d.join(file)));
        assert_eicar_inside(&report, "payload/eicar.com");
        assert!(
            !finding_names(&report).contains(&"AMBIGUOUS_ARCHIVE".to_string()),
            "{:?}",
            report.findings
        );
    }

    // A 1.44 MB floppy image with a long, double-extension name.
    run(&d, "mkfs.fat", &["-C", "-n", "ORDER", "floppy.img", "1440"]);
    run(&d, "mmd", &["-i", "floppy.img", "::/Docs"]);
    run(
        &d,
        "mcopy",
        &[
            "-i",
            "floppy.img",
            "eicar.com",
            "::/Docs/Invoice 2024.pdf.exe",
        ],
    );
    let report = mail_with(
        "Disk",
        "the disk",
        "floppy.img",
        &read(&d.join("floppy.img")),
    );
    assert_eicar_inside(&report, "floppy.img > Docs/Invoice 2024.pdf.exe");
    assert!(finding_names(&report).contains(&"DOUBLE_EXTENSION".to_string()));
}

#[test]
fn cabinets_from_gcab() {
    let (_dir, d) = workdir();
    for (file, compress) in [("stored.cab", false), ("mszip.cab", true)] {
        let mut args = vec!["-c"];
        if compress {
            args.push("-z");
        }
        args.extend_from_slice(&[file, "readme.txt", "eicar.com"]);
        run(&d, "gcab", &args);
        let report = mail_with("Update", "install it", file, &read(&d.join(file)));
        assert_eicar_inside(&report, &format!("{file} > eicar.com"));
    }
}

#[test]
fn encrypted_pdfs_from_qpdf() {
    let (_dir, d) = workdir();
    std::fs::write(d.join("plain.pdf"), clean_pdf()).expect("write");
    // Exit code 3 means warnings (our minimal PDF has no xref table; qpdf
    // rebuilds one): success for us.
    run(
        &d,
        "qpdf",
        &[
            "--warning-exit-0",
            "plain.pdf",
            "--add-attachment",
            "eicar.com",
            "--",
            "attached.pdf",
        ],
    );
    // R6 AES-256 with a user password, R4 AES-128 and R3 RC4 that open
    // without one (an owner password only restricts printing and copying).
    let cases: [(&str, &[&str], &str); 3] = [
        (
            "r6.pdf",
            &["--encrypt", "Stmt-7731", "owner-pw", "256", "--"],
            "Your statement. Password: Stmt-7731",
        ),
        (
            "r4.pdf",
            &["--encrypt", "", "owner-pw", "128", "--use-aes=y", "--"],
            "Your statement.",
        ),
        (
            "r3.pdf",
            // qpdf 11 writes RC4 only when told that it is weak.
            &[
                "--allow-weak-crypto",
                "--encrypt",
                "",
                "owner-pw",
                "128",
                "--use-aes=n",
                "--",
            ],
            "Your statement.",
        ),
    ];
    for (file, encrypt, body) in cases {
        let mut args = vec!["--warning-exit-0", "attached.pdf"];
        args.extend_from_slice(encrypt);
        args.push(file);
        run(&d, "qpdf", &args);
        let pdf = read(&d.join(file));
        assert!(
            pdf.windows(8).any(|w| w == b"/Encrypt"),
            "{file} is not encrypted"
        );
        let report = mail_with("Statement", body, "statement.pdf", &pdf);
        // qpdf names the attachment in its file specification (/F, /UF).
        assert_eicar_inside(&report, "statement.pdf > eicar.com");
    }
    let report = mail_with(
        "Statement",
        "call us for the password",
        "statement.pdf",
        &read(&d.join("r6.pdf")),
    );
    assert!(
        finding_names(&report).contains(&"ENCRYPTED".to_string()),
        "{:?}",
        report.findings
    );
}

#[test]
fn binhex_from_macutils() {
    let (_dir, d) = workdir();
    let out = run(&d, "binhex", &["-d", "eicar.com"]);
    let report = mail_with("Mac file", "attached", "eicar.hqx", &out.stdout);
    assert_eicar_inside(&report, "eicar.hqx > eicar.com");
    // macutils' first line is not the usual "…with BinHex 4.0)" one.
    let hqx = report
        .objects
        .iter()
        .find(|o| o.name.as_deref() == Some("eicar.hqx"))
        .expect("attachment");
    assert_eq!(hqx.true_type, "application/mac-binhex40");
}

#[test]
fn encrypted_office_documents_from_msoffcrypto_tool() {
    let (_dir, d) = workdir();
    // msoffcrypto-tool 6.1 writes a broken EncryptedPackage when the
    // package is small enough for the compound file's mini stream (it
    // cannot decrypt its own output then either): 8 KiB of incompressible
    // filler keeps it in regular sectors, as real documents are.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let filler: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let docx = zip(&[
        (
            "[Content_Types].xml",
            b"<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"/>",
        ),
        ("word/document.xml", b"<w:document/>"),
        ("word/media/image1.bin", &filler),
        ("word/embeddings/eicar.com", &eicar()),
    ]);
    std::fs::write(d.join("plain.docx"), &docx).expect("write");
    // scripts/test installs 6.1 (which encrypts) in a virtualenv and says
    // where; Debian's 5.0 on the PATH only decrypts.
    let venv = "/var/cache/portcullis/venv/bin/msoffcrypto-tool";
    let tool = std::env::var("PORTCULLIS_MSOFFCRYPTO").unwrap_or_else(|_| {
        if Path::new(venv).exists() {
            venv.into()
        } else {
            "msoffcrypto-tool".into()
        }
    });
    run(
        &d,
        &tool,
        &["-e", "-p", "Summer-2024", "plain.docx", "locked.docx"],
    );
    let locked = read(&d.join("locked.docx"));
    assert!(
        locked.starts_with(&[0xd0, 0xcf, 0x11, 0xe0]),
        "not an encrypted compound file"
    );
    let report = mail_with(
        "Salary",
        "The document is protected.\r\nPassword: Summer-2024",
        "salary.docx",
        &locked,
    );
    assert_eicar_inside(&report, "eicar.com");
    assert!(finding_names(&report).contains(&"DECRYPTED".to_string()));
    let report = mail_with("Salary", "ask HR for the password", "salary.docx", &locked);
    assert_eq!(report.verdict.action, Action::Quarantine);
    assert!(finding_names(&report).contains(&"ENCRYPTED".to_string()));
}
