//! The host part of a mailbox: `Domain` of RFC 5321 §4.1.2 (sub-domains of
//! `Let-dig [Ldh-str]`, with U-labels allowed by RFC 6531 §3.3) and
//! `address-literal` of RFC 5321 §4.1.3 (IPv4, `IPv6:` and general
//! `tag:content` literals), with the 255-octet limit of §4.5.3.1.2.
//!
//! One trailing dot is accepted (`b.example.`): it names the same domain
//! (RFC 5321 §2.3.5), and `Domain` ignores it when comparing.

use std::net::{Ipv4Addr, Ipv6Addr};

use nom::branch::alt;
use nom::bytes::complete::{tag_no_case, take_while1, take_while_m_n};
use nom::character::complete::char;
use nom::combinator::{map, map_opt, opt, recognize, verify};
use nom::multi::many0_count;
use nom::sequence::{preceded, terminated};
use nom::{IResult, Parser};

use super::chars::{is_dcontent, is_ldh, is_let_dig, is_tag_char};
use super::error::{fail, or_fail, AddrError};
use crate::smtp::address::{AddressLiteral, Domain, Host};

/// The longest domain, in octets as written (RFC 5321 §4.5.3.1.2).
pub(super) const MAX_DOMAIN: usize = 255;

/// Parses a domain or an address literal.
///
/// Returns a recoverable error when the input starts with neither;
/// fails on a broken address literal or an over-long domain.
pub(super) fn host(input: &str) -> IResult<&str, Host, AddrError> {
    alt((
        map(address_literal, Host::Literal),
        map(domain, Host::Domain),
    ))
    .parse(input)
}

/// `Domain = sub-domain *("." sub-domain)`, plus one optional trailing dot.
///
/// A dot not followed by a sub-domain is consumed only if it is the first
/// one after the last label: `b..` stops before the second dot.
pub(super) fn domain(input: &str) -> IResult<&str, Domain, AddrError> {
    let (rest, text) = recognize((
        sub_domain,
        many0_count((char('.'), sub_domain)),
        opt(char('.')),
    ))
    .parse(input)?;
    if text.len() > MAX_DOMAIN {
        return fail("domain longer than 255 octets");
    }
    Ok((rest, Domain::new(text)))
}

/// `sub-domain = Let-dig [Ldh-str]`: starts and ends with a letter or digit.
fn sub_domain(input: &str) -> IResult<&str, &str, AddrError> {
    verify(take_while1(is_ldh), |label: &str| {
        label.starts_with(is_let_dig) && label.ends_with(is_let_dig)
    })
    .parse(input)
}

/// `address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
/// General-address-literal ) "]"`.
///
/// Returns a recoverable error without `[`; fails on anything else that is
/// not a literal.
pub(super) fn address_literal(input: &str) -> IResult<&str, AddressLiteral, AddrError> {
    let (input, _) = char('[').parse(input)?;
    or_fail(
        alt((
            terminated(map(ipv4, AddressLiteral::V4), char(']')),
            map(ipv6, AddressLiteral::V6),
            terminated(general, char(']')),
        )),
        "bad address literal",
    )
    .parse(input)
}

/// `IPv4-address-literal = Snum 3("." Snum)`.
fn ipv4(input: &str) -> IResult<&str, Ipv4Addr, AddrError> {
    map(
        (snum, char('.'), snum, char('.'), snum, char('.'), snum),
        |(a, _, b, _, c, _, d)| Ipv4Addr::new(a, b, c, d),
    )
    .parse(input)
}

/// `Snum = 1*3DIGIT`, at most 255 (leading zeros allowed, as decimal).
fn snum(input: &str) -> IResult<&str, u8, AddrError> {
    map_opt(
        take_while_m_n(1, 3, |c: char| c.is_ascii_digit()),
        |s: &str| s.parse().ok(),
    )
    .parse(input)
}

/// `IPv6-address-literal = "IPv6:" IPv6-addr`, closing bracket included.
/// Once the tag is seen, a bad address fails: it is not a general literal.
fn ipv6(input: &str) -> IResult<&str, Ipv6Addr, AddrError> {
    preceded(
        tag_no_case("IPv6:"),
        or_fail(
            terminated(
                map_opt(
                    take_while1(|c: char| c.is_ascii_hexdigit() || c == ':' || c == '.'),
                    |s: &str| s.parse().ok(),
                ),
                char(']'),
            ),
            "bad IPv6 address literal",
        ),
    )
    .parse(input)
}

/// `General-address-literal = Standardized-tag ":" 1*dcontent`.
fn general(input: &str) -> IResult<&str, AddressLiteral, AddrError> {
    map(
        (
            verify(take_while1(is_tag_char), |tag: &str| {
                tag.ends_with(|c: char| c.is_ascii_alphanumeric())
            }),
            char(':'),
            take_while1(is_dcontent),
        ),
        |(tag, _, content): (&str, char, &str)| AddressLiteral::General {
            tag: tag.to_owned(),
            content: content.to_owned(),
        },
    )
    .parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_host(input: &str) -> (&str, Host) {
        host(input).unwrap()
    }

    fn detail(input: &str) -> &'static str {
        match host(input) {
            Err(nom::Err::Failure(AddrError(d))) => d,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn domain_of_labels_is_parsed() {
        let (rest, h) = ok_host("mail.example.test>");
        assert_eq!(rest, ">");
        assert_eq!(h, Host::Domain(Domain::new("mail.example.test")));
    }

    #[test]
    fn one_trailing_dot_is_accepted() {
        let (rest, h) = ok_host("b.example.>");
        assert_eq!(rest, ">");
        assert_eq!(h.to_string(), "b.example.");
        assert_eq!(h, Host::Domain(Domain::new("b.example")));
    }

    #[test]
    fn second_trailing_dot_is_left_over() {
        assert_eq!(ok_host("b..>").0, ".>");
    }

    #[test]
    fn hyphen_cannot_start_or_end_a_label() {
        assert!(matches!(host("-b.example"), Err(nom::Err::Error(_))));
        assert!(matches!(host("b-.example"), Err(nom::Err::Error(_))));
        assert_eq!(ok_host("a.b-.example").0, "b-.example");
        assert_eq!(ok_host("x-y.example>").0, ">");
    }

    #[test]
    fn utf8_labels_are_accepted() {
        assert_eq!(ok_host("bücher.example>").1.to_string(), "bücher.example");
    }

    #[test]
    fn domain_of_256_octets_is_refused() {
        let long = vec!["a".repeat(63); 4].join(".") + "a";
        assert_eq!(long.len(), 256);
        assert_eq!(detail(&long), "domain longer than 255 octets");
        assert!(host(&long[..255]).is_ok());
    }

    #[test]
    fn ipv4_literal_is_parsed() {
        assert_eq!(
            ok_host("[192.0.2.1]>").1,
            Host::Literal(AddressLiteral::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
    }

    #[test]
    fn ipv4_literal_out_of_range_is_refused() {
        assert_eq!(detail("[192.0.2.256]"), "bad address literal");
        assert_eq!(detail("[192.0.2]"), "bad address literal");
        assert_eq!(detail("[192.0.2.1"), "bad address literal");
    }

    #[test]
    fn ipv6_literal_is_parsed() {
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            ok_host("[IPv6:2001:db8::1]>").1,
            Host::Literal(AddressLiteral::V6(ip))
        );
        assert_eq!(
            ok_host("[ipv6:::ffff:192.0.2.1]").1.to_string(),
            "[IPv6:::ffff:192.0.2.1]"
        );
    }

    #[test]
    fn bad_ipv6_literal_is_refused() {
        assert_eq!(detail("[IPv6:2001:db8::g]"), "bad IPv6 address literal");
        assert_eq!(detail("[IPv6:1:2:3]"), "bad IPv6 address literal");
    }

    #[test]
    fn general_literal_keeps_tag_and_content() {
        assert_eq!(
            ok_host("[x-tag:some-content]>").1,
            Host::Literal(AddressLiteral::General {
                tag: "x-tag".into(),
                content: "some-content".into()
            })
        );
    }

    #[test]
    fn literal_without_tag_is_refused() {
        assert_eq!(detail("[foo]"), "bad address literal");
        assert_eq!(detail("[]"), "bad address literal");
        assert_eq!(detail("[tag:]"), "bad address literal");
    }
}
