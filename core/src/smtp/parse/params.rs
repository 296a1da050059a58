//! ESMTP parameters after the path of MAIL and RCPT (RFC 5321 §4.1.2
//! `Mail-parameters` / `Rcpt-parameters`, `esmtp-param = esmtp-keyword
//! ["=" esmtp-value]`, and §4.1.1.11 for unknown ones).
//!
//! MAIL understands `SIZE` (RFC 1870 §6), `BODY` (RFC 6152 §2;
//! `BINARYMIME` of RFC 3030 §3 is refused as not implemented) and
//! `SMTPUTF8` (RFC 6531 §3.4). RCPT understands none: hato does not offer
//! DSN. Keywords are case-insensitive; a repeated keyword is a syntax
//! error.

use nom::branch::alt;
use nom::bytes::complete::{take_while, take_while1};
use nom::character::complete::{char, satisfy, space1};
use nom::combinator::{eof, opt, peek, recognize};
use nom::sequence::preceded;
use nom::{IResult, Parser};

use super::chars::{is_esmtp_value, is_keyword_char, is_wsp};
use super::ParseError;
use crate::smtp::command::{Body, MailParams};

/// One `esmtp-param` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Param<'a> {
    /// `esmtp-keyword`, case as written.
    keyword: &'a str,
    /// The text after `=`, if there was one (possibly empty).
    value: Option<&'a str>,
}

/// Parses the text after the reverse-path of MAIL FROM.
///
/// # Errors
/// Returns the first problem found, parameter by parameter.
pub(super) fn mail_params(input: &str, usage: &'static str) -> Result<MailParams, ParseError> {
    let mut params = MailParams::default();
    for_each_param(input, usage, |p| {
        if p.keyword.eq_ignore_ascii_case("SIZE") {
            if params.size.is_some() {
                return Err(ParseError::Syntax { usage });
            }
            params.size = Some(size(p.value)?);
        } else if p.keyword.eq_ignore_ascii_case("BODY") {
            if params.body.is_some() {
                return Err(ParseError::Syntax { usage });
            }
            params.body = Some(body(p.value)?);
        } else if p.keyword.eq_ignore_ascii_case("SMTPUTF8") {
            if params.smtputf8 {
                return Err(ParseError::Syntax { usage });
            }
            if p.value.is_some() {
                return Err(ParseError::BadParameterValue("SMTPUTF8"));
            }
            params.smtputf8 = true;
        } else {
            return Err(ParseError::UnknownParameter(p.keyword.to_owned()));
        }
        Ok(())
    })?;
    Ok(params)
}

/// Parses the text after the forward-path of RCPT TO: any parameter is
/// unknown.
///
/// # Errors
/// Returns [`ParseError::UnknownParameter`] for the first parameter, or
/// [`ParseError::Syntax`] when the text is not a parameter list.
pub(super) fn rcpt_params(input: &str, usage: &'static str) -> Result<(), ParseError> {
    for_each_param(input, usage, |p| {
        Err(ParseError::UnknownParameter(p.keyword.to_owned()))
    })
}

/// Calls `each` on every ` keyword[=value]` of `input`, which is empty or
/// starts with white space (SP or HT; more than one is tolerated).
fn for_each_param<'a>(
    mut input: &'a str,
    usage: &'static str,
    mut each: impl FnMut(Param<'a>) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    while !input.is_empty() {
        let Ok((rest, p)) = preceded(space1, param).parse(input) else {
            return Err(ParseError::Syntax { usage });
        };
        each(p)?;
        input = rest;
    }
    Ok(())
}

/// `esmtp-param = esmtp-keyword ["=" esmtp-value]`, where the keyword is
/// `(ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`. An empty value is let through
/// here so that `SIZE=` is reported as a bad value, not a syntax error.
fn param(input: &str) -> IResult<&str, Param<'_>> {
    let (rest, (keyword, value)) = (
        recognize((
            satisfy(|c: char| c.is_ascii_alphanumeric()),
            take_while(is_keyword_char),
        )),
        opt(preceded(char('='), take_while(is_esmtp_value))),
    )
        .parse(input)?;
    // The parameter must end at white space or at the end of the line.
    let (rest, _) = peek(alt((eof, take_while1(is_wsp)))).parse(rest)?;
    Ok((rest, Param { keyword, value }))
}

/// `SIZE=1*20DIGIT` (RFC 1870 §6): the declared size in octets.
fn size(value: Option<&str>) -> Result<u64, ParseError> {
    value
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .ok_or(ParseError::BadParameterValue("SIZE"))
}

/// `BODY=7BIT / 8BITMIME` (RFC 6152 §2), case-insensitive.
fn body(value: Option<&str>) -> Result<Body, ParseError> {
    match value {
        Some(v) if v.eq_ignore_ascii_case("7BIT") => Ok(Body::SevenBit),
        Some(v) if v.eq_ignore_ascii_case("8BITMIME") => Ok(Body::EightBitMime),
        Some(v) if v.eq_ignore_ascii_case("BINARYMIME") => {
            Err(ParseError::ParameterNotImplemented("BODY=BINARYMIME"))
        }
        _ => Err(ParseError::BadParameterValue("BODY")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE: &str = "MAIL FROM:<address> [parameters]";

    fn mail(input: &str) -> Result<MailParams, ParseError> {
        mail_params(input, USAGE)
    }

    #[test]
    fn no_parameters_give_defaults() {
        assert_eq!(mail(""), Ok(MailParams::default()));
    }

    #[test]
    fn all_known_parameters_are_read() {
        assert_eq!(
            mail(" SIZE=1000 BODY=8BITMIME SMTPUTF8"),
            Ok(MailParams {
                size: Some(1000),
                body: Some(Body::EightBitMime),
                smtputf8: true
            })
        );
    }

    #[test]
    fn keywords_and_body_values_are_case_insensitive() {
        assert_eq!(
            mail(" size=5 Body=7bit smtputf8"),
            Ok(MailParams {
                size: Some(5),
                body: Some(Body::SevenBit),
                smtputf8: true
            })
        );
    }

    #[test]
    fn several_spaces_between_parameters_are_tolerated() {
        assert_eq!(mail("  SIZE=1 \t BODY=7BIT").map(|p| p.size), Ok(Some(1)));
    }

    #[test]
    fn size_overflow_is_bad_value() {
        assert_eq!(
            mail(" SIZE=99999999999999999999999"),
            Err(ParseError::BadParameterValue("SIZE"))
        );
        assert_eq!(
            mail(" SIZE=18446744073709551615").map(|p| p.size),
            Ok(Some(u64::MAX))
        );
    }

    #[test]
    fn size_must_be_digits() {
        for bad in [
            " SIZE=abc",
            " SIZE=+5",
            " SIZE=-1",
            " SIZE=",
            " SIZE",
            " SIZE=1k",
        ] {
            assert_eq!(
                mail(bad),
                Err(ParseError::BadParameterValue("SIZE")),
                "{bad}"
            );
        }
    }

    #[test]
    fn binarymime_is_not_implemented() {
        assert_eq!(
            mail(" BODY=binarymime"),
            Err(ParseError::ParameterNotImplemented("BODY=BINARYMIME"))
        );
    }

    #[test]
    fn other_body_values_are_bad() {
        assert_eq!(
            mail(" BODY=9BIT"),
            Err(ParseError::BadParameterValue("BODY"))
        );
        assert_eq!(mail(" BODY"), Err(ParseError::BadParameterValue("BODY")));
    }

    #[test]
    fn smtputf8_takes_no_value() {
        assert_eq!(
            mail(" SMTPUTF8=yes"),
            Err(ParseError::BadParameterValue("SMTPUTF8"))
        );
    }

    #[test]
    fn unknown_keyword_is_reported_as_written() {
        assert_eq!(
            mail(" SIZE=1 Ret=HDRS"),
            Err(ParseError::UnknownParameter("Ret".into()))
        );
        assert_eq!(
            mail(" X-FOO"),
            Err(ParseError::UnknownParameter("X-FOO".into()))
        );
    }

    #[test]
    fn repeated_parameter_is_a_syntax_error() {
        for bad in [
            " SIZE=1 SIZE=2",
            " BODY=7BIT body=8bitmime",
            " SMTPUTF8 SMTPUTF8",
        ] {
            assert_eq!(mail(bad), Err(ParseError::Syntax { usage: USAGE }), "{bad}");
        }
    }

    #[test]
    fn malformed_parameter_list_is_a_syntax_error() {
        for bad in ["SIZE=1", " =1", " -X", " SIZE=1=2", " SIZE==1", " SIZE=1 ="] {
            assert_eq!(mail(bad), Err(ParseError::Syntax { usage: USAGE }), "{bad}");
        }
    }

    #[test]
    fn utf8_values_are_allowed() {
        assert_eq!(
            mail(" X-NOTE=grüße"),
            Err(ParseError::UnknownParameter("X-NOTE".into()))
        );
    }

    #[test]
    fn rcpt_parameters_are_all_unknown() {
        assert_eq!(rcpt_params("", "RCPT"), Ok(()));
        assert_eq!(
            rcpt_params(" NOTIFY=NEVER", "RCPT"),
            Err(ParseError::UnknownParameter("NOTIFY".into()))
        );
        assert_eq!(
            rcpt_params(" =x", "RCPT"),
            Err(ParseError::Syntax { usage: "RCPT" })
        );
    }
}
