//! Malformed configuration: a catalogue of inputs that must each be refused
//! with one clear line (the config watcher replays it to show they change
//! nothing), and a bounded-time fuzz run of the parser.

use std::time::{Duration, Instant};

use super::*;
use crate::fuzz;

/// The longest one parse may take, even on hostile input.
const PARSE_BOUND: Duration = Duration::from_secs(1);

/// Malformed configurations and a fragment of the error each must give.
pub(crate) const CATALOGUE: &[(&str, &str)] = &[
    // Wrong types.
    ("scheduler: [1, 2]\n", "scheduler: invalid type: sequence"),
    ("strategies: {name: x}\n", "strategies: invalid type: map"),
    (
        "strategies:\n  - {name: s, pid: one, priority: 0}\n",
        "strategies[0].pid: invalid type: string \"one\"",
    ),
    (
        "strategies:\n  - {name: [s], pid: 1, priority: 0}\n",
        "strategies[0].name: invalid type: sequence",
    ),
    (
        "strategies:\n  - {name: s, pid: 1, priority: high}\n",
        "strategies[0].priority: invalid type: string \"high\"",
    ),
    ("api: {enabled: yes please}\n", "api.enabled: invalid type"),
    // Huge numbers.
    (
        "scheduler: {slice_ns_default: 18446744073709551616}\n",
        "scheduler.slice_ns_default: ",
    ),
    (
        "scheduler: {watchdog_timeout_ms: 4294967296000}\n",
        "scheduler.watchdog_timeout_ms: ",
    ),
    (
        "strategies:\n  - {name: s, pid: 99999999999, priority: 0}\n",
        "strategies[0].pid: ",
    ),
    (
        "strategies:\n  - {name: s, pid: 1, execution_time: 1e30}\n",
        "strategies[0].execution_time: invalid type: floating point",
    ),
    // Negative slices and times.
    (
        "scheduler: {slice_ns_default: -5000000}\n",
        "scheduler.slice_ns_default: invalid type: integer `-5000000`",
    ),
    (
        "scheduler: {slice_ns_min: -1}\n",
        "scheduler.slice_ns_min: ",
    ),
    (
        "strategies:\n  - {name: s, pid: 1, execution_time: -2000000}\n",
        "strategies[0].execution_time: invalid type: integer `-2000000`",
    ),
    ("scheduler: {interval: -10}\n", "scheduler.interval: "),
    // Invalid and oversized regexes.
    (
        "strategies:\n  - {name: s, priority: 0, command_regex: \"[a-\"}\n",
        "strategies[0].command_regex: invalid regex: ",
    ),
    (
        "strategies:\n  - {name: s, priority: 0, cgroup_regex: \"(?P<x\"}\n",
        "strategies[0].cgroup_regex: invalid regex: ",
    ),
    (
        "strategies:\n  - {name: s, priority: 0, command_regex: \"((((((a{50}){50}){50})))\"}\n",
        "strategies[0].command_regex: invalid regex: ",
    ),
    // YAML structure abuse.
    ("strategies: [unclosed\n", "cfg.yaml:"),
    ("\tstrategies: []\n", "cfg.yaml:"),
    ("strategies: *nowhere\n", "unknown anchor"),
    ("strategies: []\nstrategies: []\n", "duplicate"),
];

fn parse(yaml: &str) -> (Result<Config, ConfigError>, Duration) {
    let start = Instant::now();
    let result = Config::parse(yaml, "cfg.yaml");
    (result, start.elapsed())
}

#[test]
fn catalogue_of_malformed_configs_gives_one_clear_line_each() {
    let mut wrong = Vec::new();
    for (yaml, want) in CATALOGUE {
        let (result, took) = parse(yaml);
        let err = match result {
            Ok(_) => panic!("accepted: {yaml:?}"),
            Err(e) => e.to_string(),
        };
        fuzz::assert_one_line(yaml.as_bytes(), &err);
        assert!(took < PARSE_BOUND, "{yaml:?} took {took:?}");
        if !err.starts_with("cfg.yaml") || !err.contains(want) {
            wrong.push(format!("{yaml:?}: {err:?} lacks {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn catastrophic_backtracking_regex_compiles_and_matches_in_linear_time() {
    let (config, took) =
        parse("strategies:\n  - {name: s, priority: 0, command_regex: \"(a+)+$\"}\n");
    assert!(took < PARSE_BOUND, "{took:?}");
    let config = config.unwrap();
    let regex = config.strategies.list[0].selector.command.as_ref().unwrap();
    // A backtracking engine needs 2^n steps here; the regex crate is linear.
    let hostile = format!("{}!", "a".repeat(100_000));
    let start = Instant::now();
    assert!(regex.is_match(&"a".repeat(10)));
    assert!(!regex.is_match(&hostile));
    assert!(start.elapsed() < PARSE_BOUND, "{:?}", start.elapsed());
}

#[test]
fn thousands_of_strategies_parse_fast_and_one_too_many_is_refused() {
    let mut yaml = "strategies:\n".to_string();
    for i in 0..MAX_STRATEGIES {
        yaml.push_str(&format!(
            "  - {{name: s{i}, command_regex: '^w{i}$', priority: 0}}\n"
        ));
    }
    let (config, took) = parse(&yaml);
    assert_eq!(config.unwrap().strategies.len(), MAX_STRATEGIES);
    assert!(
        took < Duration::from_secs(5),
        "{MAX_STRATEGIES} strategies took {took:?}"
    );
    for i in MAX_STRATEGIES..5000 {
        yaml.push_str(&format!("  - {{name: s{i}, pid: 1, priority: 0}}\n"));
    }
    let (result, took) = parse(&yaml);
    assert_eq!(
        result.unwrap_err().to_string(),
        "cfg.yaml:2:3: strategies: 5000 strategies; at most 1024 are allowed"
    );
    assert!(
        took < Duration::from_secs(5),
        "5000 strategies took {took:?}"
    );
}

#[test]
fn alias_bomb_is_refused_quickly() {
    let yaml = fuzz::corpus("config")
        .into_iter()
        .map(|bytes| String::from_utf8(bytes).unwrap())
        .find(|text| text.starts_with("a: &a"))
        .expect("alias-bomb.yaml in the corpus");
    let (result, took) = parse(&yaml);
    assert!(took < PARSE_BOUND, "{took:?}");
    fuzz::assert_one_line(yaml.as_bytes(), &result.unwrap_err().to_string());
}

#[test]
fn fuzzed_configs_never_panic_and_errors_are_one_line() {
    let mut accepted = 0;
    let runs = fuzz::run("config", 0x9e37_79b9_7f4a_7c15, |input| {
        let text = String::from_utf8_lossy(input);
        let (result, took) = parse(&text);
        assert!(took < PARSE_BOUND, "{took:?} for {text:?}");
        match result {
            Ok(_) => accepted += 1,
            Err(e) => fuzz::assert_one_line(input, &e.to_string()),
        }
    });
    assert!(runs > 100, "only {runs} inputs in {:?}", fuzz::BUDGET);
    assert!(
        accepted > 0,
        "no mutant was valid: the corpus is too broken to explore"
    );
}
