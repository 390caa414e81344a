//! The quarantine store: how fast messages become durable (blob fsync +
//! committed row, what a door waits for before answering "quarantined"),
//! and how fast operators' searches answer on a full queue.
//!
//! `cargo bench --bench quarantine` runs on SQLite in a temp dir, and on
//! PostgreSQL too when PORTCULLIS_TEST_POSTGRES is set (scripts/test's
//! server, or any other): it creates a fresh database there.
//!
//! 1. writes: distinct ~20 KiB messages, 1 and 16 writers at once;
//! 2. searches on the resulting queue (plus filler rows): first page, by
//!    recipient part, by rule, by subject text, a deep page;
//! 3. events: building and queueing one (the door's share, on the mail
//!    path), the writer's batched inserts, and pulling pages by cursor.
//!
//! Under `cargo test` (no `--bench`) it runs a handful of each, to keep it
//! working.

use portcullis::model::{Door, Envelope};
use portcullis::store::{ListQuery, State, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn message(i: usize) -> Vec<u8> {
    let body: String = (0..300)
        .map(|l| {
            format!("line {l} of message {i}: the quick brown fox jumps over the lazy dog\r\n")
        })
        .collect();
    format!(
        "From: sender{}@example.net\r\nTo: user{}@example.com\r\nSubject: Invoice {i} for order {}\r\n\
         Message-ID: <{i}@bench>\r\n\r\n{body}",
        i % 97,
        i % 500,
        i * 7
    )
    .into_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn writes(
    store: &Arc<Store>,
    report: &portcullis::Report,
    total: usize,
    writers: usize,
    start_at: usize,
) {
    let per = total / writers;
    let began = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = Arc::clone(store);
        let report = report.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for k in 0..per {
                let i = start_at + w * per + k;
                let raw = message(i);
                let env = Envelope {
                    mail_from: Some(format!("sender{}@example.net", i % 97)),
                    rcpt_to: vec![format!("user{}@example.com", i % 500)],
                    client_ip: Some("192.0.2.1".into()),
                    ..Default::default()
                };
                let t = Instant::now();
                store
                    .quarantine(
                        raw.into(),
                        &env,
                        Door::Native,
                        &report,
                        Duration::from_secs(86400),
                    )
                    .await
                    .expect("quarantine write");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("writer"));
    }
    let secs = began.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "| write, {writers} writer(s) | {} | {:.0} | {:.2} | {:.2} |",
        lat.len(),
        lat.len() as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

async fn search(store: &Store, name: &str, q: ListQuery, runs: usize) {
    let mut lat = Vec::with_capacity(runs);
    let mut total = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let page = store.db.list(&q).await.expect("list");
        lat.push(t.elapsed());
        total = page.total;
    }
    lat.sort();
    println!(
        "| search: {name} | {total} | {:.2} | {:.2} |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
}

async fn run(label: &str, dir: &std::path::Path, url: Option<&str>, full: bool) {
    let store = Arc::new(
        Store::open(dir, url, None)
            .await
            .expect("opening the store"),
    );
    let mut sub = portcullis::Submission::mail(message(0));
    sub.envelope.rcpt_to = vec!["user0@example.com".into()];
    let engine = portcullis::cli::load_engine(None, None).expect("engine");
    let report = engine.inspect(&sub).expect("report");
    let n = if full { 2000 } else { 32 };
    println!("\n{label}\n");
    println!(
        "| run | messages | messages/s | p50 ms | p99 ms |\n| --- | ---: | ---: | ---: | ---: |"
    );
    writes(&store, &report, n, 1, 0).await;
    writes(&store, &report, n, 16, n).await;
    if full {
        // Fill to a queue an operator of a busy site would see.
        writes(&store, &report, 16_000, 16, 2 * n).await;
    }
    let runs = if full { 50 } else { 3 };
    println!("\n| search | matching | p50 ms | p99 ms |\n| --- | ---: | ---: | ---: |");
    let base = ListQuery {
        limit: 50,
        states: vec![State::Held],
        ..Default::default()
    };
    search(&store, "first page, held", base.clone(), runs).await;
    search(
        &store,
        "recipient contains `user42@`",
        ListQuery {
            recipient: Some("user42@".into()),
            ..base.clone()
        },
        runs,
    )
    .await;
    search(
        &store,
        "sender contains `sender7@`",
        ListQuery {
            sender: Some("sender7@".into()),
            ..base.clone()
        },
        runs,
    )
    .await;
    search(
        &store,
        "subject contains `order 7000`",
        ListQuery {
            text: Some("order 7000".into()),
            ..base.clone()
        },
        runs,
    )
    .await;
    search(
        &store,
        "page at offset 10000",
        ListQuery {
            offset: 10_000,
            ..base.clone()
        },
        runs,
    )
    .await;
    events(&store, full).await;
}

async fn events(store: &Arc<Store>, full: bool) {
    use portcullis::publish::events::VerdictFacts;
    use portcullis::store::events::NewEvent;
    let n = if full { 100_000 } else { 200 };
    // A typical verdict with attachments: a zip of three files and a PDF,
    // so the event carries findings and a handful of objects with hashes.
    let zip = portcullis::samples::zip(&[
        ("invoice.pdf", &portcullis::samples::clean_pdf()),
        ("readme.txt", b"hello"),
        ("photo.png", &portcullis::samples::png()),
    ]);
    let raw = portcullis::samples::message(
        "Invoice",
        "see attached",
        &[
            portcullis::samples::attachment("application/zip", "invoice.zip", &zip),
            portcullis::samples::attachment(
                "application/pdf",
                "terms.pdf",
                &portcullis::samples::clean_pdf(),
            ),
        ],
    );
    let engine = portcullis::cli::load_engine(None, None).expect("engine");
    let report = &engine
        .inspect(&portcullis::Submission::mail(raw))
        .expect("report");
    // 1. What a door pays per verdict: serialize once, try_send.
    let (hub, mut rx) = portcullis::publish::Events::new("bench".into(), n + 1, 1);
    let envelope = Envelope {
        mail_from: Some("sender@example.net".into()),
        rcpt_to: vec!["user0@example.com".into()],
        client_ip: Some("192.0.2.7".into()),
        ..Default::default()
    };
    let began = Instant::now();
    for _ in 0..n {
        hub.verdict(VerdictFacts {
            door: Door::Milter,
            envelope: &envelope,
            message_id: Some("<0@bench>"),
            size: 20_000,
            report,
            quarantine_id: None,
            total: Duration::from_millis(3),
        });
    }
    let per = began.elapsed().as_secs_f64() * 1e6 / n as f64;
    let mut queued = Vec::with_capacity(n);
    rx.recv_many(&mut queued, n).await;
    let bytes = queued.first().map_or(0, |e| e.body.len());
    println!(
        "\n| events | count | result |\n| --- | ---: | --- |\n\
         | build + queue one event (door side; {} objects, {bytes} B of JSON) | {n} | {per:.1} µs each |",
        report.objects.len()
    );
    // 2. The writer: batches of 256, one transaction each, one writer.
    let batches: Vec<Vec<NewEvent>> = queued.chunks(256).map(|c| c.to_vec()).collect();
    let began = Instant::now();
    for b in &batches {
        store.db.insert_events(b).await.expect("insert");
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "| writer, batches of 256 | {n} | {:.0} events/s |",
        n as f64 / secs
    );
    // 2b. One event per transaction (a quiet gateway: every batch is one).
    let singles = if full { 2000 } else { 20 };
    let began = Instant::now();
    for e in queued.iter().take(singles) {
        let mut e = e.clone();
        e.id.push('s');
        store
            .db
            .insert_events(std::slice::from_ref(&e))
            .await
            .expect("insert");
    }
    println!(
        "| writer, one event per transaction | {singles} | {:.2} ms each |",
        began.elapsed().as_secs_f64() * 1000.0 / singles as f64
    );
    // 3. Consumers: pages of 100 and 1000 from the middle of the table.
    for limit in [100i64, 1000] {
        let runs = if full { 50 } else { 2 };
        let mut lat = Vec::with_capacity(runs);
        for r in 0..runs {
            let after = (r as i64 * 997) % (n as i64 / 2).max(1);
            let t = Instant::now();
            let page = store.db.events_after(after, limit).await.expect("page");
            let mut body = 0;
            for e in &page {
                body += e.json().len();
            }
            std::hint::black_box(body);
            lat.push(t.elapsed());
        }
        lat.sort();
        println!(
            "| pull a page of {limit} (with the `seq` splice) | {runs} | p50 {:.2} ms, p99 {:.2} ms |",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        run("SQLite (embedded default)", dir.path(), None, full).await;
        if let Ok(base) = std::env::var("PORTCULLIS_TEST_POSTGRES") {
            use sqlx::Connection;
            sqlx::any::install_default_drivers();
            let name = format!("bench_{}", std::process::id());
            let mut c = sqlx::AnyConnection::connect(&base)
                .await
                .expect("PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await
                .expect("CREATE DATABASE");
            let url = match base.rsplit_once('/') {
                Some((server, _)) => format!("{server}/{name}"),
                None => base.clone(),
            };
            let dir = tempfile::tempdir().expect("temp dir");
            run("PostgreSQL", dir.path(), Some(&url), full).await;
        }
    });
}
