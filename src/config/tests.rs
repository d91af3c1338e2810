use std::fs;

use super::*;
use crate::strategy::model::PRIO_NO_BOOST;
use crate::strategy::testing::TempDir;

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    Config::parse(yaml, "cfg.yaml")
}

fn error(yaml: &str) -> String {
    match parse(yaml) {
        Ok(_) => panic!("accepted:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

fn strategy(fields: &str) -> String {
    format!("strategies:\n  - name: s\n{fields}")
}

#[test]
fn empty_file_means_defaults() {
    for yaml in ["", "\n\n", "# only a comment\n", "---\n", "~\n"] {
        let config = parse(yaml).unwrap();
        assert_eq!(config.scheduler, SchedulerConfig::default());
        assert!(config.strategies.is_empty());
        assert!(!config.api.enabled);
    }
}

#[test]
fn full_config_parses() {
    let config = parse(
        "scheduler:
  slice_ns_default: 4000000
  slice_ns_min: 100000
  watchdog_timeout_ms: 10000
  interval: 0
  scan_interval_ms: 250
strategies:
  - name: upf
    priority: 0
    execution_time: 20000000
    pids: [1, 2]
    command_regex: \"^upf\"
    cgroup: /kubepods.slice/
    cgroup_regex: \"cri-containerd\"
    namespace: default
    selectors: [{key: app, value: upf}]
api:
  url: http://example.invalid
",
    )
    .unwrap();
    assert_eq!(
        config.scheduler,
        SchedulerConfig {
            slice_ns_default: 4_000_000,
            slice_ns_min: 100_000,
            watchdog_timeout_ms: 10_000,
            interval: 0,
            scan_interval_ms: 250,
        }
    );
    let s = &config.strategies.list[0];
    assert_eq!(s.name, "upf");
    assert_eq!(s.priority, Priority::Level(0));
    assert_eq!(s.execution_time, Some(20_000_000));
    assert_eq!(s.selector.pids, vec![1, 2]);
    assert!(s.selector.command.as_ref().unwrap().is_match("upf-1"));
    assert_eq!(s.selector.cgroup_prefix.as_deref(), Some("/kubepods.slice"));
    assert!(s.selector.cgroup_regex.is_some());
    assert_eq!(s.selector.namespace.as_deref(), Some("default"));
    assert_eq!(
        s.selector.labels,
        vec![("app".to_string(), "upf".to_string())]
    );
    assert_eq!(
        config.api.endpoints.unwrap().metrics,
        "http://example.invalid/api/v1/metrics"
    );
}

#[test]
fn priority_accepts_levels_and_booleans() {
    let priority = |value: &str| {
        let yaml = strategy(&format!(
            "    pid: 1\n    execution_time: 1000000\n    priority: {value}\n"
        ));
        parse(&yaml).unwrap().strategies.list[0].priority
    };
    assert_eq!(priority("0"), Priority::Level(0));
    assert_eq!(priority("7"), Priority::Level(7));
    assert_eq!(priority("true"), Priority::Level(0));
    assert_eq!(priority("false"), Priority::NoBoost);
    assert_eq!(priority("~"), Priority::NoBoost);
    assert_eq!(Priority::NoBoost.rule_value(), PRIO_NO_BOOST);
    let no_priority = parse(&strategy("    pid: 1\n    execution_time: 1000000\n")).unwrap();
    assert_eq!(no_priority.strategies.list[0].priority, Priority::NoBoost);
}

#[test]
fn bad_priority_is_reported_with_line_and_column() {
    assert_eq!(
        error(&strategy("    pid: 1\n    priority: 8\n")),
        "cfg.yaml:4:15: strategies[0].priority: invalid value: integer `8`, \
         expected an integer 0..=7 or a boolean"
    );
    assert_eq!(
        error(&strategy("    pid: 1\n    priority: -1\n")),
        "cfg.yaml:4:15: strategies[0].priority: invalid value: integer `-1`, \
         expected an integer 0..=7 or a boolean"
    );
    assert_eq!(
        error(&strategy("    pid: 1\n    priority: high\n")),
        "cfg.yaml:4:15: strategies[0].priority: invalid type: string \"high\", \
         expected an integer 0..=7 or a boolean"
    );
}

#[test]
fn unknown_fields_are_errors() {
    let e = error(&strategy("    pid: 1\n    priorty: 0\n"));
    assert!(
        e.starts_with("cfg.yaml:4:5: strategies[0]: unknown field `priorty`, expected one of"),
        "{e}"
    );
    let e = error("scheduler:\n  slice_ns: 1\n");
    assert!(
        e.starts_with("cfg.yaml:2:3: scheduler: unknown field `slice_ns`"),
        "{e}"
    );
    let e = error("strategy: []\n");
    assert!(
        e.starts_with("cfg.yaml:1:1: unknown field `strategy`"),
        "{e}"
    );
}

#[test]
fn syntax_and_type_errors_have_locations() {
    let e = error("scheduler:\n  interval: [1\n");
    assert!(e.starts_with("cfg.yaml:"), "{e}");
    assert!(parse("scheduler:\n  interval: [1\n")
        .unwrap_err()
        .location
        .is_some());
    assert_eq!(
        error("scheduler:\n  interval: soon\n"),
        "cfg.yaml:2:13: scheduler.interval: invalid type: string \"soon\", expected u64"
    );
    assert_eq!(
        error("strategies:\n  - priority: 0\n    pid: 1\n"),
        "cfg.yaml:2:5: strategies[0]: missing field `name`"
    );
    assert_eq!(
        error("- 1\n"),
        "cfg.yaml:1:1: invalid type: sequence, expected a mapping with scheduler, strategies, api, metrics"
    );
    assert_eq!(
        error("strategies: [3]\n"),
        "cfg.yaml:1:14: strategies[0]: invalid type: integer `3`, expected a strategy mapping"
    );
    assert_eq!(
        error("strategies: 3\n"),
        "cfg.yaml:1:13: strategies: invalid type: integer `3`, expected a sequence"
    );
}

#[test]
fn scheduler_ranges_are_checked() {
    assert_eq!(
        error("scheduler:\n  slice_ns_default: 10\n"),
        "cfg.yaml:2:21: scheduler.slice_ns_default: 10 is out of range: \
         expected a slice in ns (50000..=1000000000)"
    );
    assert_eq!(
        error("scheduler:\n  slice_ns_min: 6000000\n"),
        "cfg.yaml:2:17: scheduler.slice_ns_min: 6000000 is larger than \
         slice_ns_default (5000000)"
    );
    assert_eq!(
        error("scheduler:\n  watchdog_timeout_ms: 999\n"),
        "cfg.yaml:2:24: scheduler.watchdog_timeout_ms: 999 is out of range: \
         expected a timeout in ms (1000..=30000)"
    );
    assert_eq!(
        error("scheduler:\n  watchdog_timeout_ms: 30001\n"),
        "cfg.yaml:2:24: scheduler.watchdog_timeout_ms: 30001 is out of range: \
         expected a timeout in ms (1000..=30000)"
    );
    assert_eq!(
        error("scheduler:\n  interval: 3601\n"),
        "cfg.yaml:2:13: scheduler.interval: 3601 is out of range: expected seconds (0..=3600)"
    );
    assert_eq!(
        error("scheduler:\n  scan_interval_ms: 10\n"),
        "cfg.yaml:2:21: scheduler.scan_interval_ms: 10 is out of range: \
         expected a period in ms (50..=60000)"
    );
}

#[test]
fn error_without_a_node_names_the_field_without_location() {
    assert_eq!(
        error("scheduler:\n  slice_ns_default: 100000\n"),
        "cfg.yaml: scheduler.slice_ns_min: 500000 is larger than slice_ns_default (100000)"
    );
}

#[test]
fn strategy_fields_are_checked() {
    assert_eq!(
        error(&strategy(
            "    pid: 1\n    priority: 0\n    execution_time: 1000\n"
        )),
        "cfg.yaml:5:21: strategies[0].execution_time: 1000 is out of range: \
         expected a slice in ns from scheduler.slice_ns_min to 1 s (500000..=1000000000)"
    );
    assert_eq!(
        error(&strategy("    pid: 1\n")),
        "cfg.yaml:2:5: strategies[0]: has no effect: give it a priority \
         (a level or true) or an execution_time"
    );
    assert_eq!(
        error(&strategy("    priority: 0\n")),
        "cfg.yaml:2:5: strategies[0]: selects nothing: give at least one of pid, pids, \
         command_regex, cgroup, cgroup_regex, namespace, selectors"
    );
    assert_eq!(
        error(&strategy("    priority: 0\n    pid: 0\n")),
        "cfg.yaml:4:10: strategies[0].pid: 0 is not a process id (expected 1..=4194304)"
    );
    assert_eq!(
        error(&strategy("    priority: 0\n    pids: [1, -4]\n")),
        "cfg.yaml:4:15: strategies[0].pids[1]: -4 is not a process id (expected 1..=4194304)"
    );
    assert_eq!(
        error(&strategy("    priority: 0\n    pids: []\n")),
        "cfg.yaml:4:11: strategies[0].pids: expected 1..=1024 process ids"
    );
    assert_eq!(
        error(&strategy("    priority: 0\n    pid: 1\n    pids: [2]\n")),
        "cfg.yaml:5:11: strategies[0].pids: give either pid or pids, not both"
    );
    assert_eq!(
        error(&strategy("    priority: 0\n    cgroup: kubepods\n")),
        "cfg.yaml:4:13: strategies[0].cgroup: \"kubepods\" is not an absolute cgroup path \
         (starting with /)"
    );
    assert_eq!(
        error(&strategy("    priority: 0\n    namespace: \"\"\n")),
        "cfg.yaml:4:16: strategies[0].namespace: must not be empty"
    );
    assert_eq!(
        error(&strategy(
            "    priority: 0\n    selectors:\n      - key: app\n        value: a\n      - {key: \"\", value: b}\n"
        )),
        "cfg.yaml:7:15: strategies[0].selectors[1].key: must not be empty"
    );
    assert_eq!(
        error("strategies:\n  - name: \"\"\n    pid: 1\n    priority: 0\n"),
        "cfg.yaml:2:11: strategies[0].name: expected 1..=64 bytes without control characters"
    );
}

#[test]
fn regexes_must_compile_within_limits() {
    let e = error(&strategy("    priority: 0\n    command_regex: \"(\"\n"));
    assert!(
        e.starts_with("cfg.yaml:4:20: strategies[0].command_regex: invalid regex: "),
        "{e}"
    );
    let e = error(&strategy(
        "    priority: 0\n    cgroup_regex: \"\\\\w{100}\\\\w{100}\\\\w{100}\"\n",
    ));
    assert!(
        e.starts_with("cfg.yaml:4:19: strategies[0].cgroup_regex: invalid regex: "),
        "{e}"
    );
    assert!(e.contains("size limit"), "{e}");
    let word = parse(&strategy(
        "    priority: 0\n    command_regex: '^[\\w.-]+\\d*$'\n",
    ));
    assert!(word.unwrap().strategies.list[0]
        .selector
        .command
        .as_ref()
        .unwrap()
        .is_match("kworker-12"));
    let long = "a".repeat(MAX_REGEX_LEN + 1);
    assert_eq!(
        error(&strategy(&format!(
            "    priority: 0\n    command_regex: {long}\n"
        ))),
        "cfg.yaml:4:20: strategies[0].command_regex: pattern is longer than 1024 bytes"
    );
}

#[test]
fn strategy_names_are_unique_and_count_is_bounded() {
    assert_eq!(
        error(
            "strategies:\n  - {name: a, pid: 1, priority: 0}\n  - {name: b, pid: 1, priority: 0}\n  - {name: a, pid: 2, priority: 1}\n"
        ),
        "cfg.yaml:4:12: strategies[2].name: duplicate strategy name \"a\" (also strategies[0])"
    );
    let mut yaml = "strategies:\n".to_string();
    for i in 0..=MAX_STRATEGIES {
        yaml.push_str(&format!("  - {{name: s{i}, pid: 1, priority: 0}}\n"));
    }
    assert_eq!(
        error(&yaml),
        "cfg.yaml:2:3: strategies: 1025 strategies; at most 1024 are allowed"
    );
}

#[test]
fn load_reports_unreadable_paths() {
    let dir = TempDir::new("config-load");
    let missing = dir.path().join("missing.yaml");
    assert_eq!(
        Config::load(&missing).unwrap_err().to_string(),
        format!(
            "{}: cannot read: No such file or directory (os error 2)",
            missing.display()
        )
    );
    assert_eq!(
        Config::load(dir.path()).unwrap_err().to_string(),
        format!("{}: is a directory, not a file", dir.path().display())
    );
    let binary = dir.path().join("binary.yaml");
    fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(
        Config::load(&binary).unwrap_err().to_string(),
        format!("{}: not UTF-8 text", binary.display())
    );
    let huge = dir.path().join("huge.yaml");
    fs::write(&huge, "#".repeat(MAX_FILE_BYTES as usize + 1)).unwrap();
    assert_eq!(
        Config::load(&huge).unwrap_err().to_string(),
        format!("{}: larger than 1048576 bytes", huge.display())
    );
    let good = dir.path().join("good.yaml");
    fs::write(&good, strategy("    pid: 1\n    priority: true\n")).unwrap();
    assert_eq!(Config::load(&good).unwrap().strategies.len(), 1);
}

#[test]
fn example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gthulhu.yaml");
    let config = Config::load(&path).unwrap();
    let demo = &config.strategies.list[0];
    assert_eq!(demo.priority, Priority::Level(0));
    assert_eq!(demo.execution_time, Some(2_000_000));
    assert!(demo
        .selector
        .command
        .as_ref()
        .unwrap()
        .is_match("gthulhu-demo"));
    assert_eq!(config.scheduler, SchedulerConfig::default());
}

#[test]
fn metrics_listen_is_off_by_default_and_validated() {
    assert_eq!(parse("").unwrap().metrics.listen, None);
    let config = parse("metrics: {listen: \"127.0.0.1:9100\"}\n").unwrap();
    assert_eq!(
        config.metrics.listen,
        Some("127.0.0.1:9100".parse().unwrap())
    );
    let config = parse("metrics: {listen: \"[::]:9100\"}\n").unwrap();
    assert_eq!(config.metrics.listen.unwrap().port(), 9100);
    assert_eq!(
        error("metrics:\n  listen: localhost\n"),
        "cfg.yaml:2:11: metrics.listen: \"localhost\" is not an IP address and port, e.g. \"127.0.0.1:9100\" or \"[::]:9100\""
    );
    assert!(error("metrics: {port: 1}\n").contains("unknown field `port`"));
}
