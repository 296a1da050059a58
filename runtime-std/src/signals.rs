//! SIGTERM and SIGINT: the first starts a graceful stop, a second one ends
//! the process at once (an administrator who presses Ctrl-C twice means it).

use std::io;
use std::thread;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::log::Line;

/// Calls `stop` on a dedicated thread when the first SIGTERM or SIGINT
/// arrives; exits with status 1 on the second.
///
/// # Errors
/// When the handlers cannot be installed or the thread cannot start.
pub fn on_terminate(stop: impl FnOnce(&'static str) + Send + 'static) -> io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stop = Some(stop);
            for signal in signals.forever() {
                let name = if signal == SIGINT { "INT" } else { "TERM" };
                match stop.take() {
                    Some(stop) => {
                        let _ = thread::Builder::new()
                            .name("stop".into())
                            .spawn(move || stop(name));
                    }
                    None => {
                        Line::new("stopped")
                            .kv("signal", name)
                            .kv("how", "forced")
                            .emit();
                        std::process::exit(1);
                    }
                }
            }
        })?;
    Ok(())
}
