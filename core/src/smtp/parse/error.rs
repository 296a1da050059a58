//! What can be wrong with a command line, and the reply each mistake gets
//! (RFC 5321 §4.2.4 and §4.3.2; enhanced codes of RFC 3463).

use std::fmt;

use crate::smtp::reply::{Enhanced, Reply};

/// Why a command line was not understood. Each variant maps to one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The verb is not an SMTP command at all: 500 5.5.1.
    UnknownCommand,
    /// The arguments do not follow the command's syntax: 501 5.5.4, with
    /// the usage text (e.g. `MAIL FROM:<address> [parameters]`).
    Syntax {
        /// How the command is written.
        usage: &'static str,
    },
    /// The path is not a valid RFC 5321 §4.1.2 path: 501 5.1.3 (bad
    /// destination syntax) or 501 5.1.7 (bad sender syntax).
    BadAddress {
        /// True for MAIL FROM, false for RCPT TO.
        sender: bool,
        /// What is wrong, in a few words.
        detail: &'static str,
    },
    /// A MAIL or RCPT parameter hato does not know: 555 5.5.4
    /// (RFC 5321 §4.1.1.11).
    UnknownParameter(String),
    /// A known parameter with a bad value (`SIZE=abc`, `BODY=FOO`): 501 5.5.4.
    BadParameterValue(&'static str),
    /// A known parameter value hato does not implement (`BODY=BINARYMIME`):
    /// 504 5.5.4.
    ParameterNotImplemented(&'static str),
    /// The line holds a byte that never belongs in a command (NUL, other
    /// control characters) or is not UTF-8: 500 5.5.2.
    BadCharacter,
}

impl ParseError {
    /// Returns the reply the client gets for this mistake.
    pub fn reply(&self) -> Reply {
        match self {
            Self::UnknownCommand => Reply::fixed(500, Enhanced(5, 5, 1), "Command unrecognized"),
            Self::Syntax { usage } => {
                Reply::new(501, Some(Enhanced(5, 5, 4)), format!("Syntax: {usage}"))
            }
            Self::BadAddress { sender, detail } => Reply::new(
                501,
                Some(if *sender {
                    Enhanced(5, 1, 7)
                } else {
                    Enhanced(5, 1, 3)
                }),
                format!("Bad address syntax: {detail}"),
            ),
            Self::UnknownParameter(p) => Reply::new(
                555,
                Some(Enhanced(5, 5, 4)),
                format!("Parameter {p} not recognized"),
            ),
            Self::BadParameterValue(p) => Reply::new(
                501,
                Some(Enhanced(5, 5, 4)),
                format!("Bad value for parameter {p}"),
            ),
            Self::ParameterNotImplemented(p) => Reply::new(
                504,
                Some(Enhanced(5, 5, 4)),
                format!("{p} is not implemented"),
            ),
            Self::BadCharacter => Reply::fixed(
                500,
                Enhanced(5, 5, 2),
                "Command contains a forbidden character",
            ),
        }
    }
}

impl fmt::Display for ParseError {
    /// Writes the log text of the mistake.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownCommand => f.write_str("unknown command"),
            Self::Syntax { usage } => write!(f, "syntax error, usage: {usage}"),
            Self::BadAddress { detail, .. } => write!(f, "bad address syntax: {detail}"),
            Self::UnknownParameter(p) => write!(f, "unknown parameter {p}"),
            Self::BadParameterValue(p) => write!(f, "bad value for parameter {p}"),
            Self::ParameterNotImplemented(p) => write!(f, "parameter not implemented: {p}"),
            Self::BadCharacter => f.write_str("forbidden character in command"),
        }
    }
}

/// Why a path failed, in a few words: the `detail` of
/// [`ParseError::BadAddress`]. It is the error type of the address parsers
/// (`path`, `local_part`, `domain`), so a failure deep inside a path keeps
/// its precise reason up to the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AddrError(pub(super) &'static str);

impl<I> nom::error::ParseError<I> for AddrError {
    fn from_error_kind(_input: I, _kind: nom::error::ErrorKind) -> Self {
        Self("bad syntax")
    }

    fn append(_input: I, _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// Wraps `parser` so that its recoverable error becomes a failure saying
/// `detail`. A failure from inside `parser` keeps its own, more precise,
/// detail.
pub(super) fn or_fail<'a, O, P>(
    mut parser: P,
    detail: &'static str,
) -> impl nom::Parser<&'a str, Output = O, Error = AddrError>
where
    P: nom::Parser<&'a str, Output = O, Error = AddrError>,
{
    move |input: &'a str| match parser.parse(input) {
        Err(nom::Err::Error(_)) => Err(nom::Err::Failure(AddrError(detail))),
        other => other,
    }
}

/// Fails the address parse with `detail`.
pub(super) fn fail<'a, O>(detail: &'static str) -> nom::IResult<&'a str, O, AddrError> {
    Err(nom::Err::Failure(AddrError(detail)))
}
