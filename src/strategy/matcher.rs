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
        if sel.namespace.as_ref().is_some_and(|ns| *ns != pod.namespace) {
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
    let with_cgroup = strategies.need_cgroup();
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
        .map(|(&tgid, &s)| (tgid, strategies.list[s].rule()))
        .collect();
    rules.extend(
        thread_winner
            .iter()
            .filter(|(_, (tgid, s))| match process_winner.get(tgid) {
                Some(&p) => wins(*s, p),
                None => true,
            })
            .map(|(&tid, &(_, s))| (tid, strategies.list[s].rule())),
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
