//! Property tests of the command parser (RFC 5321 §4.1.1, §4.1.2):
//! it never panics, and valid mailboxes survive `Display` then parsing.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::{parse_command, parse_mailbox};
use crate::smtp::address::{
    AddressLiteral, Domain, ForwardPath, Host, LocalPart, Mailbox, ReversePath,
};
use crate::smtp::command::Command;

/// A dot-string local part, ASCII atext with a few UTF-8 letters.
fn dot_string() -> impl Strategy<Value = LocalPart> {
    "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~é日-]{1,12}(\\.[a-zA-Z0-9!#$%&'*+/=?^_`{|}~ü-]{1,12}){0,3}"
        .prop_filter("at most 64 octets", |s| s.len() <= 64)
        .prop_map(LocalPart::dot_string)
}

/// A quoted local part: any printable ASCII (quotes and backslashes
/// included, escaped by `Display`) plus a little UTF-8.
fn quoted() -> impl Strategy<Value = LocalPart> {
    "[ -~ß語]{0,20}"
        .prop_filter("at most 64 octets quoted", |s| {
            let lp = LocalPart {
                value: s.clone(),
                quoted: true,
            };
            lp.to_string().len() <= 64
        })
        .prop_map(|value| LocalPart {
            value,
            quoted: true,
        })
}

/// A domain of one to four labels, maybe with a trailing dot.
fn domain() -> impl Strategy<Value = Domain> {
    let label = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?|bücher|例子";
    (prop::collection::vec(label, 1..5), any::<bool>()).prop_map(|(labels, dot)| {
        let mut name = labels.join(".");
        if dot {
            name.push('.');
        }
        Domain::new(name)
    })
}

/// Any address literal.
fn literal() -> impl Strategy<Value = AddressLiteral> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| AddressLiteral::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| AddressLiteral::V6(Ipv6Addr::from(o))),
        (
            "[a-zA-Z0-9-]{0,6}[a-zA-Z0-9]"
                .prop_filter("not IPv6", |t| !t.eq_ignore_ascii_case("ipv6")),
            "[!-Z^-~]{1,20}"
        )
            .prop_map(|(tag, content)| AddressLiteral::General { tag, content }),
    ]
}

fn mailbox() -> impl Strategy<Value = Mailbox> {
    (
        prop_oneof![dot_string(), quoted()],
        prop_oneof![
            3 => domain().prop_map(Host::Domain),
            1 => literal().prop_map(Host::Literal),
        ],
    )
        .prop_map(|(local, host)| Mailbox { local, host })
}

/// Printable ASCII with the characters that matter to paths made likely.
fn path_soup() -> impl Strategy<Value = String> {
    "[ -~]{0,40}|[<>@\"\\\\\\[\\]:,. a-z0-9=-]{0,300}"
}

proptest! {
    #[test]
    fn parse_command_never_panics(line in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_command(&line);
    }

    #[test]
    fn mail_and_rcpt_lines_never_panic(
        verb in "MAIL FROM:|RCPT TO:|mail from: |EHLO |",
        soup in path_soup(),
    ) {
        let _ = parse_command(format!("{verb}{soup}").as_bytes());
        let _ = parse_command(format!("{verb}<{soup}").as_bytes());
        let _ = parse_mailbox(&soup);
    }

    #[test]
    fn mail_from_round_trips(mailbox in mailbox()) {
        let line = format!("MAIL FROM:<{mailbox}>");
        match parse_command(line.as_bytes()) {
            Ok(Command::Mail { from: ReversePath::Mailbox(parsed), .. }) => {
                prop_assert_eq!(parsed, mailbox);
            }
            other => prop_assert!(false, "{line} gave {other:?}"),
        }
    }

    #[test]
    fn rcpt_to_round_trips(mailbox in mailbox()) {
        let line = format!("RCPT TO:<{mailbox}>");
        match parse_command(line.as_bytes()) {
            Ok(Command::Rcpt { to: ForwardPath::Mailbox { mailbox: parsed, had_route } }) => {
                prop_assert!(!had_route);
                prop_assert_eq!(parsed, mailbox);
            }
            other => prop_assert!(false, "{line} gave {other:?}"),
        }
    }

    #[test]
    fn bare_mailbox_round_trips(mailbox in mailbox()) {
        prop_assert_eq!(parse_mailbox(&mailbox.to_string()), Ok(mailbox));
    }
}
