use super::*;

fn slot(strategy: &str, tasks: Option<usize>, waits_ns: &[u64]) -> SlotSnapshot {
    let mut stats = SlotStats {
        dispatches: 7,
        cpu_ns: 1_500_000_000,
        ..Default::default()
    };
    for &w in waits_ns {
        stats.lat[(63 - w.leading_zeros() as usize).min(LAT_BUCKETS - 1)] += 1;
        stats.lat_sum_ns += w;
    }
    SlotSnapshot {
        strategy: strategy.into(),
        tasks,
        stats,
    }
}

fn sample() -> String {
    let snapshot = Snapshot {
        counters: Counters {
            nr_queued: 42,
            nr_running: 2,
            usersched_last_run_at: 10_000_000_000,
            ..Default::default()
        },
        slots: vec![
            slot("upf \"fast\"\\", Some(3), &[1_000, 3_000, 5_000_000_000]),
            slot(UNMATCHED, None, &[]),
        ],
        api: Some(ApiStatus {
            consecutive_failures: 3,
            last_success_unix: 1_700_000_100,
        }),
    };
    let health = Health {
        now_mono_ns: 12_500_000_000,
        reloads_ok: 2,
        reloads_failed: 1,
        last_reload_ok_unix: 1_700_000_000,
        last_exit: Some("kind=1026 reason=\"hotplug\"".into()),
    };
    render(&snapshot, &health)
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in\n{text}"))
}

#[test]
fn every_bss_counter_has_exposition_metadata_in_order() {
    let names: Vec<&str> = Counters::default().fields().iter().map(|f| f.0).collect();
    let meta: Vec<&str> = COUNTER_METRICS.iter().map(|m| m.0).collect();
    assert_eq!(names, meta);
}

#[test]
fn counters_and_gauges_carry_help_and_type() {
    let text = sample();
    assert!(text.contains("# HELP gthulhu_queued_total Tasks sent to user space.\n# TYPE gthulhu_queued_total counter\ngthulhu_queued_total 42\n"));
    assert!(text.contains("# TYPE gthulhu_running gauge\ngthulhu_running 2\n"));
    for (_, name, kind, _) in COUNTER_METRICS {
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
    }
    assert_eq!(
        line(&text, "gthulhu_loop_last_run_age_seconds "),
        "gthulhu_loop_last_run_age_seconds 2.5"
    );
}

#[test]
fn latency_histogram_is_cumulative_per_strategy_with_escaped_labels() {
    let text = sample();
    let s = "strategy=\"upf \\\"fast\\\"\\\\\"";
    // 1000 ns is in [512, 1024) ns: le 1.024e-6; 3000 ns below 4096 ns.
    assert_eq!(
        line(
            &text,
            &format!("gthulhu_sched_latency_seconds_bucket{{{s},le=\"1.024e-6\"}}")
        ),
        format!("gthulhu_sched_latency_seconds_bucket{{{s},le=\"1.024e-6\"}} 1")
    );
    assert!(text.contains(&format!("_bucket{{{s},le=\"4.096e-6\"}} 2\n")));
    assert!(text.contains(&format!("_bucket{{{s},le=\"+Inf\"}} 3\n")));
    assert!(text.contains(&format!("gthulhu_sched_latency_seconds_count{{{s}}} 3\n")));
    assert!(text.contains(&format!(
        "gthulhu_sched_latency_seconds_sum{{{s}}} 5.000004\n"
    )));
    assert!(text.contains("gthulhu_sched_latency_seconds_count{strategy=\"none\"} 0\n"));
    let buckets = text
        .matches("gthulhu_sched_latency_seconds_bucket{strategy=\"none\"")
        .count();
    assert_eq!(buckets, LAT_BUCKETS);
}

#[test]
fn per_strategy_dispatches_cpu_time_and_matched_tasks() {
    let text = sample();
    assert!(text.contains("gthulhu_strategy_dispatches_total{strategy=\"none\"} 7\n"));
    assert!(text.contains("gthulhu_strategy_cpu_seconds_total{strategy=\"none\"} 1.5\n"));
    assert!(text.contains("gthulhu_strategy_tasks{strategy=\"upf \\\"fast\\\"\\\\\"} 3\n"));
    assert!(!text.contains("gthulhu_strategy_tasks{strategy=\"none\"}"));
}

#[test]
fn health_shows_reloads_api_state_and_the_kernel_exit() {
    let text = sample();
    assert!(text.contains("gthulhu_api_consecutive_failures 3\n"));
    assert!(text.contains("gthulhu_api_last_success_timestamp_seconds 1700000100\n"));
    assert!(text.contains("gthulhu_config_reloads_total{result=\"ok\"} 2\n"));
    assert!(text.contains("gthulhu_config_reloads_total{result=\"failed\"} 1\n"));
    assert!(text.contains("gthulhu_config_last_reload_success_timestamp_seconds 1700000000\n"));
    assert!(
        text.contains("gthulhu_kernel_exit_info{exit=\"kind=1026 reason=\\\"hotplug\\\"\"} 1\n")
    );
}

#[test]
fn every_sample_line_is_name_optional_labels_and_a_number() {
    for l in sample().lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = l.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
        assert!(l.starts_with("gthulhu_"), "{l}");
    }
}

#[test]
fn slot_stats_add_and_count_runs() {
    let mut a = slot("a", None, &[10, 20]).stats;
    a.add(&slot("a", None, &[30]).stats);
    assert_eq!(a.lat.iter().sum::<u64>(), 3);
    assert_eq!(a.lat_sum_ns, 60);
    assert_eq!(a.dispatches, 14);
}
