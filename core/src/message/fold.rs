//! Keeping generated lines within the limits of RFC 5322 §2.1.1: header
//! fields folded (§2.2.3: CRLF followed by white space) near 78
//! characters, body text wrapped, and no line over 998 octets even when a
//! single word is longer (then it is cut, the only change to its text).
//! Also the sanitising of text that came from elsewhere (a remote
//! server's reply, an address) before it goes into a header.

/// The soft limit: lines are wrapped or folded at this length when they can be.
pub(crate) const SOFT_LIMIT: usize = 78;

/// The longest piece of an unbreakable word put on one line: well below
/// the hard limit of 998 octets (RFC 5322 §2.1.1, CRLF not counted), with
/// room for an indent or a field name.
const MAX_PIECE: usize = 900;

/// Returns `name: value` as a header field ending in CRLF, folded at the
/// spaces of `value` so that lines stay near [`SOFT_LIMIT`] and always
/// within [`HARD_LIMIT`]. `value` must already be one line (see
/// [`one_line`]).
pub(crate) fn fold_field(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 8);
    out.push_str(name);
    out.push(':');
    let mut line_len = out.len();
    for word in pieces(value) {
        let fits = line_len + 1 + word.len() <= SOFT_LIMIT;
        if !fits && line_len > 1 {
            out.push_str("\r\n");
            line_len = 0;
        }
        out.push(' ');
        out.push_str(word);
        line_len += 1 + word.len();
    }
    out.push_str("\r\n");
    out
}

/// Appends `text` to `out` as body lines starting with `indent`, wrapped at
/// the spaces near [`SOFT_LIMIT`], each ending in CRLF. Line breaks in
/// `text` are kept.
pub(crate) fn wrap_into(out: &mut String, indent: &str, text: &str) {
    for paragraph in text.split('\n') {
        let mut line_len = 0;
        out.push_str(indent);
        line_len += indent.len();
        let mut first = true;
        for word in pieces(paragraph) {
            if !first && line_len + 1 + word.len() > SOFT_LIMIT {
                out.push_str("\r\n");
                out.push_str(indent);
                line_len = indent.len();
                first = true;
            }
            if !first {
                out.push(' ');
                line_len += 1;
            }
            out.push_str(word);
            line_len += word.len();
            first = false;
        }
        out.push_str("\r\n");
    }
}

/// Splits at spaces and cuts words longer than [`MAX_PIECE`] bytes (at
/// character boundaries), so each piece fits on a line.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split(' ').filter(|w| !w.is_empty()).flat_map(|word| {
        let mut rest = word;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let mut cut = rest.len().min(MAX_PIECE);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, tail) = rest.split_at(cut);
            rest = tail;
            Some(piece)
        })
    })
}

/// Returns `text` as one line of printable US-ASCII: line breaks and tabs
/// become spaces, other control characters and non-ASCII characters `?`.
/// For fields of `message/delivery-status`, which are US-ASCII (RFC 3464
/// §2.1.1).
pub(crate) fn one_line_ascii(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\r' | '\n' | '\t' => ' ',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect()
}

/// Returns `text` as one line: line breaks and tabs become spaces, other
/// control characters `?`; UTF-8 is kept.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\r' | '\n' | '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hard limit of RFC 5322 §2.1.1, CRLF not counted.
    const HARD_LIMIT: usize = 998;

    fn lines(s: &str) -> Vec<&str> {
        s.split("\r\n").collect()
    }

    #[test]
    fn short_fields_stay_on_one_line() {
        assert_eq!(
            fold_field("Subject", "hello world"),
            "Subject: hello world\r\n"
        );
    }

    #[test]
    fn long_fields_fold_at_spaces_and_unfold_to_the_same_words() {
        let value = "word ".repeat(60);
        let f = fold_field("Diagnostic-Code", value.trim_end());
        assert!(lines(&f).iter().all(|l| l.len() <= SOFT_LIMIT), "{f}");
        let unfolded = f.replace("\r\n ", " ");
        assert_eq!(
            unfolded,
            format!("Diagnostic-Code: {}\r\n", value.trim_end())
        );
    }

    #[test]
    fn an_unbreakable_word_is_cut_below_the_hard_limit() {
        let word = "x".repeat(2500);
        let f = fold_field("Diagnostic-Code", &format!("smtp; {word}"));
        assert!(lines(&f).iter().all(|l| l.len() <= HARD_LIMIT));
        assert_eq!(f.matches('x').count(), 2500);
        let mut body = String::new();
        wrap_into(&mut body, "  ", &format!("{}é", "é".repeat(1200)));
        assert!(lines(&body).iter().all(|l| l.len() <= HARD_LIMIT));
        assert_eq!(body.matches('é').count(), 1201);
    }

    #[test]
    fn wrapping_keeps_paragraphs_and_indents() {
        let mut out = String::new();
        wrap_into(&mut out, "    ", &format!("{}\nsecond", "aaaa ".repeat(30)));
        let l = lines(&out);
        assert!(l.len() >= 3);
        assert!(l.iter().all(|x| x.is_empty() || x.starts_with("    ")));
        assert_eq!(l[l.len() - 2], "    second");
    }

    #[test]
    fn sanitising_removes_line_breaks_and_controls() {
        assert_eq!(one_line_ascii("a\r\nb\u{0}cé"), "a  b?c?");
        assert_eq!(one_line("a\r\nb\u{7}cé"), "a  b?cé");
    }
}
