//! Final delivery into a Maildir (<https://cr.yp.to/proto/maildir.html>):
//! write `tmp/<unique>`, fsync, rename into `new/`, fsync `new/`. The
//! mailbox of `local@domain` is `mailboxes/<domain>/<local>/`, which is
//! where Dovecot finds it with `mail_location = maildir:.../%d/%n`.
//!
//! The delivered file starts with `Return-Path: <sender>` (RFC 5321 §4.4:
//! the final delivery records the reverse-path) and
//! `Delivered-To: <address>`, and has LF line endings, the Unix convention every Maildir
//! reader expects (the server refuses bare CR and LF, so the spooled
//! message has CRLF only).
//!
//! Unique names, as the Maildir specification recommends:
//! `<secs>.M<usecs>P<pid>Q<n>.<host>`, where `n` counts deliveries in this
//! process and `/` and `:` in the host name are written `\057` and `\072`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hato_core::directory::validate_mailbox_name;

use super::fsutil;
use super::owner::Owner;

/// Deliveries made by this process, for unique file names.
static DELIVERIES: AtomicU64 = AtomicU64::new(0);

/// Returns the Maildir of `address` under `mailbox_root`, after checking
/// that the address is a safe mailbox name (nothing else ever becomes a path).
///
/// # Errors
/// `InvalidInput` when the address is not a valid mailbox name.
pub fn mailbox_dir(mailbox_root: &Path, address: &str) -> io::Result<PathBuf> {
    let address = address.to_ascii_lowercase();
    validate_mailbox_name(&address)
        .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, format!("{address}: {why}")))?;
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no @ in address"))?;
    Ok(mailbox_root.join(domain).join(local))
}

/// Delivers `message` into the Maildir of `address` in one go:
/// [`prepare`], then [`Prepared::commit`]. Returns the path in `new/`.
///
/// # Errors
/// Any file-system error; nothing is left in `new/` then.
pub fn deliver(
    mailbox_root: &Path,
    address: &str,
    hostname: &str,
    from: &str,
    message: impl Read,
) -> io::Result<PathBuf> {
    prepare(mailbox_root, address, hostname, from, message)?.commit()
}

/// A message written and fsynced in `tmp/`, not yet visible to readers.
/// Dropped without [`Prepared::commit`], its file is removed.
#[derive(Debug)]
#[must_use]
pub struct Prepared {
    name: String,
    dir: PathBuf,
    committed: bool,
}

impl Prepared {
    /// Returns the unique file name, the same in `tmp/` and `new/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the file into `new/` and fsyncs `new/`: from here on the
    /// message is delivered. Returns its path.
    ///
    /// # Errors
    /// The rename or the sync failed; the file is removed from `tmp/`.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        let new = self.dir.join("new");
        let new_path = new.join(&self.name);
        fs::rename(self.dir.join("tmp").join(&self.name), &new_path)?;
        self.committed = true;
        fsutil::sync_dir(&new)?;
        Ok(new_path)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(self.dir.join("tmp").join(&self.name));
        }
    }
}

/// Writes `message` into `tmp/<unique>` of the Maildir of `address` with
/// `Return-Path: <from>` and `Delivered-To: <address>` prepended (RFC 5321
/// §4.4), CRLF turned into LF, and fsyncs it.
///
/// # Errors
/// An invalid mailbox name, a control character in `from`, or any
/// file-system error (the `tmp/` file is removed then).
pub fn prepare(
    mailbox_root: &Path,
    address: &str,
    hostname: &str,
    from: &str,
    message: impl Read,
) -> io::Result<Prepared> {
    prepare_owned(mailbox_root, None, address, hostname, from, message)
}

/// Like [`prepare`], and when `owner` is given, the Maildir directories
/// it creates (domain, mailbox, `tmp`, `new`, `cur`; 0700) and the file
/// (0600) are given to that uid and gid (`delivery.mailbox_owner`).
///
/// # Errors
/// As [`prepare`], and a failed chown.
pub fn prepare_owned(
    mailbox_root: &Path,
    owner: Option<Owner>,
    address: &str,
    hostname: &str,
    from: &str,
    mut message: impl Read,
) -> io::Result<Prepared> {
    let dir = mailbox_dir(mailbox_root, address)?;
    if from.chars().any(char::is_control) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "control character in sender",
        ));
    }
    create_maildir(&dir, owner)?;
    let (name, file) = create_unique(&dir.join("tmp"), hostname)?;
    let prepared = Prepared {
        name,
        dir,
        committed: false,
    };
    if let Some(owner) = owner {
        owner.apply_file(&file)?;
    }
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let from = if from.starts_with('<') {
        from.to_owned()
    } else {
        format!("<{from}>")
    };
    write!(
        out,
        "Return-Path: {from}\nDelivered-To: {}\n",
        address.to_ascii_lowercase()
    )?;
    copy_crlf_to_lf(&mut message, &mut out)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    Ok(prepared)
}

/// Tells whether the message named `name` reached the Maildir of
/// `address`: it is in `new/`, or a reader moved it to `cur/` (where it may
/// carry `:2,FLAGS`). Used after a crash to learn whether a delivery whose
/// intent was recorded got as far as `new/`.
///
/// # Errors
/// The mailbox directory cannot be read.
pub fn is_delivered(mailbox_root: &Path, address: &str, name: &str) -> io::Result<bool> {
    check_name(name)?;
    let dir = mailbox_dir(mailbox_root, address)?;
    if dir.join("new").join(name).exists() {
        return Ok(true);
    }
    let cur = match fs::read_dir(dir.join("cur")) {
        Ok(cur) => cur,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in cur {
        let entry = entry?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file == name
            || file
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(':'))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes `tmp/<name>` left by a delivery cut off by a crash.
pub fn remove_leftover(mailbox_root: &Path, address: &str, name: &str) {
    if check_name(name).is_err() {
        return;
    }
    if let Ok(dir) = mailbox_dir(mailbox_root, address) {
        let _ = fs::remove_file(dir.join("tmp").join(name));
    }
}

/// Checks that a file name read back from disk is a plain name (it comes
/// from the progress file, so it is data: never let it climb out of the
/// Maildir).
fn check_name(name: &str) -> io::Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
        && !name.chars().any(char::is_control);
    if plain {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a Maildir file name",
        ))
    }
}

/// Creates the Maildir `dir` (and its domain directory) when missing, each
/// directory 0700 and, with an owner, given to it.
fn create_maildir(dir: &Path, owner: Option<Owner>) -> io::Result<()> {
    let subs = ["tmp", "new", "cur"].map(|sub| dir.join(sub));
    let Some(owner) = owner else {
        return subs
            .iter()
            .try_for_each(|d| fsutil::create_private_dir_all(d));
    };
    if subs.iter().all(|d| d.is_dir()) {
        return Ok(());
    }
    let parents = dir.parent().into_iter().chain([dir]);
    for d in parents.chain(subs.iter().map(PathBuf::as_path)) {
        fsutil::create_private_dir_all(d)?;
        if !owner.owns(d) {
            owner.apply(d)?;
        }
    }
    Ok(())
}

/// Creates `tmp/<unique>` (0600), trying a few names should one exist.
fn create_unique(tmp: &Path, hostname: &str) -> io::Result<(String, File)> {
    let host = hostname.replace('/', "\\057").replace(':', "\\072");
    let mut last = None;
    for _ in 0..8 {
        let name = unique_name(&host);
        match fsutil::create_private_file(&tmp.join(&name)) {
            Ok(f) => return Ok((name, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no unique Maildir name")))
}

fn unique_name(host: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = DELIVERIES.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}.M{}P{}Q{n}.{host}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id()
    )
}

/// Copies `input` to `out`, turning each CRLF into LF. A CR that is not
/// followed by LF is kept (the server never lets one through).
fn copy_crlf_to_lf(input: &mut impl Read, out: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut converted = Vec::with_capacity(64 * 1024);
    let mut pending_cr = false;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        converted.clear();
        for &b in buf.iter().take(n) {
            if pending_cr && b != b'\n' {
                converted.push(b'\r');
            }
            pending_cr = b == b'\r';
            if !pending_cr {
                converted.push(b);
            }
        }
        out.write_all(&converted)?;
    }
    if pending_cr {
        out.write_all(b"\r")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::super::testdir::TestDir;
    use super::*;

    #[test]
    fn message_lands_in_new_with_trace_headers_and_lf_endings() {
        let t = TestDir::new("maildir");
        let msg = b"Received: from x\r\n\tby y\r\nSubject: hi\r\n\r\nline 1\r\nline 2\r\n";
        let path = deliver(
            t.path(),
            "Bob@Example.org",
            "mail.example.org",
            "<alice@example.net>",
            &msg[..],
        )
        .unwrap();
        assert_eq!(path.parent().unwrap(), t.path().join("example.org/bob/new"));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "Return-Path: <alice@example.net>\nDelivered-To: bob@example.org\n\
             Received: from x\n\tby y\nSubject: hi\n\nline 1\nline 2\n"
        );
        for sub in ["tmp", "cur"] {
            assert!(t.path().join("example.org/bob").join(sub).is_dir());
        }
        assert_eq!(
            fs::read_dir(t.path().join("example.org/bob/tmp"))
                .unwrap()
                .count(),
            0
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&t.path().join("example.org/bob/new")), 0o700);
            assert_eq!(mode(&t.path().join("example.org")), 0o700);
        }
    }

    #[test]
    #[cfg(unix)]
    fn an_owner_gets_the_maildir_and_the_file() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if super::super::owner::effective_uid() != Some(0) {
            eprintln!("skipped: giving files away needs root");
            return;
        }
        let t = TestDir::new("maildir-owner");
        let nobody = Owner {
            uid: 65534,
            gid: 65534,
        };
        let path = prepare_owned(
            t.path(),
            Some(nobody),
            "bob@example.org",
            "h",
            "<>",
            &b"x\r\n"[..],
        )
        .unwrap()
        .commit()
        .unwrap();
        let box_dir = t.path().join("example.org/bob");
        for (p, mode) in [
            (path.clone(), 0o600),
            (t.path().join("example.org"), 0o700),
            (box_dir.clone(), 0o700),
            (box_dir.join("tmp"), 0o700),
            (box_dir.join("new"), 0o700),
            (box_dir.join("cur"), 0o700),
        ] {
            let m = fs::metadata(&p).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "{}", p.display());
            assert_eq!(m.permissions().mode() & 0o777, mode, "{}", p.display());
        }
        // Without an owner, hato's own uid keeps what it creates.
        let mine = deliver(t.path(), "carol@example.org", "h", "<>", &b"x"[..]).unwrap();
        assert_eq!(fs::metadata(mine).unwrap().uid(), 0);
        // A second delivery into the existing Maildir is given away too.
        let again = prepare_owned(
            t.path(),
            Some(nobody),
            "bob@example.org",
            "h",
            "<>",
            &b"y"[..],
        )
        .unwrap()
        .commit()
        .unwrap();
        assert_eq!(fs::metadata(again).unwrap().uid(), 65534);
    }

    #[test]
    fn null_sender_and_bare_addresses_get_brackets() {
        let t = TestDir::new("maildir-null");
        let p = deliver(t.path(), "bob@example.org", "h", "<>", &b"x\r\n"[..]).unwrap();
        assert!(fs::read_to_string(p)
            .unwrap()
            .starts_with("Return-Path: <>\n"));
        let p = deliver(t.path(), "bob@example.org", "h", "a@b.example", &b"x"[..]).unwrap();
        assert!(fs::read_to_string(p)
            .unwrap()
            .starts_with("Return-Path: <a@b.example>\n"));
    }

    #[test]
    fn crlf_split_across_reads_still_becomes_lf() {
        // A reader that hands out one byte at a time.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&b, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut out = Vec::new();
        copy_crlf_to_lf(&mut Trickle(b"a\r\nb\rc\r\n\r\nend\r"), &mut out).unwrap();
        assert_eq!(out, b"a\nb\rc\n\nend\r");
    }

    #[test]
    fn unique_names_follow_the_maildir_convention() {
        let t = TestDir::new("maildir-names");
        let names: HashSet<_> = (0..200)
            .map(|_| {
                let p = deliver(t.path(), "bob@example.org", "mail/x:y", "<>", &b"x"[..]).unwrap();
                p.file_name().unwrap().to_string_lossy().into_owned()
            })
            .collect();
        assert_eq!(names.len(), 200);
        assert_eq!(
            fs::read_dir(t.path().join("example.org/bob/new"))
                .unwrap()
                .count(),
            200
        );
        let name = names.iter().next().unwrap();
        let pid = format!("P{}Q", std::process::id());
        assert!(name.contains(".M") && name.contains(&pid), "{name}");
        assert!(name.ends_with(".mail\\057x\\072y"), "{name}");
    }

    #[test]
    fn bad_mailbox_names_are_refused_before_any_path_is_built() {
        let t = TestDir::new("maildir-bad");
        let root = t.path().join("mailboxes");
        for bad in [
            "../x@example.org",
            "a/b@example.org",
            "x@../etc",
            "x@a/b",
            "nobody",
            ".x@example.org",
        ] {
            let err = deliver(&root, bad, "h", "<>", &b"x"[..]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        assert!(!root.exists());
        assert!(deliver(&root, "bob@example.org", "h", "<a\r\nb>", &b"x"[..]).is_err());
    }
}
