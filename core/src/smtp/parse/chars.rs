//! Character classes of the SMTP grammar: RFC 5321 §4.1.2 (atext,
//! qtextSMTP, quoted-pairSMTP, Let-dig, Ldh-str, esmtp-keyword,
//! esmtp-value) and §4.1.3 (dcontent), widened by RFC 6531 §3.3 so that
//! UTF-8 (non-ASCII) characters count as `atext`, `qtextSMTP`, U-label
//! characters and `esmtp-value` characters.
//!
//! The parsers run on `&str` after a UTF-8 check, so "non-ASCII" here means
//! a well-formed UTF-8 sequence (RFC 6531 `UTF8-non-ascii`).

/// Tells whether `c` must never appear in a command line: a control
/// character other than HT (NUL, CR, LF, DEL, C1 controls, ...).
pub(super) fn is_forbidden(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// Tells whether `c` is white space between words: SP or HT.
pub(super) fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `atext` (RFC 5322 §3.2.3, used by RFC 5321 `Atom`) plus
/// `UTF8-non-ascii` (RFC 6531 §3.3).
pub(super) fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// `qtextSMTP` = %d32-33 / %d35-91 / %d93-126 (RFC 5321 §4.1.2) plus
/// `UTF8-non-ascii` (RFC 6531 §3.3): anything printable but `"` and `\`.
pub(super) fn is_qtext(c: char) -> bool {
    matches!(c, ' ' | '!' | '#'..='[' | ']'..='~') || !c.is_ascii()
}

/// The second character of `quoted-pairSMTP` = %d92 %d32-126.
pub(super) fn is_quotable(c: char) -> bool {
    matches!(c, ' '..='~')
}

/// `Let-dig` (RFC 5321 §4.1.2) plus the characters of U-labels
/// (RFC 6531 §3.3).
pub(super) fn is_let_dig(c: char) -> bool {
    c.is_ascii_alphanumeric() || !c.is_ascii()
}

/// A character of `Ldh-str` in a sub-domain: `Let-dig` or `-`.
pub(super) fn is_ldh(c: char) -> bool {
    is_let_dig(c) || c == '-'
}

/// A character of `Standardized-tag` (`Ldh-str`, ASCII only, §4.1.3).
pub(super) fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// `dcontent` = %d33-90 / %d94-126 (RFC 5321 §4.1.3): printable ASCII but
/// `[`, `\` and `]`.
pub(super) fn is_dcontent(c: char) -> bool {
    matches!(c, '!'..='Z' | '^'..='~')
}

/// A character of `esmtp-keyword` after the first: ALPHA / DIGIT / `-`.
pub(super) fn is_keyword_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// `esmtp-value` = 1*(%d33-60 / %d62-126) (RFC 5321 §4.1.2) plus
/// `UTF8-non-ascii` (RFC 6531 §3.3): printable but `=` and space.
pub(super) fn is_esmtp_value(c: char) -> bool {
    matches!(c, '!'..='<' | '>'..='~') || !c.is_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_is_the_only_allowed_control_character() {
        assert!(!is_forbidden('\t'));
        for c in ['\0', '\r', '\n', '\x07', '\x7f', '\u{85}'] {
            assert!(is_forbidden(c), "{c:?}");
        }
        assert!(!is_forbidden('é'));
    }

    #[test]
    fn quoted_text_excludes_quote_and_backslash() {
        assert!(is_qtext(' '));
        assert!(is_qtext('@'));
        assert!(!is_qtext('"'));
        assert!(!is_qtext('\\'));
        assert!(is_qtext('ü'));
    }

    #[test]
    fn atext_accepts_percent_and_bang_but_not_at() {
        assert!(is_atext('%'));
        assert!(is_atext('!'));
        assert!(!is_atext('@'));
        assert!(!is_atext('.'));
        assert!(is_atext('日'));
    }

    #[test]
    fn dcontent_excludes_brackets_and_backslash() {
        assert!(is_dcontent(':'));
        assert!(!is_dcontent('['));
        assert!(!is_dcontent(']'));
        assert!(!is_dcontent('\\'));
        assert!(!is_dcontent(' '));
    }

    #[test]
    fn esmtp_value_excludes_equals_sign() {
        assert!(is_esmtp_value('A'));
        assert!(!is_esmtp_value('='));
        assert!(!is_esmtp_value(' '));
    }
}
