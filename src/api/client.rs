//! One blocking conversation with the API server: authenticate when needed,
//! fetch strategies, post metrics. Every request is bounded by the
//! configured timeouts and every response by `max_response_bytes`.

use ureq::Agent;

use super::auth::{PublicKey, Token};
use super::config::ApiConfig;
use super::tls::tls_config;
use super::urls::Endpoints;
use super::wire::{self, ApiStrategies};
use crate::counters::Counters;

/// A token is renewed once it expires within this many seconds (or two
/// intervals, if longer).
const RENEW_MARGIN_S: u64 = 60;

enum Request<'a> {
    Get,
    Post(&'a [u8]),
}

/// A token-based login, when `auth_enabled`.
struct Auth {
    key: PublicKey,
    token: Option<Token>,
}

pub struct Client {
    agent: Agent,
    endpoints: Endpoints,
    auth: Option<Auth>,
    max_response_bytes: u64,
    slice_ns_min: u64,
    renew_margin_s: u64,
}

impl Client {
    /// Reads the key and certificate files `config` names and prepares the
    /// HTTP agent; fails with a one-line reason. `config.endpoints` must be
    /// set.
    pub fn new(config: &ApiConfig, slice_ns_min: u64) -> Result<Client, String> {
        let endpoints = config.endpoints.clone().ok_or("api.url is not set")?;
        let auth = match (&config.public_key_path, config.auth_enabled) {
            (Some(path), true) => Some(Auth {
                key: PublicKey::load(path)?,
                token: None,
            }),
            (None, true) => return Err("api.public_key_path is not set".to_string()),
            (_, false) => None,
        };
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .https_only(endpoints.https)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.timeout))
            .user_agent(concat!("gthulhu/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls_config(config)?)
            .build()
            .new_agent();
        Ok(Client {
            agent,
            endpoints,
            auth,
            max_response_bytes: config.max_response_bytes,
            slice_ns_min,
            renew_margin_s: RENEW_MARGIN_S.max(2 * config.interval.as_secs()),
        })
    }

    /// `GET /api/v1/scheduling/strategies`, checked and converted.
    pub fn fetch_strategies(&mut self) -> Result<ApiStrategies, String> {
        let url = self.endpoints.strategies.clone();
        let body = self.authorized(&url, Request::Get)?;
        wire::parse_strategies(&body, self.slice_ns_min)
    }

    /// `POST /api/v1/metrics` with one counter snapshot.
    pub fn post_metrics(&mut self, counters: &Counters) -> Result<(), String> {
        let url = self.endpoints.metrics.clone();
        self.authorized(&url, Request::Post(&wire::metrics_request(counters)))
            .map(drop)
    }

    /// Sends a request with a valid token (getting one first if there is
    /// none or it is about to expire); on a 401 gets a new token and tries
    /// once more.
    fn authorized(&mut self, url: &str, request: Request) -> Result<Vec<u8>, String> {
        let Some(mut auth) = self.auth.take() else {
            return self.expect_ok(url, &request, None);
        };
        let result = self.with_token(&mut auth, url, &request);
        self.auth = Some(auth);
        result
    }

    fn with_token(&self, auth: &mut Auth, url: &str, request: &Request) -> Result<Vec<u8>, String> {
        let token = self.token(auth)?;
        match self.send(url, request, Some(&token))? {
            (401, _) => {
                auth.token = None;
                let token = self.token(auth)?;
                self.expect_ok(url, request, Some(&token))
                    .map_err(|e| format!("{e} (after getting a new token)"))
            }
            (status, body) => ok_body(status, body),
        }
    }

    /// The current token, renewed first if it is missing or about to
    /// expire.
    fn token(&self, auth: &mut Auth) -> Result<String, String> {
        if let Some(token) = auth
            .token
            .as_ref()
            .filter(|t| !t.expires_within(self.renew_margin_s))
        {
            return Ok(token.value().to_string());
        }
        let request = Request::Post(&wire::token_request(auth.key.pem()));
        let body = self.expect_ok(&self.endpoints.token, &request, None)?;
        let token = Token::verify(wire::parse_token(&body)?, &auth.key)?;
        let value = token.value().to_string();
        auth.token = Some(token);
        Ok(value)
    }

    fn expect_ok(
        &self,
        url: &str,
        request: &Request,
        bearer: Option<&str>,
    ) -> Result<Vec<u8>, String> {
        let (status, body) = self.send(url, request, bearer)?;
        ok_body(status, body)
    }

    /// One HTTP exchange: the status and the body, read up to the size
    /// bound.
    fn send(
        &self,
        url: &str,
        request: &Request,
        bearer: Option<&str>,
    ) -> Result<(u16, Vec<u8>), String> {
        let authorization = bearer.map(|t| format!("Bearer {t}"));
        let result = match request {
            Request::Get => {
                let mut r = self.agent.get(url).header("Accept", "application/json");
                if let Some(value) = &authorization {
                    r = r.header("Authorization", value);
                }
                r.call()
            }
            Request::Post(body) => {
                let mut r = self
                    .agent
                    .post(url)
                    .header("Accept", "application/json")
                    .content_type("application/json");
                if let Some(value) = &authorization {
                    r = r.header("Authorization", value);
                }
                r.send(*body)
            }
        };
        let mut response = result.map_err(|e| format!("{url}: {}", describe(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(self.max_response_bytes)
            .read_to_vec()
            .map_err(|e| format!("{url}: HTTP {status}: {}", describe(&e)))?;
        Ok((status, body))
    }
}

/// The body of a 2xx response, or why the status is an error.
fn ok_body(status: u16, body: Vec<u8>) -> Result<Vec<u8>, String> {
    if (200..300).contains(&status) {
        return Ok(body);
    }
    Err(match wire::error_reason(&body) {
        Some(reason) => format!("HTTP {status}: {reason}"),
        None => format!("HTTP {status}"),
    })
}

/// A transport error on one line, without anything the server chose.
fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::BodyExceedsLimit(limit) => {
            format!("response is larger than {limit} bytes")
        }
        ureq::Error::Timeout(_) => "timed out".to_string(),
        other => wire::quote(&other.to_string()),
    }
}
