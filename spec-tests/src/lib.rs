//! Transcript harness for hato's RFC spec tests (DESIGN.md §6.3).
//!
//! A transcript (`transcripts/NNN-name.txt`, format in [`transcript`]) is
//! what a client sends; the harness runs it three times and writes down the
//! conversation each time:
//!
//! 1. against the sans-IO core ([`core_run::run_core`]) on a virtual clock,
//!    the way a front end drives it; this rendering is the insta snapshot;
//! 2. against `hato` and 3. against `hato-smol` ([`server::Server`]), over
//!    TCP on 127.0.0.1 ([`tcp::run_tcp`]), each of which must render
//!    exactly the same text.
//!
//! The rendering ([`render::Conversation`]) interleaves the client's steps
//! (`C:` as written in the transcript, `W:` for pauses) with the server's
//! reply lines (`S:`) and notes (`-- closed`, `-- client hangs up`). Only
//! the queue id in `queued as ID` is normalized.
//!
//! The end-to-end tests (`tests/e2e_smtplib.rs`, `tests/crash.rs`) share
//! the same servers ([`server::Server`] on a [`server::DataDir`] that can
//! outlive a server process), a small blocking SMTP client
//! ([`client::SmtpClient`]), a reader of delivered Maildir files
//! ([`maildir`]) and a runner for python3 scripts ([`python`]).

pub mod aiosmtpd;
pub mod client;
pub mod core_run;
pub mod dnsmasq;
pub mod maildir;
pub mod postfix;
pub mod python;
pub mod raw;
pub mod render;
pub mod server;
pub mod setup;
pub mod sink;
pub mod tcp;
pub mod transcript;

use std::path::PathBuf;

use transcript::Transcript;

/// Returns the directory holding the transcript files.
pub fn transcripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("transcripts")
}

/// Reads and parses `transcripts/{name}.txt`.
///
/// # Errors
/// The file cannot be read or does not follow the format.
pub fn load(name: &str) -> Result<Transcript, String> {
    let path = transcripts_dir().join(format!("{name}.txt"));
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    Transcript::parse(name, &text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs each named `fn(Binary)` as two tests, `hato::NAME` and
/// `hato_smol::NAME`, one against each binary.
#[macro_export]
macro_rules! both_binaries {
    ($($name:ident),* $(,)?) => {
        mod hato {
            $(#[test] fn $name() { super::$name($crate::server::Binary::Hato); })*
        }
        mod hato_smol {
            $(#[test] fn $name() { super::$name($crate::server::Binary::HatoSmol); })*
        }
    };
}
