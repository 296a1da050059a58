//! Who an authenticated user may send as (RFC 6409 §6.1, "the MSA MUST
//! ensure that the sender is the authenticated user"; RFC 4954 §9): the
//! user's own address, or an address of a local domain that `[aliases]`
//! points at that user.

use crate::config::Config;

/// Tells whether `user` (a users-file address, lower case) owns `address`.
pub fn user_owns(cfg: &Config, user: &str, address: &str) -> bool {
    let address = address.trim().to_ascii_lowercase();
    let user = user.to_ascii_lowercase();
    if address == user {
        return true;
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    if !cfg.is_local_domain(domain) {
        return false;
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let target = cfg
        .aliases
        .get(&format!("{local}@{domain}"))
        .or_else(|| cfg.aliases.get(local));
    target.is_some_and(|t| t.eq_ignore_ascii_case(&user))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cfg() -> Config {
        let mut c = Config::defaults("mail.example.test");
        c.aliases
            .insert("sales".into(), "alice@example.test".into());
        c.aliases
            .insert("boss@example.test".into(), "alice@example.test".into());
        c.aliases.insert("abuse".into(), "bob@example.test".into());
        c
    }

    #[test]
    fn own_address_any_case() {
        assert!(user_owns(
            &cfg(),
            "alice@example.test",
            "Alice@Example.TEST"
        ));
    }

    #[test]
    fn aliases_pointing_at_the_user() {
        let c = cfg();
        assert!(user_owns(&c, "alice@example.test", "sales@example.test"));
        assert!(user_owns(
            &c,
            "alice@example.test",
            "sales@mail.example.test"
        ));
        assert!(user_owns(&c, "alice@example.test", "boss@example.test"));
        assert!(!user_owns(&c, "alice@example.test", "abuse@example.test"));
    }

    #[test]
    fn other_people_and_other_domains() {
        let c = cfg();
        assert!(!user_owns(&c, "alice@example.test", "bob@example.test"));
        assert!(!user_owns(
            &c,
            "alice@example.test",
            "sales@elsewhere.example"
        ));
        assert!(!user_owns(&c, "alice@example.test", "alice"));
    }
}
