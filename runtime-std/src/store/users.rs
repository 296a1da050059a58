//! The users file `data_dir/users` (DESIGN.md §4): reading it, changing
//! it atomically, and checking passwords.
//!
//! Every change takes the lock file `users.lock` (created with
//! `create_new`, removed when done; a lock older than
//! [`STALE_LOCK`] is left over from a crash and broken), reads the file,
//! writes the new text to `users.tmp` (0600), fsyncs it, renames it over
//! `users` and fsyncs `data_dir`. Readers (the server) never see a half
//! written file. The text is rewritten from the parsed entries, so
//! comments and blank lines do not survive a change.
//!
//! Passwords are stored as `{ARGON2ID}` followed by the argon2 crate's PHC
//! string with its default parameters (argon2id, m=19456, t=2, p=1), the
//! scheme Dovecot's passwd-file reads; `!` marks a receive-only mailbox.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, SystemTime};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use hato_core::directory::{validate_mailbox_name, Directory, DirectoryError, UserEntry};

use super::fsutil;

/// The scheme prefix of password hashes (Dovecot's name for argon2id).
pub const SCHEME: &str = "{ARGON2ID}";

/// A lock file older than this is a leftover from a crash.
pub const STALE_LOCK: Duration = Duration::from_secs(30);

/// How long a change waits for the lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Why the users file could not be read or changed.
#[derive(Debug)]
pub enum UsersError {
    /// Reading or writing failed.
    Io(io::Error),
    /// The file holds a line that is not a mailbox.
    Parse(DirectoryError),
    /// The address is not a valid mailbox name.
    InvalidAddress(String, &'static str),
    /// The mailbox exists already.
    Exists(String),
    /// No such mailbox.
    NotFound(String),
    /// The password is empty or could not be hashed.
    Password(String),
    /// Another change holds the lock.
    Locked(PathBuf),
}

impl fmt::Display for UsersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "users file: {e}"),
            Self::Parse(e) => e.fmt(f),
            Self::InvalidAddress(a, why) => write!(f, "{a}: {why}"),
            Self::Exists(a) => write!(f, "mailbox {a} exists already"),
            Self::NotFound(a) => write!(f, "no mailbox {a}"),
            Self::Password(why) => write!(f, "password: {why}"),
            Self::Locked(p) => write!(
                f,
                "{} is held by another change; try again (remove it if no hato command is running)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for UsersError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for UsersError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Returns the path of the users file in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("users")
}

/// Reads the users file; a missing file is an empty directory.
///
/// # Errors
/// The file cannot be read, or a line is not a mailbox.
pub fn load(data_dir: &Path) -> Result<Directory, UsersError> {
    match fs::read_to_string(path(data_dir)) {
        Ok(text) => Directory::parse(&text).map_err(UsersError::Parse),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Directory::default()),
        Err(e) => Err(e.into()),
    }
}

/// Returns every mailbox, in file order.
///
/// # Errors
/// As [`load`].
pub fn list(data_dir: &Path) -> Result<Vec<UserEntry>, UsersError> {
    Ok(load(data_dir)?.entries().to_vec())
}

/// Adds a mailbox; with a password it can log in, without it only receives.
///
/// # Errors
/// Bad address, mailbox exists, empty password, or the file cannot be changed.
pub fn add(data_dir: &Path, address: &str, password: Option<&str>) -> Result<(), UsersError> {
    let address = checked_address(address)?;
    let password = password_field(password)?;
    update(data_dir, |dir| {
        dir.insert(UserEntry {
            address: address.clone(),
            password,
            rest: None,
        })
        .map_err(|_| UsersError::Exists(address.clone()))
    })
}

/// Removes a mailbox from the users file (its Maildir stays on disk).
///
/// # Errors
/// No such mailbox, or the file cannot be changed.
pub fn remove(data_dir: &Path, address: &str) -> Result<(), UsersError> {
    let address = address.to_ascii_lowercase();
    update(data_dir, |dir| {
        if dir.remove(&address) {
            Ok(())
        } else {
            Err(UsersError::NotFound(address.clone()))
        }
    })
}

/// Sets a mailbox's password; `None` makes it receive-only (`!`).
///
/// # Errors
/// No such mailbox, empty password, or the file cannot be changed.
pub fn set_password(
    data_dir: &Path,
    address: &str,
    password: Option<&str>,
) -> Result<(), UsersError> {
    let address = address.to_ascii_lowercase();
    let password = password_field(password)?;
    update(data_dir, |dir| {
        let entry = dir
            .get_mut(&address)
            .ok_or_else(|| UsersError::NotFound(address.clone()))?;
        entry.password = password;
        Ok(())
    })
}

/// Tells whether `password` is the password of `entry`. Receive-only
/// mailboxes and unknown schemes never match. Costs one argon2 hash
/// (about 19 MiB and tens of milliseconds): call it off the I/O threads.
pub fn verify(entry: &UserEntry, password: &str) -> bool {
    let Some(phc) = strip_scheme(&entry.password) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), phc)
        .is_ok()
}

/// Returns `{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
///
/// # Errors
/// The password is empty or hashing fails.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    if password.is_empty() {
        return Err(UsersError::Password("must not be empty".into()));
    }
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| UsersError::Password(e.to_string()))?;
    Ok(format!("{SCHEME}{hash}"))
}

fn strip_scheme(field: &str) -> Option<&str> {
    let head = field.get(..SCHEME.len())?;
    head.eq_ignore_ascii_case(SCHEME)
        .then(|| field.get(SCHEME.len()..))
        .flatten()
}

fn password_field(password: Option<&str>) -> Result<String, UsersError> {
    match password {
        Some(p) => hash_password(p),
        None => Ok("!".to_owned()),
    }
}

fn checked_address(address: &str) -> Result<String, UsersError> {
    let address = address.to_ascii_lowercase();
    validate_mailbox_name(&address)
        .map_err(|why| UsersError::InvalidAddress(address.clone(), why))?;
    Ok(address)
}

/// Reads, changes and atomically rewrites the users file under the lock.
/// Hashing happens before, so the lock is held for milliseconds.
fn update(
    data_dir: &Path,
    change: impl FnOnce(&mut Directory) -> Result<(), UsersError>,
) -> Result<(), UsersError> {
    fsutil::create_private_dir_all(data_dir)?;
    let _lock = Lock::take(data_dir)?;
    let mut dir = load(data_dir)?;
    change(&mut dir)?;
    let tmp = data_dir.join("users.tmp");
    fsutil::remove_if_exists(&tmp)?;
    let old_mtime = fs::metadata(path(data_dir)).and_then(|m| m.modified()).ok();
    let result = (|| {
        let mut file = fsutil::create_private_file(&tmp)?;
        file.write_all(dir.to_text().as_bytes())?;
        if let Some(old) = old_mtime {
            later_second_than(&file, old)?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path(data_dir))?;
        fsutil::sync_dir(data_dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    Ok(result?)
}

/// Gives `file` a modification time in a later whole second than `old`
/// when it has none yet. Dovecot's passwd-file notices a change by the
/// file's mtime in seconds and its size (at most once a second), and a
/// password change keeps the size: two changes within one second would
/// leave Dovecot with the old password.
fn later_second_than(file: &fs::File, old: SystemTime) -> io::Result<()> {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let now = file.metadata()?.modified()?;
    if secs(now) <= secs(old) {
        let next = SystemTime::UNIX_EPOCH + Duration::from_secs(secs(old) + 1);
        file.set_modified(next)?;
    }
    Ok(())
}

/// The lock file, removed on drop.
#[derive(Debug)]
struct Lock(PathBuf);

impl Lock {
    fn take(data_dir: &Path) -> Result<Self, UsersError> {
        let path = data_dir.join("users.lock");
        let start = SystemTime::now();
        loop {
            match fsutil::create_private_file(&path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
            let age = fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if age.is_some_and(|a| a > STALE_LOCK) {
                fsutil::remove_if_exists(&path)?;
                continue;
            }
            if start.elapsed().unwrap_or_default() > LOCK_WAIT {
                return Err(UsersError::Locked(path));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdir::TestDir;
    use super::*;

    #[test]
    fn add_list_passwd_del_with_real_hashes() {
        let t = TestDir::new("users");
        let dir = t.path();
        assert!(list(dir).unwrap().is_empty());
        add(dir, "Alice@Example.org", Some("correct horse")).unwrap();
        add(dir, "bob@example.org", None).unwrap();
        let users = list(dir).unwrap();
        assert_eq!(users.len(), 2);
        let alice = &users[0];
        assert_eq!(alice.address, "alice@example.org");
        assert!(
            alice
                .password
                .starts_with("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            alice.password
        );
        assert!(verify(alice, "correct horse"));
        assert!(!verify(alice, "wrong horse"));
        assert_eq!(users[1].password, "!");
        assert!(!verify(&users[1], ""));
        assert!(!verify(&users[1], "!"));

        set_password(dir, "BOB@example.org", Some("s3cret")).unwrap();
        let bob = load(dir).unwrap().get("bob@example.org").cloned().unwrap();
        assert!(verify(&bob, "s3cret"));
        assert!(!verify(&bob, "correct horse"));
        set_password(dir, "alice@example.org", None).unwrap();
        assert!(!load(dir)
            .unwrap()
            .get("alice@example.org")
            .unwrap()
            .has_password());

        remove(dir, "alice@example.org").unwrap();
        let users = list(dir).unwrap();
        assert_eq!(
            users.iter().map(|u| u.address.as_str()).collect::<Vec<_>>(),
            ["bob@example.org"]
        );
        assert!(!dir.join("users.lock").exists());
        assert!(!dir.join("users.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path(dir)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn every_change_moves_the_mtime_to_a_later_second_for_dovecot() {
        let t = TestDir::new("users-mtime");
        let secs = || {
            fs::metadata(path(t.path()))
                .unwrap()
                .modified()
                .unwrap()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        add(t.path(), "a@example.org", None).unwrap();
        let mut last = secs();
        for _ in 0..3 {
            // Same length, same second: only the mtime can tell Dovecot.
            set_password(t.path(), "a@example.org", None).unwrap();
            let now = secs();
            assert!(now > last, "{now} after {last}");
            last = now;
        }
    }

    #[test]
    fn changes_are_refused_with_a_reason() {
        let t = TestDir::new("users-refuse");
        let dir = t.path();
        add(dir, "bob@example.org", None).unwrap();
        assert!(matches!(
            add(dir, "BOB@example.org", None),
            Err(UsersError::Exists(_))
        ));
        assert!(matches!(
            add(dir, "../x@example.org", None),
            Err(UsersError::InvalidAddress(..))
        ));
        assert!(matches!(
            add(dir, "carol@example.org", Some("")),
            Err(UsersError::Password(_))
        ));
        assert!(matches!(
            remove(dir, "carol@example.org"),
            Err(UsersError::NotFound(_))
        ));
        assert!(matches!(
            set_password(dir, "carol@example.org", None),
            Err(UsersError::NotFound(_))
        ));
        assert_eq!(list(dir).unwrap().len(), 1);
    }

    #[test]
    fn a_damaged_file_is_reported_and_left_alone() {
        let t = TestDir::new("users-damaged");
        fs::write(path(t.path()), "bob@example.org:!\nnot a line\n").unwrap();
        assert!(matches!(load(t.path()), Err(UsersError::Parse(e)) if e.line == 2));
        assert!(add(t.path(), "carol@example.org", None).is_err());
        assert_eq!(
            fs::read_to_string(path(t.path())).unwrap(),
            "bob@example.org:!\nnot a line\n"
        );
    }

    #[test]
    fn a_held_lock_waits_and_a_stale_one_is_broken() {
        let t = TestDir::new("users-lock");
        let dir = t.path().to_path_buf();
        let lock = Lock::take(&dir).unwrap();
        let waiter = {
            let dir = dir.clone();
            thread::spawn(move || add(&dir, "bob@example.org", None))
        };
        thread::sleep(Duration::from_millis(100));
        assert!(!path(&dir).exists(), "the change waited for the lock");
        drop(lock);
        waiter.join().unwrap().unwrap();
        assert_eq!(list(&dir).unwrap().len(), 1);

        // A lock left by a crash long ago.
        let stale = dir.join("users.lock");
        let f = fs::File::create(&stale).unwrap();
        f.set_modified(SystemTime::now() - 2 * STALE_LOCK).unwrap();
        drop(f);
        add(&dir, "carol@example.org", None).unwrap();
        assert_eq!(list(&dir).unwrap().len(), 2);
    }

    #[test]
    fn verify_accepts_the_scheme_in_any_case_and_refuses_garbage() {
        let hash = hash_password("pw").unwrap();
        let entry = |password: String| UserEntry {
            address: "a@example.org".into(),
            password,
            rest: None,
        };
        assert!(verify(
            &entry(hash.replace("{ARGON2ID}", "{argon2id}")),
            "pw"
        ));
        assert!(!verify(
            &entry(hash.trim_start_matches(SCHEME).to_owned()),
            "pw"
        ));
        assert!(!verify(&entry("{ARGON2ID}garbage".into()), "pw"));
        assert!(!verify(&entry("{PLAIN}pw".into()), "pw"));
        assert!(!verify(&entry(String::new()), ""));
    }
}
