//! Which browser pages may open a broker WebSocket: the Origin check.
//!
//! A page's `Origin` must be the broker's public origin (`--public-origin`)
//! or one its operator allows (`--allow-origin`). Without a public origin
//! the broker falls back to the origin it was reached at (scheme and
//! `Host`), but only when that `Host` is an IP address or `localhost`: a
//! `Host` that is a domain name may be an attacker's name pointed at the
//! broker (DNS rebinding), whose pages would then pass as the broker's own.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use warp::http::Uri;

/// A web origin: scheme, host and port (RFC 6454), as browsers send it in
/// `Origin`. Hosts compare case-insensitively, default ports are implied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: &'static str,
    host: String,
    port: u16,
}

/// Why a string is not an origin.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an origin like https://share.example or http://192.0.2.1:8080 (scheme http or https, a host, an optional port, no path)")]
pub struct BadOrigin(String);

impl FromStr for Origin {
    type Err = BadOrigin;

    fn from_str(s: &str) -> Result<Origin, BadOrigin> {
        let bad = || BadOrigin(s.to_owned());
        let uri: Uri = s.parse().map_err(|_| bad())?;
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => "http",
            Some("https") => "https",
            _ => return Err(bad()),
        };
        let authority = uri.authority().ok_or_else(bad)?;
        let path = uri.path_and_query().map_or("", |p| p.as_str());
        if authority.as_str().contains('@') || !(path.is_empty() || path == "/") {
            return Err(bad());
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(bad());
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        Ok(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port: authority.port_u16().unwrap_or(default_port),
        })
    }
}

/// `https://share.example`, with the port only when it is not the default.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        write!(f, "{}://{}", self.scheme, self.host)?;
        if self.port != default_port {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

impl Origin {
    /// Whether the host is an IP address or `localhost`: names that no
    /// one else's DNS can point at this broker.
    fn host_is_literal(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.parse::<IpAddr>().is_ok() || host == "localhost"
    }
}

/// How a request reached the broker: its scheme (`http`, or what a
/// trusted proxy says) and its `Host` header.
#[derive(Clone, Debug)]
pub struct Reached {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The `Host` header, if any.
    pub host: Option<String>,
}

/// Why a page's origin may not open a WebSocket, for the 403 answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The origin is neither the public origin nor allowed.
    NotPublic {
        /// What the page sent.
        origin: String,
        /// The broker's `--public-origin`.
        public: Origin,
    },
    /// No public origin is set and the page is not from the origin the
    /// broker was reached at (an IP address or `localhost`).
    NotOwn {
        /// What the page sent.
        origin: String,
        /// The origin the request reached (scheme and `Host`), if known.
        own: Option<Origin>,
    },
    /// No public origin is set and the broker was reached by a domain
    /// name, which cannot be told from a rebound attacker's name.
    NoPublicOrigin {
        /// What the page sent.
        origin: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotPublic { origin, public } => write!(
                f,
                "pages from {origin} may not use this broker: it serves pages from {public} \
                 (scheme, host and port must all match) and those its operator allows \
                 (--allow-origin)"
            ),
            Refusal::NotOwn {
                origin,
                own: Some(own),
            } => write!(
                f,
                "pages from {origin} may not use this broker: it accepts its own pages ({own}) \
                 and those its operator allows (--allow-origin)"
            ),
            Refusal::NotOwn { origin, own: None } => write!(
                f,
                "pages from {origin} may not use this broker: the request named no Host, and \
                 the broker accepts only its own pages and those its operator allows \
                 (--allow-origin)"
            ),
            Refusal::NoPublicOrigin { origin } => write!(
                f,
                "pages from {origin} may not use this broker: it is reached by a domain name but \
                 has no public origin, so it cannot tell its own pages from a DNS-rebinding \
                 attack; its operator must start it with --public-origin (e.g. \
                 --public-origin https://share.example) or list the origin with --allow-origin"
            ),
        }
    }
}

/// Whether a page from `origin` may open a WebSocket on a broker with
/// this `public` origin and `allowed` list, reached as `reached`.
pub fn check(
    origin: &str,
    reached: &Reached,
    public: Option<&Origin>,
    allowed: &[String],
) -> Result<(), Refusal> {
    let parsed = origin.parse::<Origin>().ok();
    let listed = allowed.iter().any(|a| {
        a == "*"
            || match (&parsed, a.parse::<Origin>()) {
                (Some(o), Ok(a)) => *o == a,
                _ => a.trim_end_matches('/').eq_ignore_ascii_case(origin),
            }
    });
    if listed {
        return Ok(());
    }
    let origin = origin.to_owned();
    if let Some(public) = public {
        return match parsed {
            Some(o) if o == *public => Ok(()),
            _ => Err(Refusal::NotPublic {
                origin,
                public: public.clone(),
            }),
        };
    }
    let own = reached.host.as_ref().and_then(|host| {
        format!("{}://{host}", reached.scheme)
            .parse::<Origin>()
            .ok()
    });
    match own {
        Some(own) if !own.host_is_literal() => Err(Refusal::NoPublicOrigin { origin }),
        Some(own) if parsed.as_ref() == Some(&own) => Ok(()),
        own => Err(Refusal::NotOwn { origin, own }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reached(scheme: &'static str, host: &str) -> Reached {
        Reached {
            scheme,
            host: Some(host.to_owned()),
        }
    }

    fn o(s: &str) -> Origin {
        s.parse().unwrap()
    }

    #[test]
    fn origins_parse_and_compare_like_browsers_send_them() {
        assert_eq!(o("https://Share.Example"), o("https://share.example:443"));
        assert_eq!(o("https://share.example/"), o("https://share.example"));
        assert_ne!(o("http://share.example"), o("https://share.example"));
        assert_ne!(o("https://share.example:8443"), o("https://share.example"));
        assert_eq!(o("http://[::1]:8080").to_string(), "http://[::1]:8080");
        assert_eq!(
            o("HTTPS://share.example:443").to_string(),
            "https://share.example"
        );
        for bad in [
            "null",
            "share.example",
            "ftp://share.example",
            "https://share.example/app",
            "https://user@share.example",
            "https://share.example?x",
        ] {
            assert!(bad.parse::<Origin>().is_err(), "{bad}");
        }
    }

    #[test]
    fn with_a_public_origin_only_it_and_the_allowlist_pass() {
        let public = o("https://share.example");
        let at = reached("http", "share.example");
        let check = |origin, allowed: &[String]| check(origin, &at, Some(&public), allowed);
        assert_eq!(check("https://share.example", &[]), Ok(()));
        assert_eq!(check("https://SHARE.example", &[]), Ok(()));
        // Matching Host is not enough: the scheme differs.
        assert!(matches!(
            check("http://share.example", &[]),
            Err(Refusal::NotPublic { .. })
        ));
        assert!(check("https://share.example:8443", &[]).is_err());
        assert!(check("null", &[]).is_err());
        assert_eq!(
            check("https://app.example", &["https://app.example/".into()]),
            Ok(())
        );
        assert!(check("http://app.example", &["https://app.example".into()]).is_err());
        assert_eq!(check("https://evil.example", &["*".into()]), Ok(()));
    }

    #[test]
    fn without_a_public_origin_only_literal_hosts_count_as_own() {
        let none = |origin, at: &Reached| check(origin, at, None, &[]);
        let local = reached("http", "127.0.0.1:8080");
        assert_eq!(none("http://127.0.0.1:8080", &local), Ok(()));
        assert!(matches!(
            none("https://127.0.0.1:8080", &local),
            Err(Refusal::NotOwn { .. })
        ));
        assert!(none("http://127.0.0.1:8081", &local).is_err());
        assert_eq!(
            none(
                "https://127.0.0.1:8443",
                &reached("https", "127.0.0.1:8443")
            ),
            Ok(())
        );
        assert_eq!(
            none("http://[::1]:8080", &reached("http", "[::1]:8080")),
            Ok(())
        );
        assert_eq!(
            none("http://LocalHost:8080", &reached("http", "localhost:8080")),
            Ok(())
        );
        // DNS rebinding: the attacker's name resolves to the broker.
        assert_eq!(
            none(
                "http://attacker.example",
                &reached("http", "attacker.example")
            ),
            Err(Refusal::NoPublicOrigin {
                origin: "http://attacker.example".into()
            })
        );
        let no_host = Reached {
            scheme: "http",
            host: None,
        };
        assert!(matches!(
            none("http://127.0.0.1:8080", &no_host),
            Err(Refusal::NotOwn { own: None, .. })
        ));
    }
}
