//! The `[aliases]` table: `abuse = "alice@example.org"` sends abuse@ every
//! local domain to alice; `"sales@example.org" = "bob@example.net"` only
//! that one address. Keys and targets are lower-cased.

use std::collections::BTreeMap;

use super::error::{dotted, line_of};
use super::leaf::Aliases;
use super::ConfigError;

pub(super) fn build(
    raw: Aliases,
    text: &str,
    domains: &[String],
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    let mut lines = BTreeMap::new();
    // The TOML reader hands keys over sorted; report in file order.
    let mut pairs = raw.0;
    pairs.sort_by_key(|(key, _)| key.span().start);
    for (key, target) in pairs {
        let span = key.span();
        let key = key.into_inner().0;
        let name = dotted(&["aliases", key.as_str()]);
        let err = |msg: String| ConfigError::at(text, span.clone(), &name, msg);
        let (local, domain) = match key.split_once('@') {
            Some((l, d)) => (l, Some(d)),
            None => (key.as_str(), None),
        };
        if local == "postmaster" {
            return Err(err(
                "postmaster is not an alias; write postmaster = \"you@example.org\" at the top \
                 of the file instead"
                    .into(),
            ));
        }
        if let Some(d) = domain {
            if !domains.iter().any(|l| l == d) {
                return Err(err(format!(
                    "{d} is not one of the local domains ({}), so this alias would never be \
                     used; add {d} to domains, or remove the alias",
                    domains.join(", ")
                )));
            }
        }
        if let Some(first) = lines.get(&key) {
            return Err(err(format!(
                "is given twice (also on line {first}; case does not matter); remove one"
            )));
        }
        lines.insert(key.clone(), line_of(text, span.start));
        out.insert(key, target.into_inner().0);
    }
    Ok(out)
}
