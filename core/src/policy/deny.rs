//! `deny.from` names: an entry matches a host name that is the entry
//! itself or lies below it (the original secure MTA's `denyfrom`: a host
//! name denies that host, a domain every host below it). The address
//! entries are checked at connect by
//! [`PolicyState::check_connect`](super::PolicyState::check_connect).

use crate::config::{Deny, DenyFrom};
use crate::refusal::RefuseReason;

/// Tells whether the `deny.from` name `entry` matches `host`: `host` is
/// `entry` or ends with `.` and `entry`. Case does not matter, and one
/// trailing dot on either is ignored.
pub fn name_matches(entry: &str, host: &str) -> bool {
    let entry = entry.strip_suffix('.').unwrap_or(entry);
    let host = host.strip_suffix('.').unwrap_or(host);
    if entry.is_empty() || host.len() < entry.len() {
        return false;
    }
    let (head, tail) = host.split_at(host.len() - entry.len());
    tail.eq_ignore_ascii_case(entry) && (head.is_empty() || head.ends_with('.'))
}

/// Checks a client's host name (its HELO name, or its verified
/// reverse-DNS name) against the name entries of `deny.from`.
///
/// # Errors
/// [`RefuseReason::DeniedClient`] naming the entry that matched.
pub fn check_name(deny: &Deny, host: &str) -> Result<(), RefuseReason> {
    let hit = deny.from.iter().find_map(|d| match d {
        DenyFrom::Name(n) if name_matches(n, host) => Some(n),
        _ => None,
    });
    match hit {
        Some(n) => Err(RefuseReason::DeniedClient(n.clone())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_entry_denies_itself_and_every_host_below_it() {
        assert!(name_matches("spam.example.net", "spam.example.net"));
        assert!(name_matches("spam.example.net", "a.b.spam.example.net"));
        assert!(name_matches("spam.example.net", "MX1.Spam.Example.NET."));
        assert!(name_matches("spam.example.net.", "mx1.spam.example.net"));
    }

    #[test]
    fn a_name_does_not_match_its_parent_or_a_lookalike() {
        assert!(!name_matches("bad.host.example.com", "host.example.com"));
        assert!(!name_matches("spam.example.net", "notspam.example.net"));
        assert!(!name_matches("spam.example.net", "spam.example.net.evil"));
        assert!(!name_matches("spam.example.net", "example.net"));
        assert!(!name_matches("", "example.net"));
        assert!(!name_matches("example.net", ""));
        assert!(!name_matches("example.net", "[192.0.2.1]"));
    }

    #[test]
    fn check_name_names_the_entry_and_ignores_addresses() {
        let deny = Deny {
            from: vec![
                DenyFrom::Net("203.0.113.0/24".parse().unwrap()),
                DenyFrom::Name("spam.example.net".into()),
            ],
            ..Deny::default()
        };
        assert_eq!(
            check_name(&deny, "mx.spam.example.net"),
            Err(RefuseReason::DeniedClient("spam.example.net".into()))
        );
        assert_eq!(check_name(&deny, "mail.example.org"), Ok(()));
        assert_eq!(check_name(&deny, "203.0.113.5"), Ok(()));
    }
}
