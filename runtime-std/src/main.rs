//! The `hato` binary: blocking threads, for low-end hardware.

use std::process::ExitCode;

fn main() -> ExitCode {
    hato_runtime_std::cli::main_with("hato", hato_runtime_std::serve::run)
}
