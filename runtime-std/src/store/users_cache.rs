//! The users file as the running server sees it: [`UsersCache::current`]
//! costs one `stat` and re-reads the file only when its inode, size or
//! modification time changed (`hato user add` replaces the file by
//! rename, so every change shows). When the new file cannot be read or
//! parsed, the error is logged once and the last good directory stays in
//! use: mail for existing mailboxes keeps arriving, and
//! [`UsersCache::is_healthy`] turns false so AUTH can fail closed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use hato_core::directory::Directory;

use super::users::{self, UsersError};
use crate::log;

/// What identifies one version of the file; `None` when it does not exist.
type Stamp = Option<(u64, u64, u64, Option<SystemTime>)>;

/// The users file, re-read when it changes.
#[derive(Debug)]
pub struct UsersCache {
    data_dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    stamp: Stamp,
    dir: Arc<Directory>,
    healthy: bool,
}

impl UsersCache {
    /// Loads the users file of `data_dir` (a missing file is an empty
    /// directory).
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed: the server should not
    /// start with it.
    pub fn new(data_dir: &Path) -> Result<Self, UsersError> {
        let stamp = stamp(&users::path(data_dir))?;
        let dir = users::load(data_dir)?;
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            inner: Mutex::new(Inner {
                stamp,
                dir: Arc::new(dir),
                healthy: true,
            }),
        })
    }

    /// Returns the current directory, re-reading the file if it changed.
    pub fn current(&self) -> Arc<Directory> {
        let path = users::path(&self.data_dir);
        let now = stamp(&path);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = match now {
            Ok(s) if s == inner.stamp => return Arc::clone(&inner.dir),
            Ok(s) => s,
            Err(e) => {
                if inner.healthy {
                    log_error(&path, &e);
                }
                inner.healthy = false;
                return Arc::clone(&inner.dir);
            }
        };
        inner.stamp = now;
        match users::load(&self.data_dir) {
            Ok(dir) => {
                log::Line::new("users-reload")
                    .kv("file", path.display())
                    .kv("mailboxes", dir.entries().len())
                    .emit();
                inner.dir = Arc::new(dir);
                inner.healthy = true;
            }
            Err(e) => {
                log_error(&path, &e);
                inner.healthy = false;
            }
        }
        Arc::clone(&inner.dir)
    }

    /// Tells whether the last look at the file succeeded. When false,
    /// [`UsersCache::current`] returns the last good directory, which may
    /// hold passwords the administrator meant to change: refuse AUTH.
    pub fn is_healthy(&self) -> bool {
        let _ = self.current();
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .healthy
    }
}

fn log_error(path: &Path, e: &dyn std::fmt::Display) {
    log::Line::new("error")
        .kv("file", path.display())
        .kv("reason", format!("{e}; keeping the last good users file"))
        .emit();
}

fn stamp(path: &Path) -> io::Result<Stamp> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(identity(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn identity(m: &fs::Metadata) -> (u64, u64, u64, Option<SystemTime>) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino(), m.len(), m.modified().ok())
}

#[cfg(not(unix))]
fn identity(m: &fs::Metadata) -> (u64, u64, u64, Option<SystemTime>) {
    (0, 0, m.len(), m.modified().ok())
}

#[cfg(test)]
mod tests {
    use super::super::testdir::TestDir;
    use super::*;

    #[test]
    fn users_cache_picks_up_a_change() {
        let t = TestDir::new("cache");
        let cache = UsersCache::new(t.path()).unwrap();
        assert!(cache.current().entries().is_empty());
        users::add(t.path(), "bob@example.org", None).unwrap();
        assert!(cache.current().contains("bob", "example.org"));
        let first = cache.current();
        assert!(
            Arc::ptr_eq(&first, &cache.current()),
            "unchanged file is not re-read"
        );
        users::remove(t.path(), "bob@example.org").unwrap();
        assert!(!cache.current().contains("bob", "example.org"));
        assert!(cache.is_healthy());
    }

    #[test]
    fn a_broken_file_keeps_the_last_good_directory() {
        let t = TestDir::new("cache-broken");
        users::add(t.path(), "bob@example.org", None).unwrap();
        let cache = UsersCache::new(t.path()).unwrap();
        fs::write(users::path(t.path()), "bob@example.org:!\ngarbage line\n").unwrap();
        assert!(cache.current().contains("bob", "example.org"));
        assert!(!cache.is_healthy());
        fs::write(users::path(t.path()), "carol@example.org:!\n").unwrap();
        assert!(cache.current().contains("carol", "example.org"));
        assert!(cache.is_healthy());
        fs::remove_file(users::path(t.path())).unwrap();
        assert!(cache.current().entries().is_empty());
    }

    #[test]
    fn new_refuses_a_broken_file() {
        let t = TestDir::new("cache-new");
        fs::write(users::path(t.path()), "garbage\n").unwrap();
        assert!(UsersCache::new(t.path()).is_err());
    }
}
