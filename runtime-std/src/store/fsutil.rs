//! Small file-system helpers shared by the store: private directories and
//! files (0700 / 0600), and the directory fsync that makes a create,
//! rename or unlink durable.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

/// Creates `dir` and any missing parents with mode 0700, fsyncing the
/// parent of every directory it creates so the new entry survives a crash.
pub(crate) fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir_all(parent)?;
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    builder.mode(0o700);
    match builder.create(dir) {
        Ok(()) => {}
        // Another thread or process made it first: fine.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// Creates a new file (never an existing one) with mode 0600, for writing.
pub(crate) fn create_private_file(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    opts.open(path)
}

/// Fsyncs a directory, making the entries created, renamed or removed in
/// it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Opens a directory for [`sync_handle`], to fsync it again and again
/// without opening it each time (see `group_sync`).
pub(crate) fn open_dir(dir: &Path) -> io::Result<File> {
    File::open(dir)
}

/// Fsyncs a directory opened by [`open_dir`]: as [`sync_dir`], for every
/// entry changed before the call, including those changed after the open.
pub(crate) fn sync_handle(dir: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        dir.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Removes a file; a file that is already gone is not an error.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
