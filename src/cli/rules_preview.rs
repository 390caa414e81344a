//! `portcullis rules preview DIR --url URL`: sends a candidate rules
//! directory to a running gateway's `POST /v1/rules/preview` and prints
//! which verdicts would change. The gateway does the work because the
//! messages (the quarantine and the sample of recent mail) are there.

use anyhow::Context;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// Candidate rules directory.
    dir: PathBuf,
    /// The gateway, e.g. http://127.0.0.1:11333.
    #[arg(long, default_value = "http://127.0.0.1:11333")]
    url: String,
    /// Admin API token; default: the PORTCULLIS_TOKEN environment variable.
    #[arg(long, env = "PORTCULLIS_TOKEN", hide_env_values = true)]
    token: String,
    /// Most messages to look at (newest first).
    #[arg(long)]
    limit: Option<usize>,
    /// Print the gateway's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
    /// Exit 1 when any message's action would change (for CI gates).
    #[arg(long)]
    fail_on_change: bool,
}

pub fn run(args: PreviewArgs) -> anyhow::Result<ExitCode> {
    let sources = crate::rules::read_dir(&args.dir)
        .with_context(|| format!("reading {}", args.dir.display()))?;
    anyhow::ensure!(
        !sources.is_empty(),
        "{} holds no rule files (*.yar, *.yara, hashes/*.txt)",
        args.dir.display()
    );
    let files: BTreeMap<String, String> = sources.into_iter().map(|s| (s.origin, s.text)).collect();
    let mut body = serde_json::json!({ "files": files });
    if let Some(l) = args.limit {
        body["limit"] = l.into();
    }
    let url = format!("{}/v1/rules/preview", args.url.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, text) = runtime
        .block_on(async {
            crate::publish::tls_provider();
            let client = reqwest::Client::builder()
                // A preview over a big quarantine takes minutes.
                .timeout(std::time::Duration::from_secs(600))
                .build()?;
            let resp = client
                .post(&url)
                .bearer_auth(&args.token)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body)?)
                .send()
                .await?;
            let status = resp.status();
            anyhow::Ok((status, resp.text().await?))
        })
        .with_context(|| format!("POST {url}"))?;
    if !status.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        // 422: the candidate does not compile (the message has file:line).
        println!("FAIL  {status}: {msg}");
        return Ok(ExitCode::from(1));
    }
    let v: serde_json::Value = serde_json::from_str(&text).context("the gateway's answer")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_table(&v);
    }
    let changed = v["action_changed"].as_u64().unwrap_or(0);
    Ok(if args.fail_on_change && changed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_table(v: &serde_json::Value) {
    let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
    println!(
        "live {} -> candidate {} ({} rules)",
        s(&v["live_version"]),
        s(&v["candidate_version"]),
        v["candidate_rule_count"]
    );
    for w in v["warnings"].as_array().into_iter().flatten() {
        println!("warning: {}", s(w));
    }
    println!(
        "looked at {} held and {} recent messages: {} change action, {} change rules only{}",
        v["scanned"]["quarantine"],
        v["scanned"]["sample"],
        v["action_changed"],
        v["changed"].as_u64().unwrap_or(0) - v["action_changed"].as_u64().unwrap_or(0),
        if v["truncated"].as_bool() == Some(true) {
            " (stopped at the time budget)"
        } else {
            ""
        }
    );
    let msgs = v["messages"].as_array().cloned().unwrap_or_default();
    if !msgs.is_empty() {
        println!();
        println!(
            "{:<10} {:<26} {:<22} {:<22} RULES",
            "SOURCE", "ID", "LIVE", "CANDIDATE"
        );
        for m in &msgs {
            let side = |o: &serde_json::Value| {
                format!("{} ({})", s(&o["action"]), o["score"].as_i64().unwrap_or(0))
            };
            let list = |k: &str, sign: char| {
                m[k].as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| format!("{sign}{}", s(r)))
                    .collect::<Vec<_>>()
            };
            let mut rules = list("added", '+');
            rules.extend(list("removed", '-'));
            println!(
                "{:<10} {:<26} {:<22} {:<22} {}",
                s(&m["source"]),
                s(&m["id"]),
                side(&m["live"]),
                side(&m["candidate"]),
                rules.join(" ")
            );
        }
    }
    for e in v["errors"].as_array().into_iter().flatten() {
        println!("error: {}", s(e));
    }
    let hits = v["rule_hits"].as_object().cloned().unwrap_or_default();
    if !hits.is_empty() {
        println!();
        println!("candidate rule hits:");
        for (rule, n) in hits {
            println!("  {n:>6}  {rule}");
        }
    }
}
