//! Decides which tasks each strategy selects, and turns the selections into
//! the `task_rules` map content.
//!
//! A selector is process-wide when it is about the process: `pid`/`pids`
//! (process ids), `cgroup`/`cgroup_regex` (the process's cgroup), pod
//! `namespace`/`selectors`, and `command_regex` when it matches the process
//! name. A strategy whose selectors all match process-wide selects the
//! whole process, so its rule is keyed by the tgid and covers every thread,
//! including ones started later. When `command_regex` matches only some
//! threads' names (and the other selectors match the process), the strategy
//! selects just those threads, each keyed by its tid.
//!
//! When several strategies select a task, [`Strategy::precedence`] picks the
//! one whose rule applies: the lowest priority level wins, then the shortest
//! `execution_time`, then the strategy listed first.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use super::model::{PodIndex, Rule, Strategies, Strategy, MAX_RULES};
use super::procfs::{ProcFs, ProcessInfo, ThreadInfo};

/// Which part of a process a strategy selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole process, which had this many threads when scanned.
    Process { threads: usize },
    /// Only these threads (never the thread-group leader).
    Threads(Vec<ThreadInfo>),
}

/// One strategy selecting (part of) one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessMatch {
    /// Index of the strategy in `Strategies::list`.
    pub strategy: usize,
    pub tgid: i32,
    /// Process name.
    pub comm: String,
    pub scope: Scope,
}

impl ProcessMatch {
    /// Number of threads selected.
    pub fn tasks(&self) -> usize {
        match &self.scope {
            Scope::Process { threads } => *threads,
            Scope::Threads(threads) => threads.len(),
        }
    }
}

/// What a scan hands the scheduling loop: the complete `task_rules` content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleTable {
    /// Map entries sorted by key (a tgid or a tid); at most `MAX_RULES`.
    pub rules: Vec<(i32, Rule)>,
    /// Per strategy, in file order: its name and how many tasks it selects
    /// (whether or not it wins them).
    pub selected: Vec<(String, usize)>,
    /// Distinct tasks selected by any strategy.
    pub tasks: usize,
}

/// How a strategy's selectors judge a process before looking at threads.
enum Verdict {
    No,
    Whole,
    /// Everything but `command_regex` matched the process: check threads.
    SomeThreads,
}

fn judge(strategy: &Strategy, process: &ProcessInfo, pods: &PodIndex) -> Verdict {
    let sel = &strategy.selector;
    if !sel.pids.is_empty() && !sel.pids.contains(&process.tgid) {
        return Verdict::No;
    }
    if let Some(prefix) = &sel.cgroup_prefix {
        let rest = process.cgroup.strip_prefix(prefix.as_str());
        if !matches!(rest, Some(rest) if rest.is_empty() || rest.starts_with('/') || prefix == "/")
        {
            return Verdict::No;
        }
    }
    if let Some(re) = &sel.cgroup_regex {
        if !re.is_match(&process.cgroup) {
            return Verdict::No;
        }
    }
    if sel.needs_pod() {
        let pod = process.pod_uid.as_deref().and_then(|uid| pods.get(uid));
        let Some(pod) = pod else {
            return Verdict::No;
        };
        if sel
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != pod.namespace)
        {
            return Verdict::No;
        }
        if !sel
            .labels
            .iter()
            .all(|(key, value)| pod.labels.get(key) == Some(value))
        {
            return Verdict::No;
        }
    }
    match &sel.command {
        Some(re) if !re.is_match(&process.comm) => Verdict::SomeThreads,
        _ => Verdict::Whole,
    }
}

/// Scans every process under `proc` and returns what each strategy
/// selects, ordered by tgid then strategy. Processes and threads that
/// vanish during the scan are skipped.
pub fn scan(proc: &ProcFs, strategies: &Strategies, pods: &PodIndex) -> Vec<ProcessMatch> {
    let mut matches = Vec::new();
    if strategies.is_empty() {
        return matches;
    }
    let tgids = match proc.tgids() {
        Ok(tgids) => tgids,
        Err(e) => {
            log::warn!("cannot list processes: {e}");
            return matches;
        }
    };
    let with_cgroup = strategies.needs_cgroup();
    for tgid in tgids {
        if let Some(process) = proc.process(tgid, with_cgroup) {
            match_process(proc, strategies, pods, &process, &mut matches);
        }
    }
    matches
}

fn match_process(
    proc: &ProcFs,
    strategies: &Strategies,
    pods: &PodIndex,
    process: &ProcessInfo,
    matches: &mut Vec<ProcessMatch>,
) {
    // Read lazily: most processes match no strategy.
    let mut tids: Option<Vec<i32>> = None;
    let mut threads: Option<Vec<ThreadInfo>> = None;
    for (index, strategy) in strategies.list.iter().enumerate() {
        let scope = match judge(strategy, process, pods) {
            Verdict::No => continue,
            Verdict::Whole => {
                if tids.is_none() {
                    tids = proc.tids(process.tgid);
                }
                let Some(tids) = &tids else { return };
                Scope::Process {
                    threads: tids.len(),
                }
            }
            Verdict::SomeThreads => {
                if threads.is_none() {
                    threads = Some(read_threads(proc, process.tgid));
                }
                let Some(re) = &strategy.selector.command else {
                    continue;
                };
                let selected: Vec<ThreadInfo> = threads
                    .iter()
                    .flatten()
                    .filter(|t| re.is_match(&t.comm))
                    .cloned()
                    .collect();
                if selected.is_empty() {
                    continue;
                }
                Scope::Threads(selected)
            }
        };
        matches.push(ProcessMatch {
            strategy: index,
            tgid: process.tgid,
            comm: process.comm.clone(),
            scope,
        });
    }
}

/// The threads of a process other than its leader, whose name is the
/// process name.
fn read_threads(proc: &ProcFs, tgid: i32) -> Vec<ThreadInfo> {
    proc.tids(tgid)
        .unwrap_or_default()
        .into_iter()
        .filter(|&tid| tid != tgid)
        .filter_map(|tid| {
            Some(ThreadInfo {
                tid,
                comm: proc.thread_comm(tgid, tid)?,
            })
        })
        .collect()
}

/// Builds the rule table from a scan's matches: one entry per selected
/// process (keyed by tgid) and one per selected thread whose winning
/// strategy differs from its process's (keyed by tid).
pub fn rule_table(strategies: &Strategies, matches: &[ProcessMatch]) -> RuleTable {
    let wins = |a: usize, b: usize| {
        strategies.list[a].precedence(a, &strategies.list[b], b) == Ordering::Less
    };
    let mut process_winner: BTreeMap<i32, usize> = BTreeMap::new();
    let mut thread_winner: BTreeMap<i32, (i32, usize)> = BTreeMap::new();
    let mut selected = vec![0usize; strategies.len()];
    for m in matches {
        selected[m.strategy] += m.tasks();
        match &m.scope {
            Scope::Process { .. } => {
                let best = process_winner.entry(m.tgid).or_insert(m.strategy);
                if wins(m.strategy, *best) {
                    *best = m.strategy;
                }
            }
            Scope::Threads(threads) => {
                for t in threads {
                    let best = thread_winner.entry(t.tid).or_insert((m.tgid, m.strategy));
                    if wins(m.strategy, best.1) {
                        best.1 = m.strategy;
                    }
                }
            }
        }
    }

    let mut tasks = 0;
    let mut counted_threads: HashSet<i32> = HashSet::new();
    for m in matches {
        match &m.scope {
            Scope::Process { threads } if process_winner.get(&m.tgid) == Some(&m.strategy) => {
                tasks += threads
            }
            Scope::Threads(threads) if !process_winner.contains_key(&m.tgid) => {
                tasks += threads
                    .iter()
                    .filter(|t| counted_threads.insert(t.tid))
                    .count()
            }
            _ => {}
        }
    }

    let mut rules: Vec<(i32, Rule)> = process_winner
        .iter()
        .map(|(&tgid, &s)| (tgid, strategies.list[s].rule(s)))
        .collect();
    rules.extend(
        thread_winner
            .iter()
            .filter(|(_, (tgid, s))| match process_winner.get(tgid) {
                Some(&p) => wins(*s, p),
                None => true,
            })
            .map(|(&tid, &(_, s))| (tid, strategies.list[s].rule(s))),
    );
    if rules.len() > MAX_RULES {
        log::warn!(
            "strategies select {} processes and threads; only the {MAX_RULES} with the highest priority get their rule",
            rules.len()
        );
        rules.sort_by_key(|&(key, rule)| (rule.priority, key));
        rules.truncate(MAX_RULES);
    }
    rules.sort_unstable_by_key(|&(key, _)| key);

    RuleTable {
        rules,
        selected: strategies
            .list
            .iter()
            .zip(selected)
            .map(|(s, n)| (s.name.clone(), n))
            .collect(),
        tasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::strategy::model::{PodInfo, PRIO_NO_BOOST};
    use crate::strategy::testing::FakeProc;

    const UID: &str = "0f3b5c1e-9a2d-4b7e-8c6f-1a2b3c4d5e6f";

    fn strategies(yaml: &str) -> Strategies {
        Config::parse(yaml, "test.yaml").unwrap().strategies
    }

    fn table(proc: &FakeProc, strategies: &Strategies, pods: &PodIndex) -> RuleTable {
        rule_table(
            strategies,
            &scan(&ProcFs::new(proc.root()), strategies, pods),
        )
    }

    fn rule(strategy: u32, priority: u32, slice_ns: u64) -> Rule {
        Rule {
            priority,
            slice_ns,
            strategy,
        }
    }

    #[test]
    fn process_name_match_selects_whole_process_by_tgid() {
        let proc = FakeProc::new();
        proc.add_process(100, "upf", "/");
        proc.add_thread(100, 101, "worker");
        proc.add_process(200, "bash", "/");
        let s = strategies("strategies: [{name: upf, command_regex: ^upf$, priority: 2}]");
        let t = table(&proc, &s, &PodIndex::default());
        assert_eq!(t.rules, vec![(100, rule(0, 2, 0))]);
        assert_eq!(t.selected, vec![("upf".to_string(), 2)]);
        assert_eq!(t.tasks, 2);
    }

    #[test]
    fn thread_name_match_selects_only_those_threads_by_tid() {
        let proc = FakeProc::new();
        proc.add_process(100, "java", "/");
        proc.add_thread(100, 101, "gc-worker");
        proc.add_thread(100, 102, "io-worker");
        proc.add_thread(100, 103, "io-worker");
        let s = strategies(
            "strategies: [{name: io, command_regex: ^io-, priority: 1, execution_time: 1000000}]",
        );
        let matches = scan(&ProcFs::new(proc.root()), &s, &PodIndex::default());
        assert_eq!(
            matches[0].scope,
            Scope::Threads(vec![
                ThreadInfo {
                    tid: 102,
                    comm: "io-worker".into()
                },
                ThreadInfo {
                    tid: 103,
                    comm: "io-worker".into()
                },
            ])
        );
        let t = rule_table(&s, &matches);
        assert_eq!(
            t.rules,
            vec![(102, rule(0, 1, 1_000_000)), (103, rule(0, 1, 1_000_000))]
        );
        assert_eq!(t.tasks, 2);
    }

    #[test]
    fn pid_selects_the_process_and_ands_with_other_selectors() {
        let proc = FakeProc::new();
        proc.add_process(100, "a", "/system.slice/a.service");
        proc.add_process(200, "b", "/system.slice/b.service");
        proc.add_process(300, "c", "/user.slice");
        let s = strategies(
            "strategies:
  - {name: one, pids: [100, 200, 300], cgroup: /system.slice, priority: 0}
  - {name: two, pid: 300, priority: 4}
",
        );
        let t = table(&proc, &s, &PodIndex::default());
        assert_eq!(
            t.rules,
            vec![
                (100, rule(0, 0, 0)),
                (200, rule(0, 0, 0)),
                (300, rule(1, 4, 0))
            ]
        );
    }

    #[test]
    fn cgroup_prefix_matches_whole_components_and_regex_searches() {
        let proc = FakeProc::new();
        proc.add_process(1, "a", "/kubepods.slice/x");
        proc.add_process(2, "b", "/kubepods.slice.old/x");
        proc.add_process(3, "c", "/kubepods.slice");
        proc.add_process(4, "d", "/other/cri-containerd-1.scope");
        let s = strategies(
            "strategies:
  - {name: prefix, cgroup: /kubepods.slice/, priority: 1}
  - {name: regex, cgroup_regex: cri-containerd, priority: 2}
  - {name: root, cgroup: /, command_regex: ^b$, priority: 3}
",
        );
        let t = table(&proc, &s, &PodIndex::default());
        assert_eq!(
            t.rules,
            vec![
                (1, rule(0, 1, 0)),
                (2, rule(2, 3, 0)),
                (3, rule(0, 1, 0)),
                (4, rule(1, 2, 0))
            ]
        );
    }

    #[test]
    fn pod_selectors_match_cgroupfs_and_systemd_layouts_once_pods_are_known() {
        let proc = FakeProc::new();
        proc.add_process(10, "upf", &format!("/kubepods/burstable/pod{UID}/abc"));
        let uid2 = "11111111-2222-3333-4444-555555555555";
        proc.add_process(
            20,
            "smf",
            &format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-1.scope",
                uid2.replace('-', "_")
            ),
        );
        proc.add_process(30, "other", "/kubepods/burstable/podzzz/abc");
        let s = strategies(
            "strategies:
  - name: core
    namespace: free5gc
    selectors: [{key: app, value: core}, {key: tier, value: data}]
    priority: 0
",
        );
        assert!(table(&proc, &s, &PodIndex::default()).rules.is_empty());

        let pod = |namespace: &str, labels: &[(&str, &str)]| PodInfo {
            namespace: namespace.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let mut pods = PodIndex::default();
        pods.insert(UID, pod("free5gc", &[("app", "core"), ("tier", "data")]));
        pods.insert(
            uid2,
            pod("free5gc", &[("app", "core"), ("tier", "data"), ("x", "y")]),
        );
        assert_eq!(
            table(&proc, &s, &pods).rules,
            vec![(10, rule(0, 0, 0)), (20, rule(0, 0, 0))]
        );

        pods.insert(uid2, pod("free5gc", &[("app", "core")]));
        pods.insert(UID, pod("default", &[("app", "core"), ("tier", "data")]));
        assert!(table(&proc, &s, &pods).rules.is_empty());
    }

    #[test]
    fn precedence_highest_priority_then_shortest_slice_then_file_order() {
        let proc = FakeProc::new();
        proc.add_process(1, "app", "/");
        proc.add_thread(1, 2, "app-io");
        proc.add_thread(1, 3, "app-gc");
        proc.add_process(4, "svc", "/");
        proc.add_process(5, "job", "/");
        let s = strategies(
            "strategies:
  - {name: process, command_regex: ^app$, priority: 3}
  - {name: io, command_regex: ^app-io, priority: 1}
  - {name: gc, command_regex: ^app-gc, priority: 5}
  - {name: svc-long, pid: 4, priority: 2, execution_time: 9000000}
  - {name: svc-short, pid: 4, priority: 2, execution_time: 1000000}
  - {name: svc-none, pid: 4, priority: 2}
  - {name: job-first, pid: 5, execution_time: 3000000}
  - {name: job-second, pid: 5, execution_time: 3000000}
  - {name: job-boost, pid: 5, priority: 7}
",
        );
        let t = table(&proc, &s, &PodIndex::default());
        assert_eq!(
            t.rules,
            vec![
                // Process-wide level 3; thread 2 wins level 1 for itself;
                // thread 3's level 5 loses to its process's rule.
                (1, rule(0, 3, 0)),
                (2, rule(1, 1, 0)),
                (4, rule(4, 2, 1_000_000)),
                (5, rule(8, 7, 0)),
            ]
        );
        assert_eq!(t.tasks, 5);
        let counts: Vec<usize> = t.selected.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, vec![3, 1, 1, 1, 1, 1, 1, 1, 1]);

        let slice_only = strategies(
            "strategies:
  - {name: second, pid: 5, execution_time: 3000000}
  - {name: first, pid: 5, execution_time: 2000000}
",
        );
        assert_eq!(
            table(&proc, &slice_only, &PodIndex::default()).rules,
            vec![(5, rule(1, PRIO_NO_BOOST, 2_000_000))]
        );
    }

    #[test]
    fn exec_into_matching_name_is_seen_by_next_scan() {
        let proc = FakeProc::new();
        proc.add_process(7, "sh", "/");
        let s = strategies("strategies: [{name: demo, command_regex: ^gthulhu-demo, priority: 0}]");
        assert!(table(&proc, &s, &PodIndex::default()).rules.is_empty());
        proc.add_thread(7, 7, "gthulhu-demo");
        assert_eq!(
            table(&proc, &s, &PodIndex::default()).rules,
            vec![(7, rule(0, 0, 0))]
        );
        proc.add_thread(7, 7, "sh");
        assert!(table(&proc, &s, &PodIndex::default()).rules.is_empty());
    }

    #[test]
    fn no_strategies_reads_nothing_and_selects_nothing() {
        let proc = FakeProc::new();
        proc.add_process(1, "init", "/");
        assert_eq!(
            table(&proc, &Strategies::default(), &PodIndex::default()),
            RuleTable::default()
        );
    }

    #[test]
    fn vanished_processes_and_missing_proc_are_skipped() {
        let proc = FakeProc::new();
        proc.add_process(1, "app", "/");
        // A process directory whose files are gone, as when it exits
        // between listing /proc and reading it.
        std::fs::create_dir_all(proc.root().join("2")).unwrap();
        // A thread listed but gone before its comm is read.
        proc.add_process(3, "java", "/");
        std::fs::create_dir_all(proc.root().join("3/task/4")).unwrap();
        proc.add_thread(3, 5, "app-x");
        let s = strategies("strategies: [{name: app, command_regex: ^app, priority: 0}]");
        let t = table(&proc, &s, &PodIndex::default());
        assert_eq!(t.rules, vec![(1, rule(0, 0, 0)), (5, rule(0, 0, 0))]);

        let gone = ProcFs::new(proc.root().join("nonexistent"));
        assert!(scan(&gone, &s, &PodIndex::default()).is_empty());
    }

    #[test]
    fn rules_are_capped_at_map_capacity_keeping_highest_priority() {
        let s = strategies(
            "strategies:
  - {name: low, pids: [1, 2, 3], priority: 5}
  - {name: high, pids: [4, 5], priority: 1}
",
        );
        let matches: Vec<ProcessMatch> = (1..=(MAX_RULES as i32 + 2))
            .map(|tgid| ProcessMatch {
                strategy: if tgid % 2 == 0 { 1 } else { 0 },
                tgid,
                comm: String::new(),
                scope: Scope::Process { threads: 1 },
            })
            .collect();
        let t = rule_table(&s, &matches);
        assert_eq!(t.rules.len(), MAX_RULES);
        assert!(t.rules.windows(2).all(|w| w[0].0 < w[1].0));
        let high = t.rules.iter().filter(|(_, r)| r.priority == 1).count();
        assert_eq!(high, MAX_RULES / 2 + 1);
    }

    #[test]
    fn real_proc_selects_this_process_and_a_named_thread() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let probe = std::thread::Builder::new()
            .name("gthulhu-probe".into())
            .spawn(move || {
                ready_tx.send(()).unwrap();
                let _ = stopped.recv();
            })
            .unwrap();
        ready.recv().unwrap();
        let me = std::process::id();
        let s = strategies(&format!(
            "strategies:
  - {{name: me, pid: {me}, cgroup: /, priority: 1}}
  - {{name: probe, command_regex: ^gthulhu-probe$, priority: 0}}
"
        ));
        let matches = scan(&ProcFs::new("/proc"), &s, &PodIndex::default());
        stop.send(()).unwrap();
        probe.join().unwrap();

        let mine: Vec<&ProcessMatch> = matches.iter().filter(|m| m.tgid == me as i32).collect();
        assert_eq!(mine.len(), 2, "{matches:?}");
        assert!(matches!(mine[0].scope, Scope::Process { threads } if threads >= 2));
        let Scope::Threads(threads) = &mine[1].scope else {
            panic!("{:?}", mine[1]);
        };
        assert_eq!(threads.len(), 1);
        assert_eq!(threads[0].comm, "gthulhu-probe");
        let t = rule_table(&s, &matches);
        assert!(t.rules.contains(&(me as i32, rule(0, 1, 0))));
        assert!(t.rules.contains(&(threads[0].tid, rule(1, 0, 0))));
    }
}
