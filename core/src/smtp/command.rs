//! The commands a client sends (RFC 5321 §4.1.1) and the ESMTP parameters
//! hato understands: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531).
//!
//! Commands borrow from the input line; only the paths are owned, since they
//! go into the envelope anyway.

use super::address::{ForwardPath, ReversePath};

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `HELO domain` (RFC 5321 §4.1.1.1).
    Helo(&'a str),
    /// `EHLO domain-or-literal` (RFC 5321 §4.1.1.1).
    Ehlo(&'a str),
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The reverse-path.
        from: ReversePath,
        /// ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The forward-path.
        to: ForwardPath,
    },
    /// `DATA`
    Data,
    /// `RSET`
    Rset,
    /// `NOOP [string]`
    Noop,
    /// `QUIT`
    Quit,
    /// `VRFY string`
    Vrfy(&'a str),
    /// `EXPN string`
    Expn(&'a str),
    /// `HELP [string]`
    Help(Option<&'a str>),
    /// `STARTTLS` (RFC 3207 §4).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4).
    Auth {
        /// The SASL mechanism name, as written.
        mechanism: &'a str,
        /// The base64 initial response (`=` for an empty one).
        initial: Option<&'a str>,
    },
    /// A command defined by an RFC that hato does not implement (TURN, SEND,
    /// SOML, SAML, ETRN, ATRN, BDAT): answered with 502.
    NotImplemented(&'a str),
}

/// The value of the BODY parameter (RFC 6152, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// `BODY=7BIT`
    SevenBit,
    /// `BODY=8BITMIME`
    EightBitMime,
    /// `BODY=BINARYMIME`: parsed, refused with 504 (needs CHUNKING).
    BinaryMime,
}

/// ESMTP parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n`: the size the client declares (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=`
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
}
