//! One integration test binary; a module per topic.

mod harness;
mod openapi;
mod util;

mod cli;
pub mod clients;
mod hostile;
mod milter;
mod quarantine;
mod rules;
mod samples;
mod serve;
