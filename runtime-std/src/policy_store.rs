//! The policy state of a running server ([`PolicyState`]: rates,
//! penalties, trap blocks, greylisting, duplicates) behind one mutex, and
//! its persistence in `data_dir/state/policy`.
//!
//! At start the file is read (missing: start empty; unreadable: log an
//! error and start empty). A small thread saves the state every
//! [`SAVE_EVERY`] when it changed, and [`SharedPolicy::stop`] saves it a
//! last time at a graceful stop. A crash (kill -9) loses at most the
//! changes of the last few seconds: a duplicate delivered twice or a
//! client let through a little early, never a message.
//!
//! Log lines: `event=policy-state action=load loaded= expired= skipped=`
//! at start when a file was read; `event=error what=policy-state
//! reason=` when the file cannot be read or written.

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use hato_core::policy::{PolicySettings, PolicyState};

use crate::log::{unix_now, Line};
use crate::store::Store;

/// How often a changed state is written to disk.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);

/// The server's policy state and the thread that saves it.
#[derive(Debug)]
pub struct SharedPolicy {
    state: Mutex<PolicyState>,
    store: Arc<Store>,
    /// Serialises writers (the saver thread and the final save).
    save_lock: Mutex<()>,
    saver: Mutex<Option<Saver>>,
}

#[derive(Debug)]
struct Saver {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl SharedPolicy {
    /// Loads the state from `store`'s `state/policy`. Never fails: a
    /// missing file starts empty, an unreadable one is logged and starts
    /// empty, and lines the decoder cannot read are skipped.
    pub fn load(store: Arc<Store>, settings: PolicySettings) -> Self {
        let mut state = PolicyState::new(settings);
        match store.read_policy() {
            Ok(None) => {}
            Ok(Some(text)) => {
                let stats = state.decode(&text, unix_now());
                Line::new("policy-state")
                    .kv("action", "load")
                    .kv("loaded", stats.loaded)
                    .kv("expired", stats.expired)
                    .kv("skipped", stats.skipped)
                    .emit();
            }
            Err(e) => error(&format!(
                "cannot read {}, starting with empty state: {e}",
                store.policy_path().display()
            )),
        }
        Self {
            state: Mutex::new(state),
            store,
            save_lock: Mutex::new(()),
            saver: Mutex::new(None),
        }
    }

    /// Locks the state. Hold the guard briefly: every session waits on it.
    pub fn lock(&self) -> MutexGuard<'_, PolicyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the state to disk if it changed since the last save; returns
    /// whether it wrote. On failure the state stays marked as changed, so
    /// the next save tries again.
    ///
    /// # Errors
    /// The file could not be written.
    pub fn save(&self) -> io::Result<bool> {
        let _writer = self
            .save_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let text = {
            let mut state = self.lock();
            if !state.take_dirty() {
                return Ok(false);
            }
            state.purge(unix_now());
            state.encode()
        };
        match self.store.write_policy(&text) {
            Ok(()) => Ok(true),
            Err(e) => {
                self.lock().mark_dirty();
                Err(e)
            }
        }
    }

    /// Starts the thread that saves a changed state every `every`. It
    /// ends at [`SharedPolicy::stop`], or by itself once the last
    /// `Arc` to this value is gone.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start_saver(self: &Arc<Self>, every: Duration) -> io::Result<()> {
        let (stop, rx) = mpsc::channel::<()>();
        let weak: Weak<Self> = Arc::downgrade(self);
        let thread = thread::Builder::new()
            .name("policy-saver".into())
            .spawn(move || loop {
                match rx.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                let Some(policy) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = policy.save() {
                    error(&format!("cannot save the policy state: {e}"));
                }
            })?;
        *self.saver.lock().unwrap_or_else(PoisonError::into_inner) = Some(Saver { stop, thread });
        Ok(())
    }

    /// Stops the saver thread and saves a last time (errors are logged).
    /// Later calls only save.
    pub fn stop(&self) {
        let saver = self
            .saver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(saver) = saver {
            let _ = saver.stop.send(());
            if saver.thread.join().is_err() {
                error("the policy saver thread panicked");
            }
        }
        if let Err(e) = self.save() {
            error(&format!("cannot save the policy state: {e}"));
        }
    }
}

fn error(reason: &str) {
    Line::new("error")
        .kv("what", "policy-state")
        .kv("reason", reason)
        .emit();
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use hato_core::config::Config;
    use hato_core::refusal::RefuseReason;

    use super::*;
    use crate::store::testdir::TestDir;

    fn settings() -> PolicySettings {
        PolicySettings::from_config(&Config::defaults("mail.example.org"))
    }

    fn ip() -> IpAddr {
        "192.0.2.1".parse().unwrap()
    }

    #[test]
    fn a_saved_state_is_loaded_again() {
        let t = TestDir::new("policy-store-roundtrip");
        let store = Arc::new(Store::open(t.path()).unwrap());
        let p = SharedPolicy::load(Arc::clone(&store), settings());
        assert!(p.lock().is_empty());
        assert!(!p.save().unwrap(), "nothing changed, nothing written");
        assert!(!store.policy_path().exists());
        p.lock().penalize(ip(), unix_now());
        assert!(p.save().unwrap());
        assert!(!p.save().unwrap());

        let again = SharedPolicy::load(store, settings());
        assert_eq!(
            again.lock().check_connect(ip(), unix_now()),
            Err(RefuseReason::Penalized)
        );
    }

    #[test]
    fn stop_saves_what_changed_and_ends_the_saver() {
        let t = TestDir::new("policy-store-stop");
        let store = Arc::new(Store::open(t.path()).unwrap());
        let p = Arc::new(SharedPolicy::load(Arc::clone(&store), settings()));
        p.start_saver(Duration::from_secs(3600)).unwrap();
        p.lock().trap_hit(ip(), unix_now());
        p.stop();
        let text = store.read_policy().unwrap().unwrap();
        assert!(text.contains("\ntrap 192.0.2.1 "), "{text}");
        p.stop();
    }

    #[test]
    fn the_saver_writes_a_changed_state_by_itself() {
        let t = TestDir::new("policy-store-saver");
        let store = Arc::new(Store::open(t.path()).unwrap());
        let p = Arc::new(SharedPolicy::load(Arc::clone(&store), settings()));
        p.start_saver(Duration::from_millis(20)).unwrap();
        p.lock().penalize(ip(), unix_now());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store.read_policy().unwrap().is_none() {
            assert!(std::time::Instant::now() < deadline, "never saved");
            thread::sleep(Duration::from_millis(10));
        }
        p.stop();
    }

    #[test]
    fn an_unreadable_file_starts_empty() {
        let t = TestDir::new("policy-store-unreadable");
        let store = Arc::new(Store::open(t.path()).unwrap());
        // A directory where the file should be: reading fails.
        std::fs::create_dir(store.policy_path()).unwrap();
        let p = SharedPolicy::load(Arc::clone(&store), settings());
        assert!(p.lock().is_empty());
        p.lock().penalize(ip(), unix_now());
        assert!(p.save().is_err());
        assert!(p.lock().is_dirty(), "a failed save is tried again");
    }

    #[test]
    fn a_garbage_file_starts_with_what_can_be_read() {
        let t = TestDir::new("policy-store-garbage");
        let store = Arc::new(Store::open(t.path()).unwrap());
        let until = unix_now().0 + 100;
        std::fs::write(
            store.policy_path(),
            format!("hato-policy 1\nnonsense\npenalty 192.0.2.1 {until}\n\u{0}\n"),
        )
        .unwrap();
        let p = SharedPolicy::load(store, settings());
        assert_eq!(
            p.lock().check_connect(ip(), unix_now()),
            Err(RefuseReason::Penalized)
        );
    }
}
