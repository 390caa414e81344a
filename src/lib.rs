//! Portcullis: an email attachment and file inspection gateway.
//!
//! # Layout
//!
//! The library is the product; `main.rs` only wires the command line to it.
//! A message flows through the stages in this order:
//!
//! - [`model`]: the shared types: `Submission`, `Object`, `Finding`,
//!   `Verdict`, `Action`, `Outcome`.
//! - [`config`]: raw TOML validated once into [`config::Config`].
//! - [`pipeline`]: the orchestrator, reading top to bottom; with
//!   [`pipeline::identify`] (hashes, true type, name checks).
//! - [`extract`]: one module per container format, all under one
//!   [`extract::Budget`] of hard limits.
//! - [`rules`]: yara-x rule sets and hash lists, versioned by content.
//! - [`policy`]: the pure function from findings to a verdict.
//! - [`samples`]: generators for harmless test samples (EICAR, bombs,
//!   disguises) and the benchmark corpus. No live malware is ever stored.
//!
//! The service (`portcullis serve`) wraps the pipeline:
//!
//! - [`pool`]: the bounded inspection pool (OS threads, one inspector
//!   each); refuses at once when full.
//! - [`http`]: listener, router, auth, bounded body reading.
//! - [`doors`]: protocol mapping only: native JSON, rspamd, MTA Hooks,
//!   milter (with its own codec).
//! - [`store`]: the quarantine: content-addressed blobs plus a SQL index
//!   (SQLite or PostgreSQL through sqlx), states and audit trail.
//! - [`release`]: re-injection over SMTP with a release stamp, recipients'
//!   signed links, digests.
//! - [`http::quarantine`] and [`http::ui`]: the operators' API and web UI.
//! - [`publish`]: Prometheus metrics.
//! - [`cli`]: `serve`, `scan`, `rules check`, `config check`, `token new`,
//!   `user hash`, `digest`, `samples`.

pub mod cli;
pub mod config;
pub mod doors;
pub mod extract;
pub mod http;
pub mod lifecycle;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod pool;
pub mod publish;
pub mod release;
pub mod rules;
pub mod samples;
pub mod store;

pub use config::Config;
pub use model::{Action, Finding, FindingKind, Object, Outcome, Submission, Verdict};
pub use pipeline::{Engine, Inspector, Report};
pub use rules::RuleSet;
