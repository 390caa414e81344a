//! How inspection cost grows with the number of rules, next to the raw
//! yara-x scan of the same objects.
//!
//! `cargo bench --bench rules`. Rule sets of 0, 100, 1 000 and 5 000
//! generated rules (on top of the bundled ones) of the shapes rule feeds
//! carry: text strings with modifiers, hex strings with jumps and
//! alternatives, regexes, and conditions over modules and file structure
//! (`math.entropy`, `uint16(0)`, `filesize`, `#count`). The corpus is
//! `samples::corpus(200, 42)`; "raw yara-x" is one scanner over every
//! object the pipeline visits for that corpus (message, parts, unpacked
//! files), without hashing, parsing or policy. One thread, result cache
//! off. Also reported: compile time and the compiled set's build time per
//! scanner (each pool worker builds one). Under `cargo test` it runs the
//! 100-rule set over 10 messages only.

mod common;

use portcullis::{Config, Engine, RuleSet, Submission};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A deterministic generator of realistic-looking rules.
fn generated_rules(n: usize) -> String {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let word = |x: u64| {
        const SYL: [&str; 16] = [
            "ka", "lo", "mir", "zen", "tor", "qua", "vex", "dun", "rho", "sil", "pex", "wra",
            "gno", "fy", "bel", "cro",
        ];
        (0..4)
            .map(|i| SYL[((x >> (i * 4)) & 15) as usize])
            .collect::<String>()
    };
    let mut out = String::from("import \"math\"\n\n");
    for i in 0..n {
        let a = next();
        let b = next();
        let hexes: Vec<String> = (0..6)
            .map(|k| format!("{:02X}", (a >> (k * 8)) & 0xff))
            .collect();
        let body = match i % 5 {
            0 => format!(
                "strings:\n    $a = \"{}\" ascii wide nocase\n    $b = \"{}-{}\" \n  condition:\n    any of them",
                word(a),
                word(b),
                i
            ),
            1 => format!(
                "strings:\n    $h = {{ {} {} [2-8] {} ( {} | {} ) {} }}\n  condition:\n    $h and filesize < 10MB",
                hexes[0], hexes[1], hexes[2], hexes[3], hexes[4], hexes[5]
            ),
            2 => format!(
                "strings:\n    $r = /{}[0-9]{{2,6}}\\.(exe|scr|js)/ nocase\n  condition:\n    #r > 1",
                word(a)
            ),
            3 => format!(
                "strings:\n    $s = \"{}\"\n  condition:\n    uint16(0) == 0x5A4D and $s and math.entropy(0, filesize) > 7.2",
                word(a)
            ),
            _ => format!(
                "strings:\n    $x = \"{}\" fullword\n    $y = {{ {} {} ?? {} }}\n  condition:\n    $x at 0 or ($y in (0..1024))",
                word(a),
                hexes[0],
                hexes[1],
                hexes[2]
            ),
        };
        out.push_str(&format!(
            "rule Gen_{i}\n{{\n  meta:\n    score = 10\n  {body}\n}}\n\n"
        ));
    }
    out
}

fn rule_set(n: usize) -> (RuleSet, Duration) {
    let mut sources = portcullis::rules::bundled_sources();
    if n > 0 {
        sources.push(portcullis::rules::Source {
            origin: "generated.yar".into(),
            text: generated_rules(n),
        });
    }
    let t = Instant::now();
    let set = RuleSet::from_sources(sources, "bench").expect("generated rules compile");
    (set, t.elapsed())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (sizes, messages): (&[usize], usize) = if full {
        (&[0, 100, 1000, 5000], 200)
    } else {
        (&[100], 10)
    };
    let corpus: Vec<Submission> = portcullis::samples::corpus(messages, 42)
        .into_iter()
        .map(Submission::mail)
        .collect();
    let mut config = Config::defaults();
    config.cache.entries = 0;
    println!(
        "\n{messages} messages; one thread; bundled rules plus the generated ones\n\n\
         | generated rules | compile | scanner build | pipeline ms/message | raw yara-x ms/message | pipeline - raw |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for &n in sizes {
        let (set, compile) = rule_set(n);
        let engine = Engine::new(config.clone(), set);
        let objects = common::visited_objects(&engine, &corpus);
        let mut inspector = engine.inspector();
        let t = Instant::now();
        let scanner = engine.rules.scanner(Duration::from_secs(5));
        let build = t.elapsed();
        drop(scanner);
        let rounds = if full { 3 } else { 1 };
        let mut pipeline = Duration::MAX;
        let mut raw = Duration::MAX;
        for _ in 0..rounds {
            let t = Instant::now();
            for s in &corpus {
                black_box(inspector.inspect(s).expect("inspects"));
            }
            pipeline = pipeline.min(t.elapsed());
            let mut scanner = engine.rules.scanner(Duration::from_secs(5));
            let t = Instant::now();
            for o in &objects {
                black_box(engine.rules.scan(&mut scanner, o).expect("scan").len());
            }
            raw = raw.min(t.elapsed());
        }
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / messages as f64;
        println!(
            "| {n} | {:.2} s | {:.2} ms | {:.3} | {:.3} | {:.3} |",
            compile.as_secs_f64(),
            build.as_secs_f64() * 1000.0,
            per(pipeline),
            per(raw),
            per(pipeline) - per(raw)
        );
    }
}
