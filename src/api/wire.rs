//! What the Gthulhu API server sends and receives, in both protocol
//! versions, and the checks that turn its strategies into the validated
//! strategy model.
//!
//! Nothing here trusts the server: every response is parsed from a bounded
//! byte buffer, unknown fields are ignored, and a response with any invalid
//! entry is refused as a whole (the caller then keeps what it had).

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Deserializer};

use crate::config::{MAX_LIST, MAX_REGEX_LEN, SLICE_NS_MAX};
use crate::counters::Counters;
use crate::strategy::model::{Priority, Selector, Strategies, Strategy};

/// At most this many strategies in one response (the server sends one per
/// process of each pod an intent selects).
pub const MAX_ENTRIES: usize = 4096;
/// At most this many different `command_regex` patterns in one response;
/// each is compiled once and shared by the entries that repeat it.
pub const MAX_PATTERNS: usize = 64;
/// Compiled size limit of one API regex.
const REGEX_SIZE_LIMIT: usize = 256 << 10;
/// Longest label key or value (bytes).
const MAX_LABEL_LEN: usize = 256;
/// Longest token accepted (bytes).
const MAX_TOKEN_LEN: usize = 8 << 10;
/// Highest process id Linux hands out (PID_MAX_LIMIT).
const PID_MAX: i64 = 1 << 22;
/// Longest server message quoted in a log line.
const MAX_QUOTE: usize = 160;

/// The counters `POST /api/v1/metrics` carries, with Gthulhu's names.
pub const METRICS_FIELDS: [&str; 11] = [
    "usersched_last_run_at",
    "nr_queued",
    "nr_scheduled",
    "nr_running",
    "nr_online_cpus",
    "nr_user_dispatches",
    "nr_kernel_dispatches",
    "nr_cancel_dispatches",
    "nr_bounce_dispatches",
    "nr_failed_dispatches",
    "nr_sched_congested",
];

/// The body of `POST /api/v1/auth/token`.
pub fn token_request(public_key_pem: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "public_key": public_key_pem }))
        .expect("a JSON object of one string serializes")
}

/// The body of `POST /api/v1/metrics`: exactly [`METRICS_FIELDS`].
pub fn metrics_request(counters: &Counters) -> Vec<u8> {
    let object: serde_json::Map<String, serde_json::Value> = counters
        .fields()
        .into_iter()
        .filter(|(name, _)| METRICS_FIELDS.contains(name))
        .map(|(name, value)| (name.to_string(), value.into()))
        .collect();
    serde_json::to_vec(&object).expect("a JSON object of numbers serializes")
}

/// Deserializes a field that is present (possibly `null`) as `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The token response: `{success, message, timestamp, token}` from older
/// servers, `{success, data: {token, expired_at}, timestamp}` from newer.
#[derive(Deserialize)]
struct TokenResponse {
    success: bool,
    token: Option<String>,
    data: Option<TokenData>,
}

#[derive(Deserialize)]
struct TokenData {
    token: String,
    /// Checked for type only: the token's own verified `exp` is what counts.
    #[serde(rename = "expired_at")]
    _expired_at: Option<i64>,
}

/// The JWT from a token response, still unverified.
pub fn parse_token(body: &[u8]) -> Result<String, String> {
    let response: TokenResponse = parse_json(body)?;
    if !response.success {
        return Err("token response says success: false".to_string());
    }
    let token = match (response.token, response.data) {
        (Some(token), _) => token,
        (None, Some(data)) => data.token,
        (None, None) => return Err("token response has no token".to_string()),
    };
    let well_formed = !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !well_formed {
        return Err("token response has a malformed token".to_string());
    }
    Ok(token)
}

/// `{success, message, timestamp, scheduling: [...]}`.
#[derive(Deserialize)]
struct StrategiesResponse {
    success: bool,
    #[serde(default, deserialize_with = "present")]
    scheduling: Option<Option<Vec<WireStrategy>>>,
}

/// One strategy as the server sends it.
#[derive(Deserialize)]
struct WireStrategy {
    priority: Option<Priority>,
    /// Time slice in ns; 0 or absent = the default slice.
    execution_time: Option<u64>,
    /// The process the server resolved the intent to; 0 or absent = none.
    pid: Option<i64>,
    selectors: Option<Vec<WireLabel>>,
    command_regex: Option<String>,
}

#[derive(Deserialize)]
struct WireLabel {
    key: String,
    value: String,
}

/// One checked strategy from the server, in a form that compares equal
/// when the server sends the same thing again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Index in the server's list (names the strategy `api[index]`).
    pub index: usize,
    pub priority: Priority,
    pub execution_time: Option<u64>,
    pub pid: Option<i32>,
    pub command_regex: Option<String>,
    pub labels: Vec<(String, String)>,
}

/// A checked strategies response.
#[derive(Debug)]
pub struct ApiStrategies {
    /// What the server sent, for change detection.
    pub entries: Vec<Entry>,
    /// The same, as strategies the resolver matches like file strategies.
    pub strategies: Strategies,
    /// Entries left out because they have no effect or select nothing.
    pub skipped: usize,
}

/// Checks a strategies response and converts it. `slice_ns_min` bounds
/// `execution_time` as it does in the config file.
pub fn parse_strategies(body: &[u8], slice_ns_min: u64) -> Result<ApiStrategies, String> {
    let response: StrategiesResponse = parse_json(body)?;
    if !response.success {
        return Err("strategies response says success: false".to_string());
    }
    let list = match response.scheduling {
        None => return Err("strategies response has no scheduling list".to_string()),
        Some(list) => list.unwrap_or_default(),
    };
    if list.len() > MAX_ENTRIES {
        return Err(format!(
            "strategies response has {} entries; at most {MAX_ENTRIES} are accepted",
            list.len()
        ));
    }
    let mut entries = Vec::with_capacity(list.len());
    let mut skipped = 0;
    for (index, wire) in list.into_iter().enumerate() {
        match check_entry(index, wire, slice_ns_min)
            .map_err(|e| format!("scheduling[{index}].{e}"))?
        {
            Some(entry) => entries.push(entry),
            None => skipped += 1,
        }
    }
    let strategies = to_strategies(&entries)?;
    Ok(ApiStrategies {
        entries,
        strategies,
        skipped,
    })
}

/// Checks one entry; `None` for one that cannot do anything.
fn check_entry(
    index: usize,
    wire: WireStrategy,
    slice_ns_min: u64,
) -> Result<Option<Entry>, String> {
    let pid = match wire.pid {
        None | Some(0) => None,
        Some(pid) if (1..=PID_MAX).contains(&pid) => {
            Some(i32::try_from(pid).expect("PID_MAX fits in i32"))
        }
        Some(pid) => return Err(format!("pid: {pid} is not a process id (1..={PID_MAX})")),
    };
    let execution_time = match wire.execution_time {
        None | Some(0) => None,
        Some(ns) if (slice_ns_min..=SLICE_NS_MAX).contains(&ns) => Some(ns),
        Some(ns) => {
            return Err(format!(
                "execution_time: {ns} is out of range: expected 0 or {slice_ns_min}..={SLICE_NS_MAX} ns"
            ))
        }
    };
    let command_regex = wire.command_regex.filter(|p| !p.is_empty());
    if let Some(pattern) = &command_regex {
        if pattern.len() > MAX_REGEX_LEN {
            return Err(format!(
                "command_regex: pattern is longer than {MAX_REGEX_LEN} bytes"
            ));
        }
    }
    let labels = wire.selectors.unwrap_or_default();
    if labels.len() > MAX_LIST {
        return Err(format!("selectors: more than {MAX_LIST} label selectors"));
    }
    let fits = |s: &str| s.len() <= MAX_LABEL_LEN && !s.chars().any(char::is_control);
    if let Some(i) = labels
        .iter()
        .position(|l| l.key.is_empty() || !fits(&l.key) || !fits(&l.value))
    {
        return Err(format!(
            "selectors[{i}]: expected a key of 1..={MAX_LABEL_LEN} bytes and a value of at most {MAX_LABEL_LEN}, without control characters"
        ));
    }
    let priority = wire.priority.unwrap_or(Priority::NoBoost);
    // The server resolves label selectors into pids itself, so an entry
    // with a pid is matched by pid (and command); without one, its labels
    // are matched locally like a file strategy's.
    let labels = if pid.is_some() {
        Vec::new()
    } else {
        labels.into_iter().map(|l| (l.key, l.value)).collect()
    };
    let no_effect = priority == Priority::NoBoost && execution_time.is_none();
    let selects_nothing = pid.is_none() && command_regex.is_none() && labels.is_empty();
    if no_effect || selects_nothing {
        return Ok(None);
    }
    Ok(Some(Entry {
        index,
        priority,
        execution_time,
        pid,
        command_regex,
        labels,
    }))
}

/// Builds the strategies, compiling each distinct pattern once.
fn to_strategies(entries: &[Entry]) -> Result<Strategies, String> {
    let mut compiled: HashMap<&str, Regex> = HashMap::new();
    let mut list = Vec::with_capacity(entries.len());
    for entry in entries {
        let command = match entry.command_regex.as_deref() {
            None => None,
            Some(pattern) => Some(match compiled.get(pattern) {
                Some(re) => re.clone(),
                None => {
                    if compiled.len() == MAX_PATTERNS {
                        return Err(format!(
                            "strategies response has more than {MAX_PATTERNS} different command_regex patterns"
                        ));
                    }
                    let re = RegexBuilder::new(pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| {
                            let reason = e.to_string();
                            format!(
                                "scheduling[{}].command_regex: invalid regex: {}",
                                entry.index,
                                quote(reason.lines().last().unwrap_or(""))
                            )
                        })?;
                    compiled.insert(pattern, re.clone());
                    re
                }
            }),
        };
        list.push(Strategy {
            name: format!("api[{}]", entry.index),
            priority: entry.priority,
            execution_time: entry.execution_time,
            selector: Selector {
                pids: entry.pid.into_iter().collect(),
                command,
                labels: entry.labels.clone(),
                ..Selector::default()
            },
        });
    }
    Ok(Strategies { list })
}

/// The reason a server gives in an error response, if it gives one.
pub fn error_reason(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorResponse {
        error: Option<String>,
        message: Option<String>,
    }
    let response: ErrorResponse = serde_json::from_slice(body).ok()?;
    response.error.or(response.message).map(|m| quote(&m))
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid response: {}", quote(&e.to_string())))
}

/// Server-controlled text made safe for one log line: no control
/// characters, at most [`MAX_QUOTE`] characters.
pub fn quote(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTE)
        .collect();
    if text.chars().count() > MAX_QUOTE {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz;

    const MIN: u64 = 500_000;

    fn parse(json: &str) -> Result<ApiStrategies, String> {
        parse_strategies(json.as_bytes(), MIN)
    }

    #[test]
    fn both_token_shapes_are_understood() {
        let old = br#"{"success":true,"message":"ok","timestamp":"t","token":"a.b.c"}"#;
        let new =
            br#"{"success":true,"data":{"token":"d.e-f.g_h","expired_at":17},"timestamp":"t"}"#;
        assert_eq!(parse_token(old).unwrap(), "a.b.c");
        assert_eq!(parse_token(new).unwrap(), "d.e-f.g_h");
    }

    #[test]
    fn bad_token_responses_are_refused() {
        for body in [
            r#"{"success":false,"error":"no"}"#,
            r#"{"success":true}"#,
            r#"{"success":true,"token":""}"#,
            r#"{"success":true,"token":"a.b\r\nX-Evil: 1"}"#,
            r#"{"success":true,"token":7}"#,
            r#"{"success":true,"data":{"token":"a.b.c","expired_at":"soon"}}"#,
            "not json",
        ] {
            assert!(parse_token(body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn boolean_and_integer_priorities_convert_like_file_strategies() {
        let s = parse(
            r#"{"success":true,"message":"m","timestamp":"t","scheduling":[
                {"priority":true,"execution_time":20000000,"pid":42},
                {"priority":3,"execution_time":0,"pid":43,"command_regex":"^nginx"},
                {"priority":false,"execution_time":1000000,"pid":44,
                 "selectors":[{"key":"app","value":"web"}]}]}"#,
        )
        .unwrap();
        let list = &s.strategies.list;
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].name, "api[0]");
        assert_eq!(list[0].priority, Priority::Level(0));
        assert_eq!(list[0].execution_time, Some(20_000_000));
        assert_eq!(list[0].selector.pids, vec![42]);
        assert_eq!(list[1].priority, Priority::Level(3));
        assert_eq!(list[1].execution_time, None);
        assert!(list[1]
            .selector
            .command
            .as_ref()
            .unwrap()
            .is_match("nginx-worker"));
        assert_eq!(list[2].priority, Priority::NoBoost);
        assert!(
            list[2].selector.labels.is_empty(),
            "the server already resolved the labels into pid 44"
        );
    }

    #[test]
    fn entries_without_a_pid_match_locally_and_useless_ones_are_skipped() {
        let s = parse(
            r#"{"success":true,"scheduling":[
                {"priority":true,"selectors":[{"key":"app","value":"db"}]},
                {"priority":false,"execution_time":0,"pid":5},
                {"priority":true}]}"#,
        )
        .unwrap();
        assert_eq!(s.strategies.len(), 1);
        assert_eq!(
            s.strategies.list[0].selector.labels,
            vec![("app".to_string(), "db".to_string())]
        );
        assert_eq!(s.skipped, 2);
    }

    #[test]
    fn null_list_is_empty_but_missing_list_is_an_error() {
        assert!(parse(r#"{"success":true,"scheduling":null}"#)
            .unwrap()
            .strategies
            .is_empty());
        assert!(parse(r#"{"success":true,"scheduling":[]}"#).is_ok());
        assert!(parse(r#"{"success":true}"#).is_err());
        assert!(parse(r#"{"success":false,"scheduling":[]}"#).is_err());
    }

    #[test]
    fn one_bad_entry_refuses_the_whole_response() {
        for (json, reason) in [
            (r#"[{"priority":true,"pid":-1}]"#, "scheduling[0].pid"),
            (r#"[{"priority":true,"pid":4194305}]"#, "pid"),
            (r#"[{"priority":8,"pid":1}]"#, "integer 0..=7"),
            (r#"[{"priority":"high","pid":1}]"#, "boolean"),
            (r#"[{"priority":true,"pid":"1"}]"#, "invalid type"),
            (
                r#"[{"priority":true,"pid":1},{"priority":true,"execution_time":5,"pid":2}]"#,
                "scheduling[1].execution_time",
            ),
            (
                r#"[{"priority":true,"execution_time":-5,"pid":2}]"#,
                "invalid value",
            ),
            (
                r#"[{"priority":true,"command_regex":"(("}]"#,
                "invalid regex",
            ),
            (
                r#"[{"priority":true,"command_regex":"\\w{1000}\\w{1000}"}]"#,
                "invalid regex",
            ),
            (
                r#"[{"priority":true,"selectors":[{"key":"","value":"x"}]}]"#,
                "selectors[0]",
            ),
            (r#"{"not":"a list"}"#, "invalid type"),
        ] {
            let body = format!(r#"{{"success":true,"scheduling":{json}}}"#);
            let err = parse(&body).unwrap_err();
            assert!(err.contains(reason), "{json}: {err}");
        }
    }

    #[test]
    fn too_many_entries_or_patterns_are_refused() {
        let entry = r#"{"priority":true,"pid":1}"#;
        let many = vec![entry; MAX_ENTRIES + 1].join(",");
        let err = parse(&format!(r#"{{"success":true,"scheduling":[{many}]}}"#)).unwrap_err();
        assert!(err.contains("at most"), "{err}");
        let patterns: Vec<String> = (0..=MAX_PATTERNS)
            .map(|i| format!(r#"{{"priority":true,"command_regex":"p{i}"}}"#))
            .collect();
        let body = format!(
            r#"{{"success":true,"scheduling":[{}]}}"#,
            patterns.join(",")
        );
        assert!(parse(&body)
            .unwrap_err()
            .contains("different command_regex"));
        let same = vec![r#"{"priority":true,"command_regex":"same"}"#; MAX_PATTERNS + 1];
        let body = format!(r#"{{"success":true,"scheduling":[{}]}}"#, same.join(","));
        assert_eq!(parse(&body).unwrap().strategies.len(), MAX_PATTERNS + 1);
    }

    #[test]
    fn same_response_gives_equal_entries() {
        let body = r#"{"success":true,"scheduling":[{"priority":2,"pid":9,"command_regex":"x"}]}"#;
        assert_eq!(parse(body).unwrap().entries, parse(body).unwrap().entries);
    }

    #[test]
    fn metrics_body_has_exactly_gthulhus_names() {
        let counters = Counters {
            nr_queued: 3,
            nr_rule_runs: 9,
            ..Counters::default()
        };
        let body: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&metrics_request(&counters)).unwrap();
        let mut names: Vec<&str> = body.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut expected = METRICS_FIELDS.to_vec();
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert_eq!(body["nr_queued"], 3);
    }

    #[test]
    fn server_text_is_quoted_on_one_bounded_line() {
        let long = "x\n".repeat(500);
        let q = quote(&long);
        assert!(!q.contains('\n'));
        assert_eq!(q.chars().count(), MAX_QUOTE + 1);
        assert_eq!(
            error_reason(br#"{"success":false,"error":"bad\tkey"}"#).as_deref(),
            Some("bad key")
        );
        assert_eq!(error_reason(b"<html>"), None);
    }

    #[test]
    fn fuzzed_token_responses_never_panic_and_errors_are_one_line() {
        let runs = fuzz::run("token", 0x7f4a_7c15_9e37_79b9, |body| {
            match parse_token(body) {
                Ok(token) => assert!(!token.is_empty() && token.len() <= MAX_TOKEN_LEN),
                Err(e) => fuzz::assert_one_line(body, &e),
            }
        });
        assert!(runs > 100, "only {runs} inputs");
    }

    #[test]
    fn fuzzed_strategies_responses_never_panic_and_errors_are_one_line() {
        let runs = fuzz::run(
            "strategies",
            0x2545_f491_4f6c_dd1d,
            |body| match parse_strategies(body, MIN) {
                Ok(s) => assert!(s.entries.len() <= MAX_ENTRIES),
                Err(e) => fuzz::assert_one_line(body, &e),
            },
        );
        assert!(runs > 100, "only {runs} inputs");
    }

    #[test]
    fn fuzzed_error_responses_never_panic_and_reasons_are_one_bounded_line() {
        let runs = fuzz::run("error", 0x1234_5678_9abc_def0, |body| {
            if let Some(reason) = error_reason(body) {
                assert!(!reason.contains(['\n', '\r']), "{reason:?}");
                assert!(reason.chars().count() <= MAX_QUOTE + 1, "{reason:?}");
            }
        });
        assert!(runs > 100, "only {runs} inputs");
    }
}
