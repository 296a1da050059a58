//! Host names, domains and mail addresses as an administrator writes them,
//! checked and normalized (lower case, no trailing dot).

/// Normalizes a host or domain name (RFC 1035 §2.3.1 labels): lower case,
/// one trailing dot removed.
///
/// # Errors
/// Names the fault and shows a valid name.
pub(super) fn host_name(s: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!("\"{s}\" is not a valid host name: {why}; write one such as \"mail.example.org\"")
    };
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        let what = if c.is_whitespace() {
            "spaces are not allowed".to_owned()
        } else {
            format!("'{c}' is not allowed (only letters, digits, hyphens and dots)")
        };
        return Err(bad(&what));
    }
    if name.len() > 253 {
        return Err(bad("it is longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(bad("it has an empty part between dots"));
        }
        if label.len() > 63 {
            return Err(bad("a part between dots is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a part between dots begins or ends with a hyphen"));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad("it looks like an IP address, not a name"));
    }
    Ok(name.to_ascii_lowercase())
}

/// Normalizes a mailbox `local@domain` (RFC 5321 §4.1.2, dot-string local
/// parts only) to lower case.
///
/// # Errors
/// Shows how to write an address.
pub(super) fn mailbox(s: &str) -> Result<String, String> {
    let bad =
        || format!("\"{s}\" is not a mail address; write local@domain, e.g. \"alice@example.org\"");
    let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
    let local = local_part(local).map_err(|_| bad())?;
    let domain = host_name(domain).map_err(|_| bad())?;
    Ok(format!("{local}@{domain}"))
}

/// Normalizes the local part of an address (a dot-string of RFC 5321
/// §4.1.2: atoms of `atext` joined by single dots) to lower case.
///
/// # Errors
/// Says which characters a local part may hold.
pub(super) fn local_part(s: &str) -> Result<String, String> {
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "\"{s}\" is not a valid local part; use letters, digits, dots (not two in a row) \
             and - _ + only, e.g. \"abuse\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_lower_cased_without_trailing_dot() {
        assert_eq!(
            host_name("Mail.Example.ORG."),
            Ok("mail.example.org".into())
        );
        assert_eq!(host_name("localhost"), Ok("localhost".into()));
        assert_eq!(host_name("a-1.example"), Ok("a-1.example".into()));
    }

    #[test]
    fn bad_host_names_say_why() {
        let e = host_name("mail_1.example.org").unwrap_err();
        assert!(e.contains("'_' is not allowed"), "{e}");
        assert!(host_name("mail..example")
            .unwrap_err()
            .contains("empty part"));
        assert!(host_name("-mail.example").unwrap_err().contains("hyphen"));
        assert!(host_name("mail.example.org x")
            .unwrap_err()
            .contains("spaces"));
        assert!(host_name("192.168.1.1").unwrap_err().contains("IP address"));
        assert!(host_name("").is_err());
        assert!(host_name(".").is_err());
        assert!(host_name("mail.example.org..").is_err());
        assert!(host_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn mailboxes_are_local_at_domain() {
        assert_eq!(
            mailbox("Alice.B+tag@Example.org"),
            Ok("alice.b+tag@example.org".into())
        );
        for bad in [
            "alice",
            "@example.org",
            "alice@",
            "a..b@example.org",
            "a b@x.org",
            "\"a\"@x.org",
        ] {
            let e = mailbox(bad).unwrap_err();
            assert!(e.contains("write local@domain"), "{bad}: {e}");
        }
        assert!(local_part("abuse").is_ok());
        assert!(local_part("ab@use").is_err());
    }
}
