//! The users file (DESIGN.md §4): one mailbox per line in Dovecot's
//! passwd-file format, `user@domain:{SCHEME}hash[:more fields]`, or
//! `user@domain:!` for a mailbox that receives but cannot log in.
//! This module reads and writes the text; the front end owns the file.

use std::collections::HashMap;
use std::fmt;

/// One line of the users file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// `local@domain`, lower case.
    pub address: String,
    /// The password field: `{ARGON2ID}$argon2id$...` or `!`.
    pub password: String,
    /// Fields after the password (uid, gid, home, ...), kept verbatim.
    pub rest: Option<String>,
}

impl UserEntry {
    /// Returns the mailbox's local part.
    pub fn local_part(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map_or(&self.address, |(l, _)| l)
    }

    /// Returns the mailbox's domain.
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// Tells whether the entry can log in (has a password hash).
    pub fn has_password(&self) -> bool {
        self.password != "!" && !self.password.is_empty()
    }
}

impl fmt::Display for UserEntry {
    /// Writes the entry as one line of the file, without the newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.address, self.password)?;
        if let Some(rest) = &self.rest {
            write!(f, ":{rest}")?;
        }
        Ok(())
    }
}

/// A line of the users file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "users file line {}: {}", self.line, self.message)
    }
}

/// Every mailbox that exists, keyed by lower-case `local@domain`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    entries: Vec<UserEntry>,
    index: HashMap<String, usize>,
}

impl Directory {
    /// Reads the text of a users file. Blank lines and `#` comments are skipped.
    ///
    /// # Errors
    /// Returns the first line that is not `address:password[:...]` with a
    /// valid mailbox address, or a mailbox listed twice.
    pub fn parse(text: &str) -> Result<Self, DirectoryError> {
        let mut dir = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let err = |message: &str| DirectoryError {
                line: n + 1,
                message: message.to_owned(),
            };
            let (address, tail) = line
                .split_once(':')
                .ok_or_else(|| err("expected address:password"))?;
            let (password, rest) = match tail.split_once(':') {
                Some((p, r)) => (p, Some(r.to_owned())),
                None => (tail, None),
            };
            let address = address.trim().to_ascii_lowercase();
            validate_mailbox_name(&address).map_err(err)?;
            let entry = UserEntry {
                address,
                password: password.to_owned(),
                rest,
            };
            dir.insert(entry).map_err(err)?;
        }
        Ok(dir)
    }

    /// Adds an entry.
    ///
    /// # Errors
    /// Fails when the mailbox exists already.
    pub fn insert(&mut self, entry: UserEntry) -> Result<(), &'static str> {
        if self.index.contains_key(&entry.address) {
            return Err("mailbox listed twice");
        }
        self.index.insert(entry.address.clone(), self.entries.len());
        self.entries.push(entry);
        Ok(())
    }

    /// Removes a mailbox; returns whether it existed.
    pub fn remove(&mut self, address: &str) -> bool {
        let key = address.to_ascii_lowercase();
        let Some(pos) = self.index.remove(&key) else {
            return false;
        };
        self.entries.remove(pos);
        self.reindex();
        true
    }

    /// Looks a mailbox up by address, in any case.
    pub fn get(&self, address: &str) -> Option<&UserEntry> {
        let key = address.to_ascii_lowercase();
        self.index.get(&key).and_then(|&i| self.entries.get(i))
    }

    /// Looks a mailbox up for changing it.
    pub fn get_mut(&mut self, address: &str) -> Option<&mut UserEntry> {
        let key = address.to_ascii_lowercase();
        let i = *self.index.get(&key)?;
        self.entries.get_mut(i)
    }

    /// Tells whether `local@domain` exists (both compared in any case).
    pub fn contains(&self, local: &str, domain: &str) -> bool {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        // The key is built on the stack (RCPT is on every message's path);
        // only an address longer than any mailbox's would allocate.
        let mut buf = [0u8; 320];
        let len = local.len() + 1 + domain.len();
        if let Some(key) = buf.get_mut(..len) {
            let (l, rest) = key.split_at_mut(local.len());
            l.copy_from_slice(local.as_bytes());
            rest[0] = b'@';
            rest[1..].copy_from_slice(domain.as_bytes());
            key.make_ascii_lowercase();
            return std::str::from_utf8(key).is_ok_and(|k| self.index.contains_key(k));
        }
        let key = format!("{local}@{domain}").to_ascii_lowercase();
        self.index.contains_key(&key)
    }

    /// Returns the entries in file order.
    pub fn entries(&self) -> &[UserEntry] {
        &self.entries
    }

    /// Writes the whole file.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&e.to_string());
            out.push('\n');
        }
        out
    }

    fn reindex(&mut self) {
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.address.clone(), i))
            .collect();
    }
}

/// Checks that `address` is a mailbox hato can create: `local@domain` with
/// a local part of letters, digits and `. _ + -` (no leading dot, no `..`),
/// safe as a directory name under `mailboxes/<domain>/<local>/`.
///
/// # Errors
/// Says what is wrong with the address.
pub fn validate_mailbox_name(address: &str) -> Result<(), &'static str> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err("a mailbox is written local@domain");
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if !local_ok {
        return Err("the local part may hold only letters, digits and . _ + - (no leading, trailing or double dot)");
    }
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !domain_ok {
        return Err("the domain must be a host name like example.org");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_and_looks_up_in_any_case() {
        let text = "# users\nalice@example.test:{ARGON2ID}$argon2id$v=19$x\n\nBob@Example.test:!:1000:1000::/home/bob::\n";
        let dir = match Directory::parse(text) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert!(dir.contains("ALICE", "example.test."));
        assert!(dir.contains("bob", "example.test"));
        assert!(!dir.contains("carol", "example.test"));
        assert!(dir
            .get("alice@example.test")
            .is_some_and(UserEntry::has_password));
        assert!(dir
            .get("bob@example.test")
            .is_some_and(|e| !e.has_password()));
        assert_eq!(
            dir.to_text(),
            "alice@example.test:{ARGON2ID}$argon2id$v=19$x\nbob@example.test:!:1000:1000::/home/bob::\n"
        );
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        let err = Directory::parse("alice@example.test:!\nno-colon\n").err();
        assert_eq!(err.map(|e| e.line), Some(2));
        assert!(Directory::parse("../x@example.test:!").is_err());
        assert!(Directory::parse("a@b.test:!\nA@B.test:!").is_err());
    }

    #[test]
    fn mailbox_names_are_safe_directory_names() {
        assert!(validate_mailbox_name("alice.smith+tag@example.test").is_ok());
        for bad in [
            "a/b@x.test",
            "..@x.test",
            ".a@x.test",
            "a@x/y",
            "a@",
            "@x.test",
            "a b@x.test",
            "a@-x.test",
        ] {
            assert!(validate_mailbox_name(bad).is_err(), "{bad}");
        }
    }
}
