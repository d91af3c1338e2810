//! Prometheus metrics: what the scheduling loop publishes (a [`Snapshot`],
//! at most once a second, never waiting) and its text exposition (format
//! 0.0.4), served by [`server`] from a thread of its own.

pub mod server;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::api::ApiStatus;
use crate::counters::Counters;

/// Stats slots BPF keeps: strategies 0..MAX_STRATEGY_SLOTS (bpf/intf.h).
pub const MAX_STRATEGY_SLOTS: usize = 256;
/// Latency buckets: bucket i counts waits of [2^i, 2^(i+1)) ns.
pub const LAT_BUCKETS: usize = 32;
/// Label of tasks no strategy selects.
pub const UNMATCHED: &str = "none";
/// Label shared by strategies listed beyond `MAX_STRATEGY_SLOTS`.
pub const OTHER: &str = "other";

/// What the tasks of one stats slot got, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotStats {
    /// Runnable -> running waits, log2 ns buckets (not cumulative).
    pub lat: [u64; LAT_BUCKETS],
    pub lat_sum_ns: u64,
    pub dispatches: u64,
    pub cpu_ns: u64,
}

impl SlotStats {
    pub fn add(&mut self, other: &SlotStats) {
        for (a, b) in self.lat.iter_mut().zip(other.lat) {
            *a += b;
        }
        self.lat_sum_ns += other.lat_sum_ns;
        self.dispatches += other.dispatches;
        self.cpu_ns += other.cpu_ns;
    }
}

/// One strategy's (or the unmatched tasks') statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotSnapshot {
    /// The strategy's name, `UNMATCHED` or `OTHER`.
    pub strategy: String,
    /// Tasks the strategy selects now (from the latest rule table).
    pub tasks: Option<usize>,
    pub stats: SlotStats,
}

/// What the loop publishes.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub counters: Counters,
    pub slots: Vec<SlotSnapshot>,
    /// The Gthulhu API client's state, when it is enabled.
    pub api: Option<ApiStatus>,
}

/// Everything the metrics thread reads; shared with the loop and main.
#[derive(Default)]
pub struct Metrics {
    /// Replaced by the loop with `try_lock`, so a scrape never delays it.
    pub snapshot: Mutex<Snapshot>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    last_reload_ok_unix: AtomicU64,
    /// The kernel's last exit record, when it asked for a restart.
    last_exit: Mutex<Option<String>>,
}

impl Metrics {
    /// A config file reload was applied (`ok`) or rejected.
    pub fn config_reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
            self.last_reload_ok_unix
                .store(unix_now(), Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn kernel_exited(&self, exit: String) {
        if let Ok(mut last) = self.last_exit.lock() {
            *last = Some(exit);
        }
    }

    /// The exposition text as of now.
    pub fn render(&self) -> String {
        let snapshot = self.snapshot.lock().map(|s| s.clone()).unwrap_or_default();
        let health = Health {
            now_mono_ns: monotonic_ns(),
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            last_reload_ok_unix: self.last_reload_ok_unix.load(Ordering::Relaxed),
            last_exit: self.last_exit.lock().ok().and_then(|e| e.clone()),
        };
        render(&snapshot, &health)
    }
}

/// Health values read at scrape time.
#[derive(Debug, Default)]
pub struct Health {
    /// CLOCK_MONOTONIC now, the clock of `usersched_last_run_at`.
    pub now_mono_ns: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// 0: no successful reload yet.
    pub last_reload_ok_unix: u64,
    pub last_exit: Option<String>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
    })
}

/// How each `bss data` counter is exposed: field, metric, type, help.
const COUNTER_METRICS: [(&str, &str, &str, &str); 13] = [
    (
        "usersched_last_run_at",
        "gthulhu_usersched_last_run_at_seconds",
        "gauge",
        "CLOCK_MONOTONIC time the scheduling loop last ran on a CPU.",
    ),
    (
        "nr_queued",
        "gthulhu_queued_total",
        "counter",
        "Tasks sent to user space.",
    ),
    (
        "nr_scheduled",
        "gthulhu_scheduled",
        "gauge",
        "Tasks user space holds now.",
    ),
    (
        "nr_running",
        "gthulhu_running",
        "gauge",
        "Tasks running on a CPU now.",
    ),
    (
        "nr_online_cpus",
        "gthulhu_online_cpus",
        "gauge",
        "CPUs online at attach.",
    ),
    (
        "nr_user_dispatches",
        "gthulhu_user_dispatches_total",
        "counter",
        "User-space decisions applied.",
    ),
    (
        "nr_kernel_dispatches",
        "gthulhu_kernel_dispatches_total",
        "counter",
        "Tasks dispatched in BPF without user space.",
    ),
    (
        "nr_cancel_dispatches",
        "gthulhu_cancel_dispatches_total",
        "counter",
        "Stale decisions dropped.",
    ),
    (
        "nr_bounce_dispatches",
        "gthulhu_bounce_dispatches_total",
        "counter",
        "Decisions whose CPU the task may no longer use.",
    ),
    (
        "nr_failed_dispatches",
        "gthulhu_failed_dispatches_total",
        "counter",
        "Malformed decisions.",
    ),
    (
        "nr_sched_congested",
        "gthulhu_sched_congested_total",
        "counter",
        "Tasks that found the ring buffer to user space full (dispatched in BPF).",
    ),
    (
        "nr_rule_runs",
        "gthulhu_rule_runs_total",
        "counter",
        "Runs of tasks a strategy selects.",
    ),
    (
        "nr_rule_slice_runs",
        "gthulhu_rule_slice_runs_total",
        "counter",
        "Runs of strategy-selected tasks that started with the strategy's slice.",
    ),
];

/// Escapes a label value: backslash, double quote and newline.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The upper bound of latency bucket `i` in seconds, as Prometheus' `le`.
fn bucket_le(i: usize) -> String {
    if i + 1 >= LAT_BUCKETS {
        "+Inf".to_string()
    } else {
        format!("{:e}", seconds(1u64 << (i + 1)))
    }
}

/// One per-strategy value as exposed; None: not exposed for this slot.
type SlotValue = fn(&SlotSnapshot) -> Option<String>;

/// The Prometheus text exposition (format 0.0.4) of a snapshot.
pub fn render(s: &Snapshot, h: &Health) -> String {
    let mut out = String::with_capacity(4096 + s.slots.len() * 3072);
    for ((field, value), (_, name, kind, help)) in s.counters.fields().iter().zip(COUNTER_METRICS) {
        header(&mut out, name, kind, help);
        if *field == "usersched_last_run_at" {
            let _ = writeln!(out, "{name} {}", seconds(*value));
        } else {
            let _ = writeln!(out, "{name} {value}");
        }
    }

    if s.counters.usersched_last_run_at > 0 {
        header(
            &mut out,
            "gthulhu_loop_last_run_age_seconds",
            "gauge",
            "Seconds since the scheduling loop last ran on a CPU.",
        );
        let age = h
            .now_mono_ns
            .saturating_sub(s.counters.usersched_last_run_at);
        let _ = writeln!(out, "gthulhu_loop_last_run_age_seconds {}", seconds(age));
    }

    let name = "gthulhu_sched_latency_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Time from a task being enqueued (woken up or preempted) to running on a CPU, per strategy.",
    );
    for slot in &s.slots {
        let strategy = label(&slot.strategy);
        let mut cumulative = 0;
        for (i, n) in slot.stats.lat.iter().enumerate() {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{strategy=\"{strategy}\",le=\"{}\"}} {cumulative}",
                bucket_le(i)
            );
        }
        let _ = writeln!(
            out,
            "{name}_sum{{strategy=\"{strategy}\"}} {}",
            seconds(slot.stats.lat_sum_ns)
        );
        let _ = writeln!(out, "{name}_count{{strategy=\"{strategy}\"}} {cumulative}");
    }

    let per_slot: [(&str, &str, &str, SlotValue); 3] = [
        (
            "gthulhu_strategy_dispatches_total",
            "counter",
            "Tasks inserted into a dispatch queue, per strategy.",
            |s| Some(s.stats.dispatches.to_string()),
        ),
        (
            "gthulhu_strategy_cpu_seconds_total",
            "counter",
            "CPU time received, per strategy.",
            |s| Some(seconds(s.stats.cpu_ns).to_string()),
        ),
        (
            "gthulhu_strategy_tasks",
            "gauge",
            "Tasks (threads) the strategy selects now.",
            |s| s.tasks.map(|n| n.to_string()),
        ),
    ];
    for (name, kind, help, value) in per_slot {
        header(&mut out, name, kind, help);
        for slot in &s.slots {
            if let Some(v) = value(slot) {
                let _ = writeln!(out, "{name}{{strategy=\"{}\"}} {v}", label(&slot.strategy));
            }
        }
    }

    header(
        &mut out,
        "gthulhu_config_reloads_total",
        "counter",
        "Config file reloads, applied (ok) or rejected (failed).",
    );
    let _ = writeln!(
        out,
        "gthulhu_config_reloads_total{{result=\"ok\"}} {}",
        h.reloads_ok
    );
    let _ = writeln!(
        out,
        "gthulhu_config_reloads_total{{result=\"failed\"}} {}",
        h.reloads_failed
    );
    if h.last_reload_ok_unix > 0 {
        header(
            &mut out,
            "gthulhu_config_last_reload_success_timestamp_seconds",
            "gauge",
            "Unix time of the last config reload that was applied.",
        );
        let _ = writeln!(
            out,
            "gthulhu_config_last_reload_success_timestamp_seconds {}",
            h.last_reload_ok_unix
        );
    }
    if let Some(api) = s.api {
        header(
            &mut out,
            "gthulhu_api_consecutive_failures",
            "gauge",
            "Gthulhu API fetch/post cycles failed in a row (0: reachable).",
        );
        let _ = writeln!(
            out,
            "gthulhu_api_consecutive_failures {}",
            api.consecutive_failures
        );
        header(
            &mut out,
            "gthulhu_api_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last good Gthulhu API cycle (0: none yet).",
        );
        let _ = writeln!(
            out,
            "gthulhu_api_last_success_timestamp_seconds {}",
            api.last_success_unix
        );
    }
    if let Some(exit) = &h.last_exit {
        header(
            &mut out,
            "gthulhu_kernel_exit_info",
            "gauge",
            "The kernel's last exit record (it asked gthulhu to restart).",
        );
        let _ = writeln!(
            out,
            "gthulhu_kernel_exit_info{{exit=\"{}\"}} 1",
            label(exit)
        );
    }
    out
}

#[cfg(test)]
mod tests;
