#!/usr/bin/env python3
"""bench-report.py DIR: turn DIR/raw.jsonl (tests/bench/guest.sh) into
DIR/table.md (median and spread of each figure, and its ratio to EEVDF
measured in the same run) and DIR/latency.png (probe latency per scheduler)."""
import json
import statistics
import sys
from pathlib import Path

ORDER = ["idle", "eevdf", "rustland", "gthulhu", "gthulhu-strategy"]
LABEL = {
    "idle": "idle system (floor)",
    "eevdf": "EEVDF (no sched_ext)",
    "rustland": "scx_rustland",
    "gthulhu": "gthulhu",
    "gthulhu-strategy": "gthulhu, probe prioritized",
}
METRICS = [
    ("lat_p50_us", "probe p50 (us)"),
    ("lat_p99_us", "probe p99 (us)"),
    ("lat_max_us", "probe max (us)"),
    ("wake_p50_us", "scheduler's part: wake-up to running p50 (us)"),
    ("wake_p99_us", "scheduler's part: wake-up to running p99 (us)"),
    ("wake_max_us", "scheduler's part: wake-up to running max (us)"),
    ("hackbench_ms", "hackbench (ms)"),
    ("fork_ops_s", "fork ops/s"),
    ("cpu_us_per_dispatch", "sched CPU per dispatch (us)"),
    ("rss_kb", "sched peak RSS (KiB)"),
    ("nr_user_dispatches", "user dispatches"),
    ("nr_kernel_dispatches", "kernel dispatches"),
    ("nr_sched_congested", "congested"),
    ("nr_cancel_dispatches", "cancelled"),
]
# Figures also given as a ratio to EEVDF.
RATIO = {"lat_p50_us", "lat_p99_us", "lat_max_us", "wake_p50_us", "wake_p99_us",
         "wake_max_us", "hackbench_ms", "fork_ops_s"}


def main(out: Path) -> None:
    values: dict = {}
    for line in (out / "raw.jsonl").read_text().splitlines():
        r = json.loads(line)
        values.setdefault((r["config"], r["metric"]), []).append(float(r["value"]))
    configs = [c for c in ORDER if any(k[0] == c for k in values)]

    def median(c, m):
        v = values.get((c, m))
        return statistics.median(v) if v else None

    rows = ["| figure | " + " | ".join(LABEL[c] for c in configs) + " |",
            "|---|" + "---|" * len(configs)]
    for metric, name in METRICS:
        if not any((c, metric) in values for c in configs):
            continue
        base = median("eevdf", metric)
        cells = []
        for c in configs:
            v = values.get((c, metric))
            if not v:
                cells.append("")
                continue
            med = statistics.median(v)
            cell = f"{med:.0f}"
            if len(v) > 1:
                cell += f" ({min(v):.0f}–{max(v):.0f})"
            if base and c not in ("eevdf", "idle") and metric in RATIO:
                cell += f", {med / base:.2f}x"
            cells.append(cell)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(rows) + "\n"
    (out / "table.md").write_text(table)
    print(table)

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: no matplotlib, no chart", file=sys.stderr)
        return
    lat = [c for c in configs if (c, "lat_p99_us") in values]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.38
    xs = range(len(lat))
    panels = [
        (axes[0], "lat", "timer expiry to running (cyclictest)"),
        (axes[1], "wake", "scheduler's part: wake-up to running"),
    ]
    for ax, prefix, title in panels:
        for i, q in enumerate(("p50", "p99")):
            metric = f"{prefix}_{q}_us"
            meds = [(median(c, metric) or 0) / 1000 for c in lat]
            lo = [m - min(values.get((c, metric), [0])) / 1000 for c, m in zip(lat, meds)]
            hi = [max(values.get((c, metric), [0])) / 1000 - m for c, m in zip(lat, meds)]
            ax.bar([x + (i - 0.5) * width for x in xs], meds, width, yerr=[lo, hi],
                   capsize=3, label=q)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([LABEL[c] for c in lat], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("latency of the probe (ms)")
        ax.set_title(title, fontsize=10)
        ax.legend()
    fig.suptitle("periodic probe under stress-ng CPU saturation (median, min-max)")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results/bench"))
