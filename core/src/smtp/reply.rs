//! SMTP replies: the three-digit code of RFC 5321 §4.2, the enhanced status
//! code of RFC 3463 / RFC 2034, and the text, with their wire format.

use std::borrow::Cow;
use std::fmt;

/// An enhanced status code of RFC 3463 (`class.subject.detail`, e.g. 5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enhanced(pub u8, pub u16, pub u16);

impl fmt::Display for Enhanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// How a reply code classifies the outcome (RFC 5321 §4.2.1, first digit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// 2yz: the action completed.
    PositiveCompletion,
    /// 3yz: send more (the 354 of DATA).
    PositiveIntermediate,
    /// 4yz: try again later.
    TransientNegative,
    /// 5yz: do not try again.
    PermanentNegative,
}

/// One SMTP reply. Multi-line replies separate their lines with `\n` in
/// `text`; [`Reply::write_to`] turns them into `code-` continuation lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code, written after the code when present.
    pub esc: Option<Enhanced>,
    /// The human-readable text; `\n` separates lines.
    pub text: Cow<'static, str>,
}

impl Reply {
    /// Returns a reply with static text, usable in `const` items.
    pub const fn fixed(code: u16, esc: Enhanced, text: &'static str) -> Self {
        Self {
            code,
            esc: Some(esc),
            text: Cow::Borrowed(text),
        }
    }

    /// Returns a reply with text made at run time.
    pub fn new(code: u16, esc: Option<Enhanced>, text: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            esc,
            text: text.into(),
        }
    }

    /// Returns the class of the reply from its first digit.
    pub fn severity(&self) -> Severity {
        match self.code / 100 {
            2 => Severity::PositiveCompletion,
            3 => Severity::PositiveIntermediate,
            4 => Severity::TransientNegative,
            _ => Severity::PermanentNegative,
        }
    }

    /// Tells whether the reply refuses something (4yz or 5yz).
    pub fn is_negative(&self) -> bool {
        self.code >= 400
    }

    /// Appends the reply in wire format (`250-...` continuation lines, CRLF
    /// endings) to `out` and returns how many bytes were written.
    pub fn write_to(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        let mut lines = self.text.split('\n').peekable();
        while let Some(line) = lines.next() {
            let sep = if lines.peek().is_some() { b'-' } else { b' ' };
            push_code(out, self.code);
            out.push(sep);
            if let Some(esc) = self.esc {
                push_enhanced(out, esc);
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.len() - start
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.esc {
            Some(esc) => write!(
                f,
                "{} {} {}",
                self.code,
                esc,
                self.text.replace('\n', " / ")
            ),
            None => write!(f, "{} {}", self.code, self.text.replace('\n', " / ")),
        }
    }
}

fn push_code(out: &mut Vec<u8>, code: u16) {
    let code = code.min(999);
    out.extend_from_slice(&[
        b'0' + (code / 100) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ]);
}

fn push_enhanced(out: &mut Vec<u8>, esc: Enhanced) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{esc}");
}

/// Replies used in more than one place.
pub mod replies {
    use super::{Enhanced, Reply};

    /// 250 2.0.0 Ok
    pub const OK: Reply = Reply::fixed(250, Enhanced(2, 0, 0), "Ok");
    /// 250 2.1.0 Sender ok
    pub const SENDER_OK: Reply = Reply::fixed(250, Enhanced(2, 1, 0), "Sender ok");
    /// 250 2.1.5 Recipient ok
    pub const RECIPIENT_OK: Reply = Reply::fixed(250, Enhanced(2, 1, 5), "Recipient ok");
    /// 354 End data with <CR><LF>.<CR><LF>
    pub const START_DATA: Reply = Reply {
        code: 354,
        esc: None,
        text: std::borrow::Cow::Borrowed("End data with <CR><LF>.<CR><LF>"),
    };
    /// 252 for VRFY: nobody learns which users exist (RFC 5321 §3.5.3).
    pub const VRFY_CANNOT: Reply = Reply::fixed(
        252,
        Enhanced(2, 5, 2),
        "Cannot VRFY user, but will accept message and attempt delivery",
    );
    /// 502 for EXPN: lists are never expanded to strangers (RFC 5321 §3.5.2).
    pub const EXPN_DISABLED: Reply = Reply::fixed(502, Enhanced(5, 5, 1), "EXPN is disabled");
    /// 214 help text.
    pub const HELP: Reply = Reply::fixed(
        214,
        Enhanced(2, 0, 0),
        "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_reply_has_code_esc_and_crlf() {
        let mut out = Vec::new();
        replies::OK.write_to(&mut out);
        assert_eq!(out, b"250 2.0.0 Ok\r\n");
    }

    #[test]
    fn multi_line_reply_uses_dash_continuations() {
        let mut out = Vec::new();
        Reply::new(250, None, "mail.example\nPIPELINING\nSIZE 10").write_to(&mut out);
        assert_eq!(
            out,
            b"250-mail.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
    }

    #[test]
    fn severity_follows_first_digit() {
        assert_eq!(
            replies::START_DATA.severity(),
            Severity::PositiveIntermediate
        );
        assert_eq!(
            replies::EXPN_DISABLED.severity(),
            Severity::PermanentNegative
        );
        assert!(replies::EXPN_DISABLED.is_negative());
    }
}
