//! Pod selectors end to end, without a cluster: the pod thread lists a fake
//! API server and feeds the resolver as `main` wires it; the resolver finds
//! each process's pod in a fake /proc and sends the rules.

use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::testing::{config, ok, pod, pod_list, FakeApi, Files};
use crate::config::Config;
use crate::strategy::resolver::{self, ResolverInput};
use crate::strategy::testing::FakeProc;
use crate::strategy::{Rule, RuleTable};

const WAIT: Duration = Duration::from_secs(10);

/// Pods of the node: two that the strategy selects (one per cgroup layout),
/// one in another namespace, one with other labels.
const UPF_CGROUPFS: &str = "0f2c3ad4-7c1e-4a7b-9d52-2c3c1b1f0a01";
const UPF_SYSTEMD: &str = "5b8a1e7c-1111-4222-8333-944455556666";
const OTHER_NAMESPACE: &str = "9d6e4f20-aaaa-4bbb-8ccc-dddddddddddd";
const OTHER_LABELS: &str = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";
/// In a kubepods cgroup but not in the API's list.
const UNLISTED: &str = "77777777-7777-4777-8777-777777777777";

const STRATEGY: &str = "
strategies:
  - name: upf-in-ran
    namespace: ran
    selectors: [{key: app, value: upf}]
    priority: 1
    execution_time: 5000000
";

const UPF_RULE: Rule = Rule {
    priority: 1,
    slice_ns: 5_000_000,
    strategy: 0,
};

/// The cgroup of a container of pod `uid` in kubelet's cgroupfs layout.
fn cgroupfs(uid: &str, container: &str) -> String {
    format!("/kubepods/burstable/pod{uid}/{container}")
}

/// The cgroup of a container of pod `uid` in kubelet's systemd layout.
fn systemd(uid: &str, container: &str) -> String {
    let uid = uid.replace('-', "_");
    format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{container}.scope"
    )
}

/// The API's pods, with `upf_cgroupfs_labels` (JSON) on the first one.
fn pods(upf_cgroupfs_labels: &str) -> String {
    pod_list(
        "PodList",
        &[
            pod(UPF_CGROUPFS, "ran", upf_cgroupfs_labels),
            pod(UPF_SYSTEMD, "ran", r#"{"app":"upf","tier":"core"}"#),
            pod(OTHER_NAMESPACE, "core", r#"{"app":"upf"}"#),
            pod(OTHER_LABELS, "ran", r#"{"app":"du"}"#),
        ],
    )
}

/// Waits for a table whose rules are `rules`, skipping earlier ones.
fn wait_for_rules(tables: &Receiver<RuleTable>, rules: &[(i32, Rule)]) -> RuleTable {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let table = tables
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no rule table with rules {rules:?}"));
        if table.rules == rules {
            return table;
        }
    }
}

#[test]
fn pod_label_strategy_selects_the_pods_processes_end_to_end() {
    let proc = FakeProc::new();
    // All named upf, so only the pod decides.
    proc.add_process(100, "upf", &cgroupfs(UPF_CGROUPFS, "c100"));
    proc.add_thread(100, 101, "upf-worker");
    proc.add_process(200, "upf", &systemd(UPF_SYSTEMD, "c200"));
    proc.add_process(300, "upf", &cgroupfs(OTHER_NAMESPACE, "c300"));
    proc.add_process(400, "upf", &systemd(OTHER_LABELS, "c400"));
    proc.add_process(500, "upf", "/system.slice/upf.service");
    proc.add_process(600, "upf", &cgroupfs(UNLISTED, "c600"));

    let api = FakeApi::start(ok(&pods(r#"{"app":"upf"}"#)));
    let files = Files::new("pod-strategies");
    let (input, inputs) = mpsc::channel();
    let (rules, tables) = mpsc::channel();
    // Scan only on input, so every table below follows a pod list or a Rescan.
    resolver::spawn(
        proc.root().to_path_buf(),
        Config::parse(STRATEGY, "test.yaml").unwrap().strategies,
        Duration::from_secs(3600),
        inputs,
        rules,
        Box::new(|| {}),
    )
    .unwrap();
    let watcher = crate::send_pods_to_resolver(config(&api.url, &files), &input).unwrap();

    // The processes of both matching pods, whole (keyed by tgid), nothing else.
    let table = wait_for_rules(&tables, &[(100, UPF_RULE), (200, UPF_RULE)]);
    assert_eq!(table.selected, vec![("upf-in-ran".to_string(), 3)]);
    assert_eq!(table.tasks, 3);

    // Relabelled, the cgroupfs pod no longer matches: its rule goes.
    api.set(ok(&pods(r#"{"app":"du"}"#)));
    let table = tables
        .recv_timeout(WAIT)
        .expect("a table after relabelling");
    assert_eq!(table.rules, vec![(200, UPF_RULE)]);
    assert_eq!(table.selected, vec![("upf-in-ran".to_string(), 1)]);

    // With the API gone, the watcher retries every few tens of ms and
    // publishes nothing, so no table comes...
    api.stop();
    let retries = 10 * config("", &files).retry_max;
    assert!(
        tables.recv_timeout(retries).is_err(),
        "the rules changed while the API was down"
    );
    // ...and the labels last seen still select: a new container of the
    // matching pod is selected, one of the relabelled pod is not.
    proc.add_process(700, "sidecar", &systemd(UPF_SYSTEMD, "c700"));
    proc.add_process(800, "upf", &cgroupfs(UPF_CGROUPFS, "c800"));
    input.send(ResolverInput::Rescan).unwrap();
    let table = tables.recv_timeout(WAIT).expect("a table after the rescan");
    assert_eq!(table.rules, vec![(200, UPF_RULE), (700, UPF_RULE)]);
    drop(watcher);
}
