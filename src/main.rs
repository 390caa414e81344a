//! Thin entry point: logging, arguments, dispatch. Everything else is in the
//! library.

use std::process::ExitCode;

fn main() -> ExitCode {
    portcullis::cli::main()
}
