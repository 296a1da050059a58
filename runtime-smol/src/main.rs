//! The `hato-smol` binary: the same server on the smol executor, for many
//! concurrent connections. Command line and configuration are shared with
//! `hato`; only the serve loop differs.

mod serve;

use std::process::ExitCode;

fn main() -> ExitCode {
    hato_runtime_std::cli::main_with("hato-smol", serve::run)
}
