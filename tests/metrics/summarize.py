"""Parse a Prometheus text exposition (stdin) with prometheus_client's parser,
check that every gthulhu histogram is well formed, and print one JSON object:
{"counters": {name: value}, "strategies": {label: {"count", "sum", "p50_us",
"p90_us", "p99_us", "dispatches", "cpu_seconds", "tasks"}}}.
Exits 1, naming the problem, when the text does not parse or is inconsistent."""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def fail(msg):
    print(f"summarize: {msg}", file=sys.stderr)
    sys.exit(1)


def percentile(buckets, count, q):
    """Upper bound (us) of the bucket holding the q-quantile."""
    want = q * count
    for le, cumulative in buckets:
        if cumulative >= want:
            return le * 1e6 if math.isfinite(le) else float("inf")
    return float("inf")


def main():
    text = sys.stdin.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and friends
        fail(f"does not parse: {e}")
    out = {"counters": {}, "strategies": {}}
    strategies = out["strategies"]
    seen = set()
    for fam in families:
        if fam.name in seen:
            fail(f"family {fam.name} appears twice")
        seen.add(fam.name)
        if not fam.name.startswith("gthulhu_"):
            fail(f"unexpected family {fam.name}")
        if not fam.documentation:
            fail(f"{fam.name} has no HELP")
        if fam.type == "histogram":
            per = {}
            for s in fam.samples:
                st = per.setdefault(s.labels["strategy"], {"buckets": []})
                if s.name.endswith("_bucket"):
                    st["buckets"].append((float(s.labels["le"]), s.value))
                elif s.name.endswith("_count"):
                    st["count"] = s.value
                elif s.name.endswith("_sum"):
                    st["sum"] = s.value
            for label, st in per.items():
                b = st["buckets"]
                if [le for le, _ in b] != sorted(le for le, _ in b) or not math.isinf(b[-1][0]):
                    fail(f"{fam.name}{{{label}}}: buckets out of order or no +Inf")
                if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
                    fail(f"{fam.name}{{{label}}}: buckets not cumulative")
                if b[-1][1] != st.get("count"):
                    fail(f"{fam.name}{{{label}}}: +Inf bucket {b[-1][1]} != count {st.get('count')}")
                count = st["count"]
                strategies.setdefault(label, {}).update(
                    count=count,
                    sum=st["sum"],
                    p50_us=percentile(b, count, 0.5),
                    p90_us=percentile(b, count, 0.9),
                    p99_us=percentile(b, count, 0.99),
                )
        elif fam.name.startswith("gthulhu_strategy_"):
            key = fam.name[len("gthulhu_strategy_"):]
            for s in fam.samples:
                strategies.setdefault(s.labels["strategy"], {})[key] = s.value
        else:
            for s in fam.samples:
                if not s.labels:
                    out["counters"][s.name] = s.value
    json.dump(out, sys.stdout, sort_keys=True)
    print()


main()
