//! `hato check-config`: the effective policy in plain words.

use super::Config;

pub(super) fn explain(cfg: &Config) -> String {
    format!("hostname: {}\n", cfg.hostname)
}
