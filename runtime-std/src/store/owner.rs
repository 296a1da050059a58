//! The owner of the Maildirs hato writes (`delivery.mailbox_owner`), so
//! that a Dovecot serving them as one virtual-mail uid can read them, move
//! messages from `new/` to `cur/` and write its index files beside them (a
//! root-owned 0600 file breaks its IMAP session).
//!
//! A user name is looked up in `/etc/passwd` (`name:x:uid:gid:...`, the
//! format of passwd(5)); no libc call is made. Directories stay 0700 and
//! files 0600: only the owner (and root) can read the mail.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::Path;

use hato_core::config::MailboxOwner;

/// A resolved owner: numeric uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)
    }
}

/// The system's user database.
pub const PASSWD: &str = "/etc/passwd";

impl Owner {
    /// Resolves `owner` against the system's `/etc/passwd`.
    ///
    /// # Errors
    /// The file cannot be read, or names no such user (the text says which).
    pub fn resolve(owner: &MailboxOwner) -> Result<Self, String> {
        let text = match owner {
            MailboxOwner::Id { gid: Some(_), .. } => String::new(),
            _ => fs::read_to_string(PASSWD).map_err(|e| format!("cannot read {PASSWD}: {e}"))?,
        };
        Self::resolve_in(owner, &text)
    }

    /// Resolves `owner` against `passwd`, the text of a passwd(5) file.
    ///
    /// # Errors
    /// No such user name, or (for a bare uid) no entry to take the group from.
    pub fn resolve_in(owner: &MailboxOwner, passwd: &str) -> Result<Self, String> {
        match owner {
            MailboxOwner::Id {
                uid,
                gid: Some(gid),
            } => Ok(Self {
                uid: *uid,
                gid: *gid,
            }),
            MailboxOwner::Id { uid, gid: None } => entries(passwd)
                .find(|e| e.1 == *uid)
                .map(|(_, uid, gid)| Self { uid, gid })
                .ok_or_else(|| {
                    format!(
                        "delivery.mailbox_owner: no user with uid {uid} in {PASSWD}; write \
                         \"{uid}:GID\" to give the group as well"
                    )
                }),
            MailboxOwner::User(name) => entries(passwd)
                .find(|e| e.0 == name)
                .map(|(_, uid, gid)| Self { uid, gid })
                .ok_or_else(|| {
                    format!(
                        "delivery.mailbox_owner: no user \"{name}\" in {PASSWD}; create it \
                         (e.g. `useradd --system --no-create-home vmail`) or write a uid:gid"
                    )
                }),
        }
    }

    /// Gives `path` (a directory or file hato just created) to this owner.
    ///
    /// # Errors
    /// The chown failed (hato is not root, or the file is gone).
    pub fn apply(self, path: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            Ok(())
        }
    }

    /// Gives an open file to this owner (fchown).
    ///
    /// # Errors
    /// The chown failed.
    pub fn apply_file(self, file: &File) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::fchown(file, Some(self.uid), Some(self.gid))
        }
        #[cfg(not(unix))]
        {
            let _ = file;
            Ok(())
        }
    }

    /// Tells whether `path` already belongs to this owner.
    pub fn owns(self, path: &Path) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(path).is_ok_and(|m| m.uid() == self.uid && m.gid() == self.gid)
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            true
        }
    }
}

/// The (name, uid, gid) of every well-formed line of a passwd(5) file;
/// comments and broken lines are skipped.
fn entries(passwd: &str) -> impl Iterator<Item = (&str, u32, u32)> {
    passwd.lines().filter_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        (!name.is_empty()).then_some((name, uid, gid))
    })
}

/// Returns this process's effective uid, read from `/proc/self/status`
/// (Linux); `None` where that file does not exist.
pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # a comment\n\
        broken line\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        vmail:x:5000:8:virtual mail:/var/vmail:/usr/sbin/nologin\n";

    #[test]
    fn names_and_uids_resolve_through_passwd() {
        let r = |o: MailboxOwner| Owner::resolve_in(&o, PASSWD_TEXT);
        assert_eq!(
            r(MailboxOwner::User("vmail".into())),
            Ok(Owner { uid: 5000, gid: 8 })
        );
        assert_eq!(
            r(MailboxOwner::Id {
                uid: 65534,
                gid: None
            }),
            Ok(Owner {
                uid: 65534,
                gid: 65534
            })
        );
        assert_eq!(
            r(MailboxOwner::Id {
                uid: 7,
                gid: Some(9)
            }),
            Ok(Owner { uid: 7, gid: 9 })
        );
        let e = r(MailboxOwner::User("dovecot".into())).unwrap_err();
        assert!(e.contains("no user \"dovecot\""), "{e}");
        let e = r(MailboxOwner::Id {
            uid: 4242,
            gid: None,
        })
        .unwrap_err();
        assert!(e.contains("no user with uid 4242"), "{e}");
        // A name is matched whole, never as a prefix or in a comment.
        assert!(r(MailboxOwner::User("vmai".into())).is_err());
        assert!(r(MailboxOwner::User("#".into())).is_err());
    }

    #[test]
    fn the_system_passwd_file_has_root() {
        assert_eq!(
            Owner::resolve(&MailboxOwner::User("root".into())),
            Ok(Owner { uid: 0, gid: 0 })
        );
        assert!(effective_uid().is_some());
    }
}
