//! Finds, builds and starts the `hato` and `hato-smol` binaries. A server
//! runs on a [`DataDir`] (a temporary data directory, removed when the last
//! handle to it goes) and is killed on drop; a test may kill it and start a
//! new one on the same data directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hato_core::policy::ListenerKind;

use crate::setup::{config_toml_with, USERS};
use crate::transcript::{closing_quote, Transcript};

/// How long a server may take to report its listeners.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the one `cargo build` of the binaries may take.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// The two front ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `hato` (runtime-std).
    Hato,
    /// `hato-smol` (runtime-smol).
    HatoSmol,
}

impl Binary {
    /// Both, in the order they are reported.
    pub const ALL: [Self; 2] = [Self::Hato, Self::HatoSmol];

    /// Returns the executable's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hato => "hato",
            Self::HatoSmol => "hato-smol",
        }
    }

    /// Returns the path of the executable, building both binaries once per
    /// test process (a no-op when they are up to date, so a stale binary is
    /// never tested).
    ///
    /// # Errors
    /// The build failed or the executable is missing after it.
    pub fn path(self) -> Result<PathBuf, String> {
        static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        let dir = BUILT.get_or_init(build_binaries).clone()?;
        let exe = dir.join(format!("{}{}", self.name(), std::env::consts::EXE_SUFFIX));
        if exe.is_file() {
            Ok(exe)
        } else {
            Err(format!("{} is missing after the build", exe.display()))
        }
    }
}

/// Returns the profile directory of this test executable
/// (`target/debug/deps/x` → `target/debug`).
fn profile_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut dir = exe
        .parent()
        .ok_or("test executable has no directory")?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Runs `cargo build -p hato-runtime-std -p hato-runtime-smol --bins` into
/// this test executable's target directory and profile.
fn build_binaries() -> Result<PathBuf, String> {
    let profile = profile_dir()?;
    let target_dir = profile.parent().ok_or("profile directory has no parent")?;
    let profile_name = profile
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("profile directory has no name")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("spec-tests has no parent directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "hato-runtime-std",
            "-p",
            "hato-runtime-smol",
            "--bins",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match profile_name {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = std::io::Read::read_to_string(&mut s, &mut text);
        }
        text
    });
    let deadline = Instant::now() + BUILD_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("cargo build of the binaries timed out".into());
            }
            Err(e) => return Err(format!("waiting for cargo build: {e}")),
        }
    };
    let log = reader.join().unwrap_or_default();
    if status.success() {
        Ok(profile)
    } else {
        Err(format!(
            "cargo build of the binaries failed ({status}):\n{log}"
        ))
    }
}

/// A temporary data directory holding the users file [`USERS`]; removed
/// when the last handle to it is dropped. Shared in an `Arc` so that it can
/// outlive a server: a test kills the server and starts a new one on the
/// same directory.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// Creates a fresh, empty directory under the system's temporary
    /// directory, named after this process, a counter and `label`, and
    /// writes the users file.
    ///
    /// # Errors
    /// The directory or the users file cannot be written.
    pub fn new(label: &str) -> Result<Arc<Self>, String> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "hato-spec-{}-{}-{label}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        // From here on, Drop cleans up.
        let dir = Self { path };
        std::fs::write(dir.path.join("users"), USERS)
            .map_err(|e| format!("write the users file: {e}"))?;
        Ok(Arc::new(dir))
    }

    /// Returns the directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns `queue/`.
    pub fn queue_dir(&self) -> PathBuf {
        self.path.join("queue")
    }

    /// Returns `queue/incoming/`.
    pub fn incoming_dir(&self) -> PathBuf {
        self.queue_dir().join("incoming")
    }

    /// Returns the `new/` directory of the Maildir of `address`
    /// (`mailboxes/<domain>/<local>/new`).
    pub fn maildir_new(&self, address: &str) -> PathBuf {
        let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
        self.path
            .join("mailboxes")
            .join(domain)
            .join(local)
            .join("new")
    }

    /// Returns the names of the files in `queue/` (messages and progress
    /// files; `incoming/` is a directory and not listed), sorted. A missing
    /// `queue/` is empty.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn queue_files(&self) -> Result<Vec<String>, String> {
        files_in(&self.queue_dir())
    }

    /// Returns the messages in `queue/`: its files less the progress files
    /// (`<id>.done`), sorted.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn queued_messages(&self) -> Result<Vec<String>, String> {
        let mut files = self.queue_files()?;
        files.retain(|f| !f.ends_with(".done"));
        Ok(files)
    }

    /// Returns the names of the files in `queue/incoming/`, sorted.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn incoming_files(&self) -> Result<Vec<String>, String> {
        files_in(&self.incoming_dir())
    }

    /// Returns the paths of the messages in `new/` of `address`'s Maildir,
    /// sorted by name. A Maildir not created yet is empty.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn delivered(&self, address: &str) -> Result<Vec<PathBuf>, String> {
        let dir = self.maildir_new(address);
        Ok(files_in(&dir)?.into_iter().map(|n| dir.join(n)).collect())
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Returns the names of the regular files in `dir`, sorted; none when `dir`
/// does not exist.
fn files_in(dir: &Path) -> Result<Vec<String>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("read {}: {e}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("read {}: {e}", dir.display()))?;
        let is_file = entry
            .file_type()
            .map_err(|e| format!("stat {}: {e}", entry.path().display()))?
            .is_file();
        if is_file {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The server's stderr, one entry per line, as it arrives.
type Log = Arc<Mutex<Vec<String>>>;

/// A running server; killed on drop. Its [`DataDir`] is shared: it is
/// removed when the last handle goes, which may be after the server.
#[derive(Debug)]
pub struct Server {
    binary: Binary,
    child: Child,
    data: Arc<DataDir>,
    log: Log,
    smtp: Option<SocketAddr>,
    submission: Option<SocketAddr>,
    submissions: Option<SocketAddr>,
}

impl Server {
    /// Starts `binary serve --config FILE` with `t`'s configuration in a
    /// fresh data directory holding the users file, and waits until it has
    /// reported both listeners on stderr.
    ///
    /// # Errors
    /// The binary is missing, did not start, or did not report its ports.
    pub fn start(binary: Binary, t: &Transcript) -> Result<Self, String> {
        let data = DataDir::new(binary.name())?;
        Self::start_with(binary, data, &t.config)
    }

    /// Starts `binary serve --config FILE` on `data`, with the standard
    /// configuration plus `overrides` (`(table, "key = value")`, as in
    /// [`Transcript::config`]), and waits until it has reported both
    /// listeners on stderr. The configuration is written to
    /// `data/hato.toml`; the data directory may hold what an earlier
    /// server left there.
    ///
    /// # Errors
    /// The binary is missing, did not start, or did not report its ports.
    pub fn start_with(
        binary: Binary,
        data: Arc<DataDir>,
        overrides: &[(String, String)],
    ) -> Result<Self, String> {
        let exe = binary.path()?;
        let config_path = data.path().join("hato.toml");
        std::fs::write(&config_path, config_toml_with(overrides, data.path()))
            .map_err(|e| format!("write {}: {e}", config_path.display()))?;
        let mut child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .current_dir(data.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {}: {e}", exe.display()))?;
        let stderr = child.stderr.take();
        let mut server = Self {
            binary,
            child,
            data,
            log: Arc::new(Mutex::new(Vec::new())),
            smtp: None,
            submission: None,
            submissions: None,
        };
        let (tx, rx) = mpsc::channel();
        let log = Arc::clone(&server.log);
        if let Some(stderr) = stderr {
            std::thread::spawn(move || read_log(stderr, &log, &tx));
        }
        let deadline = Instant::now() + START_TIMEOUT;
        while server.smtp.is_none() || server.submission.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((ListenerKind::Smtp, addr)) => server.smtp = Some(addr),
                Ok((ListenerKind::Submission, addr)) => server.submission = Some(addr),
                Ok((ListenerKind::Submissions, addr)) => server.submissions = Some(addr),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{} reported no listening ports within {:?}:\n{}",
                        binary.name(),
                        START_TIMEOUT,
                        server.log_text()
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().map(|s| s.to_string());
                    return Err(format!(
                        "{} exited before listening ({}):\n{}",
                        binary.name(),
                        status.unwrap_or_else(|e| e.to_string()),
                        server.log_text()
                    ));
                }
            }
        }
        Ok(server)
    }

    /// Returns which binary this is.
    pub fn binary(&self) -> Binary {
        self.binary
    }

    /// Returns the data directory (a new handle to it).
    pub fn data(&self) -> Arc<DataDir> {
        Arc::clone(&self.data)
    }

    /// Returns the address of the listener `kind`.
    ///
    /// # Errors
    /// The server did not report that listener (cannot happen after start).
    pub fn addr(&self, kind: ListenerKind) -> Result<SocketAddr, String> {
        match kind {
            ListenerKind::Smtp => self.smtp,
            ListenerKind::Submission => self.submission,
            ListenerKind::Submissions => self.submissions,
        }
        .ok_or_else(|| format!("no {} listener", kind.as_str()))
    }

    /// Kills the server at once (SIGKILL on Unix: no clean-up of any kind
    /// runs in the server) and waits for it to be gone. Harmless when it
    /// has exited already.
    ///
    /// # Errors
    /// The process could not be waited for.
    pub fn kill(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        self.child
            .wait()
            .map(|_| ())
            .map_err(|e| format!("wait for {}: {e}", self.binary.name()))
    }

    /// Asks the server to stop (SIGTERM, through `kill -TERM`) and waits at
    /// most `timeout` for it to exit; returns its exit status.
    ///
    /// # Errors
    /// The signal could not be sent, or the server did not exit in time.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus, String> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .map_err(|e| format!("run kill: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM failed: {sent}"));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    return Err(format!(
                        "{} still running {timeout:?} after SIGTERM:\n{}",
                        self.binary.name(),
                        self.log_text()
                    ))
                }
                Err(e) => return Err(format!("wait for {}: {e}", self.binary.name())),
            }
        }
    }

    /// Returns the log lines of `event` once there are at least `n` of them,
    /// or what there is after a few seconds (the log is read on a thread of
    /// its own, so a line may arrive just after the reply it explains).
    pub fn wait_events(&self, event: &str, n: usize) -> Vec<String> {
        self.wait_lines(n, |line| {
            line.split_whitespace()
                .any(|t| t == format!("event={event}"))
        })
    }

    /// Returns the `event=refuse` lines whose reason contains `reason`, once
    /// there are at least `n` of them, or what there is after a few seconds.
    pub fn wait_refusals(&self, reason: &str, n: usize) -> Vec<String> {
        self.wait_lines(n, |line| {
            line.contains("event=refuse")
                && log_value(line, "reason").is_some_and(|r| r.contains(reason))
        })
    }

    fn wait_lines(&self, n: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines: Vec<String> = self.log_lines().into_iter().filter(|l| keep(l)).collect();
            if lines.len() >= n || Instant::now() >= deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `cond` holds, at most `timeout`; panics naming `what`,
    /// with the log, otherwise.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting until {what}\n{}",
                self.binary.name(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `queue/` is empty (every message finished), at most
    /// `timeout`; panics with the log otherwise.
    pub fn wait_queue_empty(&self, timeout: Duration) {
        self.wait_until("queue/ is empty", timeout, || {
            self.data.queue_files().unwrap_or_default().is_empty()
        });
    }

    /// Waits for the first message in `address`'s Maildir, at most
    /// `timeout`; returns its bytes, or panics with the log.
    pub fn wait_first_mail(&self, address: &str, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            let first = self.data.delivered(address).unwrap_or_default();
            if let Some(bytes) = first.first().and_then(|p| std::fs::read(p).ok()) {
                return bytes;
            }
            assert!(
                Instant::now() < deadline,
                "{}: nothing for {address}\n{}",
                self.binary.name(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Returns every line the server wrote to stderr so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Returns the lines of the log whose `event` is `event`.
    pub fn events(&self, event: &str) -> Vec<String> {
        let want = format!("event={event}");
        self.log
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|line| line.split_whitespace().any(|t| t == want))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Returns the server's stderr so far (at most the last lines), for
    /// failure reports.
    pub fn log_text(&self) -> String {
        const SHOW: usize = 400;
        self.log
            .lock()
            .map(|l| l[l.len().saturating_sub(SHOW)..].join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps the server's stderr lines (the pipe is drained to its end so the
/// server never blocks on logging) and reports its listeners.
fn read_log(
    stderr: impl std::io::Read,
    log: &Mutex<Vec<String>>,
    tx: &mpsc::Sender<(ListenerKind, SocketAddr)>,
) {
    // A bound against a runaway server; far above what any test logs.
    const KEEP: usize = 1_000_000;
    let mut reader = BufReader::new(stderr);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
        if let Some(listener) = parse_listening(&line) {
            let _ = tx.send(listener);
        }
        if let Ok(mut l) = log.lock() {
            if l.len() < KEEP {
                l.push(line);
            }
        }
    }
}

/// Returns the value of `key` in a `key=value` log line (quotes removed;
/// a quoted value may hold spaces).
pub fn log_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = line;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let (k, after) = rest.split_once('=')?;
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = closing_quote(quoted)?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if k == key {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// Reads `... event=listening listener=smtp addr=127.0.0.1:PORT ...`.
pub fn parse_listening(line: &str) -> Option<(ListenerKind, SocketAddr)> {
    let mut event = false;
    let mut kind = None;
    let mut addr = None;
    for token in line.split_whitespace() {
        let Some((k, v)) = token.split_once('=') else {
            continue;
        };
        let v = v.trim_matches('"');
        match k {
            "event" => event = v == "listening",
            "listener" => {
                kind = match v {
                    "smtp" => Some(ListenerKind::Smtp),
                    "submission" => Some(ListenerKind::Submission),
                    "submissions" => Some(ListenerKind::Submissions),
                    _ => None,
                }
            }
            "addr" => addr = v.parse().ok(),
            _ => {}
        }
    }
    if event {
        Some((kind?, addr?))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines_are_found() {
        let l = "time=2026-01-01T00:00:00Z event=listening listener=smtp addr=127.0.0.1:4321";
        assert_eq!(
            parse_listening(l),
            Some((ListenerKind::Smtp, "127.0.0.1:4321".parse().unwrap()))
        );
        assert_eq!(
            parse_listening("event=connect listener=smtp addr=127.0.0.1:1"),
            None
        );
    }

    #[test]
    fn log_values_are_found_quoted_or_not() {
        let l = r#"time=T event=refuse session=1 reason="unknown \"user\" x" code=550"#;
        assert_eq!(log_value(l, "event"), Some("refuse"));
        assert_eq!(log_value(l, "reason"), Some(r#"unknown \"user\" x"#));
        assert_eq!(log_value(l, "code"), Some("550"));
        assert_eq!(log_value(l, "id"), None);
    }
}
