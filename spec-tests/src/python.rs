//! Runs python3 scripts (real client libraries such as smtplib) with a
//! time limit.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a script printed.
#[derive(Debug, Clone)]
pub struct PythonOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `python3 -c script args...` and waits at most `timeout`; the
/// process is killed when the time is up.
///
/// # Errors
/// python3 cannot be started, the script failed (its exit status and
/// output are in the message) or ran out of time.
pub fn run_python(script: &str, args: &[&str], timeout: Duration) -> Result<PythonOutput, String> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("python3 ran longer than {timeout:?}"));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("waiting for python3: {e}"));
            }
        }
    };
    let output = PythonOutput {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    match status {
        Ok(s) if s.success() => Ok(output),
        Ok(s) => Err(format!(
            "python3 failed ({s})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            output.stdout, output.stderr
        )),
        Err(e) => Err(format!(
            "{e}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            output.stdout, output.stderr
        )),
    }
}
