//! The `api:` section of the configuration file.
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `enabled` | `false` | talk to a Gthulhu API server at all |
//! | `url` | (required when enabled) | the strategies URL Gthulhu users have (`http://gthulhu-api:80/api/v1/scheduling/strategies`) or a base URL; the token and metrics URLs are derived from it |
//! | `interval` | `10` | seconds between fetches (and metrics posts), 1..=3600 |
//! | `auth_enabled` | `true` | get a JWT with the public key and send it as `Authorization: Bearer` |
//! | `public_key_path` | (required with auth) | PEM RSA public key: sent to get a token, and used to verify the token |
//! | `connect_timeout_ms` | `2000` | TCP (and TLS) connect timeout, 50..=60000 |
//! | `timeout_ms` | `5000` | whole-request timeout, from connect to the last body byte, 50..=300000 |
//! | `ca_cert_path` | system roots | PEM CA certificates to trust instead of the system's (https only) |
//! | `client_cert_path`, `client_key_path` | none | PEM client certificate chain and key for mutual TLS (https only, both or neither) |
//! | `max_response_bytes` | `1048576` | a larger response is refused, 1024..=67108864 |

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::urls::Endpoints;

const INTERVAL_S_MAX: u64 = 3_600;
const TIMEOUT_MS_MIN: u64 = 50;
const CONNECT_TIMEOUT_MS_MAX: u64 = 60_000;
const TIMEOUT_MS_MAX: u64 = 300_000;
const MAX_RESPONSE_BYTES_MIN: u64 = 1 << 10;
const MAX_RESPONSE_BYTES_MAX: u64 = 64 << 20;

/// A validated `api:` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    pub enabled: bool,
    /// `None` only when no `url` was given (then `enabled` is false).
    pub endpoints: Option<Endpoints>,
    pub interval: Duration,
    pub auth_enabled: bool,
    pub public_key_path: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub ca_cert_path: Option<PathBuf>,
    pub client_cert_path: Option<PathBuf>,
    pub client_key_path: Option<PathBuf>,
    pub max_response_bytes: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: false,
            endpoints: None,
            interval: Duration::from_secs(10),
            auth_enabled: true,
            public_key_path: None,
            connect_timeout: Duration::from_millis(2_000),
            timeout: Duration::from_millis(5_000),
            ca_cert_path: None,
            client_cert_path: None,
            client_key_path: None,
            max_response_bytes: 1 << 20,
        }
    }
}

/// The `api:` section as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawApiConfig {
    enabled: Option<bool>,
    url: Option<String>,
    interval: Option<u64>,
    auth_enabled: Option<bool>,
    public_key_path: Option<PathBuf>,
    connect_timeout_ms: Option<u64>,
    timeout_ms: Option<u64>,
    ca_cert_path: Option<PathBuf>,
    client_cert_path: Option<PathBuf>,
    client_key_path: Option<PathBuf>,
    max_response_bytes: Option<u64>,
}

/// A problem with one key of the `api:` section.
#[derive(Debug, PartialEq, Eq)]
pub struct ApiConfigError {
    /// The offending key.
    pub key: &'static str,
    pub message: String,
}

fn error<T>(key: &'static str, message: impl Into<String>) -> Result<T, ApiConfigError> {
    Err(ApiConfigError {
        key,
        message: message.into(),
    })
}

fn in_range(key: &'static str, value: u64, min: u64, max: u64) -> Result<u64, ApiConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        error(
            key,
            format!("{value} is out of range: expected {min}..={max}"),
        )
    }
}

impl RawApiConfig {
    /// Checks the section; files it names are read when the client starts.
    pub fn validate(self) -> Result<ApiConfig, ApiConfigError> {
        let d = ApiConfig::default();
        let enabled = self.enabled.unwrap_or(d.enabled);
        let auth_enabled = self.auth_enabled.unwrap_or(d.auth_enabled);
        let endpoints = match self.url {
            Some(url) => Some(Endpoints::parse(&url).or_else(|e| error("url", e))?),
            None if enabled => return error("url", "is required when api.enabled is true"),
            None => None,
        };
        if enabled && auth_enabled && self.public_key_path.is_none() {
            return error(
                "public_key_path",
                "is required when api.auth_enabled is true (or set auth_enabled: false)",
            );
        }
        let interval = in_range(
            "interval",
            self.interval.unwrap_or(d.interval.as_secs()),
            1,
            INTERVAL_S_MAX,
        )?;
        let connect_timeout_ms = in_range(
            "connect_timeout_ms",
            self.connect_timeout_ms
                .unwrap_or(d.connect_timeout.as_millis() as u64),
            TIMEOUT_MS_MIN,
            CONNECT_TIMEOUT_MS_MAX,
        )?;
        let timeout_ms = in_range(
            "timeout_ms",
            self.timeout_ms.unwrap_or(d.timeout.as_millis() as u64),
            TIMEOUT_MS_MIN,
            TIMEOUT_MS_MAX,
        )?;
        if timeout_ms < connect_timeout_ms {
            return error(
                "timeout_ms",
                format!("{timeout_ms} is shorter than connect_timeout_ms ({connect_timeout_ms})"),
            );
        }
        let max_response_bytes = in_range(
            "max_response_bytes",
            self.max_response_bytes.unwrap_or(d.max_response_bytes),
            MAX_RESPONSE_BYTES_MIN,
            MAX_RESPONSE_BYTES_MAX,
        )?;
        match (&self.client_cert_path, &self.client_key_path) {
            (Some(_), None) => {
                return error("client_key_path", "is required with client_cert_path")
            }
            (None, Some(_)) => {
                return error("client_cert_path", "is required with client_key_path")
            }
            _ => {}
        }
        let https = endpoints.as_ref().is_some_and(|e| e.https);
        for (key, path) in [
            ("ca_cert_path", &self.ca_cert_path),
            ("client_cert_path", &self.client_cert_path),
        ] {
            if path.is_some() && !https {
                return error(key, "only applies to an https:// url");
            }
        }
        Ok(ApiConfig {
            enabled,
            endpoints,
            interval: Duration::from_secs(interval),
            auth_enabled,
            public_key_path: self.public_key_path,
            connect_timeout: Duration::from_millis(connect_timeout_ms),
            timeout: Duration::from_millis(timeout_ms),
            ca_cert_path: self.ca_cert_path,
            client_cert_path: self.client_cert_path,
            client_key_path: self.client_key_path,
            max_response_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ApiConfig, ApiConfigError> {
        serde_yaml::from_str::<RawApiConfig>(yaml)
            .expect("YAML")
            .validate()
    }

    #[test]
    fn defaults_are_off_and_need_nothing() {
        let c = parse("{}").unwrap();
        assert_eq!(c, ApiConfig::default());
    }

    #[test]
    fn full_section_is_typed() {
        let c = parse(
            "enabled: true\nurl: https://gthulhu-api/api/v1/scheduling/strategies\n\
             interval: 30\npublic_key_path: /etc/gthulhu/jwt.pem\nconnect_timeout_ms: 500\n\
             timeout_ms: 3000\nca_cert_path: /etc/gthulhu/ca.pem\n\
             client_cert_path: /etc/gthulhu/c.pem\nclient_key_path: /etc/gthulhu/c.key\n\
             max_response_bytes: 65536\n",
        )
        .unwrap();
        assert!(c.enabled && c.auth_enabled);
        assert_eq!(
            c.endpoints.unwrap().token,
            "https://gthulhu-api/api/v1/auth/token"
        );
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.timeout, Duration::from_millis(3000));
        assert_eq!(c.max_response_bytes, 65536);
    }

    #[test]
    fn mistakes_name_the_key() {
        for (yaml, key, text) in [
            ("enabled: true", "url", "required"),
            (
                "enabled: true\nurl: http://a",
                "public_key_path",
                "required",
            ),
            ("url: a:80", "url", "not an http"),
            ("interval: 0", "interval", "out of range"),
            (
                "timeout_ms: 100\nconnect_timeout_ms: 200",
                "timeout_ms",
                "shorter",
            ),
            (
                "max_response_bytes: 10",
                "max_response_bytes",
                "out of range",
            ),
            (
                "url: https://a\nclient_cert_path: /c",
                "client_key_path",
                "required",
            ),
            ("url: http://a\nca_cert_path: /c", "ca_cert_path", "https"),
        ] {
            let e = parse(yaml).unwrap_err();
            assert_eq!(e.key, key, "{yaml}");
            assert!(e.message.contains(text), "{yaml}: {}", e.message);
        }
        assert!(serde_yaml::from_str::<RawApiConfig>("intervall: 3").is_err());
    }

    #[test]
    fn config_file_errors_point_at_the_api_key() {
        let err = crate::config::Config::parse("api:\n  interval: 0\n", "g.yaml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "g.yaml:2:13: api.interval: 0 is out of range: expected 1..=3600"
        );
    }

    #[test]
    fn auth_can_be_turned_off() {
        let c = parse("enabled: true\nurl: http://a\nauth_enabled: false").unwrap();
        assert!(!c.auth_enabled && c.public_key_path.is_none());
    }
}
