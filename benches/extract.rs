//! What each container format costs, and what encrypted attachments cost.
//!
//! `cargo bench --bench extract`. Two groups:
//!
//! - `unpack/<format>`: one message carrying the same 1 MiB of
//!   text-like data plus EICAR inside a container of that format, through
//!   the whole pipeline (parse, unpack, identify, hash, YARA, policy).
//!   Throughput is the payload size, so formats compare directly.
//! - `password/<case>`: a message with an encrypted attachment. `found`:
//!   the password is in the body, the cost is one key derivation plus the
//!   unpack. `absent`: the body has 40 words and none is the password, so
//!   every candidate is tried until `limits.max_password_candidates` or
//!   `limits.password_time` stops it: the most a message can make us spend
//!   on passwords, which is what an attacker would aim for.
//! - `campaign/cache-{off,on}`: one 1 MiB zip sent in many different
//!   messages, with the result cache off and on.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::samples::{
    aes_zip, attachment, cabinet, eicar, encrypted_docx, message, sevenz, zip, zipcrypto_zip,
};
use portcullis::{Action, Config, Engine, RuleSet, Submission};
use std::hint::black_box;
use std::time::Duration;

const PAYLOAD: usize = 1 << 20;

/// Text-like bytes (compressible as real documents are), deterministic.
fn payload() -> Vec<u8> {
    let words = [
        "invoice ",
        "payment ",
        "the ",
        "of ",
        "quarterly ",
        "report ",
        "2024 ",
        "and ",
        "customer ",
        "account\n",
    ];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(PAYLOAD + 16);
    while out.len() < PAYLOAD {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % words.len() as u64) as usize].as_bytes());
    }
    out.truncate(PAYLOAD);
    out
}

fn mail(subject: &str, body: &str, name: &str, file: &[u8]) -> Submission {
    Submission::mail(message(
        subject,
        body,
        &[attachment("application/octet-stream", name, file)],
    ))
}

fn unpack(c: &mut Criterion) {
    // The same message every iteration: with the cache on, all but the
    // first would be cache hits.
    let mut config = Config::defaults();
    config.cache.entries = 0;
    let engine = Engine::new(config, RuleSet::bundled().expect("rules"));
    let data = payload();
    let e = eicar();
    let files: &[(&str, &[u8])] = &[("report.txt", &data), ("eicar.com", &e)];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zip", zip(files)),
        ("7z", sevenz(files, None, true)),
        ("cab", cabinet(files, cab::CompressionType::MsZip)),
        ("rar-stored", portcullis::extract::rar_stored(files, true)),
        ("iso-udf", portcullis::extract::iso_image(files)),
        ("fat-img", portcullis::extract::fat_image(files)),
        ("onenote", portcullis::extract::onenote_file(&[&data, &e])),
    ];
    let mut group = c.benchmark_group("unpack");
    group.throughput(Throughput::Bytes(PAYLOAD as u64));
    group.sample_size(20);
    for (name, container) in cases {
        let submission = mail("Files", "the files", &format!("files.{name}"), &container);
        let mut inspector = engine.inspector();
        let first = inspector.inspect(&submission).expect("inspect");
        assert_eq!(
            first.verdict.action,
            Action::Reject,
            "{name}: {}",
            first.verdict.summary
        );
        group.bench_function(name, |b| {
            b.iter(|| black_box(inspector.inspect(&submission).expect("inspect")))
        });
    }
    group.finish();
}

fn password(c: &mut Criterion) {
    let engine = Engine::new(Config::defaults(), RuleSet::bundled().expect("rules"));
    let e = eicar();
    let inner = zip(&[("[Content_Types].xml", b"<Types/>"), ("word/eicar.com", &e)]);
    let noise: String = (0..40).map(|i| format!("word{i} ")).collect();
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "zipcrypto",
            "zip",
            zipcrypto_zip(&[("eicar.com", &e)], "Secret-42"),
        ),
        (
            "zip-aes256",
            "zip",
            aes_zip(&[("eicar.com", &e)], "Secret-42"),
        ),
        // Our generator's 2^12 SHA-256 rounds; 7-Zip itself uses 2^19.
        (
            "7z-aes",
            "7z",
            sevenz(&[("eicar.com", &e)], Some(("Secret-42", true)), false),
        ),
        ("office-agile", "docx", encrypted_docx(&inner, "Secret-42")),
        (
            "pdf-r6",
            "pdf",
            portcullis::extract::encrypted_pdf(&e, 6, "Secret-42"),
        ),
    ];
    let mut group = c.benchmark_group("password");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, ext, file) in cases {
        let found = mail("Files", "Password: Secret-42", &format!("f.{ext}"), &file);
        let absent = mail("Files", &noise, &format!("f.{ext}"), &file);
        let mut inspector = engine.inspector();
        assert_eq!(
            inspector.inspect(&found).expect("inspect").verdict.action,
            Action::Reject,
            "{name}"
        );
        assert_eq!(
            inspector.inspect(&absent).expect("inspect").verdict.action,
            Action::Quarantine,
            "{name}"
        );
        group.bench_function(format!("{name}/found"), |b| {
            b.iter(|| black_box(inspector.inspect(&found).expect("inspect")))
        });
        group.bench_function(format!("{name}/absent"), |b| {
            b.iter(|| black_box(inspector.inspect(&absent).expect("inspect")))
        });
    }
    group.finish();
}

/// A campaign: the same 1 MiB zip to many recipients, each message
/// otherwise different. With the result cache the attachment is unpacked
/// and scanned once; without it, every time.
fn campaign(c: &mut Criterion) {
    let data = payload();
    let e = eicar();
    let z = zip(&[("report.txt", &data), ("eicar.com", &e)]);
    let mut off = Config::defaults();
    off.cache.entries = 0;
    let engines = [
        (
            "cache-off",
            Engine::new(off, RuleSet::bundled().expect("rules")),
        ),
        (
            "cache-on",
            Engine::new(Config::defaults(), RuleSet::bundled().expect("rules")),
        ),
    ];
    let mut group = c.benchmark_group("campaign");
    group.throughput(Throughput::Elements(1));
    for (name, engine) in &engines {
        let mut inspector = engine.inspector();
        let mut n = 0u64;
        group.bench_function(*name, |b| {
            b.iter(|| {
                n += 1;
                let m = mail(
                    "Invoice",
                    &format!("Dear customer {n}, see attached."),
                    "invoice.zip",
                    &z,
                );
                black_box(inspector.inspect(&m).expect("inspect"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, unpack, password, campaign);
criterion_main!(benches);
