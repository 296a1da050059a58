//! nom parsers for SMTP command lines (RFC 5321 §4.1.1) and paths
//! (RFC 5321 §4.1.2). The session splits input into lines first (in
//! `smtp::server::line`), so every parser here runs on one complete line
//! without its CRLF and `Incomplete` never escapes.

mod error;

pub use error::ParseError;

use crate::smtp::command::Command;

/// Parses one command line (without the CRLF).
///
/// # Errors
/// Returns the [`ParseError`] whose reply the client should get.
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, ParseError> {
    let _ = line;
    Err(ParseError::UnknownCommand)
}
