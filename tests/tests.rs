//! One integration test binary; a module per topic.

mod harness;
mod openapi;
mod util;

mod bombs;
mod browser;
mod cache;
mod cli;
pub mod clients;
mod crash;
mod deploy;
pub mod events;
mod exim;
mod formats;
mod hostile;
mod lifecycle;
mod milter;
mod mime_base64;
mod multinode;
pub mod quarantine;
mod quine;
mod rules;
mod samples;
mod serve;
