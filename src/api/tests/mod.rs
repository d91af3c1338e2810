//! The client against a scripted server on 127.0.0.1 speaking both
//! protocol versions and misbehaving on demand.

mod server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::server::{
    closed_port, eventually, ok, recv, Reply, TestServer, METRICS, STRATEGIES, TOKEN,
};
use super::auth::testing::{fixture, token};
use super::wire::METRICS_FIELDS;
use super::*;
use crate::strategy::model::Priority;

const MIN_SLICE: u64 = 500_000;

fn config(url: &str, auth: bool) -> ApiConfig {
    ApiConfig {
        enabled: true,
        endpoints: Some(urls::Endpoints::parse(url).unwrap()),
        interval: Duration::from_millis(20),
        auth_enabled: auth,
        public_key_path: auth.then(|| fixture("server_public.pem")),
        connect_timeout: Duration::from_millis(500),
        timeout: Duration::from_millis(700),
        max_response_bytes: 64 << 10,
        ..ApiConfig::default()
    }
}

/// A worker driven one cycle at a time by the test.
struct Driven {
    worker: Worker<ApiUpdate>,
    updates: Receiver<ApiUpdate>,
    wakes: Arc<AtomicUsize>,
}

impl Driven {
    fn new(config: &ApiConfig) -> Driven {
        let (tx, updates) = mpsc::channel();
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&wakes);
        let worker = Worker {
            client: Client::new(config, MIN_SLICE).unwrap(),
            interval: config.interval,
            tx,
            wake: Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
            counters: Arc::default(),
            status: Arc::default(),
            last: None,
        };
        Driven {
            worker,
            updates,
            wakes,
        }
    }

    /// One cycle; its error, if any.
    fn cycle(&mut self) -> Result<(), String> {
        match self.worker.cycle() {
            Ok(result) => result,
            Err(Disconnected) => panic!("receiver gone"),
        }
    }

    /// The update the last cycles sent, if any (and there must be at most
    /// one).
    fn update(&self) -> Option<Strategies> {
        let mut all: Vec<ApiUpdate> = self.updates.try_iter().collect();
        assert!(all.len() <= 1, "{} updates", all.len());
        all.pop().map(|u| u.0)
    }

    fn publish(&self, counters: Counters) {
        *self.worker.counters.lock().unwrap() = Some(counters);
    }
}

fn old_token(t: &str) -> Reply {
    ok(format!(
        r#"{{"success":true,"message":"Token generated","timestamp":"2025-01-01T00:00:00Z","token":"{t}"}}"#
    ))
}

fn new_token(t: &str) -> Reply {
    ok(format!(
        r#"{{"success":true,"data":{{"token":"{t}","expired_at":1735693200}},"timestamp":"2025-01-01T00:00:00Z"}}"#
    ))
}

fn strategies(entries: &str) -> Reply {
    ok(format!(
        r#"{{"success":true,"message":"Scheduling strategies retrieved successfully","timestamp":"2025-01-01T00:00:00Z","scheduling":[{entries}]}}"#
    ))
}

const OLD_ENTRIES: &str = r#"{"priority":true,"execution_time":20000000,"pid":101,"selectors":[{"key":"app","value":"web"}],"command_regex":"nginx"},{"priority":false,"execution_time":1000000,"pid":102}"#;
const NEW_ENTRIES: &str = r#"{"priority":2,"execution_time":0,"pid":201},{"priority":0,"execution_time":3000000,"pid":202}"#;

fn names_pids(s: &Strategies) -> Vec<(String, Vec<i32>)> {
    s.list
        .iter()
        .map(|s| (s.name.clone(), s.selector.pids.clone()))
        .collect()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn old_protocol_round_trip_sends_key_bearer_and_metrics() {
    let server = TestServer::start();
    let t = token(3600, false);
    server.script(TOKEN, [old_token(&t)]);
    server.script(STRATEGIES, [strategies(OLD_ENTRIES)]);
    server.script(METRICS, [ok(r#"{"success":true,"timestamp":"x"}"#)]);
    let mut d = Driven::new(&config(&server.url("http"), true));
    d.publish(Counters {
        nr_queued: 4,
        nr_user_dispatches: 9,
        nr_rule_runs: 1,
        ..Counters::default()
    });
    d.cycle().unwrap();

    let auth = server.next();
    assert_eq!((auth.method.as_str(), auth.path.as_str()), ("POST", TOKEN));
    assert_eq!(auth.header("authorization"), None);
    assert_eq!(auth.header("content-type"), Some("application/json"));
    let key = std::fs::read_to_string(fixture("server_public.pem")).unwrap();
    assert_eq!(auth.json()["public_key"], key.as_str());

    let get = server.next();
    assert_eq!(
        (get.method.as_str(), get.path.as_str()),
        ("GET", STRATEGIES)
    );
    assert_eq!(get.header("authorization"), Some(bearer(&t).as_str()));

    let post = server.next();
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", METRICS)
    );
    assert_eq!(post.header("authorization"), Some(bearer(&t).as_str()));
    let body = post.json();
    let mut names: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    let mut expected = METRICS_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(body["nr_queued"], 4);
    assert_eq!(body["nr_user_dispatches"], 9);

    let got = d.update().expect("an update");
    assert_eq!(
        names_pids(&got),
        [
            ("api[0]".to_string(), vec![101]),
            ("api[1]".to_string(), vec![102])
        ]
    );
    assert_eq!(got.list[0].priority, Priority::Level(0));
    assert_eq!(got.list[1].priority, Priority::NoBoost);
    assert_eq!(d.wakes.load(Ordering::SeqCst), 1);
}

#[test]
fn new_protocol_token_and_integer_priorities() {
    let server = TestServer::start();
    let t = token(3600, false);
    server.script(TOKEN, [new_token(&t)]);
    server.script(STRATEGIES, [strategies(NEW_ENTRIES)]);
    let mut d = Driven::new(&config(&server.url("http"), true));
    d.cycle().unwrap();
    assert_eq!(server.next().path, TOKEN);
    assert_eq!(
        server.next().header("authorization"),
        Some(bearer(&t).as_str())
    );
    let got = d.update().expect("an update");
    assert_eq!(got.list[0].priority, Priority::Level(2));
    assert_eq!(got.list[0].execution_time, None);
    assert_eq!(got.list[1].priority, Priority::Level(0));
    assert_eq!(got.list[1].execution_time, Some(3_000_000));
    assert!(
        server.received().is_empty(),
        "no metrics without a snapshot"
    );
}

#[test]
fn unchanged_strategies_are_not_sent_again_and_the_token_is_reused() {
    let server = TestServer::start();
    server.script(TOKEN, [old_token(&token(3600, false))]);
    server.script(
        STRATEGIES,
        [
            strategies(OLD_ENTRIES),
            strategies(OLD_ENTRIES),
            strategies(NEW_ENTRIES),
            strategies(""),
        ],
    );
    let mut d = Driven::new(&config(&server.url("http"), true));
    d.cycle().unwrap();
    assert!(d.update().is_some());
    d.cycle().unwrap();
    assert!(d.update().is_none());
    d.cycle().unwrap();
    assert_eq!(names_pids(&d.update().unwrap())[0].1, vec![201]);
    d.cycle().unwrap();
    assert!(d.update().unwrap().is_empty(), "an empty list removes them");
    let paths: Vec<String> = server.received().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [TOKEN, STRATEGIES, STRATEGIES, STRATEGIES, STRATEGIES]
    );
    assert_eq!(d.wakes.load(Ordering::SeqCst), 3);
}

#[test]
fn unauthorized_reauthenticates_once() {
    let server = TestServer::start();
    let (first, second) = (token(3600, false), token(7200, false));
    let rejected = || Reply::Body(401, r#"{"success":false,"error":"invalid token"}"#.into());
    server.script(TOKEN, [old_token(&first), new_token(&second)]);
    server.script(STRATEGIES, [rejected(), strategies(NEW_ENTRIES)]);
    let mut d = Driven::new(&config(&server.url("http"), true));
    d.cycle().unwrap();
    let seen: Vec<_> = server.received();
    let summary: Vec<(&str, Option<&str>)> = seen
        .iter()
        .map(|r| (r.path.as_str(), r.header("authorization")))
        .collect();
    assert_eq!(
        summary,
        [
            (TOKEN, None),
            (STRATEGIES, Some(bearer(&first).as_str())),
            (TOKEN, None),
            (STRATEGIES, Some(bearer(&second).as_str())),
        ]
    );
    assert!(d.update().is_some());

    // A second 401 in a row is an error, not a loop.
    server.script(TOKEN, [old_token(&first)]);
    server.script(STRATEGIES, [rejected(), rejected()]);
    let err = d.cycle().unwrap_err();
    assert!(
        err.contains("HTTP 401") && err.contains("new token"),
        "{err}"
    );
    assert_eq!(server.received().len(), 3, "401, new token, 401");
    assert!(d.update().is_none());
}

#[test]
fn token_is_renewed_before_it_expires() {
    let server = TestServer::start();
    // Expires within the renewal margin: every cycle gets a new one.
    server.script(
        TOKEN,
        [old_token(&token(30, false)), old_token(&token(30, false))],
    );
    server.script(STRATEGIES, [strategies(""), strategies("")]);
    let mut d = Driven::new(&config(&server.url("http"), true));
    d.cycle().unwrap();
    d.cycle().unwrap();
    let paths: Vec<String> = server.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, [TOKEN, STRATEGIES, TOKEN, STRATEGIES]);
}

#[test]
fn expired_and_forged_tokens_are_refused_before_use() {
    for (bad, why) in [
        (token(-3600, false), "expired"),
        (token(3600, true), "signature"),
    ] {
        let server = TestServer::start();
        server.script(TOKEN, [old_token(&bad)]);
        server.script(STRATEGIES, [strategies(OLD_ENTRIES)]);
        let mut d = Driven::new(&config(&server.url("http"), true));
        let err = d.cycle().unwrap_err();
        assert!(err.contains(why), "{err}");
        assert!(!err.contains(&bad), "the token must not be logged");
        let paths: Vec<String> = server.received().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, [TOKEN], "a refused token is never sent");
        assert!(d.update().is_none());
    }
}

#[test]
fn auth_disabled_sends_no_token() {
    let server = TestServer::start();
    server.script(STRATEGIES, [strategies(NEW_ENTRIES)]);
    server.script(METRICS, [ok(r#"{"success":true}"#)]);
    let mut d = Driven::new(&config(&server.url("http"), false));
    d.publish(Counters::default());
    d.cycle().unwrap();
    let seen = server.received();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, STRATEGIES);
    assert_eq!(seen[1].path, METRICS);
    assert!(seen.iter().all(|r| r.header("authorization").is_none()));
    assert!(d.update().is_some());
}

#[test]
fn bad_responses_are_one_line_errors_and_change_nothing() {
    let server = TestServer::start();
    server.script(TOKEN, [new_token(&token(3600, false))]);
    server.script(STRATEGIES, [strategies(OLD_ENTRIES)]);
    let mut d = Driven::new(&config(&server.url("http"), true));
    d.cycle().unwrap();
    assert!(d.update().is_some());

    let cases = [
        (
            Reply::Body(500, r#"{"success":false,"error":"Failed to list"}"#.into()),
            "HTTP 500: Failed to list",
        ),
        (
            Reply::Body(502, "<html>bad gateway</html>".into()),
            "HTTP 502",
        ),
        (ok("{not json"), "invalid response"),
        (
            ok(r#"{"success":true,"scheduling":[{"priority":"yes","pid":1}]}"#),
            "invalid type",
        ),
        (
            ok(r#"{"success":true,"scheduling":{"pid":1}}"#),
            "invalid type",
        ),
        (
            ok(
                r#"{"success":true,"scheduling":[{"priority":true,"pid":0},{"priority":true,"pid":-7}]}"#,
            ),
            "scheduling[1].pid",
        ),
        (
            ok(r#"{"success":true,"scheduling":[{"priority":true,"command_regex":"(unclosed"}]}"#),
            "invalid regex",
        ),
        (
            ok(r#"{"success":true,"message":"no list"}"#),
            "no scheduling list",
        ),
        (ok(r#"{"success":false,"scheduling":[]}"#), "success: false"),
        (Reply::Endless, "larger than 65536 bytes"),
        (Reply::Stall, "timed out"),
    ];
    for (reply, reason) in cases {
        server.script(STRATEGIES, [reply]);
        let started = Instant::now();
        let err = d.cycle().unwrap_err();
        assert!(err.contains(reason), "expected {reason:?} in {err:?}");
        assert!(!err.contains('\n'), "one line: {err:?}");
        assert!(err.len() < 400, "bounded: {err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{reason}: took {:?}",
            started.elapsed()
        );
        assert!(d.update().is_none(), "{reason}: nothing may change");
    }
    assert_eq!(d.wakes.load(Ordering::SeqCst), 1);
}

#[test]
fn refused_connection_and_tls_failures_are_errors() {
    let port = closed_port();
    let mut d = Driven::new(&config(&format!("http://{port}/"), false));
    let err = d.cycle().unwrap_err();
    assert!(err.contains("fetching strategies"), "{err}");
    assert!(d.update().is_none());

    // An https URL speaks TLS (and so fails against a plain server).
    let server = TestServer::start();
    let mut d = Driven::new(&config(&server.url("https"), false));
    assert!(d.cycle().is_err());
    assert_eq!(
        server.next().head.first(),
        Some(&0x16),
        "a TLS handshake record"
    );
    assert!(d.update().is_none());
}

#[test]
fn metrics_failure_is_reported_after_strategies_arrive() {
    let server = TestServer::start();
    server.script(STRATEGIES, [strategies(NEW_ENTRIES)]);
    server.script(METRICS, [Reply::Body(500, "{}".into())]);
    let mut d = Driven::new(&config(&server.url("http"), false));
    d.publish(Counters::default());
    let err = d.cycle().unwrap_err();
    assert!(
        err.starts_with("posting metrics: ") && err.contains("HTTP 500"),
        "{err}"
    );
    assert!(d.update().is_some());
}

#[test]
fn health_logs_changes_and_reminders_and_backs_off() {
    let interval = Duration::from_secs(10);
    let mut h = Health::default();
    let t0 = Instant::now();
    assert_eq!(h.delay(interval), interval);
    assert!(h.success().is_none());
    let first = h.failure(t0, "refused").unwrap();
    assert!(first.contains("unavailable: refused"), "{first}");
    assert_eq!(h.delay(interval), interval);
    assert!(h.failure(t0 + Duration::from_secs(1), "refused").is_none());
    assert_eq!(h.delay(interval), interval * 2);
    assert!(h.failure(t0 + Duration::from_secs(2), "HTTP 500").is_none());
    assert_eq!(h.delay(interval), interval * 4);
    let reminder = h.failure(t0 + REMINDER, "HTTP 500").unwrap();
    assert!(
        reminder.contains("still unavailable (4 failed attempts"),
        "{reminder}"
    );
    assert!(h
        .failure(t0 + REMINDER + Duration::from_secs(1), "x")
        .is_none());
    for i in 0..40 {
        h.failure(t0 + REMINDER + Duration::from_secs(2 + i), "x");
    }
    assert_eq!(h.delay(interval), BACKOFF_CAP);
    assert_eq!(h.delay(Duration::from_secs(600)), Duration::from_secs(600));
    let back = h.success().unwrap();
    assert!(
        back.contains("reachable again after 45 failed attempts"),
        "{back}"
    );
    assert!(h.success().is_none());
    assert_eq!(h.delay(interval), interval);
}

#[test]
fn thread_delivers_updates_wakes_posts_metrics_reports_status_and_stops() {
    let server = TestServer::start();
    server.script(TOKEN, [old_token(&token(3600, false))]);
    server.script(
        STRATEGIES,
        [
            strategies(OLD_ENTRIES),
            Reply::Body(500, "{}".into()),
            strategies(OLD_ENTRIES),
            strategies(NEW_ENTRIES),
        ],
    );
    server.script(METRICS, [ok(r#"{"success":true}"#)]);
    let (tx, rx) = mpsc::channel::<ApiUpdate>();
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&wakes);
    let handle = spawn(
        &config(&server.url("http"), true),
        MIN_SLICE,
        tx,
        Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
    )
    .unwrap()
    .expect("enabled");
    handle.publish_counters(Counters {
        nr_running: 3,
        ..Counters::default()
    });
    assert_eq!(names_pids(&recv(&rx).0)[0].1, vec![101]);
    // The failure and the unchanged list in between send nothing.
    assert_eq!(names_pids(&recv(&rx).0)[0].1, vec![201]);
    assert_eq!(server.next_to(METRICS).json()["nr_running"], 3);
    assert!(eventually(|| wakes.load(Ordering::SeqCst) == 2));
    // The good cycle after the failure resets the count /metrics shows.
    assert!(eventually(|| {
        let status = handle.status();
        status.consecutive_failures == 0 && status.last_success_unix > 0
    }));
    drop(handle);
    // The thread ends at its next wait and drops its sender.
    assert!(eventually(|| matches!(
        rx.try_recv(),
        Err(mpsc::TryRecvError::Disconnected)
    )));
}

#[test]
fn disabled_client_starts_nothing() {
    let (tx, _rx) = mpsc::channel::<ApiUpdate>();
    let disabled = ApiConfig::default();
    assert!(spawn(&disabled, MIN_SLICE, tx.clone(), Box::new(|| {}))
        .unwrap()
        .is_none());
    let missing_key = ApiConfig {
        public_key_path: Some("/nonexistent/gthulhu.pem".into()),
        ..config("http://127.0.0.1:9/", true)
    };
    let err = spawn(&missing_key, MIN_SLICE, tx, Box::new(|| {}))
        .err()
        .unwrap();
    assert!(err.contains("/nonexistent/gthulhu.pem"), "{err}");
}

#[test]
fn effective_set_is_file_then_api_and_file_wins_a_tie() {
    let file = crate::config::Config::parse(
        "strategies:\n  - name: web\n    priority: 1\n    pid: 101\n",
        "t.yaml",
    )
    .unwrap()
    .strategies;
    let api = wire::parse_strategies(
        br#"{"success":true,"scheduling":[{"priority":1,"pid":101},{"priority":0,"pid":7}]}"#,
        MIN_SLICE,
    )
    .unwrap()
    .strategies;
    let all = effective(&file, &api);
    let names: Vec<&str> = all.list.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "api[0]", "api[1]"]);
    assert_eq!(
        all.list[0].precedence(0, &all.list[1], 1),
        std::cmp::Ordering::Less
    );
    assert_eq!(
        all.list[2].precedence(2, &all.list[0], 0),
        std::cmp::Ordering::Less,
        "a higher API priority still wins"
    );
}
