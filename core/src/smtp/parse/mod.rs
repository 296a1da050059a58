//! nom parsers for SMTP command lines (RFC 5321 §4.1.1) and paths
//! (RFC 5321 §4.1.2). The session splits input into lines first (in
//! `smtp::server::line`), so every parser here runs on one complete line
//! without its CRLF and `Incomplete` never escapes.
//!
//! The line is checked for UTF-8 and forbidden characters here, once;
//! the parsers then work on `&str`:
//! - `command`: verbs and the arguments of each command (§4.1.1);
//! - `path`: `<[route:]mailbox>`, reverse and forward paths (§4.1.2);
//! - `local_part`, `domain`: the two halves of a mailbox (§4.1.2, §4.1.3);
//! - `params`: ESMTP parameters of MAIL and RCPT;
//! - `chars`: the character classes they share.

mod chars;
mod command;
mod domain;
mod error;
mod local_part;
mod params;
mod path;
#[cfg(test)]
mod proptests;

pub use error::ParseError;

use crate::smtp::address::Mailbox;
use crate::smtp::command::Command;

/// Parses one command line (without the CRLF).
///
/// # Errors
/// Returns the [`ParseError`] whose reply the client should get:
/// [`ParseError::BadCharacter`] for invalid UTF-8 or a control character
/// other than HT anywhere in the line, [`ParseError::UnknownCommand`] for
/// an empty line or an unknown verb, and the command's own errors
/// otherwise.
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError::BadCharacter)?;
    if line.contains(chars::is_forbidden) {
        return Err(ParseError::BadCharacter);
    }
    command::command(line)
}

/// Parses a bare mailbox, `local-part@domain` (RFC 5321 §4.1.2), with no
/// angle brackets: for addresses that come from elsewhere than a command,
/// such as the configuration.
///
/// # Errors
/// Returns a few words saying what is wrong, as in
/// [`ParseError::BadAddress`].
pub fn parse_mailbox(text: &str) -> Result<Mailbox, &'static str> {
    if text.contains(chars::is_forbidden) {
        return Err("forbidden character");
    }
    if text.len() + 2 > path::MAX_PATH {
        return Err("path longer than 256 octets");
    }
    match path::mailbox(text) {
        Ok(("", mailbox)) => Ok(mailbox),
        Ok((rest, _)) if rest.starts_with('@') => Err("more than one @"),
        Ok(_) => Err("bad domain"),
        Err(nom::Err::Error(error::AddrError(d)) | nom::Err::Failure(error::AddrError(d))) => {
            Err(d)
        }
        Err(nom::Err::Incomplete(_)) => Err("incomplete address"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::address::{Domain, Host, LocalPart};

    #[test]
    fn nul_anywhere_is_a_bad_character() {
        assert_eq!(parse_command(b"\0QUIT"), Err(ParseError::BadCharacter));
        assert_eq!(parse_command(b"HELO a\0b"), Err(ParseError::BadCharacter));
        assert_eq!(
            parse_command(b"MAIL FROM:<a@b> SIZE=1\0"),
            Err(ParseError::BadCharacter)
        );
    }

    #[test]
    fn control_characters_but_tab_are_bad_characters() {
        for line in [
            &b"HELO a\rb"[..],
            b"HELO a\nb",
            b"HELO \x1b[0m",
            b"NOOP \x7f",
        ] {
            assert_eq!(parse_command(line), Err(ParseError::BadCharacter));
        }
        assert_eq!(parse_command(b"HELO\tx"), Ok(Command::Helo("x")));
        // A C1 control, written in UTF-8.
        assert_eq!(
            parse_command("HELO a\u{85}".as_bytes()),
            Err(ParseError::BadCharacter)
        );
    }

    #[test]
    fn invalid_utf8_is_a_bad_character() {
        assert_eq!(parse_command(b"HELO \xff"), Err(ParseError::BadCharacter));
        assert_eq!(
            parse_command(b"MAIL FROM:<\xc3@b>"),
            Err(ParseError::BadCharacter)
        );
    }

    #[test]
    fn bad_character_beats_unknown_command() {
        assert_eq!(parse_command(b"\x01"), Err(ParseError::BadCharacter));
    }

    #[test]
    fn utf8_address_is_accepted_in_a_valid_line() {
        let line = "MAIL FROM:<用户@例子.广告> SMTPUTF8";
        let Ok(Command::Mail { from, params }) = parse_command(line.as_bytes()) else {
            panic!("not parsed");
        };
        assert!(params.smtputf8);
        assert_eq!(from.to_string(), "<用户@例子.广告>");
    }

    #[test]
    fn bare_mailbox_is_parsed() {
        let m = parse_mailbox("postmaster@Example.TEST").unwrap();
        assert_eq!(m.local, LocalPart::dot_string("postmaster"));
        assert_eq!(m.host, Host::Domain(Domain::new("example.test")));
    }

    #[test]
    fn bare_mailbox_errors_are_named() {
        assert_eq!(parse_mailbox("a@b@c"), Err("more than one @"));
        assert_eq!(parse_mailbox("a"), Err("missing @domain"));
        assert_eq!(parse_mailbox("<a@b>"), Err("bad local part"));
        assert_eq!(parse_mailbox("a@b c"), Err("bad domain"));
        assert_eq!(parse_mailbox("a@b\n"), Err("forbidden character"));
    }
}
