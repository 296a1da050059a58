//! Which domain signs a message: the domain of its From address (RFC
//! 5322 §3.6.2), the one receivers show and DMARC (RFC 7489 §3.1) aligns
//! the signature with.

use mailparse::{addrparse_header, parse_headers, MailAddr};

use super::is_dns_name;

/// Returns the domain (lower case) of the first address of the first
/// From field in `header_section` (the message's start, up to and with
/// the empty line; more is ignored), or None when there is no From field
/// or its address has no valid domain.
pub fn from_domain(header_section: &[u8]) -> Option<String> {
    let (headers, _) = parse_headers(header_section).ok()?;
    let from = headers
        .iter()
        .find(|h| h.get_key_ref().eq_ignore_ascii_case("from"))?;
    let list = addrparse_header(from).ok()?;
    let addr = list.iter().find_map(|a| match a {
        MailAddr::Single(s) => Some(s.addr.clone()),
        MailAddr::Group(g) => g.addrs.first().map(|s| s.addr.clone()),
    })?;
    let (_, domain) = addr.rsplit_once('@')?;
    let domain = domain
        .trim_end_matches('>')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    is_dns_name(&domain).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_from_address_names_the_domain() {
        let cases: [(&[u8], Option<&str>); 7] = [
            (
                b"From: Alice <alice@Example.ORG>\r\n\r\nbody",
                Some("example.org"),
            ),
            (
                b"To: x@y.example\r\nfrom: bob@mail.example.org\r\n\r\n",
                Some("mail.example.org"),
            ),
            (
                b"From: \"Smith, J\" <j@example.net>,\r\n k@other.example\r\n\r\n",
                Some("example.net"),
            ),
            (
                b"From: team: a@example.com, b@example.org;\r\n\r\n",
                Some("example.com"),
            ),
            (b"Subject: no from\r\n\r\n", None),
            (b"From: nobody\r\n\r\n", None),
            (b"From: x@[192.0.2.1]\r\n\r\n", None),
        ];
        for (header, want) in cases {
            assert_eq!(
                from_domain(header).as_deref(),
                want,
                "{}",
                String::from_utf8_lossy(header)
            );
        }
    }
}
