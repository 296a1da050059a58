//! `Path` of RFC 5321 §4.1.2: `"<" [ A-d-l ":" ] Mailbox ">"`, the
//! `Reverse-path` of MAIL (§4.1.1.2, `<>` allowed) and the `Forward-path`
//! of RCPT (§4.1.1.3, `<Postmaster>` allowed), with the 256-octet limit of
//! §4.5.3.1.3.
//!
//! A source route (`<@a.example,@b.example:user@c.example>`) is parsed and
//! dropped, as RFC 5321 Appendix C and §3.3 allow; the forward path
//! remembers that there was one.

use nom::character::complete::char;
use nom::combinator::{consumed, opt, value};
use nom::multi::many0_count;
use nom::{IResult, Parser};

use super::domain::{domain, host};
use super::error::{fail, or_fail, AddrError};
use super::local_part::local_part;
use crate::smtp::address::{ForwardPath, Mailbox, ReversePath};

/// The longest path, in octets as written, brackets included
/// (RFC 5321 §4.5.3.1.3).
pub(super) const MAX_PATH: usize = 256;

/// A path as written, before MAIL or RCPT decide what they accept.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Path {
    /// `<>`
    Null,
    /// `<Postmaster>` (any case, no domain, no route).
    Postmaster,
    /// `<[route:]mailbox>`
    Mailbox { mailbox: Mailbox, had_route: bool },
}

/// Parses the reverse-path of MAIL FROM: `<>` or a path.
///
/// # Errors
/// Returns a recoverable error without `<`; fails with the reason
/// otherwise.
pub(super) fn reverse_path(input: &str) -> IResult<&str, ReversePath, AddrError> {
    let (rest, path) = path(input)?;
    match path {
        Path::Null => Ok((rest, ReversePath::Null)),
        Path::Postmaster => fail("missing @domain"),
        Path::Mailbox { mailbox, .. } => Ok((rest, ReversePath::Mailbox(mailbox))),
    }
}

/// Parses the forward-path of RCPT TO: `<Postmaster>` or a path.
///
/// # Errors
/// Returns a recoverable error without `<`; fails with the reason
/// otherwise (`<>` included).
pub(super) fn forward_path(input: &str) -> IResult<&str, ForwardPath, AddrError> {
    let (rest, path) = path(input)?;
    match path {
        Path::Null => fail("empty path"),
        Path::Postmaster => Ok((rest, ForwardPath::Postmaster)),
        Path::Mailbox { mailbox, had_route } => {
            Ok((rest, ForwardPath::Mailbox { mailbox, had_route }))
        }
    }
}

/// Parses `local-part@host` with nothing around it.
///
/// # Errors
/// Fails with the reason when the input is not one mailbox.
pub(super) fn mailbox(input: &str) -> IResult<&str, Mailbox, AddrError> {
    let (input, local) = or_fail(local_part, "bad local part").parse(input)?;
    let (input, _) = or_fail(char('@'), "missing @domain").parse(input)?;
    let (input, host) = or_fail(host, "bad domain").parse(input)?;
    Ok((input, Mailbox { local, host }))
}

/// `Path`, with `<>` and `<Postmaster>` as special cases.
fn path(input: &str) -> IResult<&str, Path, AddrError> {
    let (rest, (wire, path)) = consumed(bracketed).parse(input)?;
    if wire.len() > MAX_PATH {
        return fail("path longer than 256 octets");
    }
    Ok((rest, path))
}

/// What is between (and including) the angle brackets.
fn bracketed(input: &str) -> IResult<&str, Path, AddrError> {
    let (input, _) = char('<').parse(input)?;
    if let Some(rest) = input.strip_prefix('>') {
        return Ok((rest, Path::Null));
    }
    let (input, route) = opt(source_route).parse(input)?;
    let had_route = route.is_some();
    let (input, local) = or_fail(local_part, "bad local part").parse(input)?;
    let is_postmaster =
        !had_route && !local.quoted && local.value.eq_ignore_ascii_case("postmaster");
    if let Some(rest) = input.strip_prefix('>').filter(|_| is_postmaster) {
        return Ok((rest, Path::Postmaster));
    }
    let Some(input) = input.strip_prefix('@') else {
        return fail(if input.is_empty() || input.starts_with('>') {
            "missing @domain"
        } else {
            "bad local part"
        });
    };
    if input.is_empty() || input.starts_with('>') {
        return fail("missing domain");
    }
    let (input, host) = or_fail(host, "bad domain").parse(input)?;
    let Some(rest) = input.strip_prefix('>') else {
        return fail(if input.starts_with('@') {
            "more than one @"
        } else if input.is_empty() {
            "missing >"
        } else {
            "bad domain"
        });
    };
    let mailbox = Mailbox { local, host };
    Ok((rest, Path::Mailbox { mailbox, had_route }))
}

/// `A-d-l ":"` where `A-d-l = At-domain *( "," At-domain )` and
/// `At-domain = "@" Domain`. Returns a recoverable error when the path does
/// not start with `@`, and fails on a broken route.
fn source_route(input: &str) -> IResult<&str, (), AddrError> {
    let (input, _) = char('@').parse(input)?;
    or_fail(
        value(
            (),
            (
                domain,
                many0_count((char(','), char('@'), domain)),
                char(':'),
            ),
        ),
        "bad source route",
    )
    .parse(input)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::smtp::address::{AddressLiteral, Domain, Host, LocalPart};

    fn mb(local: &str, domain: &str) -> Mailbox {
        Mailbox {
            local: LocalPart::dot_string(local),
            host: Host::Domain(Domain::new(domain)),
        }
    }

    fn rcpt(input: &str) -> ForwardPath {
        let (rest, p) = forward_path(input).unwrap();
        assert_eq!(rest, "");
        p
    }

    fn mail(input: &str) -> ReversePath {
        let (rest, p) = reverse_path(input).unwrap();
        assert_eq!(rest, "");
        p
    }

    fn rcpt_detail(input: &str) -> &'static str {
        match forward_path(input) {
            Err(nom::Err::Failure(AddrError(d))) => d,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn null_reverse_path_is_accepted() {
        assert_eq!(mail("<>"), ReversePath::Null);
    }

    #[test]
    fn null_forward_path_is_refused() {
        assert_eq!(rcpt_detail("<>"), "empty path");
    }

    #[test]
    fn plain_mailbox_is_parsed() {
        assert_eq!(
            mail("<a@b.example>"),
            ReversePath::Mailbox(mb("a", "b.example"))
        );
    }

    #[test]
    fn path_leaves_parameters_in_the_input() {
        let (rest, _) = reverse_path("<a@b> SIZE=10").unwrap();
        assert_eq!(rest, " SIZE=10");
    }

    #[test]
    fn postmaster_without_domain_is_a_forward_path() {
        assert_eq!(rcpt("<Postmaster>"), ForwardPath::Postmaster);
        assert_eq!(rcpt("<postMASTER>"), ForwardPath::Postmaster);
    }

    #[test]
    fn postmaster_with_domain_is_an_ordinary_mailbox() {
        assert_eq!(
            rcpt("<postmaster@ours.example>"),
            ForwardPath::Mailbox {
                mailbox: mb("postmaster", "ours.example"),
                had_route: false
            }
        );
    }

    #[test]
    fn postmaster_is_not_a_reverse_path() {
        assert_eq!(
            reverse_path("<Postmaster>"),
            Err(nom::Err::Failure(AddrError("missing @domain")))
        );
    }

    #[test]
    fn source_route_is_dropped() {
        assert_eq!(
            rcpt("<@a.example,@b.example:user@c.example>"),
            ForwardPath::Mailbox {
                mailbox: mb("user", "c.example"),
                had_route: true
            }
        );
        assert_eq!(
            mail("<@a.example:user@c.example>"),
            ReversePath::Mailbox(mb("user", "c.example"))
        );
    }

    #[test]
    fn broken_source_route_is_refused() {
        assert_eq!(rcpt_detail("<@a.example user@c>"), "bad source route");
        assert_eq!(rcpt_detail("<@:user@c>"), "bad source route");
        assert_eq!(rcpt_detail("<@a,b:user@c>"), "bad source route");
    }

    #[test]
    fn route_then_postmaster_needs_a_domain() {
        assert_eq!(rcpt_detail("<@a:Postmaster>"), "missing @domain");
    }

    #[test]
    fn percent_hack_and_bang_path_parse_as_dot_strings() {
        assert_eq!(
            rcpt("<user%other@ours>"),
            ForwardPath::Mailbox {
                mailbox: mb("user%other", "ours"),
                had_route: false
            }
        );
        assert_eq!(
            rcpt("<other!user@ours>"),
            ForwardPath::Mailbox {
                mailbox: mb("other!user", "ours"),
                had_route: false
            }
        );
    }

    #[test]
    fn quoted_local_part_keeps_at_sign() {
        let ReversePath::Mailbox(m) = mail(r#"<"a@b"@ours>"#) else {
            panic!("not a mailbox");
        };
        assert_eq!(m.local.value, "a@b");
        assert!(m.local.quoted);
        assert_eq!(m.to_string(), r#""a@b"@ours"#);
    }

    #[test]
    fn double_at_sign_is_refused() {
        assert_eq!(rcpt_detail("<a@b@c>"), "more than one @");
    }

    #[test]
    fn missing_parts_are_named() {
        assert_eq!(rcpt_detail("<a>"), "missing @domain");
        assert_eq!(rcpt_detail("<a@>"), "missing domain");
        assert_eq!(rcpt_detail("<a@"), "missing domain");
        assert_eq!(rcpt_detail("<a@b"), "missing >");
        assert_eq!(rcpt_detail("<@>"), "bad source route");
        assert_eq!(rcpt_detail("<.a@b>"), "bad local part");
        assert_eq!(rcpt_detail("<a..b@c>"), "bad local part");
        assert_eq!(rcpt_detail("<a b@c>"), "bad local part");
        assert_eq!(rcpt_detail("<a@b c>"), "bad domain");
        assert_eq!(rcpt_detail("<a@-b>"), "bad domain");
    }

    #[test]
    fn trailing_dot_domain_is_accepted_but_not_two() {
        assert_eq!(
            mail("<a@b.example.>"),
            ReversePath::Mailbox(mb("a", "b.example"))
        );
        assert_eq!(rcpt_detail("<a@b..>"), "bad domain");
    }

    #[test]
    fn ipv6_literal_host_is_accepted() {
        let ReversePath::Mailbox(m) = mail("<a@[IPv6:2001:db8::1]>") else {
            panic!("not a mailbox");
        };
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(m.host, Host::Literal(AddressLiteral::V6(ip)));
    }

    #[test]
    fn local_part_of_65_octets_is_a_bad_address() {
        let input = format!("<{}@b>", "a".repeat(65));
        assert_eq!(rcpt_detail(&input), "local part longer than 64 octets");
    }

    #[test]
    fn path_of_257_octets_is_refused() {
        // 2 + 64 + 1 + 190 = 257 octets with the brackets.
        let domain = ["d".repeat(63), "d".repeat(63), "d".repeat(62)].join(".");
        assert_eq!(domain.len(), 190);
        let input = format!("<{}@{}>", "a".repeat(64), domain);
        assert_eq!(input.len(), 257);
        assert_eq!(rcpt_detail(&input), "path longer than 256 octets");
        let input = format!("<{}@{}>", "a".repeat(63), domain);
        assert!(forward_path(&input).is_ok());
    }

    #[test]
    fn utf8_mailbox_is_accepted() {
        assert_eq!(
            mail("<jösé@bücher.example>"),
            ReversePath::Mailbox(mb("jösé", "bücher.example"))
        );
    }

    #[test]
    fn missing_bracket_is_recoverable() {
        assert!(matches!(forward_path("a@b"), Err(nom::Err::Error(_))));
    }

    #[test]
    fn bare_mailbox_parses() {
        assert_eq!(mailbox("a@b.example"), Ok(("", mb("a", "b.example"))));
        assert_eq!(
            mailbox("a"),
            Err(nom::Err::Failure(AddrError("missing @domain")))
        );
    }
}
