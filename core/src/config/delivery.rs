//! Checks of the `[delivery]` keys that drive remote delivery and of the
//! `[routes]` table: ports, the smarthost, the retry schedule, lifetimes
//! and connection limits, and local delivery's method and mailbox owner
//! (see `docs/configuration.md`).

use std::time::Duration;

use toml::Spanned;

use super::leaf::{Count, Routes};
use super::raw::RawDelivery;
use super::units::format_duration;
use super::{ConfigError, Delivery};

/// Takes every `[delivery]` key but `dns_servers`, and `[routes]`.
pub(super) fn build(
    raw: RawDelivery,
    routes: Routes,
    text: &str,
    local: &[String],
    out: &mut Delivery,
) -> Result<(), ConfigError> {
    let at = |span, key: &str, msg: String| ConfigError::at(text, span, key, msg);
    if let Some(local) = raw.local {
        out.local = local;
    }
    if let Some(owner) = raw.mailbox_owner {
        out.mailbox_owner = Some(owner);
    }
    if let Some(p) = raw.smtp_port {
        out.smtp_port = p.into_inner().0;
    }
    if let Some(h) = raw.smarthost {
        out.smarthost = Some(h.into_inner().0);
    }
    if let Some(list) = raw.retry {
        let span = list.span();
        let waits: Vec<Duration> = list
            .into_inner()
            .0
            .into_iter()
            .map(|d| d.into_inner().0)
            .collect();
        if waits.is_empty() {
            let msg =
                "needs at least one wait; write e.g. [\"5m\", \"10m\", \"20m\", \"40m\", \"1h\"]";
            return Err(at(span, "delivery.retry", msg.into()));
        }
        if let Some(w) = waits.iter().find(|w| **w < Duration::from_secs(1)) {
            let msg = format!(
                "a wait of {} would retry without pause; every wait must be at least 1s",
                format_duration(*w)
            );
            return Err(at(span, "delivery.retry", msg));
        }
        out.retry = waits;
    }
    if let Some(v) = &raw.max_lifetime {
        if v.get_ref().0 < Duration::from_secs(60) {
            let msg = "must be at least 1m (RFC 5321 asks for 4 to 5 days); write e.g. \"5d\"";
            return Err(at(v.span(), "delivery.max_lifetime", msg.into()));
        }
        out.max_lifetime = v.get_ref().0;
    }
    if let Some(v) = &raw.delay_warning {
        let d = v.get_ref().0;
        out.delay_warning = (!d.is_zero()).then_some(d);
    }
    if let Some(v) = &raw.timeout {
        if v.get_ref().0 < Duration::from_secs(1) {
            let msg = "must be at least 1s; write e.g. \"5m\"";
            return Err(at(v.span(), "delivery.timeout", msg.into()));
        }
        out.timeout = Some(v.get_ref().0);
    }
    for (key, value, slot) in [
        (
            "delivery.connections_per_destination",
            &raw.connections_per_destination,
            &mut out.connections_per_destination,
        ),
        (
            "delivery.max_connections",
            &raw.max_connections,
            &mut out.max_connections,
        ),
        ("delivery.max_hops", &raw.max_hops, &mut out.max_hops),
    ] {
        if let Some(v) = positive(value, text, key)? {
            *slot = v;
        }
    }
    for (domain, hop) in routes.0 {
        let span = domain.span();
        let domain = domain.into_inner().0;
        if local.contains(&domain) {
            let msg = format!(
                "{domain} is a local domain: its mail is delivered here, so it cannot have a route"
            );
            return Err(at(span, "routes", msg));
        }
        if out.routes.contains_key(&domain) {
            return Err(at(span, "routes", format!("{domain} has two routes")));
        }
        out.routes.insert(domain, hop.into_inner().0);
    }
    Ok(())
}

/// A count that must be at least 1.
fn positive(
    value: &Option<Spanned<Count>>,
    text: &str,
    key: &str,
) -> Result<Option<usize>, ConfigError> {
    let Some(v) = value else {
        return Ok(None);
    };
    if v.get_ref().0 == 0 {
        let msg = "must be at least 1, or nothing would ever be delivered".into();
        return Err(ConfigError::at(text, v.span(), key, msg));
    }
    Ok(Some(v.get_ref().0))
}
