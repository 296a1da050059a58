//! How local mail is delivered (`delivery.local`) and who owns the
//! mailboxes hato writes (`delivery.mailbox_owner`).
//!
//! `delivery.local` is `"maildir"` (the default: hato writes
//! `data_dir/mailboxes/<domain>/<local>/` itself) or an LMTP server
//! (RFC 2033), typically Dovecot's: `"lmtp:127.0.0.1:24"`,
//! `"lmtp:[::1]:24"` or `"lmtp:/run/dovecot/lmtp"` (a Unix socket). Only
//! IP addresses are accepted, never host names: local delivery must not
//! depend on DNS.
//!
//! `delivery.mailbox_owner` is a user name (`"vmail"`, looked up in
//! /etc/passwd by the front end when `serve` starts), a uid (`"5000"`,
//! whose primary group is then looked up too) or `"uid:gid"`
//! (`"5000:5000"`). Parsing here is pure; nothing is looked up.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use super::leaf::Leaf;

/// Where local recipients' mail goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LocalMethod {
    /// Into the Maildirs under `data_dir/mailboxes`, written by hato.
    #[default]
    Maildir,
    /// To an LMTP server (RFC 2033), which writes the mailboxes.
    Lmtp(LmtpTarget),
}

/// The address of an LMTP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpTarget {
    /// A TCP address (IP and port).
    Tcp(SocketAddr),
    /// A Unix socket (absolute path).
    Unix(PathBuf),
}

impl fmt::Display for LmtpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "lmtp:{addr}"),
            Self::Unix(path) => write!(f, "lmtp:{}", path.display()),
        }
    }
}

/// Who owns the Maildir directories and files hato creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxOwner {
    /// A user name, looked up in /etc/passwd (its uid and primary gid).
    User(String),
    /// A numeric uid, with its gid when given (else the uid's primary group).
    Id {
        /// The user id.
        uid: u32,
        /// The group id, when written as `uid:gid`.
        gid: Option<u32>,
    },
}

impl fmt::Display for MailboxOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(name) => f.write_str(name),
            Self::Id { uid, gid: None } => write!(f, "{uid}"),
            Self::Id { uid, gid: Some(g) } => write!(f, "{uid}:{g}"),
        }
    }
}

/// Parses a `delivery.local` value.
///
/// # Errors
/// What to write instead.
pub fn parse_local_delivery(s: &str) -> Result<LocalMethod, String> {
    if s.eq_ignore_ascii_case("maildir") {
        return Ok(LocalMethod::Maildir);
    }
    let Some(target) = s.strip_prefix("lmtp:") else {
        return Err(format!(
            "\"{s}\" is not a delivery method; write \"maildir\" or an LMTP server such as \
             \"lmtp:127.0.0.1:24\" or \"lmtp:/run/dovecot/lmtp\""
        ));
    };
    if target.starts_with('/') {
        if target.len() > 100 || target.chars().any(char::is_control) {
            return Err(format!(
                "\"{s}\": the socket path is too long or holds control characters"
            ));
        }
        return Ok(LocalMethod::Lmtp(LmtpTarget::Unix(PathBuf::from(target))));
    }
    match target.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(LocalMethod::Lmtp(LmtpTarget::Tcp(addr))),
        Ok(_) => Err(format!(
            "\"{s}\" has port 0; Dovecot's LMTP port is usually 24"
        )),
        Err(_) => Err(match target.parse::<IpAddr>() {
            Ok(ip) => format!("\"{s}\" has no port; write e.g. \"lmtp:{ip}:24\""),
            Err(_) => format!(
                "\"{s}\" is not an IP address and port nor an absolute socket path; write e.g. \
                 \"lmtp:127.0.0.1:24\", \"lmtp:[::1]:24\" or \"lmtp:/run/dovecot/lmtp\" (host \
                 names are not allowed: local delivery must not depend on DNS)"
            ),
        }),
    }
}

/// Parses a `delivery.mailbox_owner` value.
///
/// # Errors
/// What to write instead.
pub fn parse_mailbox_owner(s: &str) -> Result<MailboxOwner, String> {
    let number = |n: &str| n.parse::<u32>().ok().filter(|_| !n.starts_with('+'));
    if let Some((u, g)) = s.split_once(':') {
        return match (number(u), number(g)) {
            (Some(uid), Some(gid)) => Ok(MailboxOwner::Id {
                uid,
                gid: Some(gid),
            }),
            _ => Err(format!(
                "\"{s}\" is not \"uid:gid\"; write numbers such as \"5000:5000\", or a user name"
            )),
        };
    }
    if let Some(uid) = number(s) {
        return Ok(MailboxOwner::Id { uid, gid: None });
    }
    let valid = !s.is_empty()
        && s.len() <= 32
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(MailboxOwner::User(s.to_owned()))
    } else {
        Err(format!(
            "\"{s}\" is not a user name; write a system user such as \"vmail\", a uid such as \
             \"5000\", or \"uid:gid\""
        ))
    }
}

impl Leaf for LocalMethod {
    const EXPECTING: &'static str =
        "\"maildir\" or an LMTP server in quotes, such as \"lmtp:127.0.0.1:24\"";
    fn from_text(s: &str) -> Result<Self, String> {
        parse_local_delivery(s)
    }
}

impl Leaf for MailboxOwner {
    const EXPECTING: &'static str =
        "a user name or uid in quotes, such as \"vmail\", \"5000\" or \"5000:5000\"";
    fn from_text(s: &str) -> Result<Self, String> {
        parse_mailbox_owner(s)
    }
    fn from_int(n: i64) -> Result<Self, String> {
        u32::try_from(n)
            .map(|uid| Self::Id { uid, gid: None })
            .map_err(|_| format!("{n} is not a uid; write e.g. \"5000\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_delivery_values() {
        assert_eq!(parse_local_delivery("maildir"), Ok(LocalMethod::Maildir));
        assert_eq!(
            parse_local_delivery("lmtp:127.0.0.1:24"),
            Ok(LocalMethod::Lmtp(LmtpTarget::Tcp(
                "127.0.0.1:24".parse().unwrap()
            )))
        );
        assert_eq!(
            parse_local_delivery("lmtp:[::1]:2424"),
            Ok(LocalMethod::Lmtp(LmtpTarget::Tcp(
                "[::1]:2424".parse().unwrap()
            )))
        );
        assert_eq!(
            parse_local_delivery("lmtp:/run/dovecot/lmtp"),
            Ok(LocalMethod::Lmtp(LmtpTarget::Unix(
                "/run/dovecot/lmtp".into()
            )))
        );
        for (bad, says) in [
            ("mbox", "not a delivery method"),
            ("lmtp:127.0.0.1", "has no port"),
            ("lmtp:127.0.0.1:0", "port 0"),
            ("lmtp:localhost:24", "host names are not allowed"),
            ("lmtp:run/lmtp", "absolute socket path"),
        ] {
            let e = parse_local_delivery(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn mailbox_owner_values() {
        assert_eq!(
            parse_mailbox_owner("vmail"),
            Ok(MailboxOwner::User("vmail".into()))
        );
        assert_eq!(
            parse_mailbox_owner("5000"),
            Ok(MailboxOwner::Id {
                uid: 5000,
                gid: None
            })
        );
        assert_eq!(
            parse_mailbox_owner("5000:8"),
            Ok(MailboxOwner::Id {
                uid: 5000,
                gid: Some(8)
            })
        );
        assert_eq!(MailboxOwner::from_int(65534).unwrap().to_string(), "65534");
        for bad in ["", "a b", "5000:", ":5", "x:5", "-x", "+5:1", "a/b", "-1"] {
            assert!(parse_mailbox_owner(bad).is_err(), "{bad}");
        }
        assert!(MailboxOwner::from_int(-1).is_err());
    }
}
