//! One integration test binary; a module per topic.

mod harness;
mod openapi;
mod util;

mod cli;
mod clients;
mod hostile;
mod rules;
mod samples;
mod serve;
