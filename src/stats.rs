//! `gthulhu stats`: a live table from a running gthulhu's `/metrics`, one
//! refresh a second: counters per second, latency percentiles per strategy
//! over the last second, health.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::metrics::LAT_BUCKETS;

/// Connect, read and write timeout of one scrape.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest exposition read.
const MAX_BODY: u64 = 4 << 20;
const REFRESH: Duration = Duration::from_secs(1);

/// One strategy's values in a scrape.
#[derive(Clone, Debug, Default, PartialEq)]
struct Slot {
    /// Cumulative bucket counts, in `le` order.
    buckets: Vec<f64>,
    dispatches: f64,
    cpu_seconds: f64,
    tasks: Option<f64>,
}

/// The parts of a scrape the table shows.
#[derive(Clone, Debug, Default, PartialEq)]
struct Scrape {
    values: BTreeMap<String, f64>,
    slots: BTreeMap<String, Slot>,
}

/// Prints the table every second until a scrape fails; returns the exit code.
pub fn run(addr: SocketAddr) -> i32 {
    let mut previous: Option<(Instant, Scrape)> = None;
    loop {
        let scrape = match fetch(addr) {
            Ok(body) => parse(&body),
            Err(e) => {
                eprintln!("gthulhu stats: http://{addr}/metrics: {e}");
                return 1;
            }
        };
        let now = Instant::now();
        let elapsed = previous
            .as_ref()
            .map(|(at, _)| now.duration_since(*at).as_secs_f64());
        let table = table(&scrape, previous.as_ref().map(|p| &p.1), elapsed);
        print!("\x1b[H\x1b[2J{addr}\n{table}");
        let _ = std::io::stdout().flush();
        previous = Some((now, scrape));
        thread::sleep(REFRESH);
    }
}

fn fetch(addr: SocketAddr) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .and_then(|()| stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: gthulhu\r\n\r\n"))
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .take(MAX_BODY)
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("truncated response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_string());
    }
    Ok(body.to_string())
}

/// The value of label `key` in `{a="x",b="y"}` (gthulhu's own output:
/// names without escapes).
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    let mut end = 0;
    let bytes = rest.as_bytes();
    while end < bytes.len() && bytes[end] != b'"' {
        end += if bytes[end] == b'\\' { 2 } else { 1 };
    }
    rest.get(..end)
}

fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let Some(strategy) = label(labels, "strategy") else {
            s.values.insert(series.to_string(), value);
            continue;
        };
        let slot = s.slots.entry(strategy.to_string()).or_default();
        match name {
            "gthulhu_sched_latency_seconds_bucket" => slot.buckets.push(value),
            "gthulhu_strategy_dispatches_total" => slot.dispatches = value,
            "gthulhu_strategy_cpu_seconds_total" => slot.cpu_seconds = value,
            "gthulhu_strategy_tasks" => slot.tasks = Some(value),
            _ => {}
        }
    }
    s
}

/// Upper bound of the bucket holding quantile `q` of `counts` (per bucket,
/// not cumulative), as text; "-" without samples.
fn percentile(counts: &[f64], q: f64) -> String {
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return "-".into();
    }
    let mut seen = 0.0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= q * total {
            if i + 1 >= LAT_BUCKETS {
                return ">2s".into();
            }
            let ns = (1u64 << (i + 1)) as f64;
            return if ns < 1e6 {
                format!("{:.0}us", ns / 1e3)
            } else {
                format!("{:.1}ms", ns / 1e6)
            };
        }
    }
    "-".into()
}

/// The table for `now`, with rates against `before` (`elapsed` seconds
/// earlier); totals since start on the first refresh.
fn table(now: &Scrape, before: Option<&Scrape>, elapsed: Option<f64>) -> String {
    let secs = elapsed.filter(|&e| e > 0.0).unwrap_or(1.0);
    let rate = |v: f64, old: Option<f64>| (v - old.unwrap_or(0.0)).max(0.0) / secs;
    let value = |name: &str| now.values.get(name).copied().unwrap_or(0.0);
    let old = |name: &str| before.and_then(|b| b.values.get(name).copied());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "loop ran {:.2}s ago   running {}   config reloads ok {} failed {}",
        value("gthulhu_loop_last_run_age_seconds"),
        value("gthulhu_running"),
        value("gthulhu_config_reloads_total{result=\"ok\"}"),
        value("gthulhu_config_reloads_total{result=\"failed\"}"),
    );
    let _ = writeln!(out, "per second:");
    for (name, short) in [
        ("gthulhu_queued_total", "queued"),
        ("gthulhu_user_dispatches_total", "user"),
        ("gthulhu_kernel_dispatches_total", "kernel"),
        ("gthulhu_cancel_dispatches_total", "cancel"),
        ("gthulhu_sched_congested_total", "congested"),
    ] {
        let _ = write!(out, "  {short} {:.0}", rate(value(name), old(name)));
    }
    let _ = writeln!(
        out,
        "\n\n{:<24} {:>6} {:>8} {:>6} {:>8} {:>8} {:>8}",
        "STRATEGY", "TASKS", "DISP/S", "CPU%", "P50", "P90", "P99"
    );
    for (name, slot) in &now.slots {
        let prev = before.and_then(|b| b.slots.get(name));
        let mut counts = Vec::with_capacity(slot.buckets.len());
        let mut last = 0.0;
        for (i, &c) in slot.buckets.iter().enumerate() {
            let p = prev.and_then(|p| p.buckets.get(i)).copied().unwrap_or(0.0);
            let cumulative = (c - p).max(0.0);
            counts.push((cumulative - last).max(0.0));
            last = cumulative;
        }
        let tasks = slot.tasks.map_or("-".to_string(), |t| format!("{t:.0}"));
        let _ = writeln!(
            out,
            "{:<24} {:>6} {:>8.0} {:>6.1} {:>8} {:>8} {:>8}",
            name,
            tasks,
            rate(slot.dispatches, prev.map(|p| p.dispatches)),
            100.0 * rate(slot.cpu_seconds, prev.map(|p| p.cpu_seconds)),
            percentile(&counts, 0.5),
            percentile(&counts, 0.9),
            percentile(&counts, 0.99),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Counters;
    use crate::metrics::{render, Health, SlotSnapshot, SlotStats, Snapshot};

    fn exposition(queued: u64, fast: u64, slow: u64, cpu_ns: u64) -> String {
        let mut stats = SlotStats {
            dispatches: fast + slow,
            cpu_ns,
            ..Default::default()
        };
        stats.lat[10] = fast; // [1024, 2048) ns
        stats.lat[20] = slow; // [1, 2) ms
        let snapshot = Snapshot {
            counters: Counters {
                nr_queued: queued,
                ..Default::default()
            },
            slots: vec![SlotSnapshot {
                strategy: "demo".into(),
                tasks: Some(2),
                stats,
            }],
            api: None,
        };
        render(&snapshot, &Health::default())
    }

    #[test]
    fn reads_gthulhus_own_exposition() {
        let s = parse(&exposition(5, 3, 1, 0));
        assert_eq!(s.values["gthulhu_queued_total"], 5.0);
        let demo = &s.slots["demo"];
        assert_eq!(demo.buckets.len(), LAT_BUCKETS);
        assert_eq!(demo.buckets[LAT_BUCKETS - 1], 4.0);
        assert_eq!(demo.tasks, Some(2.0));
        assert_eq!(demo.dispatches, 4.0);
    }

    #[test]
    fn table_shows_rates_and_percentiles_of_the_last_interval() {
        let before = parse(&exposition(100, 10, 0, 0));
        // In the next 2 s: 100 runs, all slow; half a CPU.
        let now = parse(&exposition(300, 10, 100, 1_000_000_000));
        let t = table(&now, Some(&before), Some(2.0));
        assert!(t.contains("queued 100"), "{t}");
        let row = t.lines().find(|l| l.starts_with("demo")).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols, ["demo", "2", "50", "50.0", "2.1ms", "2.1ms", "2.1ms"]);
    }

    #[test]
    fn percentiles_without_samples_are_dashes() {
        assert_eq!(percentile(&[0.0; LAT_BUCKETS], 0.5), "-");
        let mut counts = [0.0; LAT_BUCKETS];
        counts[9] = 1.0;
        assert_eq!(percentile(&counts, 0.99), "1us");
    }
}
