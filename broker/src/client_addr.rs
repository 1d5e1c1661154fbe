//! The client's address for logs and per-address limits: the TCP peer,
//! unless that peer is a trusted proxy, in which case the proxy's
//! `Forwarded` (RFC 7239) or `X-Forwarded-For` header names the client.
//! Headers from anyone else are ignored: a client could write anything
//! there. The same goes for the scheme a proxy says the client used.

use std::net::IpAddr;

use ipnet::IpNet;

/// Resolves the client address of one request.
pub fn client_addr(
    peer: IpAddr,
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = match (forwarded, x_forwarded_for) {
        (Some(f), _) => f
            .split(',')
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for").then(|| parse_node(value))?
                })
            })
            .collect(),
        (None, Some(x)) => x.split(',').filter_map(parse_node).collect(),
        (None, None) => Vec::new(),
    };
    // The rightmost hop was added by the proxy closest to us; walk left
    // past our own proxies to the first address none of them vouches for.
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// The scheme the client used: `https` when a trusted proxy says so
/// (`Forwarded: proto=https`, else `X-Forwarded-Proto: https`), otherwise
/// `http`, the only one the broker speaks itself.
pub fn client_scheme(
    peer: IpAddr,
    forwarded: Option<&str>,
    x_forwarded_proto: Option<&str>,
    trusted: &[IpNet],
) -> &'static str {
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return "http";
    }
    // The rightmost value was set by the proxy closest to us.
    let proto = match (forwarded, x_forwarded_proto) {
        (Some(f), _) => f.rsplit(',').find_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("proto")
                    .then(|| value.trim().trim_matches('"'))
            })
        }),
        (None, Some(x)) => x.rsplit(',').next().map(str::trim),
        (None, None) => None,
    };
    match proto {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    }
}

/// `192.0.2.1`, `"192.0.2.1:1234"`, `"[2001:db8::1]:80"`, `2001:db8::1`.
fn parse_node(value: &str) -> Option<IpAddr> {
    let v = value.trim().trim_matches('"');
    if let Ok(ip) = v.parse() {
        return Some(ip);
    }
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    v.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let got = client_addr(
            ip("198.51.100.7"),
            Some("for=203.0.113.9"),
            Some("203.0.113.9"),
            &[],
        );
        assert_eq!(got, ip("198.51.100.7"));
        let got = client_addr(
            ip("198.51.100.7"),
            None,
            Some("203.0.113.9"),
            &nets(&["127.0.0.1/32"]),
        );
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn only_a_trusted_proxy_says_the_scheme() {
        let trusted = nets(&["127.0.0.1/32"]);
        let proxy = ip("127.0.0.1");
        assert_eq!(client_scheme(proxy, None, Some("https"), &trusted), "https");
        assert_eq!(
            client_scheme(proxy, None, Some("http, https"), &trusted),
            "https"
        );
        assert_eq!(
            client_scheme(
                proxy,
                Some("for=1.2.3.4;proto=https"),
                Some("http"),
                &trusted
            ),
            "https"
        );
        assert_eq!(client_scheme(proxy, None, None, &trusted), "http");
        assert_eq!(client_scheme(proxy, None, Some("gopher"), &trusted), "http");
        let stranger = ip("198.51.100.7");
        assert_eq!(
            client_scheme(stranger, None, Some("https"), &trusted),
            "http"
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client() {
        let trusted = nets(&["127.0.0.0/8", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        assert_eq!(
            client_addr(peer, None, Some("203.0.113.9"), &trusted),
            ip("203.0.113.9")
        );
        // A client-written entry on the left does not fool us.
        assert_eq!(
            client_addr(peer, None, Some("1.2.3.4, 203.0.113.9, 10.1.2.3"), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_addr(
                peer,
                Some(r#"for=1.2.3.4, for="[2001:db8::7]:4711";proto=https"#),
                Some("9.9.9.9"),
                &trusted
            ),
            ip("2001:db8::7")
        );
        assert_eq!(client_addr(peer, Some("for=unknown"), None, &trusted), peer);
        assert_eq!(client_addr(peer, None, None, &trusted), peer);
    }
}
