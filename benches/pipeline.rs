//! Whole-pipeline throughput on a generated, realistic corpus, beside the
//! raw cost of sha256 + one yara-x scan over the same extracted objects, so
//! the pipeline's own overhead (parsing, unpacking, identification, policy)
//! is visible.
//!
//! `cargo bench --bench pipeline`. The corpus: `samples::corpus(N, 42)`,
//! mostly small text/HTML mail, some PDFs, images, Office files and zips,
//! a few of several MB, one in fifty with EICAR in a zip.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::{Config, Engine, RuleSet, Submission};
use sha2::Digest;
use std::hint::black_box;
use std::time::{Duration, Instant};

const MESSAGES: usize = 1000;

/// The default config without the result cache: every iteration goes over
/// the same corpus, so with it the second pass would measure cache hits,
/// not inspection (benches/extract.rs `campaign` measures the cache).
fn no_cache() -> Config {
    let mut config = Config::defaults();
    config.cache.entries = 0;
    config
}

fn setup() -> (Engine, Engine, Vec<Submission>, Vec<Vec<u8>>) {
    let engine = Engine::new(no_cache(), RuleSet::bundled().expect("bundled rules"));
    // md5 and sha1 of every object too (off by default since 2026-11-28):
    // what IOC feeds in those digests, or `identify.legacy_hashes`, cost.
    let legacy = Engine::new(
        Config {
            legacy_hashes: true,
            ..no_cache()
        },
        RuleSet::bundled().expect("bundled rules"),
    );
    let corpus: Vec<Submission> = portcullis::samples::corpus(MESSAGES, 42)
        .into_iter()
        .map(Submission::mail)
        .collect();
    let objects = common::visited_objects(&engine, &corpus);
    let bytes: usize = corpus.iter().map(|s| s.raw.len()).sum();
    let mut sizes: Vec<usize> = corpus.iter().map(|s| s.raw.len()).collect();
    sizes.sort();
    eprintln!(
        "corpus: {} messages, {:.1} MB, median {} bytes, largest {} bytes, {} objects",
        corpus.len(),
        bytes as f64 / 1e6,
        sizes[sizes.len() / 2],
        sizes[sizes.len() - 1],
        objects.len()
    );
    (engine, legacy, corpus, objects)
}

/// Runs `work` over the corpus split across `threads` threads, each with
/// its own inspector, and returns the wall time.
fn parallel(engine: &Engine, corpus: &[Submission], threads: usize) -> Duration {
    let chunk = corpus.len().div_ceil(threads);
    let start = Instant::now();
    std::thread::scope(|s| {
        for part in corpus.chunks(chunk) {
            s.spawn(move || {
                let mut inspector = engine.inspector();
                for sub in part {
                    black_box(inspector.inspect(sub).expect("inspects"));
                }
            });
        }
    });
    start.elapsed()
}

fn benches(c: &mut Criterion) {
    let (engine, legacy, corpus, objects) = setup();
    let mut g = c.benchmark_group("corpus");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(corpus.len() as u64));
    for threads in [1, 2] {
        g.bench_function(format!("pipeline_{threads}_thread"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| parallel(&engine, &corpus, threads))
                    .sum()
            })
        });
    }
    g.bench_function("pipeline_legacy_hashes_1_thread", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| parallel(&legacy, &corpus, 1)).sum())
    });
    g.bench_function("raw_sha256_yara_1_thread", |b| {
        let rules = engine.rules.clone();
        let mut scanner = rules.scanner(Duration::from_secs(5));
        b.iter(|| {
            for o in &objects {
                black_box(sha2::Sha256::digest(o));
                black_box(rules.scan(&mut scanner, o).expect("scan").len());
            }
        })
    });
    g.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
