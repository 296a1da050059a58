use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;
use crate::config::Config;

const T0: UnixTime = UnixTime(1_795_500_900);

fn at(secs: u64) -> UnixTime {
    UnixTime(T0.0 + secs)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn settings() -> PolicySettings {
    let mut cfg = Config::defaults("mail.example.org");
    cfg.greylisting.enabled = true;
    PolicySettings::from_config(&cfg)
}

fn state() -> PolicyState {
    PolicyState::new(settings())
}

fn state_with(f: impl FnOnce(&mut PolicySettings)) -> PolicyState {
    let mut s = settings();
    f(&mut s);
    PolicyState::new(s)
}

const RATE_REFUSAL: RefuseReason = RefuseReason::RateExceeded {
    count: 20,
    per_secs: 5,
};

// --- message rate -------------------------------------------------------

#[test]
fn twenty_messages_in_five_seconds_pass_and_the_twenty_first_is_refused() {
    let mut s = state();
    let a = ip("192.0.2.1");
    for i in 0..20 {
        assert_eq!(s.check_message_rate(a, T0), Ok(()), "message {i}");
    }
    assert_eq!(s.check_message_rate(a, T0), Err(RATE_REFUSAL));
}

#[test]
fn the_rate_is_per_client_address() {
    let mut s = state();
    for _ in 0..20 {
        s.check_message_rate(ip("192.0.2.1"), T0).unwrap();
    }
    assert!(s.check_message_rate(ip("192.0.2.1"), T0).is_err());
    assert_eq!(s.check_message_rate(ip("192.0.2.2"), T0), Ok(()));
}

#[test]
fn a_steady_sender_within_the_rate_is_never_refused() {
    let mut s = state();
    // 4 per second is exactly 20 per 5 seconds.
    for sec in 0..60 {
        for _ in 0..4 {
            assert_eq!(s.check_message_rate(ip("192.0.2.1"), at(sec)), Ok(()));
        }
    }
}

#[test]
fn over_the_rate_the_client_waits_for_the_cooldown() {
    let mut s = state();
    let a = ip("192.0.2.1");
    for _ in 0..20 {
        s.check_message_rate(a, T0).unwrap();
    }
    assert!(s.check_message_rate(a, T0).is_err());
    // The bucket has drained after 5s, but the cool-down (1m) holds.
    assert!(s.check_message_rate(a, at(30)).is_err());
    assert!(s.check_message_rate(a, at(59)).is_err());
    assert_eq!(s.check_message_rate(a, at(60)), Ok(()));
}

#[test]
fn refused_attempts_do_not_count_against_the_rate() {
    let mut s = state_with(|s| s.rate_cooldown = Duration::ZERO);
    let a = ip("192.0.2.1");
    for _ in 0..20 {
        s.check_message_rate(a, T0).unwrap();
    }
    for _ in 0..100 {
        assert!(s.check_message_rate(a, T0).is_err());
    }
    // One second drains four messages' worth, however many were refused.
    for _ in 0..4 {
        assert_eq!(s.check_message_rate(a, at(1)), Ok(()));
    }
    assert!(s.check_message_rate(a, at(1)).is_err());
}

#[test]
fn an_ipv6_client_counts_as_its_slash_64() {
    let mut s = state();
    for i in 0..20 {
        let a = ip(&format!("2001:db8:1:2::{:x}", i + 1));
        s.check_message_rate(a, T0).unwrap();
    }
    assert!(s
        .check_message_rate(ip("2001:db8:1:2:ffff::1"), T0)
        .is_err());
    assert_eq!(s.check_message_rate(ip("2001:db8:1:3::1"), T0), Ok(()));
}

#[test]
fn a_mapped_ipv4_address_counts_as_the_ipv4_address() {
    let mut s = state();
    for _ in 0..20 {
        s.check_message_rate(ip("::ffff:192.0.2.1"), T0).unwrap();
    }
    assert!(s.check_message_rate(ip("192.0.2.1"), T0).is_err());
}

// --- connect: deny nets, penalties, trap blocks -------------------------

#[test]
fn a_denied_network_is_refused_at_connect_naming_the_entry() {
    let mut s = state_with(|s| s.deny_nets = vec!["203.0.113.0/24".parse().unwrap()]);
    assert_eq!(
        s.check_connect(ip("203.0.113.9"), T0),
        Err(RefuseReason::DeniedClient("203.0.113.0/24".into()))
    );
    assert_eq!(s.check_connect(ip("203.0.114.9"), T0), Ok(()));
}

#[test]
fn a_penalised_address_is_refused_until_the_penalty_ends() {
    let mut s = state();
    let a = ip("192.0.2.1");
    s.penalize(a, T0);
    assert_eq!(s.check_connect(a, at(1)), Err(RefuseReason::Penalized));
    assert_eq!(s.check_connect(ip("192.0.2.2"), at(1)), Ok(()));
    assert_eq!(s.check_connect(a, at(599)), Err(RefuseReason::Penalized));
    assert_eq!(s.check_connect(a, at(600)), Ok(()));
    assert_eq!(s.penalized_until(a, at(600)), None);
}

#[test]
fn a_trap_block_outranks_a_penalty_and_lasts_its_own_time() {
    let mut s = state();
    let a = ip("192.0.2.1");
    s.penalize(a, T0);
    s.trap_hit(a, T0);
    assert_eq!(s.check_connect(a, at(1)), Err(RefuseReason::TrapBlocked));
    assert_eq!(s.trap_blocked_until(a, at(1)), Some(at(86_400)));
    assert_eq!(
        s.check_connect(a, at(86_399)),
        Err(RefuseReason::TrapBlocked)
    );
    assert_eq!(s.check_connect(a, at(86_400)), Ok(()));
}

#[test]
fn a_second_block_never_shortens_the_first() {
    let mut s = state_with(|s| s.penalty = Duration::from_secs(100));
    let a = ip("192.0.2.1");
    s.penalize(a, at(50));
    s.settings.penalty = Duration::from_secs(10);
    s.penalize(a, at(60));
    assert_eq!(s.penalized_until(a, at(60)), Some(at(150)));
}

#[test]
fn a_zero_penalty_blocks_nobody() {
    let mut s = state_with(|s| s.penalty = Duration::ZERO);
    s.penalize(ip("192.0.2.1"), T0);
    assert_eq!(s.check_connect(ip("192.0.2.1"), T0), Ok(()));
    assert!(s.is_empty());
}

// --- greylisting --------------------------------------------------------

#[test]
fn greylisting_refuses_first_sight_and_passes_a_retry_after_the_delay() {
    let mut s = state();
    let a = ip("192.0.2.1");
    let g = |s: &mut PolicyState, t| s.check_greylist(a, "<a@x.example>", "<b@y.example>", t);
    assert_eq!(g(&mut s, T0), Err(RefuseReason::Greylisted));
    assert_eq!(g(&mut s, at(60)), Err(RefuseReason::Greylisted));
    assert_eq!(
        g(&mut s, at(300)),
        Err(RefuseReason::Greylisted),
        "a whole delay must have passed"
    );
    assert_eq!(g(&mut s, at(301)), Ok(()));
    assert_eq!(g(&mut s, at(302)), Ok(()), "auto-allowed after success");
}

#[test]
fn a_passed_triplet_stays_allowed_from_its_last_success() {
    let mut s = state();
    let a = ip("192.0.2.1");
    let g = |s: &mut PolicyState, t| s.check_greylist(a, "<a@x.example>", "<b@y.example>", t);
    let _ = g(&mut s, T0);
    g(&mut s, at(400)).unwrap();
    let pass_for = 36 * 86_400;
    g(&mut s, at(400 + pass_for - 1)).unwrap();
    // Refreshed by that success: still allowed well after the first pass_for.
    g(&mut s, at(400 + pass_for + 100)).unwrap();
    // Unused for longer than pass_for: greylisted again.
    assert_eq!(
        g(&mut s, at(400 + 3 * pass_for)),
        Err(RefuseReason::Greylisted)
    );
}

#[test]
fn a_retry_after_the_window_starts_over() {
    let mut s = state();
    let a = ip("192.0.2.1");
    let g = |s: &mut PolicyState, t| s.check_greylist(a, "<a@x.example>", "<b@y.example>", t);
    let _ = g(&mut s, T0);
    let window = 2 * 86_400;
    assert_eq!(g(&mut s, at(window + 1)), Err(RefuseReason::Greylisted));
    assert_eq!(g(&mut s, at(window + 200)), Err(RefuseReason::Greylisted));
    assert_eq!(g(&mut s, at(window + 302)), Ok(()));
}

#[test]
fn greylisting_keys_on_the_slash_24_sender_and_recipient() {
    let mut s = state();
    let _ = s.check_greylist(ip("192.0.2.1"), "<a@x.example>", "<b@y.example>", T0);
    // Same /24, other machine of the pool, case and brackets differ.
    assert_eq!(
        s.check_greylist(ip("192.0.2.200"), "A@X.example", "<B@Y.EXAMPLE>", at(301)),
        Ok(())
    );
    for (client, from, to) in [
        ("192.0.3.1", "<a@x.example>", "<b@y.example>"),
        ("192.0.2.1", "<other@x.example>", "<b@y.example>"),
        ("192.0.2.1", "<a@x.example>", "<c@y.example>"),
        ("192.0.2.1", "<>", "<b@y.example>"),
    ] {
        assert_eq!(
            s.check_greylist(ip(client), from, to, at(301)),
            Err(RefuseReason::Greylisted),
            "{client} {from} {to}"
        );
    }
}

#[test]
fn greylisting_off_lets_everything_through_and_records_nothing() {
    let mut s = state_with(|s| s.greylisting.enabled = false);
    assert_eq!(
        s.check_greylist(ip("192.0.2.1"), "<a@x>", "<b@y>", T0),
        Ok(())
    );
    assert!(s.is_empty());
    assert!(!s.is_dirty());
}

#[test]
fn ipv6_greylisting_keys_on_the_slash_64() {
    let mut s = state();
    let _ = s.check_greylist(ip("2001:db8:0:1::5"), "<a@x>", "<b@y>", T0);
    assert_eq!(
        s.check_greylist(ip("2001:db8:0:1:abcd::9"), "<a@x>", "<b@y>", at(301)),
        Ok(())
    );
}

// --- duplicates ---------------------------------------------------------

#[test]
fn the_same_message_id_to_the_same_recipient_is_seen_once_in_the_window() {
    let mut s = state();
    let id = "<1234@mua.example>";
    assert!(!s.seen_before(id, "bob@example.org", T0));
    assert!(s.seen_before(id, "bob@example.org", at(10)));
    assert!(
        s.seen_before(id, "Bob@Example.ORG", at(20)),
        "addresses compare without case"
    );
    assert!(!s.seen_before(id, "carol@example.org", at(20)));
    assert!(!s.seen_before("<5678@mua.example>", "bob@example.org", at(20)));
    // The window (1d) counts from the first copy.
    assert!(s.seen_before(id, "bob@example.org", at(86_399)));
    assert!(!s.seen_before(id, "bob@example.org", at(86_400)));
}

#[test]
fn message_ids_compare_exactly() {
    let mut s = state();
    assert!(!s.seen_before("<ABC@x>", "bob@example.org", T0));
    assert!(!s.seen_before("<abc@x>", "bob@example.org", T0));
}

#[test]
fn a_zero_window_or_empty_id_never_suppresses() {
    let mut s = state_with(|s| s.duplicate_window = Duration::ZERO);
    assert!(!s.seen_before("<a@b>", "bob@example.org", T0));
    assert!(!s.seen_before("<a@b>", "bob@example.org", T0));
    let mut s = state();
    assert!(!s.seen_before("", "bob@example.org", T0));
    assert!(!s.seen_before("", "bob@example.org", T0));
}

// --- bounds -------------------------------------------------------------

#[test]
fn a_full_table_drops_expired_entries_first() {
    let mut s = state_with(|s| s.table_cap = 3);
    s.penalize(ip("192.0.2.1"), T0);
    s.penalize(ip("192.0.2.2"), at(1));
    s.penalize(ip("192.0.2.3"), at(2));
    // At 600 the first has expired: it goes, the others stay.
    s.penalize(ip("192.0.2.4"), at(600));
    assert_eq!(s.penalties.len(), 3);
    for (a, want) in [(2, true), (3, true), (4, true), (1, false)] {
        let got = s.penalized_until(ip(&format!("192.0.2.{a}")), at(600));
        assert_eq!(got.is_some(), want, "192.0.2.{a}");
    }
}

#[test]
fn a_full_table_of_live_entries_evicts_the_oldest() {
    let mut s = state_with(|s| s.table_cap = 3);
    for (i, t) in [(1, 0), (2, 1), (3, 2), (4, 3)] {
        s.penalize(ip(&format!("192.0.2.{i}")), at(t));
    }
    assert_eq!(s.penalties.len(), 3);
    assert_eq!(s.penalized_until(ip("192.0.2.1"), at(4)), None);
    assert!(s.penalized_until(ip("192.0.2.4"), at(4)).is_some());
}

#[test]
fn a_flood_of_new_triplets_does_not_evict_senders_that_passed() {
    let mut s = state_with(|s| s.table_cap = 10);
    let _ = s.check_greylist(ip("192.0.2.1"), "<good@x>", "<b@y>", T0);
    s.check_greylist(ip("192.0.2.1"), "<good@x>", "<b@y>", at(400))
        .unwrap();
    for i in 0..1_000 {
        let from = format!("<spam{i}@z>");
        let _ = s.check_greylist(ip("198.51.100.1"), &from, "<b@y>", at(500));
    }
    assert_eq!(s.greylist.len(), 10);
    assert_eq!(
        s.check_greylist(ip("192.0.2.1"), "<good@x>", "<b@y>", at(600)),
        Ok(())
    );
}

#[test]
fn every_table_stays_within_its_cap() {
    let mut s = state_with(|s| s.table_cap = 50);
    for i in 0..500u32 {
        let a = IpAddr::from(Ipv4Addr::from(0x0A00_0000 + i * 256));
        s.penalize(a, T0);
        s.trap_hit(a, T0);
        let _ = s.check_message_rate(a, T0);
        let _ = s.check_greylist(a, "<a@x>", "<b@y>", T0);
        s.seen_before(&format!("<{i}@x>"), "b@y", T0);
    }
    assert_eq!(s.len(), 250);
}

// --- persistence --------------------------------------------------------

fn busy_state() -> PolicyState {
    let mut s = state();
    for _ in 0..21 {
        let _ = s.check_message_rate(ip("192.0.2.1"), T0);
    }
    s.check_message_rate(ip("2001:db8::7"), T0).unwrap();
    s.penalize(ip("192.0.2.2"), T0);
    s.trap_hit(ip("192.0.2.3"), T0);
    let _ = s.check_greylist(ip("192.0.2.4"), "<a@x>", "<b@y>", T0);
    let before = UnixTime(T0.0 - 400);
    let _ = s.check_greylist(ip("192.0.2.5"), "<a@x>", "<c@y>", before);
    s.check_greylist(ip("192.0.2.5"), "<a@x>", "<c@y>", T0)
        .unwrap();
    s.seen_before("<m@x>", "bob@example.org", T0);
    s
}

#[test]
fn encode_then_decode_keeps_every_decision() {
    let s = busy_state();
    let text = s.encode();
    assert!(text.starts_with("hato-policy 1\n"), "{text}");
    let mut back = state();
    let stats = back.decode(&text, T0);
    assert_eq!(back.encode(), text);
    assert_eq!(
        stats,
        Decoded {
            loaded: 7,
            expired: 0,
            skipped: 0
        },
        "{text}"
    );
    assert!(!back.is_dirty());
    let now = at(302);
    assert!(back.check_message_rate(ip("192.0.2.1"), at(59)).is_err());
    assert_eq!(
        back.check_connect(ip("192.0.2.2"), now),
        Err(RefuseReason::Penalized)
    );
    assert_eq!(
        back.check_connect(ip("192.0.2.3"), now),
        Err(RefuseReason::TrapBlocked)
    );
    assert_eq!(
        back.check_greylist(ip("192.0.2.4"), "<a@x>", "<b@y>", now),
        Ok(()),
        "the first attempt was remembered"
    );
    assert_eq!(
        back.check_greylist(ip("192.0.2.5"), "<a@x>", "<c@y>", now),
        Ok(())
    );
    assert!(back.seen_before("<m@x>", "bob@example.org", now));
}

#[test]
fn the_file_format_is_one_entry_per_line() {
    let mut s = state();
    s.penalize(ip("192.0.2.2"), T0);
    s.trap_hit(ip("2001:db8:1:2:3:4:5:6"), T0);
    for _ in 0..2 {
        s.check_message_rate(ip("192.0.2.1"), T0).unwrap();
    }
    let _ = s.check_greylist(ip("192.0.2.77"), "<a@x>", "<b@y>", T0);
    s.seen_before("<m@x>", "bob@example.org", T0);
    let text = s.encode();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "hato-policy 1");
    assert_eq!(lines[1], format!("rate 192.0.2.1 20 5 10 {} 0", T0.0));
    assert_eq!(lines[2], format!("penalty 192.0.2.2 {}", T0.0 + 600));
    assert_eq!(lines[3], format!("trap 2001:db8:1:2:: {}", T0.0 + 86_400));
    let grey: Vec<&str> = lines[4].split(' ').collect();
    assert_eq!(grey[..2], ["grey", "192.0.2.0"]);
    assert_eq!(grey[2].len(), 32);
    assert_eq!(grey[3..], [T0.0.to_string().as_str(), "-"]);
    assert!(lines[5].starts_with("dup "), "{text}");
    assert_eq!(lines.len(), 6);
}

#[test]
fn decode_drops_expired_entries() {
    let text = busy_state().encode();
    let mut back = state();
    let stats = back.decode(&text, at(400 * 86_400));
    assert_eq!(stats.loaded, 0, "{stats:?}");
    assert_eq!(stats.expired, 7);
    assert!(back.is_empty());
}

#[test]
fn decode_skips_garbage_lines_and_never_panics() {
    let good = format!("penalty 192.0.2.2 {}", T0.0 + 600);
    let text = format!(
        "hato-policy 1\n\
         {good}\n\
         penalty not-an-ip 1\n\
         penalty 192.0.2.9\n\
         penalty 192.0.2.9 99999999999999999999999\n\
         rate 192.0.2.1 20 5 x 1 1\n\
         grey 192.0.2.0 zz 1 -\n\
         grey 192.0.2.0 {:032x} 1 soon\n\
         dup 123 5\n\
         something else entirely\n\
         \u{0}\u{ffff} \t \n\
         \n",
        7u128
    );
    let mut s = state();
    let stats = s.decode(&text, T0);
    assert_eq!(stats.loaded, 1, "{stats:?}");
    assert_eq!(stats.skipped, 9, "{stats:?}");
    assert_eq!(
        s.check_connect(ip("192.0.2.2"), T0),
        Err(RefuseReason::Penalized)
    );
}

#[test]
fn decode_refuses_a_file_without_the_version_line() {
    let mut s = state();
    let text = format!("hato-policy 2\npenalty 192.0.2.2 {}\n", T0.0 + 600);
    assert_eq!(s.decode(&text, T0).skipped, 2);
    assert_eq!(s.decode("", T0), Decoded::default());
    assert_eq!(s.decode("garbage", T0).skipped, 1);
    assert!(s.is_empty());
}

#[test]
fn decode_of_arbitrary_bytes_never_panics() {
    let mut seed = 0x1234_5678_u64;
    let mut s = state();
    for _ in 0..200 {
        let mut text = String::from("hato-policy 1\n");
        for _ in 0..20 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let words = [
                "rate", "penalty", "trap", "grey", "dup", "-", "1", "::", "0.0.0.0",
            ];
            let w = words[(seed >> 33) as usize % words.len()];
            text.push_str(w);
            text.push(if seed & 1 == 0 { ' ' } else { '\n' });
            text.push_str(&(seed >> 40).to_string());
            text.push(if seed & 2 == 0 { ' ' } else { '\n' });
        }
        let _ = s.decode(&text, T0);
    }
}

#[test]
fn decode_shortens_blocks_to_the_settings_in_force() {
    let text = format!(
        "hato-policy 1\npenalty 192.0.2.2 {}\ntrap 192.0.2.3 {}\nrate 192.0.2.4 20 5 100 {} {}\n",
        u64::MAX,
        T0.0 + 10 * 86_400,
        T0.0,
        T0.0 + 86_400
    );
    let mut s = state();
    assert_eq!(s.decode(&text, T0).loaded, 3);
    assert_eq!(s.penalized_until(ip("192.0.2.2"), T0), Some(at(600)));
    assert_eq!(s.trap_blocked_until(ip("192.0.2.3"), T0), Some(at(86_400)));
    assert!(s.check_message_rate(ip("192.0.2.4"), at(59)).is_err());
    assert_eq!(s.check_message_rate(ip("192.0.2.4"), at(60)), Ok(()));
}

#[test]
fn a_changed_rate_keeps_the_cooldown_but_not_the_level() {
    let mut s = state();
    for _ in 0..20 {
        s.check_message_rate(ip("192.0.2.1"), T0).unwrap();
    }
    let text = s.encode();
    let mut back = state_with(|s| {
        s.messages_per_host = Rate {
            count: 5,
            per: Duration::from_secs(60),
        }
    });
    back.decode(&text, T0);
    for _ in 0..5 {
        back.check_message_rate(ip("192.0.2.1"), T0).unwrap();
    }
}

#[test]
fn changes_mark_the_state_dirty_until_taken() {
    let mut s = state();
    assert!(!s.is_dirty());
    s.check_connect(ip("192.0.2.1"), T0).unwrap();
    assert!(!s.is_dirty(), "a check that records nothing");
    s.check_message_rate(ip("192.0.2.1"), T0).unwrap();
    assert!(s.take_dirty());
    assert!(!s.is_dirty());
    s.seen_before("<a@b>", "c@d", T0);
    assert!(s.take_dirty());
    s.mark_dirty();
    assert!(s.is_dirty());
}

#[test]
fn purge_drops_what_has_expired() {
    let mut s = busy_state();
    assert_eq!(s.len(), 7);
    s.purge(at(86_400 * 2 + 1));
    // What is left: the passed greylisting triplet (36d) only.
    assert_eq!(s.len(), 1, "{}", s.encode());
}

#[test]
fn client_keys_and_grey_networks() {
    assert_eq!(client_key(ip("192.0.2.1")), ip("192.0.2.1"));
    assert_eq!(client_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    assert_eq!(client_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
    assert_eq!(grey_net(ip("192.0.2.77")), ip("192.0.2.0"));
    assert_eq!(grey_net(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
}
