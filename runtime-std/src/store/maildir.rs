//! Final delivery into a Maildir (<https://cr.yp.to/proto/maildir.html>):
//! write `tmp/<name>`, fsync, rename into `new/`, fsync `new/`. The
//! mailbox of `local@domain` is `mailboxes/<domain>/<local>/`, which is
//! where Dovecot finds it with `mail_location = maildir:.../%d/%n`.
//!
//! The delivered file starts with `Return-Path: <sender>` (RFC 5321 §4.4:
//! the final delivery records the reverse-path) and
//! `Delivered-To: <address>`, and has LF line endings, the Unix convention every Maildir
//! reader expects (the server refuses bare CR and LF, so the spooled
//! message has CRLF only).
//!
//! File names come from the queue, not from the moment of delivery:
//! `<received>.<id>_<n>.<host>` for recipient `n` (its position in the
//! envelope, from 0) of queued message `<id>`, received at `<received>`
//! (Unix seconds), with `/` and `:` in the host name written `\057` and
//! `\072`. The queue id is unique across processes and restarts, so the
//! name is unique as the Maildir specification asks; and since it can be
//! computed again from the queue file, recovery after a crash learns
//! whether a recipient got its copy by looking for the name in `new/` and
//! `cur/` ([`find_delivered`]; a reader that moved the file to `cur/`
//! appends `:2,FLAGS`, Dovecot also `,S=<size>`: the match is on the
//! unique part `<received>.<id>_<n>.`). A `tmp/` file of that name left by
//! a delivery cut short is replaced.
//!
//! [`Writer`] does the steps separately, so that local delivery can
//! rename a batch of messages into their Maildirs and then fsync each
//! `new/` once for all of them ([`sync_new`]). It remembers the Maildirs it
//! has made sure of, so it checks a mailbox's directories once, not for
//! every message; should one vanish (a mailbox removed by hand), the
//! `ENOENT` of the next delivery makes it create them again.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use hato_core::directory::validate_mailbox_name;

use super::fsutil;
use super::group_sync::GroupSync;
use super::owner::Owner;

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

/// The unique part of the file name of recipient `idx` of queued message
/// `queue_id`, received at `received` (Unix seconds), with its final dot:
/// `<received>.<id>_<idx>.` (see the module docs).
pub fn unique_part(queue_id: &str, idx: usize, received: u64) -> String {
    format!("{received}.{queue_id}_{idx}.")
}

/// The Maildir file name of recipient `idx` of queued message `queue_id`
/// (see the module docs).
pub fn file_name(queue_id: &str, idx: usize, received: u64, hostname: &str) -> String {
    let host = hostname.replace('/', "\\057").replace(':', "\\072");
    format!("{}{host}", unique_part(queue_id, idx, received))
}

/// What the writers of one store (delivery agents, direct delivery) share
/// about its Maildirs.
pub type Known = Arc<Mutex<KnownMaildirs>>;

/// The Maildirs made sure of, and the fsync barrier of each `new/` in use
/// (see `Store::sync_maildir_new`).
#[derive(Debug, Default)]
pub struct KnownMaildirs {
    /// Maildirs whose `tmp`, `new` and `cur` were created or found.
    made: HashSet<PathBuf>,
    /// One barrier per `new/`; each keeps its directory open, so a
    /// Maildir made again (removed by hand while hato runs) drops its
    /// barrier: the handle would name the removed directory, and an fsync
    /// through it would not make renames into the new one durable.
    pub(super) new_barriers: HashMap<PathBuf, Arc<GroupSync>>,
}

/// Writes messages into Maildirs: the mailbox root, the owner given to
/// what it creates (`delivery.mailbox_owner`), and the Maildirs made sure
/// of ([`Known`], shared with the other writers of the store).
#[derive(Debug)]
pub struct Writer {
    root: PathBuf,
    owner: Option<Owner>,
    known: Known,
}

/// A message written and fsynced in `tmp/`, not yet visible to readers.
/// Dropped without [`Writer::publish`], its file is removed.
#[derive(Debug)]
#[must_use]
pub struct Prepared {
    name: String,
    dir: PathBuf,
    published: bool,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(self.dir.join("tmp").join(&self.name));
        }
    }
}

impl Writer {
    /// A writer for the Maildirs under `root`, creating what is missing
    /// for `owner` when given (directories 0700, files 0600).
    pub fn new(root: &Path, owner: Option<Owner>) -> Self {
        Self::sharing(root, owner, Known::default())
    }

    /// A writer as [`Writer::new`] that shares `known` with others.
    pub fn sharing(root: &Path, owner: Option<Owner>, known: Known) -> Self {
        Self {
            root: root.to_path_buf(),
            owner,
            known,
        }
    }

    fn is_known(&self, dir: &Path) -> bool {
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .made
            .contains(dir)
    }

    /// Writes `message` into `tmp/<name>` of the Maildir of `address`
    /// with `Return-Path: <from>` and `Delivered-To: <address>` prepended
    /// (RFC 5321 §4.4), CRLF turned into LF, and fsyncs it. A file of that
    /// name already in `tmp/` (a delivery cut short) is replaced.
    ///
    /// # Errors
    /// An invalid mailbox or file name, a control character in `from`, or
    /// any file-system error (the `tmp/` file is removed then).
    pub fn prepare(
        &mut self,
        address: &str,
        name: &str,
        from: &str,
        mut message: impl BufRead,
    ) -> io::Result<Prepared> {
        check_name(name)?;
        let dir = mailbox_dir(&self.root, address)?;
        if from.chars().any(char::is_control) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "control character in sender",
            ));
        }
        if !self.is_known(&dir) {
            self.ensure(&dir)?;
        }
        let path = dir.join("tmp").join(name);
        let file = match create_replacing(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.ensure(&dir)?;
                create_replacing(&path)?
            }
            other => other?,
        };
        let prepared = Prepared {
            name: name.to_owned(),
            dir,
            published: false,
        };
        if let Some(owner) = self.owner {
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
        // A new file: fdatasync writes its data and the size needed to
        // read it back, which is all the rename needs to find on disk.
        file.sync_data()?;
        Ok(prepared)
    }

    /// Renames a prepared file into `new/`, without fsyncing `new/`: the
    /// message is delivered once [`sync_new`] of the returned directory has
    /// succeeded. Returns that `new/` directory.
    ///
    /// # Errors
    /// The rename failed; the file is removed from `tmp/`.
    pub fn publish(&mut self, mut prepared: Prepared) -> io::Result<PathBuf> {
        let new = prepared.dir.join("new");
        let from = prepared.dir.join("tmp").join(&prepared.name);
        let to = new.join(&prepared.name);
        match fs::rename(&from, &to) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && from.exists() => {
                // new/ went away: make it again.
                self.ensure(&prepared.dir)?;
                fs::rename(&from, &to)?;
            }
            other => other?,
        }
        prepared.published = true;
        Ok(new)
    }

    /// Creates the Maildir `dir` (and its domain directory) when missing,
    /// and remembers it.
    fn ensure(&mut self, dir: &Path) -> io::Result<()> {
        {
            // Forgotten before anything is created: a barrier made from
            // now on opens the directory that is about to exist.
            let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            known.made.remove(dir);
            known.new_barriers.remove(&dir.join("new"));
        }
        create_maildir(dir, self.owner)?;
        self.known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .made
            .insert(dir.to_path_buf());
        Ok(())
    }
}

/// Fsyncs a Maildir's `new/` (as [`Writer::publish`] returns it), making
/// every rename into it durable.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_new(new: &Path) -> io::Result<()> {
    fsutil::sync_dir(new)
}

/// Delivers `message` into the Maildir of `address` under `mailbox_root`
/// as file `name` in one go: prepare, publish, fsync `new/`. Returns the
/// path in `new/`.
///
/// # Errors
/// Any file-system error; nothing is left in `tmp/` then.
pub fn deliver(
    mailbox_root: &Path,
    address: &str,
    name: &str,
    from: &str,
    message: impl BufRead,
) -> io::Result<PathBuf> {
    let mut writer = Writer::new(mailbox_root, None);
    let prepared = writer.prepare(address, name, from, message)?;
    let new = writer.publish(prepared)?;
    sync_new(&new)?;
    Ok(new.join(name))
}

/// Looks for the copy of recipient `idx` of queued message `queue_id`
/// (received at `received`) in the Maildir of `address`: `name`, when
/// given, in `new/` first; then any file in `cur/` or `new/` whose name
/// starts with the [`unique_part`] (a reader moved it, or the host name
/// changed). Returns the path found. Used after a crash or a failed
/// attempt, never for a message's first delivery.
///
/// # Errors
/// A directory of the mailbox cannot be read.
pub fn find_delivered(
    mailbox_root: &Path,
    address: &str,
    unique: &str,
    name: Option<&str>,
) -> io::Result<Option<PathBuf>> {
    let dir = mailbox_dir(mailbox_root, address)?;
    if let Some(name) = name {
        check_name(name)?;
        let path = dir.join("new").join(name);
        match fs::symlink_metadata(&path) {
            Ok(_) => return Ok(Some(path)),
            Err(e) if missing(&e) => {}
            Err(e) => return Err(e),
        }
    }
    find_in(&dir, |file| file.starts_with(unique))
}

/// Looks for the file `name` in the Maildir of `address`: in `new/`, or
/// in `cur/`, where a reader moved it (adding `:2,FLAGS`). For the
/// `intent` lines of progress files written by older versions, which
/// named random files. Returns the path found.
///
/// # Errors
/// The mailbox directory cannot be read.
pub fn find_named(mailbox_root: &Path, address: &str, name: &str) -> io::Result<Option<PathBuf>> {
    check_name(name)?;
    let dir = mailbox_dir(mailbox_root, address)?;
    let path = dir.join("new").join(name);
    if path.exists() {
        return Ok(Some(path));
    }
    find_in(&dir, |file| {
        file.strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', ',']))
    })
}

/// Whether `e` says a Maildir (or a directory on the way) is not there:
/// then it holds no copy either.
fn missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Returns the first file in `cur/` or `new/` of the Maildir `dir` whose
/// name passes `matches`.
fn find_in(dir: &Path, matches: impl Fn(&str) -> bool) -> io::Result<Option<PathBuf>> {
    for sub in ["cur", "new"] {
        let entries = match fs::read_dir(dir.join(sub)) {
            Ok(entries) => entries,
            Err(e) if missing(&e) => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if matches(&entry.file_name().to_string_lossy()) {
                return Ok(Some(entry.path()));
            }
        }
    }
    Ok(None)
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

/// Checks that a file name is a plain name (names also come from progress
/// files, so they are data: never let one climb out of the Maildir).
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

/// Creates `path` (0600) as a new file; one already there (left by a
/// delivery cut short) is unlinked first, never opened: the name is
/// predictable, and whoever owns the Maildir must not be able to make hato
/// write through a link they planted.
fn create_replacing(path: &Path) -> io::Result<File> {
    match fsutil::create_private_file(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fsutil::remove_if_exists(path)?;
            fsutil::create_private_file(path)
        }
        other => other,
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

/// Copies `input` to `out`, turning each CRLF into LF. A CR that is not
/// followed by LF is kept (the server never lets one through). Reads
/// through `input`'s own buffer (a held message is its own buffer), so the
/// bytes are copied once, into `out`.
fn copy_crlf_to_lf(input: &mut impl BufRead, out: &mut impl Write) -> io::Result<()> {
    // A CR at the end of the last chunk, its LF not seen yet.
    let mut pending_cr = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let len = chunk.len();
        if pending_cr && chunk[0] != b'\n' {
            out.write_all(b"\r")?;
        }
        pending_cr = false;
        let mut rest = chunk;
        while let Some(cr) = rest.iter().position(|&b| b == b'\r') {
            out.write_all(&rest[..cr])?;
            match rest.get(cr + 1) {
                // Dropped; the LF starts the next run.
                Some(b'\n') => {}
                Some(_) => out.write_all(b"\r")?,
                None => pending_cr = true,
            }
            rest = &rest[cr + 1..];
        }
        out.write_all(rest)?;
        input.consume(len);
    }
    if pending_cr {
        out.write_all(b"\r")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testdir::TestDir;
    use super::*;

    #[test]
    fn message_lands_in_new_with_trace_headers_and_lf_endings() {
        let t = TestDir::new("maildir");
        let msg = b"Received: from x\r\n\tby y\r\nSubject: hi\r\n\r\nline 1\r\nline 2\r\n";
        let path = deliver(
            t.path(),
            "Bob@Example.org",
            "1.A_0.mail.example.org",
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
        let mut writer = Writer::new(t.path(), Some(nobody));
        let prepared = writer
            .prepare("bob@example.org", "1.A_0.h", "<>", &b"x\r\n"[..])
            .unwrap();
        let path = writer.publish(prepared).unwrap().join("1.A_0.h");
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
        let mine = deliver(t.path(), "carol@example.org", "1.A_0.h", "<>", &b"x"[..]).unwrap();
        assert_eq!(fs::metadata(mine).unwrap().uid(), 0);
        // A second delivery into the existing Maildir is given away too.
        let prepared = Writer::new(t.path(), Some(nobody))
            .prepare("bob@example.org", "1.A_1.h", "<>", &b"y"[..])
            .unwrap();
        let again = writer.publish(prepared).unwrap().join("1.A_1.h");
        assert_eq!(fs::metadata(again).unwrap().uid(), 65534);
    }

    #[test]
    fn null_sender_and_bare_addresses_get_brackets() {
        let t = TestDir::new("maildir-null");
        let p = deliver(t.path(), "bob@example.org", "1.A_0.h", "<>", &b"x\r\n"[..]).unwrap();
        assert!(fs::read_to_string(p)
            .unwrap()
            .starts_with("Return-Path: <>\n"));
        let p = deliver(
            t.path(),
            "bob@example.org",
            "1.A_1.h",
            "a@b.example",
            &b"x"[..],
        )
        .unwrap();
        assert!(fs::read_to_string(p)
            .unwrap()
            .starts_with("Return-Path: <a@b.example>\n"));
    }

    #[test]
    fn crlf_split_across_reads_still_becomes_lf() {
        // A reader that hands out one byte at a time.
        struct Trickle<'a>(&'a [u8]);
        impl io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&b, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
        }
        let input = b"a\r\nb\rc\r\n\r\nend\r";
        let mut out = Vec::new();
        let mut trickle = io::BufReader::with_capacity(1, Trickle(input));
        copy_crlf_to_lf(&mut trickle, &mut out).unwrap();
        assert_eq!(out, b"a\nb\rc\n\nend\r");
        // The same in one chunk, and a CR before a CRLF.
        let mut out = Vec::new();
        copy_crlf_to_lf(&mut &input[..], &mut out).unwrap();
        assert_eq!(out, b"a\nb\rc\n\nend\r");
        let mut out = Vec::new();
        copy_crlf_to_lf(&mut &b"x\r\r\ny"[..], &mut out).unwrap();
        assert_eq!(out, b"x\r\ny");
    }

    #[test]
    fn names_come_from_the_queue_and_are_found_again() {
        let t = TestDir::new("maildir-names");
        let name = file_name("1J0VVKUU6VM00R0N", 3, 1_795_500_900, "mail/x:y");
        assert_eq!(name, "1795500900.1J0VVKUU6VM00R0N_3.mail\\057x\\072y");
        let unique = unique_part("1J0VVKUU6VM00R0N", 3, 1_795_500_900);
        assert!(name.starts_with(&unique));
        let find = |name| find_delivered(t.path(), "bob@example.org", &unique, name).unwrap();
        assert_eq!(find(Some(name.as_str())), None);
        let path = deliver(t.path(), "bob@example.org", &name, "<>", &b"x"[..]).unwrap();
        assert_eq!(find(Some(name.as_str())), Some(path.clone()));
        assert_eq!(find(None), Some(path));
        // Another recipient of the same message is another name.
        let other = unique_part("1J0VVKUU6VM00R0N", 31, 1_795_500_900);
        let found = find_delivered(t.path(), "bob@example.org", &other, None).unwrap();
        assert_eq!(found, None);
        // A reader moved it to cur/ with flags and a size (Dovecot), and
        // the host name changed since: still found, by its unique part.
        let box_dir = t.path().join("example.org/bob");
        let moved = format!("{name},S=42:2,S");
        fs::rename(
            box_dir.join("new").join(&name),
            box_dir.join("cur").join(&moved),
        )
        .unwrap();
        let renamed_host = file_name("1J0VVKUU6VM00R0N", 3, 1_795_500_900, "other");
        let moved = box_dir.join("cur").join(moved);
        assert_eq!(find(Some(renamed_host.as_str())), Some(moved.clone()));
        assert_eq!(find(None), Some(moved));
    }

    #[test]
    fn a_stale_tmp_file_of_the_same_name_is_replaced() {
        let t = TestDir::new("maildir-stale");
        let name = file_name("0ABC", 0, 7, "h");
        let tmp = t.path().join("example.org/bob/tmp");
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join(&name), b"half of an earlier try").unwrap();
        #[cfg(unix)]
        {
            // A link planted under the next name is replaced, not followed.
            let victim = t.path().join("victim");
            fs::write(&victim, b"keep me").unwrap();
            let next = file_name("0ABC", 1, 7, "h");
            std::os::unix::fs::symlink(&victim, tmp.join(&next)).unwrap();
            deliver(t.path(), "bob@example.org", &next, "<>", &b"y\r\n"[..]).unwrap();
            assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        }
        let path = deliver(t.path(), "bob@example.org", &name, "<>", &b"x\r\n"[..]).unwrap();
        assert_eq!(
            fs::read_to_string(path).unwrap(),
            "Return-Path: <>\nDelivered-To: bob@example.org\nx\n"
        );
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn a_removed_maildir_is_created_again() {
        let t = TestDir::new("maildir-gone");
        let mut writer = Writer::new(t.path(), None);
        let first = writer
            .prepare("bob@example.org", "1.A_0.h", "<>", &b"x"[..])
            .unwrap();
        let new = writer.publish(first).unwrap();
        sync_new(&new).unwrap();
        fs::remove_dir_all(t.path().join("example.org/bob")).unwrap();
        let second = writer
            .prepare("bob@example.org", "1.B_0.h", "<>", &b"y"[..])
            .unwrap();
        // new/ alone goes missing between the write and the rename.
        fs::remove_dir(t.path().join("example.org/bob/new")).unwrap();
        let new = writer.publish(second).unwrap();
        assert!(new.join("1.B_0.h").is_file());
        assert!(t.path().join("example.org/bob/cur").is_dir());
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
            let err = deliver(&root, bad, "1.A_0.h", "<>", &b"x"[..]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        assert!(!root.exists());
        assert!(deliver(&root, "bob@example.org", "1.A_0.h", "<a\r\nb>", &b"x"[..]).is_err());
        for bad in ["", "..", "a/b", "../../x"] {
            assert!(
                deliver(&root, "bob@example.org", bad, "<>", &b"x"[..]).is_err(),
                "{bad}"
            );
        }
    }
}
