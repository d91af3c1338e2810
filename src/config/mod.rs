//! The configuration file: scheduler tunables and strategies, in YAML.
//!
//! Every field is optional and the defaults work without a file. Unknown
//! fields are errors, so typos are caught. An empty file (or one with only
//! comments) means all defaults. Every error is one line naming the file,
//! the line and column when known, the field and the problem, e.g.
//! `gthulhu.yaml:7:15: strategies[0].priority: invalid value: integer `9`,
//! expected an integer 0..=7 or a boolean`.

pub mod watch;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

use regex::{Regex, RegexBuilder};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::api::config::{ApiConfig, RawApiConfig};
use crate::strategy::model::{Priority, Selector, Strategies, Strategy};

/// Shortest time slice accepted anywhere (50 µs).
pub const SLICE_NS_MIN: u64 = 50_000;
/// Longest time slice accepted anywhere (1 s).
pub const SLICE_NS_MAX: u64 = 1_000_000_000;
/// sched_ext watchdog bounds; the kernel caps the timeout at 30 s.
pub const WATCHDOG_MS_MIN: u64 = 1_000;
pub const WATCHDOG_MS_MAX: u64 = 30_000;
/// Longest counter log interval (s); 0 turns the counter log lines off.
pub const INTERVAL_MAX: u64 = 3_600;
/// Bounds of the /proc rescan period (ms).
pub const SCAN_INTERVAL_MS_MIN: u64 = 50;
pub const SCAN_INTERVAL_MS_MAX: u64 = 60_000;
/// At most this many strategies.
pub const MAX_STRATEGIES: usize = 1024;
/// At most this many pids, or label selectors, in one strategy.
pub const MAX_LIST: usize = 1024;
/// Longest strategy name (bytes).
pub const MAX_NAME: usize = 64;
/// Longest regex pattern (bytes) and the most memory its compiled form may
/// use.
pub const MAX_REGEX_LEN: usize = 1024;
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Largest config file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Highest process id Linux hands out (PID_MAX_LIMIT).
const PID_MAX: i64 = 1 << 22;

/// Scheduler tunables (`scheduler:`), with the names Gthulhu uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Time slice of tasks no strategy gives one to (ns).
    pub slice_ns_default: u64,
    /// Shortest slice a task is given when many tasks wait (ns).
    pub slice_ns_min: u64,
    /// sched_ext watchdog: a runnable task not scheduled for this long
    /// makes the kernel drop the scheduler (ms).
    pub watchdog_timeout_ms: u64,
    /// Seconds between counter ("bss data") log lines; 0 = none.
    pub interval: u64,
    /// How often /proc is rescanned to find new or changed processes (ms).
    pub scan_interval_ms: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            slice_ns_default: 5_000_000,
            slice_ns_min: 500_000,
            watchdog_timeout_ms: 5_000,
            interval: 10,
            scan_interval_ms: 500,
        }
    }
}

/// A validated configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub scheduler: SchedulerConfig,
    pub strategies: Strategies,
    /// The `api:` section: the Gthulhu API client's settings (boxed: it is
    /// large and rarely read).
    pub api: Box<ApiConfig>,
    pub metrics: MetricsConfig,
}

/// The `metrics:` section: where to serve Prometheus metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Address and port of `/metrics`; None: not served.
    pub listen: Option<SocketAddr>,
}

/// Why a configuration could not be loaded; displays as one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column, when known.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.location {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn new(file: &str, location: Option<(usize, usize)>, message: String) -> Self {
        ConfigError {
            file: file.to_string(),
            location,
            message: message.replace('\n', " "),
        }
    }

    fn from_yaml(file: &str, err: &serde_yaml::Error) -> Self {
        let location = err.location().map(|l| (l.line(), l.column()));
        let mut message = err.to_string();
        if let Some((line, column)) = location {
            message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
        }
        ConfigError::new(file, location, message)
    }
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let content = read_file(path).map_err(|message| ConfigError::new(&file, None, message))?;
        Config::parse(&content, &file)
    }

    /// Validates configuration text; `file` names it in errors.
    pub fn parse(content: &str, file: &str) -> Result<Config, ConfigError> {
        let is_empty = content.lines().all(|line| {
            let line = line.trim();
            line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
        });
        if is_empty {
            return Ok(Config::default());
        }
        let raw: Option<RawConfig> =
            serde_yaml::from_str(content).map_err(|e| ConfigError::from_yaml(file, &e))?;
        validate(raw.unwrap_or_default()).map_err(|invalid| {
            let message = format!("{}: {}", path_text(&invalid.path), invalid.message);
            ConfigError::new(file, locate(content, &invalid.path, &message), message)
        })
    }
}

/// Reads a config file as text, bounded, with a readable reason on failure.
pub(crate) fn read_file(path: &Path) -> Result<String, String> {
    let reason = |e: std::io::Error| format!("cannot read: {e}");
    if path.is_dir() {
        return Err("is a directory, not a file".to_string());
    }
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(reason)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(reason)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

#[derive(Deserialize, Default)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with scheduler, strategies, api, metrics"
)]
struct RawConfig {
    scheduler: Option<RawScheduler>,
    strategies: Option<Vec<RawStrategy>>,
    api: Option<RawApiConfig>,
    metrics: Option<RawMetrics>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping with listen")]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a mapping of scheduler settings")]
struct RawScheduler {
    slice_ns_default: Option<u64>,
    slice_ns_min: Option<u64>,
    watchdog_timeout_ms: Option<u64>,
    interval: Option<u64>,
    scan_interval_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a strategy mapping")]
struct RawStrategy {
    name: String,
    priority: Option<Priority>,
    execution_time: Option<u64>,
    pid: Option<i64>,
    pids: Option<Vec<i64>>,
    command_regex: Option<String>,
    cgroup: Option<String>,
    cgroup_regex: Option<String>,
    namespace: Option<String>,
    selectors: Option<Vec<RawLabel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with key and value")]
struct RawLabel {
    key: String,
    value: String,
}

/// A place in the document: a mapping key or a sequence index.
#[derive(Clone, Copy, Debug)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

fn path_text(path: &[Seg]) -> String {
    let mut text = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) if text.is_empty() => text.push_str(key),
            Seg::Key(key) => {
                text.push('.');
                text.push_str(key);
            }
            Seg::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

/// A validation failure at `path`.
struct Invalid {
    path: Vec<Seg>,
    message: String,
}

fn invalid<T>(path: &[Seg], message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        path: path.to_vec(),
        message: message.into(),
    })
}

fn in_range(path: &[Seg], value: u64, min: u64, max: u64, what: &str) -> Result<u64, Invalid> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        invalid(
            path,
            format!("{value} is out of range: expected {what} ({min}..={max})"),
        )
    }
}

fn validate(raw: RawConfig) -> Result<Config, Invalid> {
    let scheduler = validate_scheduler(raw.scheduler.unwrap_or_default())?;
    let raw_strategies = raw.strategies.unwrap_or_default();
    let top = [Seg::Key("strategies")];
    if raw_strategies.len() > MAX_STRATEGIES {
        return invalid(
            &top,
            format!(
                "{} strategies; at most {MAX_STRATEGIES} are allowed",
                raw_strategies.len()
            ),
        );
    }
    let mut list: Vec<Strategy> = Vec::with_capacity(raw_strategies.len());
    for (i, raw) in raw_strategies.into_iter().enumerate() {
        let path = [Seg::Key("strategies"), Seg::Index(i)];
        let strategy = validate_strategy(&path, raw, &scheduler)?;
        if let Some(first) = list.iter().position(|s| s.name == strategy.name) {
            return invalid(
                &[path[0], path[1], Seg::Key("name")],
                format!(
                    "duplicate strategy name {:?} (also strategies[{first}])",
                    strategy.name
                ),
            );
        }
        list.push(strategy);
    }
    let metrics = raw.metrics.unwrap_or_default();
    let listen = match metrics.listen {
        None => None,
        Some(text) => Some(text.parse::<SocketAddr>().or_else(|_| {
            invalid(
                &[Seg::Key("metrics"), Seg::Key("listen")],
                format!("{text:?} is not an IP address and port, e.g. \"127.0.0.1:9100\" or \"[::]:9100\""),
            )
        })?),
    };
    Ok(Config {
        metrics: MetricsConfig { listen },
        scheduler,
        strategies: Strategies { list },
        api: Box::new(
            raw.api
                .unwrap_or_default()
                .validate()
                .or_else(|e| invalid(&[Seg::Key("api"), Seg::Key(e.key)], e.message))?,
        ),
    })
}

fn validate_scheduler(raw: RawScheduler) -> Result<SchedulerConfig, Invalid> {
    let d = SchedulerConfig::default();
    let at = |key| [Seg::Key("scheduler"), Seg::Key(key)];
    let slice = |key, value: Option<u64>, default| {
        in_range(
            &at(key),
            value.unwrap_or(default),
            SLICE_NS_MIN,
            SLICE_NS_MAX,
            "a slice in ns",
        )
    };
    let config = SchedulerConfig {
        slice_ns_default: slice("slice_ns_default", raw.slice_ns_default, d.slice_ns_default)?,
        slice_ns_min: slice("slice_ns_min", raw.slice_ns_min, d.slice_ns_min)?,
        watchdog_timeout_ms: in_range(
            &at("watchdog_timeout_ms"),
            raw.watchdog_timeout_ms.unwrap_or(d.watchdog_timeout_ms),
            WATCHDOG_MS_MIN,
            WATCHDOG_MS_MAX,
            "a timeout in ms",
        )?,
        interval: in_range(
            &at("interval"),
            raw.interval.unwrap_or(d.interval),
            0,
            INTERVAL_MAX,
            "seconds",
        )?,
        scan_interval_ms: in_range(
            &at("scan_interval_ms"),
            raw.scan_interval_ms.unwrap_or(d.scan_interval_ms),
            SCAN_INTERVAL_MS_MIN,
            SCAN_INTERVAL_MS_MAX,
            "a period in ms",
        )?,
    };
    if config.slice_ns_min > config.slice_ns_default {
        return invalid(
            &at("slice_ns_min"),
            format!(
                "{} is larger than slice_ns_default ({})",
                config.slice_ns_min, config.slice_ns_default
            ),
        );
    }
    Ok(config)
}

fn validate_strategy(
    path: &[Seg; 2],
    raw: RawStrategy,
    scheduler: &SchedulerConfig,
) -> Result<Strategy, Invalid> {
    let at = |key| [path[0], path[1], Seg::Key(key)];
    let name = raw.name;
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return invalid(
            &at("name"),
            format!("expected 1..={MAX_NAME} bytes without control characters"),
        );
    }
    let priority = raw.priority.unwrap_or(Priority::NoBoost);
    let execution_time = match raw.execution_time {
        Some(ns) => Some(in_range(
            &at("execution_time"),
            ns,
            scheduler.slice_ns_min,
            SLICE_NS_MAX,
            "a slice in ns from scheduler.slice_ns_min to 1 s",
        )?),
        None => None,
    };
    if priority == Priority::NoBoost && execution_time.is_none() {
        return invalid(
            path,
            "has no effect: give it a priority (a level or true) or an execution_time",
        );
    }

    let pids = match (raw.pid, raw.pids) {
        (Some(_), Some(_)) => return invalid(&at("pids"), "give either pid or pids, not both"),
        (Some(pid), None) => validate_pids(at("pid"), false, &[pid])?,
        (None, Some(pids)) => validate_pids(at("pids"), true, &pids)?,
        (None, None) => Vec::new(),
    };
    let command = compile(&at("command_regex"), raw.command_regex)?;
    let cgroup_prefix = match raw.cgroup {
        Some(prefix) if !prefix.starts_with('/') => {
            return invalid(
                &at("cgroup"),
                format!("{prefix:?} is not an absolute cgroup path (starting with /)"),
            )
        }
        Some(prefix) => Some(match prefix.trim_end_matches('/') {
            "" => "/".to_string(),
            trimmed => trimmed.to_string(),
        }),
        None => None,
    };
    let cgroup_regex = compile(&at("cgroup_regex"), raw.cgroup_regex)?;
    if raw.namespace.as_deref() == Some("") {
        return invalid(&at("namespace"), "must not be empty");
    }
    let labels = match raw.selectors {
        Some(labels) if labels.is_empty() || labels.len() > MAX_LIST => {
            return invalid(
                &at("selectors"),
                format!("expected 1..={MAX_LIST} label selectors"),
            )
        }
        Some(labels) => {
            if let Some(i) = labels.iter().position(|l| l.key.is_empty()) {
                return invalid(
                    &[
                        path[0],
                        path[1],
                        Seg::Key("selectors"),
                        Seg::Index(i),
                        Seg::Key("key"),
                    ],
                    "must not be empty",
                );
            }
            labels.into_iter().map(|l| (l.key, l.value)).collect()
        }
        None => Vec::new(),
    };
    let selector = Selector {
        pids,
        command,
        cgroup_prefix,
        cgroup_regex,
        namespace: raw.namespace,
        labels,
    };
    let has_selector =
        !selector.pids.is_empty() || selector.command.is_some() || selector.needs_cgroup();
    if !has_selector {
        return invalid(
            path,
            "selects nothing: give at least one of pid, pids, command_regex, cgroup, cgroup_regex, namespace, selectors",
        );
    }
    Ok(Strategy {
        name,
        priority,
        execution_time,
        selector,
    })
}

/// Checks process ids given as `pid` (`list` false) or `pids` at `at`.
fn validate_pids(at: [Seg; 3], list: bool, pids: &[i64]) -> Result<Vec<i32>, Invalid> {
    if pids.is_empty() || pids.len() > MAX_LIST {
        return invalid(&at, format!("expected 1..={MAX_LIST} process ids"));
    }
    let mut valid = Vec::with_capacity(pids.len());
    for (i, &pid) in pids.iter().enumerate() {
        match i32::try_from(pid) {
            Ok(pid) if pid > 0 && i64::from(pid) <= PID_MAX => valid.push(pid),
            _ => {
                let message = format!("{pid} is not a process id (expected 1..={PID_MAX})");
                return if list {
                    invalid(&[at[0], at[1], at[2], Seg::Index(i)], message)
                } else {
                    invalid(&at, message)
                };
            }
        }
    }
    Ok(valid)
}

/// Compiles a user regex with bounded pattern length and compiled size.
fn compile(path: &[Seg], pattern: Option<String>) -> Result<Option<Regex>, Invalid> {
    let Some(pattern) = pattern else {
        return Ok(None);
    };
    if pattern.len() > MAX_REGEX_LEN {
        return invalid(
            path,
            format!("pattern is longer than {MAX_REGEX_LEN} bytes"),
        );
    }
    match RegexBuilder::new(&pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
    {
        Ok(re) => Ok(Some(re)),
        Err(e) => invalid(
            path,
            format!(
                "invalid regex: {}",
                e.to_string().lines().last().unwrap_or("")
            ),
        ),
    }
}

/// Finds where `path` is in the YAML text by walking the document to it and
/// failing there: serde_yaml then reports that node's line and column.
fn locate(content: &str, path: &[Seg], message: &str) -> Option<(usize, usize)> {
    let seek = Seek { path, message };
    match seek.deserialize(serde_yaml::Deserializer::from_str(content)) {
        Ok(()) => None,
        Err(e) => e.location().map(|l| (l.line(), l.column())),
    }
}

/// Visits a YAML document and errors at `path` (nowhere if it is absent).
struct Seek<'a> {
    path: &'a [Seg],
    message: &'a str,
}

impl Seek<'_> {
    fn leaf<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(self.message))
        } else {
            Ok(())
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.leaf()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.leaf()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.leaf()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.leaf()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((seg, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(self.message));
        };
        let mut i = 0;
        while let Some(()) = match seg {
            Seg::Index(want) if *want == i => seq.next_element_seed(Seek {
                path: rest,
                message: self.message,
            })?,
            _ => seq.next_element::<IgnoredAny>()?.map(|_| ()),
        } {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((seg, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(self.message));
        };
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            match seg {
                Seg::Key(want) if key.as_str() == Some(*want) => map.next_value_seed(Seek {
                    path: rest,
                    message: self.message,
                })?,
                _ => map.next_value::<IgnoredAny>().map(|_| ())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod bad_input_tests;
#[cfg(test)]
mod tests;
