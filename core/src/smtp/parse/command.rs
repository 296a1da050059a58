//! Command verbs of RFC 5321 §4.1.1 and the shape of each command's
//! arguments: HELO / EHLO (§4.1.1.1, any printable name per RFC 1123
//! §5.2.5), MAIL (§4.1.1.2), RCPT (§4.1.1.3), DATA, RSET, VRFY, EXPN,
//! HELP, NOOP, QUIT (§4.1.1.4–§4.1.1.10), STARTTLS (RFC 3207 §4), AUTH
//! (RFC 4954 §4), and the verbs other RFCs define that hato answers with
//! 502 (§4.2.4).
//!
//! Verbs are case-insensitive (§2.4). Words are separated by SP or HT, and
//! more than one is tolerated; trailing white space is ignored.

use nom::bytes::complete::{tag_no_case, take_while1};
use nom::character::complete::{char, space1};
use nom::combinator::{opt, rest};
use nom::sequence::preceded;
use nom::{IResult, Parser};

use super::chars::is_wsp;
use super::error::AddrError;
use super::params::{mail_params, rcpt_params};
use super::path::{forward_path, reverse_path};
use super::ParseError;
use crate::smtp::command::Command;

/// Usage of MAIL, shown in its 501 reply.
const MAIL_USAGE: &str = "MAIL FROM:<address> [parameters]";
/// Usage of RCPT, shown in its 501 reply.
const RCPT_USAGE: &str = "RCPT TO:<address>";

/// The verbs hato knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Helo,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth,
    /// Defined elsewhere (RFC 821, RFC 1985, RFC 2645, RFC 3030), not
    /// offered by hato.
    NotImplemented,
}

/// Every verb with its spelling.
const VERBS: [(&str, Verb); 20] = [
    ("HELO", Verb::Helo),
    ("EHLO", Verb::Ehlo),
    ("MAIL", Verb::Mail),
    ("RCPT", Verb::Rcpt),
    ("DATA", Verb::Data),
    ("RSET", Verb::Rset),
    ("NOOP", Verb::Noop),
    ("QUIT", Verb::Quit),
    ("VRFY", Verb::Vrfy),
    ("EXPN", Verb::Expn),
    ("HELP", Verb::Help),
    ("TURN", Verb::NotImplemented),
    ("SEND", Verb::NotImplemented),
    ("SOML", Verb::NotImplemented),
    ("SAML", Verb::NotImplemented),
    ("ETRN", Verb::NotImplemented),
    ("ATRN", Verb::NotImplemented),
    ("BDAT", Verb::NotImplemented),
    ("STARTTLS", Verb::StartTls),
    ("AUTH", Verb::Auth),
];

/// Parses one command line, already checked for UTF-8 and forbidden
/// characters.
///
/// # Errors
/// Returns the [`ParseError`] whose reply the client should get.
pub(super) fn command(line: &str) -> Result<Command<'_>, ParseError> {
    let line = line.trim_end_matches(is_wsp);
    let Ok((_, (word, arg))) = verb_and_argument(line) else {
        return Err(ParseError::UnknownCommand);
    };
    let Some(verb) = lookup(word) else {
        return Err(ParseError::UnknownCommand);
    };
    match verb {
        Verb::Helo => required(arg, "HELO domain").map(Command::Helo),
        Verb::Ehlo => required(arg, "EHLO domain").map(Command::Ehlo),
        Verb::Mail => mail(arg),
        Verb::Rcpt => rcpt(arg),
        Verb::Data => none(arg, "DATA", Command::Data),
        Verb::Rset => none(arg, "RSET", Command::Rset),
        Verb::Quit => none(arg, "QUIT", Command::Quit),
        Verb::Noop => Ok(Command::Noop),
        Verb::Help => Ok(Command::Help(arg)),
        Verb::Vrfy => required(arg, "VRFY user-or-address").map(Command::Vrfy),
        Verb::Expn => required(arg, "EXPN mailing-list").map(Command::Expn),
        Verb::StartTls => none(arg, "STARTTLS", Command::StartTls),
        Verb::Auth => auth(arg),
        Verb::NotImplemented => Ok(Command::NotImplemented(word)),
    }
}

/// `AUTH mechanism [SP initial-response]` (RFC 4954 §4).
fn auth(arg: Option<&str>) -> Result<Command<'_>, ParseError> {
    const USAGE: &str = "AUTH mechanism [initial-response]";
    let arg = arg.ok_or(ParseError::Syntax { usage: USAGE })?;
    let mut words = arg.split([' ', '\t']).filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or(ParseError::Syntax { usage: USAGE })?;
    let initial = words.next();
    if words.next().is_some() {
        return Err(ParseError::Syntax { usage: USAGE });
    }
    Ok(Command::Auth { mechanism, initial })
}

/// Splits `VERB [WSP argument]`. The line has no trailing white space, so
/// an argument, when present, is not empty.
fn verb_and_argument(line: &str) -> IResult<&str, (&str, Option<&str>)> {
    (
        take_while1(|c: char| !is_wsp(c)),
        opt(preceded(space1, rest)),
    )
        .parse(line)
}

/// Finds the verb, ignoring case.
fn lookup(word: &str) -> Option<Verb> {
    VERBS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map(|&(_, verb)| verb)
}

/// A command whose argument is required.
fn required<'a>(arg: Option<&'a str>, usage: &'static str) -> Result<&'a str, ParseError> {
    arg.ok_or(ParseError::Syntax { usage })
}

/// A command that takes no argument.
fn none<'a>(
    arg: Option<&str>,
    usage: &'static str,
    cmd: Command<'a>,
) -> Result<Command<'a>, ParseError> {
    match arg {
        None => Ok(cmd),
        Some(_) => Err(ParseError::Syntax { usage }),
    }
}

/// `MAIL FROM:<reverse-path> [SP Mail-parameters]`.
fn mail(arg: Option<&str>) -> Result<Command<'_>, ParseError> {
    let path = path_after(arg, "FROM:").ok_or(ParseError::Syntax { usage: MAIL_USAGE })?;
    let (rest, from) = reverse_path(path).map_err(|e| bad_address(e, true))?;
    let params = mail_params(rest, MAIL_USAGE)?;
    Ok(Command::Mail { from, params })
}

/// `RCPT TO:<forward-path> [SP Rcpt-parameters]`.
fn rcpt(arg: Option<&str>) -> Result<Command<'_>, ParseError> {
    let path = path_after(arg, "TO:").ok_or(ParseError::Syntax { usage: RCPT_USAGE })?;
    let (rest, to) = forward_path(path).map_err(|e| bad_address(e, false))?;
    rcpt_params(rest, RCPT_USAGE)?;
    Ok(Command::Rcpt { to })
}

/// Skips `FROM:` or `TO:` (any case) and at most one space after the
/// colon, which many clients write. Returns the rest, which must start
/// with the path's `<`.
fn path_after<'a>(arg: Option<&'a str>, keyword: &'static str) -> Option<&'a str> {
    let (path, _) = (
        tag_no_case::<_, _, nom::error::Error<&str>>(keyword),
        opt(char(' ')),
    )
        .parse(arg?)
        .ok()?;
    path.starts_with('<').then_some(path)
}

/// Turns an address parser's error into the reply-carrying error.
fn bad_address(e: nom::Err<AddrError>, sender: bool) -> ParseError {
    let detail = match e {
        nom::Err::Error(AddrError(d)) | nom::Err::Failure(AddrError(d)) => d,
        nom::Err::Incomplete(_) => "incomplete path",
    };
    ParseError::BadAddress { sender, detail }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::smtp::address::{
        AddressLiteral, Domain, ForwardPath, Host, LocalPart, Mailbox, ReversePath,
    };
    use crate::smtp::command::{Body, MailParams};

    fn parse(line: &str) -> Result<Command<'_>, ParseError> {
        command(line)
    }

    fn syntax(usage: &'static str) -> Result<Command<'static>, ParseError> {
        Err(ParseError::Syntax { usage })
    }

    fn mb(local: &str, domain: &str) -> Mailbox {
        Mailbox {
            local: LocalPart::dot_string(local),
            host: Host::Domain(Domain::new(domain)),
        }
    }

    fn mail_from(local: &str, domain: &str) -> Command<'static> {
        Command::Mail {
            from: ReversePath::Mailbox(mb(local, domain)),
            params: MailParams::default(),
        }
    }

    fn rcpt_to(local: &str, domain: &str) -> Command<'static> {
        Command::Rcpt {
            to: ForwardPath::Mailbox {
                mailbox: mb(local, domain),
                had_route: false,
            },
        }
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(parse("QuIt"), Ok(Command::Quit));
        assert_eq!(parse("ehlo x"), Ok(Command::Ehlo("x")));
        assert_eq!(parse("mail from:<a@b>"), Ok(mail_from("a", "b")));
        assert_eq!(parse("rcpt to:<a@b>"), Ok(rcpt_to("a", "b")));
    }

    #[test]
    fn trailing_white_space_is_ignored() {
        assert_eq!(parse("DATA  \t "), Ok(Command::Data));
        assert_eq!(parse("HELO x \t"), Ok(Command::Helo("x")));
        assert_eq!(
            parse("MAIL FROM:<a@b> SIZE=1 "),
            Ok(Command::Mail {
                from: ReversePath::Mailbox(mb("a", "b")),
                params: MailParams {
                    size: Some(1),
                    ..MailParams::default()
                }
            })
        );
    }

    #[test]
    fn helo_accepts_any_printable_name() {
        assert_eq!(parse("EHLO [127.0.0.1]"), Ok(Command::Ehlo("[127.0.0.1]")));
        assert_eq!(parse("EHLO my-pc"), Ok(Command::Ehlo("my-pc")));
        assert_eq!(parse("HELO my_pc.local"), Ok(Command::Helo("my_pc.local")));
        assert_eq!(parse("HELO  two words"), Ok(Command::Helo("two words")));
        assert_eq!(parse("HELO\tx"), Ok(Command::Helo("x")));
    }

    #[test]
    fn helo_without_name_is_a_syntax_error() {
        assert_eq!(parse("EHLO"), syntax("EHLO domain"));
        assert_eq!(parse("EHLO   "), syntax("EHLO domain"));
        assert_eq!(parse("HELO"), syntax("HELO domain"));
    }

    #[test]
    fn mail_accepts_one_space_after_colon() {
        assert_eq!(parse("MAIL FROM: <a@b>"), Ok(mail_from("a", "b")));
        assert_eq!(parse("MAIL FROM:  <a@b>"), syntax(MAIL_USAGE));
        assert_eq!(parse("RCPT TO: <a@b>"), Ok(rcpt_to("a", "b")));
    }

    #[test]
    fn mail_requires_angle_brackets() {
        assert_eq!(parse("MAIL FROM:a@b"), syntax(MAIL_USAGE));
        assert_eq!(parse("RCPT TO:a@b"), syntax(RCPT_USAGE));
    }

    #[test]
    fn mail_without_from_is_a_syntax_error() {
        assert_eq!(parse("MAIL"), syntax(MAIL_USAGE));
        assert_eq!(parse("MAIL <a@b>"), syntax(MAIL_USAGE));
        assert_eq!(parse("MAIL TO:<a@b>"), syntax(MAIL_USAGE));
        assert_eq!(parse("MAIL FROM :<a@b>"), syntax(MAIL_USAGE));
        assert_eq!(parse("RCPT"), syntax(RCPT_USAGE));
        assert_eq!(parse("RCPT FROM:<a@b>"), syntax(RCPT_USAGE));
    }

    #[test]
    fn null_reverse_path_is_accepted() {
        assert_eq!(
            parse("MAIL FROM:<>"),
            Ok(Command::Mail {
                from: ReversePath::Null,
                params: MailParams::default()
            })
        );
    }

    #[test]
    fn mail_with_parameters_is_parsed() {
        assert_eq!(
            parse("MAIL FROM:<a@b> BODY=8BITMIME SMTPUTF8 SIZE=42"),
            Ok(Command::Mail {
                from: ReversePath::Mailbox(mb("a", "b")),
                params: MailParams {
                    size: Some(42),
                    body: Some(Body::EightBitMime),
                    smtputf8: true
                }
            })
        );
    }

    #[test]
    fn parameter_errors_reach_the_command() {
        assert_eq!(
            parse("MAIL FROM:<a@b> SIZE=x"),
            Err(ParseError::BadParameterValue("SIZE"))
        );
        assert_eq!(
            parse("MAIL FROM:<a@b> BODY=BINARYMIME"),
            Err(ParseError::ParameterNotImplemented("BODY=BINARYMIME"))
        );
        assert_eq!(
            parse("MAIL FROM:<a@b> Foo=1"),
            Err(ParseError::UnknownParameter("Foo".into()))
        );
        assert_eq!(parse("MAIL FROM:<a@b> SIZE=1 SIZE=1"), syntax(MAIL_USAGE));
    }

    #[test]
    fn text_glued_to_the_path_is_a_syntax_error() {
        assert_eq!(parse("MAIL FROM:<a@b>SIZE=1"), syntax(MAIL_USAGE));
        assert_eq!(parse("RCPT TO:<a@b>x"), syntax(RCPT_USAGE));
    }

    #[test]
    fn rcpt_parameters_are_unknown() {
        assert_eq!(
            parse("RCPT TO:<a@b> NOTIFY=NEVER"),
            Err(ParseError::UnknownParameter("NOTIFY".into()))
        );
    }

    #[test]
    fn postmaster_is_accepted_in_rcpt() {
        assert_eq!(
            parse("RCPT TO:<postmaster>"),
            Ok(Command::Rcpt {
                to: ForwardPath::Postmaster
            })
        );
    }

    #[test]
    fn bad_address_names_sender_or_recipient() {
        assert_eq!(
            parse("MAIL FROM:<a@b@c>"),
            Err(ParseError::BadAddress {
                sender: true,
                detail: "more than one @"
            })
        );
        assert_eq!(
            parse("RCPT TO:<a@b@c>"),
            Err(ParseError::BadAddress {
                sender: false,
                detail: "more than one @"
            })
        );
        assert_eq!(
            parse("RCPT TO:<>"),
            Err(ParseError::BadAddress {
                sender: false,
                detail: "empty path"
            })
        );
    }

    #[test]
    fn source_route_is_dropped() {
        assert_eq!(
            parse("RCPT TO:<@a.example,@b.example:user@c.example>"),
            Ok(Command::Rcpt {
                to: ForwardPath::Mailbox {
                    mailbox: mb("user", "c.example"),
                    had_route: true
                }
            })
        );
    }

    #[test]
    fn ipv6_literal_is_accepted_in_mail() {
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            parse("MAIL FROM:<a@[IPv6:2001:db8::1]>"),
            Ok(Command::Mail {
                from: ReversePath::Mailbox(Mailbox {
                    local: LocalPart::dot_string("a"),
                    host: Host::Literal(AddressLiteral::V6(ip))
                }),
                params: MailParams::default()
            })
        );
    }

    #[test]
    fn commands_without_argument_refuse_one() {
        assert_eq!(parse("DATA"), Ok(Command::Data));
        assert_eq!(parse("RSET"), Ok(Command::Rset));
        assert_eq!(parse("QUIT"), Ok(Command::Quit));
        assert_eq!(parse("DATA x"), syntax("DATA"));
        assert_eq!(parse("RSET x"), syntax("RSET"));
        assert_eq!(parse("QUIT now"), syntax("QUIT"));
    }

    #[test]
    fn noop_and_help_take_an_optional_argument() {
        assert_eq!(parse("NOOP"), Ok(Command::Noop));
        assert_eq!(parse("NOOP anything at all"), Ok(Command::Noop));
        assert_eq!(parse("HELP"), Ok(Command::Help(None)));
        assert_eq!(parse("HELP mail"), Ok(Command::Help(Some("mail"))));
    }

    #[test]
    fn vrfy_and_expn_need_an_argument() {
        assert_eq!(parse("VRFY bob"), Ok(Command::Vrfy("bob")));
        assert_eq!(parse("EXPN staff"), Ok(Command::Expn("staff")));
        assert_eq!(parse("VRFY"), syntax("VRFY user-or-address"));
        assert_eq!(parse("EXPN "), syntax("EXPN mailing-list"));
    }

    #[test]
    fn known_unimplemented_verbs_keep_their_spelling() {
        for verb in ["TURN", "SEND", "SOML", "SAML", "ETRN", "ATRN", "BDAT"] {
            assert_eq!(parse(verb), Ok(Command::NotImplemented(verb)));
        }
        assert_eq!(parse("bdat"), Ok(Command::NotImplemented("bdat")));
    }

    #[test]
    fn starttls_takes_no_argument() {
        assert_eq!(parse("starttls"), Ok(Command::StartTls));
        assert_eq!(parse("STARTTLS now"), syntax("STARTTLS"));
    }

    #[test]
    fn auth_has_a_mechanism_and_maybe_an_initial_response() {
        assert_eq!(
            parse("AUTH PLAIN AGJvYgBzZWNyZXQ="),
            Ok(Command::Auth {
                mechanism: "PLAIN",
                initial: Some("AGJvYgBzZWNyZXQ=")
            })
        );
        assert_eq!(
            parse("auth login"),
            Ok(Command::Auth {
                mechanism: "login",
                initial: None
            })
        );
        assert_eq!(parse("AUTH"), syntax("AUTH mechanism [initial-response]"));
        assert_eq!(
            parse("AUTH PLAIN a b"),
            syntax("AUTH mechanism [initial-response]")
        );
    }

    #[test]
    fn unknown_verb_is_unknown_command() {
        assert_eq!(parse("FOO"), Err(ParseError::UnknownCommand));
        assert_eq!(parse("DATAX"), Err(ParseError::UnknownCommand));
        assert_eq!(parse("MAIL:FROM:<a@b>"), Err(ParseError::UnknownCommand));
    }

    #[test]
    fn empty_or_blank_line_is_unknown_command() {
        assert_eq!(parse(""), Err(ParseError::UnknownCommand));
        assert_eq!(parse("   "), Err(ParseError::UnknownCommand));
        assert_eq!(parse(" QUIT"), Err(ParseError::UnknownCommand));
    }
}
