use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::config::{DenyFrom, Dnsbl, Rate};

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::load(Some(text), &Overrides::default())
}

fn ok(text: &str) -> Config {
    load(text).unwrap_or_else(|e| panic!("{e}\nin:\n{text}"))
}

fn err(text: &str) -> ConfigError {
    match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const FULL: &str = r#"hostname = "mail.example.org"          # names the server
domains = ["example.org"]
data_dir = "/var/lib/hato"
postmaster = "alice@example.org"

[listen]
smtp = ["0.0.0.0:25"]
submission = ["0.0.0.0:587"]

[relay]
trusted_networks = ["192.168.1.0/24"]

[limits]
max_message_size = "10M"
max_recipients = 100
max_connections = 200
max_connections_per_host = 10

[aliases]
abuse = "alice@example.org"
"#;

#[test]
fn minimal_file_with_only_hostname_gives_the_safe_defaults() {
    let c = ok("hostname = \"mail.example.test\"\n");
    assert_eq!(c, Config::defaults("mail.example.test"));
    assert_eq!(c.domains, ["example.test", "mail.example.test"]);
    assert_eq!(c.postmaster, "postmaster@example.test");
    assert_eq!(c.data_dir, PathBuf::from("hato-data"));
    assert_eq!(c.listen.smtp, [addr("127.0.0.1:2525")]);
    assert_eq!(c.listen.submission, [addr("127.0.0.1:2587")]);
    let nets: Vec<String> = c
        .relay
        .trusted_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["127.0.0.0/8", "::1/128"]);
    assert_eq!(c.limits.max_message_size, 10 * 1024 * 1024);
    assert_eq!(c.timeouts.command, Duration::from_secs(300));
    assert_eq!(c.timeouts.data, Duration::from_secs(300));
}

#[test]
fn full_design_example_is_read() {
    let c = ok(FULL);
    assert_eq!(c.hostname, "mail.example.org");
    assert_eq!(c.domains, ["example.org"]);
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/hato"));
    assert_eq!(c.postmaster, "alice@example.org");
    assert_eq!(c.listen.smtp, [addr("0.0.0.0:25")]);
    assert_eq!(c.listen.submission, [addr("0.0.0.0:587")]);
    assert_eq!(c.relay.trusted_networks.len(), 1);
    assert!(c.relay.trusted_networks[0].contains("192.168.1.9".parse().unwrap()));
    assert_eq!(c.limits, Limits::default());
    assert_eq!(
        c.aliases.get("abuse").map(String::as_str),
        Some("alice@example.org")
    );
}

#[test]
fn no_file_and_no_hostname_says_how_to_give_one() {
    let e = Config::load(None, &Overrides::default()).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("hostname"));
    assert!(e.message.contains("--hostname"), "{e}");
    assert!(err("data_dir = \"x\"\n").message.contains("is required"));
}

#[test]
fn overrides_win_over_the_file() {
    let ov = Overrides {
        hostname: Some("Other.Example.NET.".into()),
        data_dir: Some("/tmp/h".into()),
    };
    let c = Config::load(Some(FULL), &ov).unwrap();
    assert_eq!(c.hostname, "other.example.net");
    assert_eq!(c.data_dir, PathBuf::from("/tmp/h"));
    assert_eq!(c.domains, ["example.org"], "explicit domains stay");
    let c = Config::load(None, &ov).unwrap();
    assert_eq!(c.domains, ["example.net", "other.example.net"]);
    let bad = Overrides {
        hostname: Some("bad_name".into()),
        data_dir: None,
    };
    let e = Config::load(None, &bad).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("--hostname"));
    assert_eq!(e.line, None);
}

#[test]
fn domains_default_to_the_parent_and_the_hostname() {
    assert_eq!(
        ok("hostname = \"mail.example.test\"").domains,
        ["example.test", "mail.example.test"]
    );
    assert_eq!(
        ok("hostname = \"a.b.example.test\"").domains,
        ["b.example.test", "a.b.example.test"]
    );
    assert_eq!(
        ok("hostname = \"example.org\"").domains,
        ["example.org"],
        "never a bare TLD"
    );
    assert_eq!(ok("hostname = \"labhost\"").domains, ["labhost"]);
    assert_eq!(
        ok("hostname = \"labhost\"").postmaster,
        "postmaster@labhost"
    );
}

#[test]
fn names_are_lower_cased_and_deduplicated() {
    let c = ok("hostname = \"MAIL.Example.ORG.\"\ndomains = [\"Example.org\", \"example.org.\", \"b.test\"]\n");
    assert_eq!(c.hostname, "mail.example.org");
    assert_eq!(c.domains, ["example.org", "b.test"]);
    assert_eq!(c.postmaster, "postmaster@example.org");
}

#[test]
fn bad_host_name_names_line_and_fix() {
    let e = err("# comment\nhostname = \"mail server.example.org\"\n");
    assert_eq!(e.line, Some(2));
    assert_eq!(e.key.as_deref(), Some("hostname"));
    assert!(e.message.contains("spaces are not allowed"), "{e}");
    let e =
        err("hostname = \"a.example\"\ndomains = [\n  \"ok.example\",\n  \"bad!.example\",\n]\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(4), Some("domains")),
        "{e}"
    );
    let e = err("hostname = \"a.example\"\ndomains = []\n");
    assert!(e.message.contains("at least one domain"), "{e}");
}

#[test]
fn unknown_top_level_key_is_refused_with_line_and_valid_keys() {
    let e = err("hostname = \"mail.example.org\"\n\nhostnme = \"x\"\n");
    assert_eq!(e.line, Some(3));
    assert_eq!(e.key.as_deref(), Some("hostnme"));
    assert!(
        e.message.contains("unknown key `hostnme` at the top level"),
        "{e}"
    );
    assert!(
        e.message.contains(
            "hostname, domains, data_dir, postmaster, listen, relay, limits, timeouts, aliases"
        ),
        "{e}"
    );
    let e = err("hostname = \"mail.example.org\"\n[limit]\nmax_recipients = 5\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("limit")), "{e}");
    assert!(e.message.contains("did you mean `limits`?"), "{e}");
}

#[test]
fn typo_in_nested_table_names_the_dotted_key() {
    let text = "hostname = \"mail.example.org\"\n\n[limits]\nmax_recipients = 100\nmax_mesage_size = \"10M\"\n";
    let e = err(text);
    assert_eq!(e.line, Some(5));
    assert_eq!(e.key.as_deref(), Some("limits.max_mesage_size"));
    assert!(e.message.contains("the keys of [limits] are: max_message_size, max_recipients, max_connections, max_connections_per_host"), "{e}");
    assert!(
        e.message.contains("did you mean `max_message_size`?"),
        "{e}"
    );
    // The same in dotted and inline forms.
    let e = err("hostname = \"m.example\"\nlimits.max_mesage_size = \"1M\"\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("limits.max_mesage_size"))
    );
    let e = err("hostname = \"m.example\"\nlisten = { smtp = [], smtps = [] }\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("listen.smtps")));
}

#[test]
fn top_level_key_below_a_table_says_to_move_it() {
    let e = err("[limits]\nhostname = \"mail.example.org\"\n");
    assert_eq!(e.key.as_deref(), Some("limits.hostname"));
    assert!(e.message.contains("belongs at the top of the file"), "{e}");
}

#[test]
fn bad_size_names_line_key_and_fix() {
    let text = "hostname = \"mail.example.org\"\n\n\n\n\n[limits]\nmax_message_size = \"10 MB\"\n";
    assert_eq!(
        err(text).to_string(),
        "line 7: limits.max_message_size: \"10 MB\" is not a size; write a number with K, M or G, e.g. \"10M\""
    );
    let e = err("hostname = \"m.example\"\n[limits]\nmax_message_size = 512\n");
    assert!(e.message.contains("at least \"1K\""), "{e}");
    let c = ok("hostname = \"m.example\"\n[limits]\nmax_message_size = 2048\n");
    assert_eq!(c.limits.max_message_size, 2048);
}

#[test]
fn bad_duration_names_line_and_fix() {
    let e = err("hostname = \"m.example\"\n[timeouts]\ncommand = \"5 minutes\"\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("timeouts.command"))
    );
    assert!(e.message.contains("e.g. \"30s\" or \"5m\""), "{e}");
    let e = err("hostname = \"m.example\"\n[timeouts]\ndata = 300\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("timeouts.data")));
    assert!(e.message.contains("has no unit; write \"300s\""), "{e}");
    let e = err("hostname = \"m.example\"\n[timeouts]\ndata = \"0s\"\n");
    assert!(e.message.contains("at least 1s"), "{e}");
    let c = ok("hostname = \"m.example\"\n[timeouts]\ncommand = \"1s\"\ndata = \"10m\"\n");
    assert_eq!(c.timeouts.command, Duration::from_secs(1));
    assert_eq!(c.timeouts.data, Duration::from_secs(600));
}

#[test]
fn counts_must_be_bare_positive_numbers() {
    let e = err("hostname = \"m.example\"\n[limits]\nmax_recipients = \"100\"\n");
    assert!(
        e.message.contains("write the number without quotes: 100"),
        "{e}"
    );
    let e = err("hostname = \"m.example\"\n[limits]\nmax_connections = 0\n");
    assert_eq!(e.key.as_deref(), Some("limits.max_connections"));
    let e = err("hostname = \"m.example\"\n[limits]\nmax_connections_per_host = -1\n");
    assert!(e.message.contains("negative"), "{e}");
    let e = err("hostname = \"m.example\"\n[limits]\nmax_recipients = 1.5\n");
    assert!(
        e.message
            .contains("found the number 1.5; write a whole number"),
        "{e}"
    );
    let c = ok("hostname = \"m.example\"\n[limits]\nmax_recipients = 20\n");
    assert_eq!(c.limits.max_recipients, 20, "allowed; explain() warns");
    assert!(c.explain().contains("Warning: limits.max_recipients is 20"));
}

#[test]
fn wrong_kind_of_value_says_what_to_write() {
    let e = err("hostname = \"m.example\"\n[listen]\nsmtp = \"0.0.0.0:25\"\n");
    assert_eq!(e.key.as_deref(), Some("listen.smtp"));
    assert!(
        e.message
            .starts_with("found the text \"0.0.0.0:25\"; write a list in square brackets"),
        "{e}"
    );
    let e = err("hostname = \"m.example\"\nlimits = 5\n");
    assert!(
        e.message
            .contains("found the number 5; write a table: [limits] on a line of its own"),
        "{e}"
    );
    let e = err("hostname = 5\n");
    assert!(e.message.contains("write a host name in quotes"), "{e}");
}

#[test]
fn syntax_error_has_a_line() {
    let e = err("hostname = \"m.example\"\n[limits\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("not valid TOML"), "{e}");
    let e = err("hostname = \"a.example\"\nhostname = \"b.example\"\n");
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn listeners_take_ipv4_ipv6_and_port_zero() {
    let c = ok("hostname = \"m.example\"\n[listen]\nsmtp = [\"[::1]:25\", \"127.0.0.1:0\"]\nsubmission = [\"127.0.0.1:0\"]\n");
    assert_eq!(c.listen.smtp, [addr("[::1]:25"), addr("127.0.0.1:0")]);
    assert_eq!(c.listen.submission, [addr("127.0.0.1:0")]);
    let c = ok("hostname = \"m.example\"\n[listen]\nsubmission = []\n");
    assert!(c.listen.submission.is_empty());
    assert_eq!(c.listen.smtp, [addr("127.0.0.1:2525")]);
}

#[test]
fn bad_or_clashing_listeners_are_refused() {
    let e = err("hostname = \"m.example\"\n[listen]\nsmtp = [\"localhost:25\"]\n");
    assert!(e.message.contains("host names are not allowed"), "{e}");
    let e = err("hostname = \"m.example\"\n[listen]\nsmtp = [\"::1\"]\n");
    assert!(e.message.contains("\"[::1]:25\""), "{e}");
    let e = err("hostname = \"m.example\"\n[listen]\nsmtp = [\"0.0.0.0:25\"]\nsubmission = [\"0.0.0.0:25\"]\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(4), Some("listen.submission"))
    );
    assert!(e.message.contains("listed twice (also on line 3)"), "{e}");
    let e = err("hostname = \"m.example\"\n[listen]\nsmtp = [\"0.0.0.0:25\", \"192.0.2.1:25\"]\n");
    assert!(e.message.contains("overlaps \"0.0.0.0:25\""), "{e}");
    ok("hostname = \"m.example\"\n[listen]\nsmtp = [\"0.0.0.0:25\", \"[::]:25\"]\n");
}

#[test]
fn trusted_network_errors_name_the_value() {
    let e = err("hostname = \"m.example\"\n[relay]\ntrusted_networks = [\"192.168.1.0/24\", \"10.0.0.0/33\"]\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("relay.trusted_networks"))
    );
    assert!(
        e.message
            .contains("`10.0.0.0/33` is not an IP address or CIDR network"),
        "{e}"
    );
    let e = err("hostname = \"m.example\"\n[relay]\ntrusted_networks = [\"lan\"]\n");
    assert!(e.message.contains("`lan`"), "{e}");
    let c = ok("hostname = \"m.example\"\n[relay]\ntrusted_networks = [\"2001:db8::/32\", \"192.0.2.7\"]\n");
    let nets: Vec<String> = c
        .relay
        .trusted_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["2001:db8::/32", "192.0.2.7/32"]);
    let c = ok("hostname = \"m.example\"\n[relay]\ntrusted_networks = []\n");
    assert!(c.relay.trusted_networks.is_empty());
}

#[test]
fn postmaster_must_be_an_address() {
    let e = err("hostname = \"m.example\"\npostmaster = \"alice\"\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("postmaster")));
    assert!(e.message.contains("write local@domain"), "{e}");
    assert_eq!(
        ok("hostname = \"m.example\"\npostmaster = \"Alice@Example.ORG\"\n").postmaster,
        "alice@example.org"
    );
}

#[test]
fn aliases_are_lower_cased_and_checked() {
    let c = ok("hostname = \"mail.example.org\"\n[aliases]\nAbuse = \"Alice@Example.org\"\n\"sales@example.org\" = \"bob@partner.example\"\n");
    assert_eq!(
        c.aliases.get("abuse").map(String::as_str),
        Some("alice@example.org")
    );
    assert_eq!(
        c.aliases.get("sales@example.org").map(String::as_str),
        Some("bob@partner.example")
    );
    assert!(c.explain().contains(
        "abuse@ every local domain → alice@example.org; sales@example.org → bob@partner.example."
    ));

    let e = err("hostname = \"mail.example.org\"\n[aliases]\nabuse = \"alice\"\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("aliases.abuse")));
    assert!(e.message.contains("write local@domain"), "{e}");
    let e = err("hostname = \"mail.example.org\"\n[aliases]\n\"sales@other.example\" = \"bob@example.org\"\n");
    assert_eq!(e.key.as_deref(), Some("aliases.\"sales@other.example\""));
    assert!(e.message.contains("not one of the local domains"), "{e}");
    let e = err("hostname = \"mail.example.org\"\n[aliases]\nabuse = \"a@example.org\"\nABUSE = \"b@example.org\"\n");
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("given twice (also on line 3"), "{e}");
    let e = err("hostname = \"mail.example.org\"\n[aliases]\npostmaster = \"a@example.org\"\n");
    assert!(e.message.contains("postmaster = "), "{e}");
    let e = err("hostname = \"mail.example.org\"\n[aliases]\n\"bad key\" = \"a@example.org\"\n");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("not a valid local part"), "{e}");
}

#[test]
fn data_dir_must_not_be_empty() {
    let e = err("hostname = \"m.example\"\ndata_dir = \"\"\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(2), Some("data_dir")));
    let ov = Overrides {
        hostname: Some("m.example".into()),
        data_dir: Some(PathBuf::new()),
    };
    assert_eq!(
        Config::load(None, &ov).unwrap_err().key.as_deref(),
        Some("--data-dir")
    );
}

/// DESIGN.md §3, less what is not supported yet.
const DESIGN_EXAMPLE: &str = r#"hostname = "mail.example.org"
domains = ["example.org"]

[relay]
trusted_networks = ["192.168.1.0/24"]
relay_to = ["partner.example"]

[limits]
messages_per_host = "20/5s"

[deny]
from = ["spam.example.net", "bad.host.example.com", "203.0.113.0/24"]
"#;

#[test]
fn the_defences_of_the_design_example_are_read() {
    let c = ok(DESIGN_EXAMPLE);
    assert_eq!(c.relay.relay_to, ["partner.example"]);
    assert_eq!(
        c.limits.messages_per_host,
        Rate {
            count: 20,
            per: Duration::from_secs(5)
        }
    );
    assert_eq!(
        c.deny.from,
        [
            DenyFrom::Name("spam.example.net".into()),
            DenyFrom::Name("bad.host.example.com".into()),
            DenyFrom::Net("203.0.113.0/24".parse().unwrap()),
        ]
    );
}

#[test]
fn every_new_key_is_read_with_its_value() {
    let c = ok(r#"hostname = "mail.example.org"
[relay]
relay_to = ["Partner.Example.", "partner.example", "other.example"]
[limits]
messages_per_host = "5/1m"
rate_cooldown = "10m"
max_errors = 3
max_transactions = 7
greet_pause = "0s"
bad_recipients_delay_after = 0
bad_recipients_limit = 4
bad_recipients_penalty = "1h"
duplicate_window = "2d"
[deny]
from = ["2001:db8::/32", "192.0.2.7", "Spam.Example.NET."]
senders = ["Bad@Spam.Example", "@junk.example", "worse.example"]
spam_traps = ["Trap@example.org"]
trap_block = "7d"
[greylisting]
enabled = true
delay = "1s"
retry_window = "1h"
pass_for = "30d"
"#);
    assert_eq!(c.relay.relay_to, ["partner.example", "other.example"]);
    let l = c.limits;
    assert_eq!(
        l.messages_per_host,
        Rate {
            count: 5,
            per: Duration::from_secs(60)
        }
    );
    assert_eq!(l.rate_cooldown, Duration::from_secs(600));
    assert_eq!((l.max_errors, l.max_transactions), (3, 7));
    assert_eq!(l.greet_pause, Duration::ZERO);
    assert_eq!(
        (l.bad_recipients_delay_after, l.bad_recipients_limit),
        (0, 4)
    );
    assert_eq!(l.bad_recipients_penalty, Duration::from_secs(3600));
    assert_eq!(l.duplicate_window, Duration::from_secs(2 * 86_400));
    assert_eq!(
        c.deny.from,
        [
            DenyFrom::Net("2001:db8::/32".parse().unwrap()),
            DenyFrom::Net("192.0.2.7".parse().unwrap()),
            DenyFrom::Name("spam.example.net".into()),
        ]
    );
    assert_eq!(
        c.deny.senders,
        ["bad@spam.example", "junk.example", "worse.example"]
    );
    assert_eq!(c.deny.spam_traps, ["trap@example.org"]);
    assert_eq!(c.deny.trap_block, Duration::from_secs(7 * 86_400));
    assert_eq!(
        c.greylisting,
        Greylisting {
            enabled: true,
            delay: Duration::from_secs(1),
            retry_window: Duration::from_secs(3600),
            pass_for: Duration::from_secs(30 * 86_400),
        }
    );
}

#[test]
fn the_new_keys_default_safely() {
    let c = ok("hostname = \"mail.example.org\"\n");
    assert_eq!(c.limits, Limits::default());
    assert_eq!(c.deny, Deny::default());
    assert_eq!(c.greylisting, Greylisting::default());
    assert!(!c.greylisting.enabled);
    assert!(c.relay.relay_to.is_empty());
    assert_eq!(c.dnsbl, Dnsbl::default());
    // An empty [deny] or [greylisting] table changes nothing.
    let c = ok("hostname = \"mail.example.org\"\n[deny]\n[greylisting]\n");
    assert_eq!(c, Config::defaults("mail.example.org"));
}

#[test]
fn a_relay_to_domain_that_is_local_is_refused() {
    let e = err("hostname = \"mail.example.org\"\n[relay]\nrelay_to = [\n  \"partner.example\",\n  \"Example.ORG\",\n]\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(5), Some("relay.relay_to"))
    );
    assert!(e.message.contains("also one of the local domains"), "{e}");
    let e = err("hostname = \"mail.example.org\"\n[relay]\nrelay_to = [\"bad_domain\"]\n");
    assert!(e.message.contains("not a valid host name"), "{e}");
}

#[test]
fn rates_are_written_count_slash_duration() {
    let e = err("hostname = \"m.example\"\n[limits]\nmessages_per_host = 20\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("limits.messages_per_host"))
    );
    assert!(e.message.contains("e.g. \"20/5s\""), "{e}");
    let e = err("hostname = \"m.example\"\n[limits]\nmessages_per_host = \"20 per 5s\"\n");
    assert!(e.message.contains("is not a rate"), "{e}");
    let e = err("hostname = \"m.example\"\n[limits]\nmessages_per_host = \"0/5s\"\n");
    assert!(e.message.contains("allows nothing"), "{e}");
}

#[test]
fn new_counts_must_be_positive_except_the_delay_threshold() {
    for key in ["max_errors", "max_transactions", "bad_recipients_limit"] {
        let e = err(&format!("hostname = \"m.example\"\n[limits]\n{key} = 0\n"));
        assert_eq!(e.key.as_deref(), Some(format!("limits.{key}").as_str()));
        assert!(e.message.contains("at least 1"), "{e}");
    }
    ok("hostname = \"m.example\"\n[limits]\nbad_recipients_delay_after = 0\n");
}

#[test]
fn zero_durations_turn_a_guard_off_where_that_makes_sense() {
    let c = ok("hostname = \"m.example\"\n[limits]\nrate_cooldown = \"0s\"\nbad_recipients_penalty = \"0s\"\nduplicate_window = \"0s\"\ngreet_pause = \"0s\"\n[deny]\ntrap_block = \"0s\"\n");
    assert!(c.limits.rate_cooldown.is_zero());
    assert!(c.limits.duplicate_window.is_zero());
    assert!(c.deny.trap_block.is_zero());
}

#[test]
fn a_greet_pause_clients_would_give_up_on_is_refused() {
    let e = err("hostname = \"m.example\"\n[limits]\ngreet_pause = \"5m\"\n");
    assert_eq!(e.key.as_deref(), Some("limits.greet_pause"));
    assert!(e.message.contains("RFC 5321"), "{e}");
    ok("hostname = \"m.example\"\n[limits]\ngreet_pause = \"30s\"\n");
}

#[test]
fn deny_from_takes_addresses_networks_and_names() {
    let e = err("hostname = \"m.example\"\n[deny]\nfrom = [\"203.0.113.0/33\"]\n");
    assert_eq!((e.line, e.key.as_deref()), (Some(3), Some("deny.from")));
    assert!(e.message.contains("is not an IP address or network"), "{e}");
    let e = err("hostname = \"m.example\"\n[deny]\nfrom = [\"203.0.113\"]\n");
    assert!(e.message.contains("is not an IP address or network"), "{e}");
    let e = err("hostname = \"m.example\"\n[deny]\nfrom = [\"spam host.example\"]\n");
    assert!(e.message.contains("spaces are not allowed"), "{e}");
    let e = err("hostname = \"m.example\"\n[deny]\nfrom = \"spam.example\"\n");
    assert!(e.message.contains("write a list"), "{e}");
    let c = ok(
        "hostname = \"m.example\"\n[deny]\nfrom = [\"::1\", \"spam.example\", \"SPAM.example\"]\n",
    );
    assert_eq!(c.deny.from.len(), 2, "duplicates dropped");
}

#[test]
fn deny_senders_take_addresses_and_domains() {
    let e = err("hostname = \"m.example\"\n[deny]\nsenders = [\"not an address\"]\n");
    assert_eq!(e.key.as_deref(), Some("deny.senders"));
    let e = err("hostname = \"m.example\"\n[deny]\nsenders = [\"a@@b.example\"]\n");
    assert!(e.message.contains("write local@domain"), "{e}");
}

#[test]
fn spam_traps_must_be_unused_local_addresses() {
    let base = "hostname = \"mail.example.org\"\npostmaster = \"alice@example.org\"\n[aliases]\nabuse = \"alice@example.org\"\n\"sales@example.org\" = \"bob@example.org\"\n[deny]\n";
    for (trap, words) in [
        ("trap@other.example", "not in one of the local domains"),
        ("trap", "write local@domain"),
        ("postmaster@example.org", "is the postmaster"),
        ("alice@example.org", "is the postmaster"),
        ("abuse@mail.example.org", "is also an alias"),
        ("sales@example.org", "is also an alias"),
    ] {
        let e = err(&format!("{base}spam_traps = [\"{trap}\"]\n"));
        assert_eq!(e.key.as_deref(), Some("deny.spam_traps"), "{trap}");
        assert_eq!(e.line, Some(7), "{trap}");
        assert!(e.message.contains(words), "{trap}: {e}");
    }
    let c = ok(&format!("{base}spam_traps = [\"trap@example.org\"]\n"));
    assert_eq!(c.deny.spam_traps, ["trap@example.org"]);
}

#[test]
fn greylisting_takes_a_switch_and_sane_durations() {
    let e = err("hostname = \"m.example\"\n[greylisting]\nenabled = \"yes\"\n");
    assert_eq!(e.key.as_deref(), Some("greylisting.enabled"));
    assert!(e.message.contains("write true or false"), "{e}");
    let e = err("hostname = \"m.example\"\n[greylisting]\nenabled = \"true\"\n");
    assert!(e.message.contains("write true without quotes"), "{e}");
    let e = err("hostname = \"m.example\"\n[greylisting]\nenabled = 1\n");
    assert!(e.message.contains("true or false"), "{e}");
    let e = err("hostname = \"m.example\"\n[greylisting]\ndelay = \"0s\"\n");
    assert_eq!(e.key.as_deref(), Some("greylisting.delay"));
    assert!(e.message.contains("at least 1s"), "{e}");
    let e =
        err("hostname = \"m.example\"\n[greylisting]\ndelay = \"1h\"\nretry_window = \"30m\"\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(4), Some("greylisting.retry_window"))
    );
    assert!(e.message.contains("must be longer than the delay"), "{e}");
    let e = err("hostname = \"m.example\"\n[greylisting]\ndelay = \"3d\"\n");
    assert_eq!(e.key.as_deref(), Some("greylisting.delay"), "{e}");
}

#[test]
fn unknown_keys_of_the_new_tables_list_the_valid_ones() {
    let e = err("hostname = \"m.example\"\n[deny]\nspam_trap = [\"t@m.example\"]\n");
    assert!(
        e.message
            .contains("the keys of [deny] are: from, senders, spam_traps, trap_block"),
        "{e}"
    );
    assert!(e.message.contains("did you mean `spam_traps`?"), "{e}");
    let e = err("hostname = \"m.example\"\n[greylisting]\nenable = true\n");
    assert!(e.message.contains("did you mean `enabled`?"), "{e}");
}

#[test]
fn an_empty_trusted_network_list_is_accepted() {
    let c = ok("hostname = \"m.example\"\n[relay]\ntrusted_networks = []\n[limits]\ngreet_pause = \"0s\"\n");
    assert!(c.relay.trusted_networks.is_empty());
    assert!(c.limits.greet_pause.is_zero());
}

#[test]
fn dnsbl_zones_and_dns_servers_are_read() {
    let c = ok("hostname = \"m.example\"\n[dnsbl]\nzones = [\"Zen.Example.NET.\", \"zen.example.net\", \"bl.example\"]\n[delivery]\ndns_servers = [\"192.0.2.53\", \"[2001:db8::53]:5353\", \"192.0.2.54:53\"]\n");
    assert_eq!(c.dnsbl.zones, ["zen.example.net", "bl.example"]);
    assert_eq!(
        c.delivery.dns_servers,
        [
            addr("192.0.2.53:53"),
            addr("[2001:db8::53]:5353"),
            addr("192.0.2.54:53")
        ]
    );
    let c = ok("hostname = \"m.example\"\n");
    assert!(c.dnsbl.zones.is_empty(), "block lists are opt-in");
    assert!(c.delivery.dns_servers.is_empty(), "resolv.conf");
}

#[test]
fn bad_dns_server_says_what_to_write() {
    let e =
        err("hostname = \"m.example\"\n[delivery]\ndns_servers = [\n  \"ns.example.net\",\n]\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(4), Some("delivery.dns_servers"))
    );
    assert!(e.message.contains("host names are not allowed"), "{e}");
    let e = err("hostname = \"m.example\"\n[delivery]\ndns_servers = [\"192.0.2.53:0\"]\n");
    assert!(e.message.contains("port 0"), "{e}");
    let e = err("hostname = \"m.example\"\n[dnsbl]\nzones = [\"bad zone\"]\n");
    assert_eq!(e.key.as_deref(), Some("dnsbl.zones"));
}

#[test]
fn delivery_keys_and_routes_are_read() {
    let c = ok("hostname = \"m.example\"\n[delivery]\nsmtp_port = 2525\nsmarthost = \"Relay.Example.NET:587\"\nretry = [\"1s\", \"2m\"]\nmax_lifetime = \"2d\"\ndelay_warning = \"0s\"\nconnections_per_destination = 2\nmax_connections = 8\nmax_hops = 30\ntimeout = \"20s\"\n[routes]\n\"Partner.Example\" = \"10.0.0.5\"\n\"v6.example\" = \"[2001:db8::25]:2525\"\n");
    let d = &c.delivery;
    assert_eq!(d.smtp_port, 2525);
    assert_eq!(
        d.smarthost.as_ref().map(ToString::to_string).as_deref(),
        Some("relay.example.net:587")
    );
    assert_eq!(d.retry, [Duration::from_secs(1), Duration::from_secs(120)]);
    assert_eq!(d.max_lifetime, Duration::from_secs(2 * 86400));
    assert_eq!(d.delay_warning, None, "0s turns the warning off");
    assert_eq!(
        (d.connections_per_destination, d.max_connections, d.max_hops),
        (2, 8, 30)
    );
    assert_eq!(d.timeout, Some(Duration::from_secs(20)));
    let routes: Vec<String> = d.routes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        routes,
        ["partner.example=10.0.0.5", "v6.example=[2001:db8::25]:2525"]
    );
    let text = c.explain();
    assert!(text.contains("smarthost relay.example.net:587"), "{text}");
    assert!(
        text.contains("Route: mail for partner.example goes to 10.0.0.5"),
        "{text}"
    );

    let d = ok("hostname = \"m.example\"\n").delivery;
    assert_eq!((d.smtp_port, d.max_hops, d.smarthost), (25, 50, None));
    assert_eq!(d.delay_warning, Some(Duration::from_secs(4 * 3600)));
}

#[test]
fn bad_delivery_keys_say_what_to_write() {
    for (text, key, needle) in [
        (
            "[delivery]\nsmtp_port = 0\n",
            "delivery.smtp_port",
            "1 to 65535",
        ),
        (
            "[delivery]\nsmtp_port = \"25\"\n",
            "delivery.smtp_port",
            "without quotes",
        ),
        (
            "[delivery]\nsmarthost = \"relay.example:x\"\n",
            "delivery.smarthost",
            "port",
        ),
        (
            "[delivery]\nsmarthost = \"[10.0.0.1\"\n",
            "delivery.smarthost",
            "bracket",
        ),
        ("[delivery]\nretry = []\n", "delivery.retry", "at least one"),
        (
            "[delivery]\nretry = [\"0s\"]\n",
            "delivery.retry",
            "at least 1s",
        ),
        (
            "[delivery]\nmax_connections = 0\n",
            "delivery.max_connections",
            "at least 1",
        ),
        (
            "[delivery]\nmax_lifetime = \"10s\"\n",
            "delivery.max_lifetime",
            "at least 1m",
        ),
        (
            "[routes]\n\"m.example\" = \"10.0.0.5\"\n",
            "routes",
            "local domain",
        ),
        (
            "[routes]\n\"bad domain\" = \"10.0.0.5\"\n",
            "routes",
            "not a valid host name",
        ),
    ] {
        let e = err(&format!(
            "hostname = \"m.example\"\ndomains = [\"m.example\"]\n{text}"
        ));
        assert!(
            e.key.as_deref().is_some_and(|k| k.starts_with(key)),
            "{text}: {e}"
        );
        assert!(e.message.contains(needle), "{text}: {e}");
    }
}

#[test]
fn local_delivery_and_mailbox_owner_are_read() {
    use crate::config::{LmtpTarget, LocalMethod, MailboxOwner};
    let c = ok("hostname = \"m.example\"\n");
    assert_eq!(c.delivery.local, LocalMethod::Maildir);
    assert_eq!(c.delivery.mailbox_owner, None);
    let c = ok("hostname = \"m.example\"\n[delivery]\nlocal = \"lmtp:127.0.0.1:24\"\nmailbox_owner = \"vmail\"\n");
    assert_eq!(
        c.delivery.local,
        LocalMethod::Lmtp(LmtpTarget::Tcp(addr("127.0.0.1:24")))
    );
    assert_eq!(
        c.delivery.mailbox_owner,
        Some(MailboxOwner::User("vmail".into()))
    );
    let c = ok("hostname = \"m.example\"\n[delivery]\nmailbox_owner = 5000\n");
    assert_eq!(
        c.delivery.mailbox_owner,
        Some(MailboxOwner::Id {
            uid: 5000,
            gid: None
        })
    );
}

#[test]
fn bad_local_delivery_says_what_to_write() {
    let e = err("hostname = \"m.example\"\n[delivery]\nlocal = \"lmtp:localhost:24\"\n");
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("delivery.local"))
    );
    assert!(e.message.contains("host names are not allowed"), "{e}");
    let e = err("hostname = \"m.example\"\n[delivery]\nmailbox_owner = \"a b\"\n");
    assert_eq!(e.key.as_deref(), Some("delivery.mailbox_owner"));
    assert!(e.message.contains("vmail"), "{e}");
}

#[test]
fn tls_keys_submissions_and_auth_limits() {
    let c = ok(
        "hostname = \"m.example\"\n[listen]\nsubmissions = [\"0.0.0.0:465\"]\n\
                [tls]\ncertificate = \"/etc/hato/cert.pem\"\nkey = \"/etc/hato/key.pem\"\n\
                [limits]\nauth_failures = \"3/1h\"\nmessages_per_user = \"500/1d\"\n",
    );
    assert_eq!(c.listen.submissions, ["0.0.0.0:465".parse().unwrap()]);
    assert_eq!(
        c.tls.certificate.as_deref(),
        Some(std::path::Path::new("/etc/hato/cert.pem"))
    );
    assert_eq!(
        c.tls.key.as_deref(),
        Some(std::path::Path::new("/etc/hato/key.pem"))
    );
    assert_eq!(c.limits.auth_failures.count, 3);
    assert_eq!(c.limits.messages_per_user.per, Duration::from_secs(86_400));
    let d = ok("hostname = \"m.example\"\n");
    assert!(d.listen.submissions.is_empty());
    assert_eq!(d.tls, crate::config::Tls::default());
    assert_eq!(d.limits.messages_per_user.count, 100);
}

#[test]
fn a_certificate_without_its_key_is_refused() {
    let e = err("hostname = \"m.example\"\n[tls]\ncertificate = \"/c.pem\"\n");
    assert_eq!(e.key.as_deref(), Some("tls"));
    assert_eq!(e.line, Some(3));
    assert!(
        e.message.contains("write both tls.certificate and tls.key"),
        "{e}"
    );
    let e = err("hostname = \"m.example\"\n[listen]\nsmtp = [\"0.0.0.0:465\"]\nsubmissions = [\"0.0.0.0:465\"]\n");
    assert_eq!(e.key.as_deref(), Some("listen.submissions"));
}
