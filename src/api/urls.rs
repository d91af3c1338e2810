//! The API server's three endpoints, derived from the one configured URL.

/// Path of the strategies endpoint; a configured URL ending in it is the
/// full URL Gthulhu users already have, and the rest is the base.
const STRATEGIES_PATH: &str = "/api/v1/scheduling/strategies";
const TOKEN_PATH: &str = "/api/v1/auth/token";
const METRICS_PATH: &str = "/api/v1/metrics";

/// Longest URL accepted (bytes).
const MAX_URL_LEN: usize = 2048;

/// Where the client sends each request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub token: String,
    pub strategies: String,
    pub metrics: String,
    /// Whether the server is reached over TLS.
    pub https: bool,
}

impl Endpoints {
    /// Derives the endpoints from `url`: either the full strategies URL
    /// (`http://gthulhu-api:80/api/v1/scheduling/strategies`) or a base URL
    /// (`https://gthulhu-api`, `http://proxy/gthulhu/`).
    pub fn parse(url: &str) -> Result<Endpoints, String> {
        if url.len() > MAX_URL_LEN {
            return Err(format!("URL is longer than {MAX_URL_LEN} bytes"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("URL must not contain spaces or control characters".to_string());
        }
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("{url:?} is not an http:// or https:// URL"));
        };
        if rest.contains(['?', '#']) {
            return Err("URL must not have a query or fragment".to_string());
        }
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err("URL must not carry credentials (user@host)".to_string());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((host, after)) if after.is_empty() || after.starts_with(':') => {
                    (host, after.strip_prefix(':'))
                }
                _ => return Err("URL has a malformed [IPv6] host".to_string()),
            },
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if let Some(port) = port {
            if port.parse::<u16>().is_err() {
                return Err(format!("{port:?} is not a port number"));
            }
        }
        if host.is_empty() {
            return Err("URL has no host".to_string());
        }
        let trimmed = url.trim_end_matches('/');
        let base = trimmed.strip_suffix(STRATEGIES_PATH).unwrap_or(trimmed);
        Ok(Endpoints {
            token: format!("{base}{TOKEN_PATH}"),
            strategies: format!("{base}{STRATEGIES_PATH}"),
            metrics: format!("{base}{METRICS_PATH}"),
            https,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_strategies_url_and_base_url_give_the_same_endpoints() {
        let full = Endpoints::parse("http://gthulhu-api:80/api/v1/scheduling/strategies").unwrap();
        let base = Endpoints::parse("http://gthulhu-api:80/").unwrap();
        assert_eq!(full, base);
        assert_eq!(full.token, "http://gthulhu-api:80/api/v1/auth/token");
        assert_eq!(
            full.strategies,
            "http://gthulhu-api:80/api/v1/scheduling/strategies"
        );
        assert_eq!(full.metrics, "http://gthulhu-api:80/api/v1/metrics");
        assert!(!full.https);
    }

    #[test]
    fn base_url_may_have_a_path_prefix_and_tls() {
        let e = Endpoints::parse("https://proxy.example/gthulhu").unwrap();
        assert_eq!(e.token, "https://proxy.example/gthulhu/api/v1/auth/token");
        assert!(e.https);
        let v6 = Endpoints::parse("http://[::1]:8080").unwrap();
        assert_eq!(v6.metrics, "http://[::1]:8080/api/v1/metrics");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (url, reason) in [
            ("gthulhu-api:80", "not an http"),
            ("ftp://host/", "not an http"),
            ("http://", "no host"),
            ("http://:80/", "no host"),
            ("http://user:pw@host/", "credentials"),
            ("http://host/?a=b", "query"),
            ("http://host:http/", "port"),
            ("http://ho st/", "spaces"),
        ] {
            let err = Endpoints::parse(url).unwrap_err();
            assert!(err.contains(reason), "{url}: {err}");
        }
    }
}
