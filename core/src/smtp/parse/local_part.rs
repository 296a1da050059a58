//! `Local-part` of RFC 5321 §4.1.2: a `Dot-string` of atoms or a
//! `Quoted-string` with quoted pairs, both widened to UTF-8 by RFC 6531
//! §3.3, and the 64-octet limit of RFC 5321 §4.5.3.1.1.
//!
//! A quoted local part is stored unquoted (`"a@b"` becomes `a@b`) with
//! `quoted: true`; `LocalPart`'s `Display` quotes it again.

use nom::branch::alt;
use nom::bytes::complete::take_while1;
use nom::character::complete::{char, satisfy};
use nom::combinator::{consumed, map, recognize};
use nom::multi::{fold_many0, many0_count};
use nom::sequence::preceded;
use nom::{IResult, Parser};

use super::chars::{is_atext, is_qtext, is_quotable};
use super::error::{fail, AddrError};
use crate::smtp::address::LocalPart;

/// The longest local part, in octets as written (RFC 5321 §4.5.3.1.1).
pub(super) const MAX_LOCAL_PART: usize = 64;

/// Parses a local part.
///
/// Returns a recoverable error when the input starts with neither an atom
/// nor a quote; fails when a quoted string is broken or the local part is
/// longer than [`MAX_LOCAL_PART`] octets.
pub(super) fn local_part(input: &str) -> IResult<&str, LocalPart, AddrError> {
    let (rest, (wire, local)) = consumed(alt((quoted_string, dot_string))).parse(input)?;
    if wire.len() > MAX_LOCAL_PART {
        return fail("local part longer than 64 octets");
    }
    Ok((rest, local))
}

/// `Dot-string = Atom *("." Atom)`. A dot not followed by an atom is left
/// in the input (`a.` and `a..b` stop after `a`).
fn dot_string(input: &str) -> IResult<&str, LocalPart, AddrError> {
    map(
        recognize((atom, many0_count((char('.'), atom)))),
        LocalPart::dot_string,
    )
    .parse(input)
}

/// `Atom = 1*atext`.
fn atom(input: &str) -> IResult<&str, &str, AddrError> {
    take_while1(is_atext).parse(input)
}

/// `Quoted-string = DQUOTE *QcontentSMTP DQUOTE`, unquoted.
fn quoted_string(input: &str) -> IResult<&str, LocalPart, AddrError> {
    let (input, _) = char('"').parse(input)?;
    let (input, value) = fold_many0(
        alt((take_while1(is_qtext), quoted_pair)),
        String::new,
        |mut value, piece| {
            value.push_str(piece);
            value
        },
    )
    .parse(input)?;
    match char::<_, AddrError>('"').parse(input) {
        Ok((rest, _)) => Ok((
            rest,
            LocalPart {
                value,
                quoted: true,
            },
        )),
        Err(_) if input.is_empty() => fail("unterminated quoted string"),
        Err(_) => fail("bad character in quoted string"),
    }
}

/// `quoted-pairSMTP = %d92 %d32-126`: yields the quoted character.
fn quoted_pair(input: &str) -> IResult<&str, &str, AddrError> {
    preceded(char('\\'), recognize(satisfy(is_quotable))).parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> (&str, LocalPart) {
        local_part(input).unwrap()
    }

    fn detail(input: &str) -> &'static str {
        match local_part(input) {
            Err(nom::Err::Failure(AddrError(d))) => d,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn dot_string_stops_at_at_sign() {
        assert_eq!(
            ok("alice.smith@x"),
            ("@x", LocalPart::dot_string("alice.smith"))
        );
    }

    #[test]
    fn percent_and_bang_are_atext() {
        assert_eq!(ok("user%other@x").1, LocalPart::dot_string("user%other"));
        assert_eq!(ok("other!user@x").1, LocalPart::dot_string("other!user"));
    }

    #[test]
    fn double_dot_leaves_the_rest_unparsed() {
        assert_eq!(ok("a..b@x").0, "..b@x");
        assert_eq!(ok("a.@x").0, ".@x");
    }

    #[test]
    fn leading_dot_is_not_a_local_part() {
        assert!(matches!(local_part(".a@x"), Err(nom::Err::Error(_))));
    }

    #[test]
    fn quoted_local_part_keeps_at_sign() {
        let (rest, lp) = ok(r#""a@b"@x"#);
        assert_eq!(rest, "@x");
        assert_eq!(lp.value, "a@b");
        assert!(lp.quoted);
    }

    #[test]
    fn quoted_pairs_are_unquoted() {
        let (_, lp) = ok(r#""a\"b\\c\ d"@x"#);
        assert_eq!(lp.value, r#"a"b\c d"#);
    }

    #[test]
    fn empty_quoted_string_is_a_local_part() {
        let (_, lp) = ok(r#"""@x"#);
        assert_eq!(lp.value, "");
        assert!(lp.quoted);
    }

    #[test]
    fn unterminated_quote_fails() {
        assert_eq!(detail(r#""abc"#), "unterminated quoted string");
        assert_eq!(detail(r#""abc\"#), "bad character in quoted string");
    }

    #[test]
    fn tab_in_quoted_string_fails() {
        assert_eq!(detail("\"a\tb\"@x"), "bad character in quoted string");
    }

    #[test]
    fn utf8_local_parts_are_accepted() {
        assert_eq!(ok("jösé@x").1, LocalPart::dot_string("jösé"));
        assert_eq!(ok("\"日本 語\"@x").1.value, "日本 語");
    }

    #[test]
    fn local_part_of_64_octets_is_accepted() {
        let lp = "a".repeat(64);
        assert_eq!(ok(&format!("{lp}@x")).1.value, lp);
    }

    #[test]
    fn local_part_of_65_octets_is_refused() {
        let lp = "a".repeat(65);
        assert_eq!(
            detail(&format!("{lp}@x")),
            "local part longer than 64 octets"
        );
    }

    #[test]
    fn quotes_count_towards_the_limit() {
        let lp = format!("\"{}\"", "a".repeat(63));
        assert_eq!(
            detail(&format!("{lp}@x")),
            "local part longer than 64 octets"
        );
    }
}
