//! The service extensions a server announces in its EHLO reply
//! (RFC 5321 §4.1.1.1: one keyword per line after the first), as far as the
//! client uses them: PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME
//! (RFC 6152), STARTTLS (RFC 3207), SMTPUTF8 (RFC 6531).

/// What the server offers. A server greeted with HELO offers nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// PIPELINING: MAIL, RCPTs and DATA may go in one write.
    pub pipelining: bool,
    /// SIZE, with its limit; `Some(0)` is "no fixed limit" (RFC 1870 §4).
    pub size: Option<u64>,
    /// 8BITMIME: `BODY=8BITMIME` is understood.
    pub eight_bit_mime: bool,
    /// STARTTLS is offered.
    pub starttls: bool,
    /// SMTPUTF8: UTF-8 addresses and headers are understood.
    pub smtputf8: bool,
}

impl Extensions {
    /// Reads the keywords from the text of an EHLO reply (lines joined
    /// with `\n`, the first being the greeting). Unknown keywords and
    /// malformed SIZE values are ignored.
    pub fn parse(text: &str) -> Self {
        let mut ext = Self::default();
        for line in text.split('\n').skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            if keyword.eq_ignore_ascii_case("PIPELINING") {
                ext.pipelining = true;
            } else if keyword.eq_ignore_ascii_case("8BITMIME") {
                ext.eight_bit_mime = true;
            } else if keyword.eq_ignore_ascii_case("SMTPUTF8") {
                ext.smtputf8 = true;
            } else if keyword.eq_ignore_ascii_case("STARTTLS") {
                ext.starttls = true;
            } else if keyword.eq_ignore_ascii_case("SIZE") {
                ext.size = match words.next() {
                    None => Some(0),
                    Some(n) => n.parse().ok().or(Some(0)),
                };
            }
        }
        ext
    }

    /// Returns the server's SIZE limit when it announced a fixed one.
    pub fn size_limit(&self) -> Option<u64> {
        self.size.filter(|&n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_found_case_blind() {
        let e = Extensions::parse("mx.example hi\npipelining\nSIZE 1000\n8bitmime\nStartTLS");
        assert!(e.pipelining && e.eight_bit_mime && e.starttls);
        assert_eq!(e.size_limit(), Some(1000));
    }

    #[test]
    fn the_greeting_line_is_no_keyword() {
        assert_eq!(Extensions::parse("PIPELINING"), Extensions::default());
    }

    #[test]
    fn size_without_a_number_has_no_limit() {
        for text in ["x\nSIZE", "x\nSIZE 0", "x\nSIZE lots"] {
            let e = Extensions::parse(text);
            assert_eq!(e.size, Some(0), "{text}");
            assert_eq!(e.size_limit(), None);
        }
    }
}
