//! Envelope addresses of RFC 5321 §4.1.2: domains, address literals, local
//! parts (dot-string or quoted), mailboxes and the reverse / forward paths
//! of MAIL and RCPT.
//!
//! Domains compare case-insensitively and ignore one trailing dot
//! (RFC 5321 §2.4 and §2.3.5). Local parts keep their case: only the
//! receiving host interprets them (RFC 5321 §2.4).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A domain name as written by the client (RFC 5321 §2.3.5).
#[derive(Debug, Clone, Eq)]
pub struct Domain(String);

impl Domain {
    /// Wraps a domain already checked by the parser or the configuration.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// Returns the domain as the client wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the domain without its one trailing dot (case kept).
    pub fn trimmed(&self) -> &str {
        self.0.strip_suffix('.').unwrap_or(&self.0)
    }

    /// Returns the comparable form: lower case, no trailing dot.
    pub fn normalized(&self) -> String {
        self.trimmed().to_ascii_lowercase()
    }

    /// Tells whether this domain names `other` (case-insensitive, one
    /// trailing dot on either side ignored).
    pub fn matches(&self, other: &str) -> bool {
        let other = other.strip_suffix('.').unwrap_or(other);
        self.trimmed().eq_ignore_ascii_case(other)
    }
}

impl PartialEq for Domain {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.as_str())
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An address literal (RFC 5321 §4.1.3): `[192.0.2.1]`, `[IPv6:2001:db8::1]`
/// or a general literal `[tag:content]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressLiteral {
    /// `[a.b.c.d]`
    V4(Ipv4Addr),
    /// `[IPv6:...]`
    V6(Ipv6Addr),
    /// `[tag:content]` for a standardized tag other than IPv6.
    General {
        /// The tag before the colon.
        tag: String,
        /// The text after the colon.
        content: String,
    },
}

impl fmt::Display for AddressLiteral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(ip) => write!(f, "[{ip}]"),
            Self::V6(ip) => write!(f, "[IPv6:{ip}]"),
            Self::General { tag, content } => write!(f, "[{tag}:{content}]"),
        }
    }
}

/// The part after `@`: a domain or an address literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A domain name.
    Domain(Domain),
    /// An address literal.
    Literal(AddressLiteral),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(d) => d.fmt(f),
            Self::Literal(l) => l.fmt(f),
        }
    }
}

/// A local part (RFC 5321 §4.1.2 `Local-part`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPart {
    /// The local part with quoting removed (`"a b"` becomes `a b`).
    pub value: String,
    /// Whether the client wrote it as a quoted string.
    pub quoted: bool,
}

impl LocalPart {
    /// Wraps an unquoted dot-string local part.
    pub fn dot_string(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            quoted: false,
        }
    }
}

impl fmt::Display for LocalPart {
    /// Writes the local part in wire form, quoting it again when needed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.quoted && !needs_quoting(&self.value) {
            return f.write_str(&self.value);
        }
        f.write_str("\"")?;
        for c in self.value.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("\"")
    }
}

fn needs_quoting(value: &str) -> bool {
    value.is_empty()
        || value.starts_with('.')
        || value.ends_with('.')
        || value.contains("..")
        || value.chars().any(|c| {
            c.is_ascii() && !(c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
        })
}

/// A mailbox: `local-part@host` (RFC 5321 §4.1.2 `Mailbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The part before `@`.
    pub local: LocalPart,
    /// The part after `@`.
    pub host: Host,
}

impl Mailbox {
    /// Returns the domain when the host is a domain name.
    pub fn domain(&self) -> Option<&Domain> {
        match &self.host {
            Host::Domain(d) => Some(d),
            Host::Literal(_) => None,
        }
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.host)
    }
}

/// The argument of MAIL FROM (RFC 5321 §4.1.1.2): a mailbox or the null
/// reverse-path `<>` of bounces. A source route, if any, was dropped by the
/// parser (RFC 5321 Appendix C).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    /// `<>`
    Null,
    /// `<mailbox>`
    Mailbox(Mailbox),
}

impl fmt::Display for ReversePath {
    /// Writes the path with its angle brackets: `<>` or `<a@b>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("<>"),
            Self::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// The argument of RCPT TO (RFC 5321 §4.1.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain, which every server must accept.
    Postmaster,
    /// `<mailbox>`; `had_route` tells whether a source route was stripped.
    Mailbox {
        /// The final mailbox.
        mailbox: Mailbox,
        /// Whether the client wrote a source route (`<@a,@b:user@c>`).
        had_route: bool,
    },
}

impl fmt::Display for ForwardPath {
    /// Writes the path with its angle brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postmaster => f.write_str("<Postmaster>"),
            Self::Mailbox { mailbox, .. } => write!(f, "<{mailbox}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_compare_case_insensitively_ignoring_one_trailing_dot() {
        assert_eq!(Domain::new("Example.TEST."), Domain::new("example.test"));
        assert!(Domain::new("example.test").matches("EXAMPLE.test."));
        assert!(!Domain::new("example.test").matches("example.test.."));
        assert_eq!(Domain::new("Mail.Example.").normalized(), "mail.example");
    }

    #[test]
    fn local_part_is_quoted_again_when_needed() {
        let lp = LocalPart {
            value: "a b\"c".into(),
            quoted: true,
        };
        assert_eq!(lp.to_string(), r#""a b\"c""#);
        assert_eq!(
            LocalPart::dot_string("alice.smith").to_string(),
            "alice.smith"
        );
    }

    #[test]
    fn paths_display_with_brackets() {
        let m = Mailbox {
            local: LocalPart::dot_string("bob"),
            host: Host::Literal(AddressLiteral::V4(Ipv4Addr::new(192, 0, 2, 1))),
        };
        assert_eq!(ReversePath::Mailbox(m).to_string(), "<bob@[192.0.2.1]>");
        assert_eq!(ReversePath::Null.to_string(), "<>");
    }
}
