//! One integration test binary; a module per topic.

mod util;

mod cli;
mod hostile;
mod rules;
mod samples;
