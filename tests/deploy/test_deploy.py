"""Checks of the deployment files: the Helm chart and the systemd unit.

Run by tests/deploy/run.sh, which provides helm-python-sdk (Helm's engine as
a library: lint and render without a helm binary or a cluster),
kubernetes-validate and PyYAML. Prints one line per check and closes with
`deploy: N passed, N failed`.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart" / "gthulhu"
UNIT = ROOT / "systemd" / "gthulhu.service"
FULL_VALUES = yaml.safe_load((Path(__file__).parent / "values-full.yaml").read_text())
DEFAULT_VALUES = yaml.safe_load((CHART / "values.yaml").read_text())

# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a current one.
KUBE_VERSIONS = ["1.25.0", "1.33.0"]
CAPABILITIES = {"SYS_ADMIN", "BPF", "PERFMON", "IPC_LOCK", "SYS_RESOURCE"}
CONFIG_DIR = "/etc/gthulhu/config"

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


class Skip(Exception):
    pass


def render(values=None, release="gthulhu", namespace="kube-system"):
    """Renders the chart; returns {kind/name: object} and the NOTES text."""
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
    objects, notes = {}, ""
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                key = f"{doc['kind']}/{doc['metadata']['name']}"
                assert key not in objects, f"{key} rendered twice"
                objects[key] = doc
    return objects, notes


def one(objects, kind):
    found = [o for o in objects.values() if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(objects):
    pod = one(objects, "DaemonSet")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1, "expected a single container"
    return pod, pod["containers"][0]


def config_file(objects):
    data = one(objects, "ConfigMap")["data"]
    assert set(data) == {"gthulhu.yaml"}, f"ConfigMap keys {sorted(data)}"
    return yaml.safe_load(data["gthulhu.yaml"])


DEFAULT, DEFAULT_NOTES = None, None
FULL, FULL_NOTES = None, None


@check
def lint_default_and_full_values():
    for values in ({}, FULL_VALUES):
        report = helm.lint(str(CHART), values, strict=True, kube_version="v1.33.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, problems


@check
def render_default_and_full_values():
    global DEFAULT, DEFAULT_NOTES, FULL, FULL_NOTES
    DEFAULT, DEFAULT_NOTES = render()
    FULL, FULL_NOTES = render(FULL_VALUES)
    kinds = sorted(o["kind"] for o in DEFAULT.values())
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
        "ServiceAccount",
    ], kinds
    assert "gthulhu-scheduler" in DEFAULT_NOTES


@check
def manifests_are_valid_kubernetes():
    for objects in (DEFAULT, FULL):
        for key, obj in objects.items():
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    raise AssertionError(f"{key} on Kubernetes {version}: {e.message} at {list(e.path)}")


@check
def daemonset_pods_are_named_release_scheduler():
    assert "DaemonSet/gthulhu-scheduler" in DEFAULT
    objects, _ = render(release="edge")
    ds = one(objects, "DaemonSet")
    # DaemonSet pods are named "<DaemonSet name>-<id>".
    assert ds["metadata"]["name"] == "edge-scheduler", ds["metadata"]["name"]
    objects, _ = render({"fullnameOverride": "x" * 52}, release="edge")
    assert len(one(objects, "DaemonSet")["metadata"]["name"]) <= 63


@check
def host_pid_and_exact_capabilities():
    pod, c = container(DEFAULT)
    assert pod["hostPID"] is True
    sc = c["securityContext"]
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == CAPABILITIES, sc["capabilities"]["add"]
    assert len(sc["capabilities"]["add"]) == len(CAPABILITIES)
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    pod, c = container(FULL)
    assert pod["hostPID"] is True
    assert c["securityContext"]["privileged"] is True
    # The API server rejects privileged together with allowPrivilegeEscalation: false.
    assert "allowPrivilegeEscalation" not in c["securityContext"]


@check
def config_is_a_directory_mount_without_subpath():
    for objects in (DEFAULT, FULL):
        pod, c = container(objects)
        assert all("subPath" not in m and "subPathExpr" not in m for m in c["volumeMounts"])
        mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
        assert mount["mountPath"] == CONFIG_DIR and mount["readOnly"] is True
        volume = next(v for v in pod["volumes"] if v["name"] == "config")
        assert volume["configMap"]["name"] == one(objects, "ConfigMap")["metadata"]["name"]
        assert "items" not in volume["configMap"]
        args = c["args"]
        assert args[0] == "run"
        assert args[args.index("--config") + 1] == f"{CONFIG_DIR}/gthulhu.yaml"
        # No checksum annotation: config changes are reloaded, not rolled out.
        annotations = one(objects, "DaemonSet")["spec"]["template"]["metadata"].get("annotations", {})
        assert not any("checksum" in k for k in annotations), annotations


@check
def config_file_carries_the_values():
    config = config_file(DEFAULT)
    assert set(config) == {"scheduler", "strategies", "api", "metrics"}, sorted(config)
    assert config["metrics"] == {"listen": "0.0.0.0:9100"}, config["metrics"]
    assert config["scheduler"] == DEFAULT_VALUES["scheduler"], config["scheduler"]
    assert all(type(v) is int for v in config["scheduler"].values()), config["scheduler"]
    assert config["strategies"] == []
    assert config["api"]["enabled"] is False
    assert "public_key_path" not in config["api"]

    config = config_file(FULL)
    assert config["scheduler"] == FULL_VALUES["scheduler"]
    assert config["strategies"] == FULL_VALUES["strategies"], config["strategies"]
    api = config["api"]
    assert api["enabled"] is True and api["auth_enabled"] is True
    assert api["url"] == FULL_VALUES["api"]["url"] and api["interval"] == 30
    assert api["public_key_path"] == "/etc/gthulhu/api/public.pem"


@check
def config_file_is_accepted_by_gthulhu_check():
    binary = Path(os.environ.get("GTHULHU_BIN", ROOT / "target" / "release" / "gthulhu"))
    if not binary.exists():
        raise Skip(f"{binary} not built")
    with tempfile.TemporaryDirectory() as tmp:
        for name, objects in (("default", DEFAULT), ("full", FULL)):
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(one(objects, "ConfigMap")["data"]["gthulhu.yaml"])
            run = subprocess.run([str(binary), "check", "--config", str(path)],
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, f"{name}: {run.stderr.strip()}"


@check
def metrics_port_and_scrape_annotations_follow_the_values():
    pod, c = container(DEFAULT)
    assert c["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}], c.get("ports")
    meta = one(DEFAULT, "DaemonSet")["spec"]["template"]["metadata"]
    assert meta["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9100",
        "prometheus.io/path": "/metrics",
    }, meta.get("annotations")

    objects, _ = render({"metrics": {"port": 9464, "scrapeAnnotations": False},
                         "podAnnotations": {"a": "b"}})
    _, c = container(objects)
    assert c["ports"][0]["containerPort"] == 9464
    assert config_file(objects)["metrics"] == {"listen": "0.0.0.0:9464"}
    meta = one(objects, "DaemonSet")["spec"]["template"]["metadata"]
    assert meta["annotations"] == {"a": "b"}, meta["annotations"]

    objects, _ = render({"metrics": {"enabled": False}})
    _, c = container(objects)
    assert "ports" not in c and "metrics" not in config_file(objects)
    assert "annotations" not in one(objects, "DaemonSet")["spec"]["template"]["metadata"]


@check
def service_monitor_and_dashboard_are_opt_in():
    kinds = {o["kind"] for o in DEFAULT.values()}
    assert "ServiceMonitor" not in kinds and "Service" not in kinds, kinds
    objects, _ = render({"metrics": {"serviceMonitor": {"enabled": True},
                                     "grafanaDashboard": {"enabled": True}}})
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    pod_labels = one(objects, "DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    dashboards = [o for o in objects.values()
                  if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == 1, [o["metadata"]["name"] for o in objects.values()]
    dashboard = json.loads(dashboards[0]["data"]["gthulhu.json"])
    # Every metric the dashboard plots is one gthulhu serves.
    served = set(re.findall(r"gthulhu_[a-z_]+", (ROOT / "src/metrics/mod.rs").read_text()))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any("histogram_quantile" in e and "strategy" in e for e in exprs)
    for e in exprs:
        for name in re.findall(r"gthulhu_[a-z_]+", e):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert base in served, f"{name} in {e!r} is not served"


@check
def api_public_key_comes_from_a_read_only_secret():
    pod, c = container(DEFAULT)
    assert all(v["name"] != "api-public-key" for v in pod["volumes"])
    pod, c = container(FULL)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "api-public-key")
    assert mount == {"name": "api-public-key", "mountPath": "/etc/gthulhu/api", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "api-public-key")
    assert volume["secret"] == {
        "secretName": "gthulhu-api-key",
        "items": [{"key": "jwt.pub", "path": "public.pem"}],
    }, volume


@check
def rbac_is_exactly_get_list_watch_pods():
    for objects, sa in ((DEFAULT, "gthulhu"), (FULL, "gthulhu-sa")):
        role = one(objects, "ClusterRole")
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
        ], role["rules"]
        binding = one(objects, "ClusterRoleBinding")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "kube-system"}]
        assert one(objects, "ServiceAccount")["metadata"]["name"] == sa
        pod, _ = container(objects)
        assert pod["serviceAccountName"] == sa
    objects, _ = render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "existing"}})
    assert sorted(o["kind"] for o in objects.values()) == ["ConfigMap", "DaemonSet"]
    assert container(objects)[0]["serviceAccountName"] == "existing"


@check
def node_name_comes_from_the_downward_api():
    for objects in (DEFAULT, FULL):
        _, c = container(objects)
        env = {e["name"]: e for e in c["env"]}
        assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    _, c = container(FULL)
    assert {"name": "RUST_BACKTRACE", "value": "1"} in c["env"]


@check
def readiness_means_attached_to_the_kernel():
    _, c = container(DEFAULT)
    probe = c["readinessProbe"]
    command = probe["exec"]["command"]
    assert command[:3] == ["/bin/busybox", "sh", "-c"], command
    assert "grep -qx enabled /sys/kernel/sched_ext/state" in command[3]
    assert "grep -qx gthulhu /sys/kernel/sched_ext/root/ops" in command[3]
    assert probe["periodSeconds"] == 5
    assert "livenessProbe" not in c


@check
def readiness_probe_command_works_on_a_fake_sysfs():
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.access(busybox, os.X_OK):
        raise Skip("no busybox on this machine")
    _, c = container(DEFAULT)
    script = c["readinessProbe"]["exec"]["command"][3]
    with tempfile.TemporaryDirectory() as tmp:
        fake = Path(tmp) / "sched_ext"
        (fake / "root").mkdir(parents=True)
        script = script.replace("/sys/kernel/sched_ext", str(fake))
        for state, ops, ready in [("enabled", "gthulhu", True), ("enabled", "rustland", False),
                                  ("disabled", "gthulhu", False), (None, None, False)]:
            for name, value in (("state", state), ("root/ops", ops)):
                f = fake / name
                if value is None:
                    f.unlink(missing_ok=True)
                else:
                    f.write_text(value + "\n")
            rc = subprocess.run([busybox, "sh", "-c", script], stderr=subprocess.DEVNULL).returncode
            assert (rc == 0) == ready, f"state={state} ops={ops}: rc {rc}"


@check
def runs_on_every_node_as_node_critical():
    pod, c = container(DEFAULT)
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["priorityClassName"] == "system-node-critical"
    assert "nodeSelector" not in pod and "affinity" not in pod
    assert c["image"] == "127.0.0.1:32000/gthulhu:latest"
    assert c["resources"]["requests"] and "cpu" not in c["resources"]["limits"]
    pod, c = container(FULL)
    assert pod["nodeSelector"] == {"gthulhu.io/sched-ext": "true"}
    assert "nodeAffinity" in pod["affinity"]
    assert c["image"] == "registry.example.test/gthulhu:v0.1.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"][-4:] == ["--log-level", "debug", "--interval", "30"], c["args"]
    assert any(v.get("hostPath", {}).get("path") == "/sys/fs/bpf" for v in pod["volumes"])


@check
def standard_labels_everywhere():
    for objects in (DEFAULT, FULL):
        for key, obj in objects.items():
            labels = obj["metadata"]["labels"]
            for name in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                         "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"):
                assert name in labels, f"{key} lacks {name}"
        ds = one(objects, "DaemonSet")
        selector = ds["spec"]["selector"]["matchLabels"]
        pod_labels = ds["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        assert "app.kubernetes.io/version" not in selector, "selectors are immutable"


BAD_VALUES = [
    ({"scheduler": {"watchdog_timeout_ms": 100}}, "watchdog_timeout_ms"),
    ({"strategies": [{"name": "x", "prio": 1, "pid": 5}]}, "prio"),
    ({"strategies": [{"name": "x", "priority": 9, "pid": 5}]}, "priority"),
    ({"strategies": [{"name": "x", "priority": 1}]}, "strategies"),
    ({"strategies": [{"name": "x", "priority": 1, "selectors": [{"key": "app"}]}]}, "value"),
    ({"api": {"enabled": True, "auth_enabled": True}}, "publicKeySecret"),
    ({"api": {"enabled": True, "url": "gthulhu-api:80"}}, "url"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"securityContext": {"privilegd": True}}, "privilegd"),
    ({"logLevel": "trace"}, "logLevel"),
]


@check
def bad_values_fail_with_a_clear_schema_error():
    chart = helm.Chart.load(str(CHART))
    for values, key in BAD_VALUES:
        try:
            chart.render(values, name="gthulhu", namespace="kube-system", is_install=True)
        except helm.HelmValuesError as e:
            message = str(e)
            assert key in message, f"{values}: error does not name {key!r}: {message}"
            continue
        raise AssertionError(f"{values} rendered without error")


@check
def bad_values_file_fails_lint():
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump({"scheduler": {"slice_ns_min": "fast"}}, f)
        f.flush()
        values = yaml.safe_load(Path(f.name).read_text())
    report = helm.lint(str(CHART), values, strict=True)
    errors = " ".join([m["error"] for m in report["messages"] if m["severity"] == 3] + report["errors"])
    assert "slice_ns_min" in errors, report


def verify_unit(text):
    """systemd-analyze verify in a scratch root holding the unit, stand-ins for
    the commands it runs and the system's own units; returns its output."""
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        (root / "etc/systemd/system").mkdir(parents=True)
        (root / "usr/lib/systemd").mkdir(parents=True)
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
        for command in ("usr/local/bin/gthulhu", "bin/kill"):
            (root / command).parent.mkdir(parents=True, exist_ok=True)
            (root / command).write_text("#!/bin/sh\n")
            (root / command).chmod(0o755)
        (root / "etc/systemd/system/gthulhu.service").write_text(text)
        run = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "gthulhu.service"],
                             capture_output=True, text=True, timeout=60)
        return run.returncode, (run.stdout + run.stderr).strip()


def unit_settings():
    settings = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@check
def systemd_unit_verifies_cleanly():
    rc, output = verify_unit(UNIT.read_text())
    assert rc == 0 and output == "", f"rc {rc}: {output}"
    # The same check catches a broken unit.
    rc, output = verify_unit(UNIT.read_text().replace("RestartSec=5s", "RestartSec=soon")
                             + "ProtectEverything=yes\n")
    assert "RestartSec" in output or "soon" in output, output
    assert "ProtectEverything" in output, output


@check
def systemd_unit_settings():
    s = unit_settings()
    expect = {
        "ConditionPathExists": ["/sys/kernel/sched_ext"],
        "Type": ["notify"],
        "ExecStart": ["/usr/local/bin/gthulhu --config /etc/gthulhu/gthulhu.yaml"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "Restart": ["on-failure"],
        "LimitMEMLOCK": ["infinity"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "SystemCallArchitectures": ["native"],
        "LockPersonality": ["yes"],
    }
    for key, value in expect.items():
        assert s.get(key) == value, f"{key}={s.get(key)}"
    assert set(s["CapabilityBoundingSet"][0].split()) == {f"CAP_{c}" for c in CAPABILITIES}
    assert set(s["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    for key in ("StartLimitIntervalSec", "StartLimitBurst", "RestartSec"):
        assert key in s, key
    # Strategies read every process of the host through /proc.
    for key in ("PrivatePIDs", "ProtectProc", "ProcSubset", "PrivateUsers"):
        assert key not in s, key


def main():
    passed = failed = skipped = 0
    for fn in CHECKS:
        name = fn.__name__
        try:
            fn()
        except Skip as e:
            skipped += 1
            print(f"skip - {name}: {e}")
        except Exception as e:  # noqa: BLE001 - every failure is reported alike
            failed += 1
            detail = str(e) or traceback.format_exc(limit=-1).strip()
            print(f"FAIL - {name}: {type(e).__name__}: {detail}")
        else:
            passed += 1
            print(f"ok   - {name}")
    line = f"deploy: {passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    return failed, line


if __name__ == "__main__":
    failed, line = main()
    print(line)
    sys.exit(1 if failed else 0)
