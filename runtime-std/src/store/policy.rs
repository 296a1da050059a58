//! The policy state file `data_dir/state/policy` (format:
//! `hato_core::policy::state`): rates, penalties, trap blocks,
//! greylisting and duplicate records that must survive a restart.
//! Written atomically: the text goes to `state/policy.tmp` (0600), which
//! is fsynced and renamed over `state/policy`, then `state/` is fsynced;
//! a reader never sees half a file.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use super::{fsutil, Store};

/// The file's name under `state/`.
pub const POLICY_FILE: &str = "policy";

impl Store {
    /// Returns `data_dir/state/policy`.
    pub fn policy_path(&self) -> PathBuf {
        self.state.join(POLICY_FILE)
    }

    /// Reads the policy state file; `None` when there is none yet. Bytes
    /// that are not UTF-8 are replaced (the lines holding them are then
    /// skipped by the decoder).
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn read_policy(&self) -> io::Result<Option<String>> {
        match fs::read(self.policy_path()) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the policy state file with `text`, atomically and durably.
    /// Callers must not write it from two threads at once.
    ///
    /// # Errors
    /// Any step fails; the old file is then still in place.
    pub fn write_policy(&self, text: &str) -> io::Result<()> {
        let tmp = self.state.join(format!("{POLICY_FILE}.tmp"));
        fsutil::remove_if_exists(&tmp)?;
        let written = (|| {
            let mut file = fsutil::create_private_file(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, self.policy_path())?;
            fsutil::sync_dir(&self.state)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdir::TestDir;
    use super::*;

    #[test]
    fn a_missing_file_reads_as_none() {
        let t = TestDir::new("policy-missing");
        let store = Store::open(t.path()).unwrap();
        assert_eq!(store.read_policy().unwrap(), None);
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary() {
        let t = TestDir::new("policy-write");
        let store = Store::open(t.path()).unwrap();
        store.write_policy("hato-policy 1\nfirst\n").unwrap();
        store.write_policy("hato-policy 1\nsecond\n").unwrap();
        assert_eq!(
            store.read_policy().unwrap().as_deref(),
            Some("hato-policy 1\nsecond\n")
        );
        assert!(!store.state_dir().join("policy.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.policy_path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_leftover_temporary_does_not_stop_a_write() {
        let t = TestDir::new("policy-leftover");
        let store = Store::open(t.path()).unwrap();
        fs::write(store.state_dir().join("policy.tmp"), b"half").unwrap();
        store.write_policy("hato-policy 1\n").unwrap();
        assert_eq!(
            store.read_policy().unwrap().as_deref(),
            Some("hato-policy 1\n")
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_not_fatal() {
        let t = TestDir::new("policy-bytes");
        let store = Store::open(t.path()).unwrap();
        fs::write(store.policy_path(), b"hato-policy 1\n\xff\xfe\n").unwrap();
        let text = store.read_policy().unwrap().unwrap();
        assert!(text.starts_with("hato-policy 1\n"));
    }
}
