//! Finds, builds and starts the `hato` and `hato-smol` binaries, one server
//! per transcript, each in its own data directory, killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hato_core::policy::ListenerKind;

use crate::setup::{config_toml, USERS};
use crate::transcript::Transcript;

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

/// A running server; killed and its data directory removed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    data_dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    smtp: Option<SocketAddr>,
    submission: Option<SocketAddr>,
}

impl Server {
    /// Starts `binary serve --config FILE` with `t`'s configuration in a
    /// fresh data directory holding the users file, and waits until it has
    /// reported both listeners on stderr.
    ///
    /// # Errors
    /// The binary is missing, did not start, or did not report its ports.
    pub fn start(binary: Binary, t: &Transcript) -> Result<Self, String> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let exe = binary.path()?;
        let data_dir = std::env::temp_dir().join(format!(
            "hato-spec-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            binary.name()
        ));
        let _ = std::fs::remove_dir_all(&data_dir);
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| format!("create {}: {e}", data_dir.display()))?;
        let config_path = data_dir.join("hato.toml");
        let setup = std::fs::write(data_dir.join("users"), USERS)
            .and_then(|()| std::fs::write(&config_path, config_toml(t, &data_dir)));
        if let Err(e) = setup {
            let _ = std::fs::remove_dir_all(&data_dir);
            return Err(format!("write setup files: {e}"));
        }
        let spawned = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .current_dir(&data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&data_dir);
                return Err(format!("start {}: {e}", exe.display()));
            }
        };
        let stderr = child.stderr.take();
        let mut server = Self {
            child,
            data_dir,
            log: Arc::new(Mutex::new(Vec::new())),
            smtp: None,
            submission: None,
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

    /// Returns the address of the listener `kind`.
    ///
    /// # Errors
    /// The server did not report that listener (cannot happen after start).
    pub fn addr(&self, kind: ListenerKind) -> Result<SocketAddr, String> {
        match kind {
            ListenerKind::Smtp => self.smtp,
            ListenerKind::Submission => self.submission,
        }
        .ok_or_else(|| format!("no {} listener", kind.as_str()))
    }

    /// Returns the server's stderr so far (the last lines), for failure reports.
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Keeps the last lines of a server's stderr (the pipe is drained to its
/// end so the server never blocks on logging) and reports its listeners.
fn read_log(
    stderr: impl std::io::Read,
    log: &Mutex<Vec<String>>,
    tx: &mpsc::Sender<(ListenerKind, SocketAddr)>,
) {
    const KEEP: usize = 400;
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
            if l.len() >= KEEP {
                l.remove(0);
            }
            l.push(line);
        }
    }
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
}
