//! What a strategy is once validated, what it does to a task (a [`Rule`]),
//! and the Kubernetes pod metadata that pod selectors match against.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use std::fmt;

use regex::Regex;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;

/// Number of priority levels a strategy can ask for: 0 (highest) to 7.
pub const PRIO_LEVELS: u8 = 8;

/// `Rule::priority` of a strategy with `priority: false` (or no priority):
/// it only sets a time slice. The BPF side boosts a task by
/// `slice_ns >> priority`, which is 0 for this value, so the task gets no
/// boost; it ranks below every level when strategies compete.
pub const PRIO_NO_BOOST: u32 = 63;

/// Capacity of the BPF `task_rules` map (`MAX_RULES` in bpf/intf.h). A scan
/// never produces more rules than this.
pub const MAX_RULES: usize = 65536;

/// How much a strategy boosts the tasks it selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// A level in `0..PRIO_LEVELS`; 0 is picked first and may preempt.
    Level(u8),
    /// No boost: the strategy only sets a time slice.
    NoBoost,
}

/// As written in the config file or sent by a Gthulhu API server: a level
/// `0..=7`, or Gthulhu's older boolean (`true` = level 0, `false` = no boost).
impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PriorityVisitor)
    }
}

struct PriorityVisitor;

impl Visitor<'_> for PriorityVisitor {
    type Value = Priority;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an integer 0..={} or a boolean", PRIO_LEVELS - 1)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Priority, E> {
        Ok(if v {
            Priority::Level(0)
        } else {
            Priority::NoBoost
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Priority, E> {
        match u8::try_from(v) {
            Ok(level) if level < PRIO_LEVELS => Ok(Priority::Level(level)),
            _ => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Priority, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }
}

impl Priority {
    /// The value stored in `Rule::priority`.
    pub fn rule_value(self) -> u32 {
        match self {
            Priority::Level(level) => u32::from(level),
            Priority::NoBoost => PRIO_NO_BOOST,
        }
    }
}

/// What a strategy does to the tasks it selects: the value of one
/// `task_rules` map entry (`struct task_rule` in bpf/intf.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Priority level, 0 highest; `PRIO_NO_BOOST` for slice-only strategies.
    pub priority: u32,
    /// Time slice in ns; 0 means the scheduler's default slice.
    pub slice_ns: u64,
    /// Index of the strategy that made this rule, in the combined list
    /// (file strategies, then API strategies): BPF counts the task's
    /// latency, dispatches and CPU time under it.
    pub strategy: u32,
}

/// Which tasks a strategy selects. Every selector that is set must match
/// (they are ANDed); a validated strategy has at least one.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// Process ids (a process and all its threads) or thread ids (only that
    /// thread).
    pub pids: Vec<i32>,
    /// Searched in the process name (the whole process) or in a thread's
    /// name (only that thread).
    pub command: Option<Regex>,
    /// Cgroup path prefix, matched on whole path components.
    pub cgroup_prefix: Option<String>,
    /// Searched in the process's cgroup path.
    pub cgroup_regex: Option<Regex>,
    /// Kubernetes namespace of the process's pod.
    pub namespace: Option<String>,
    /// Kubernetes labels the process's pod must all carry.
    pub labels: Vec<(String, String)>,
}

impl Selector {
    /// Whether matching needs the process's cgroup path.
    pub fn needs_cgroup(&self) -> bool {
        self.cgroup_prefix.is_some() || self.cgroup_regex.is_some() || self.needs_pod()
    }

    /// Whether matching needs the process's Kubernetes pod.
    pub fn needs_pod(&self) -> bool {
        self.namespace.is_some() || !self.labels.is_empty()
    }
}

/// One validated strategy.
#[derive(Clone, Debug)]
pub struct Strategy {
    pub name: String,
    pub priority: Priority,
    /// Custom time slice in ns.
    pub execution_time: Option<u64>,
    pub selector: Selector,
}

impl Strategy {
    /// The `task_rules` value for tasks this strategy, listed at `index`,
    /// wins.
    pub fn rule(&self, index: usize) -> Rule {
        Rule {
            priority: self.priority.rule_value(),
            slice_ns: self.execution_time.unwrap_or(0),
            strategy: u32::try_from(index).unwrap_or(u32::MAX),
        }
    }

    /// Precedence between two strategies that select the same task:
    /// `Less` means `self` wins. The lower priority level wins (no boost
    /// ranks last); on a tie the shorter `execution_time` wins (none ranks
    /// after any); on a further tie the strategy listed first (`index`) wins.
    pub fn precedence(&self, index: usize, other: &Strategy, other_index: usize) -> Ordering {
        let key = |s: &Strategy, i: usize| {
            (
                s.priority.rule_value(),
                s.execution_time.unwrap_or(u64::MAX),
                i,
            )
        };
        key(self, index).cmp(&key(other, other_index))
    }
}

/// The current strategies, in file order.
#[derive(Clone, Debug, Default)]
pub struct Strategies {
    pub list: Vec<Strategy>,
}

impl Strategies {
    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether any strategy needs cgroup paths (so a scan reads them).
    pub fn needs_cgroup(&self) -> bool {
        self.list.iter().any(|s| s.selector.needs_cgroup())
    }
}

/// Kubernetes metadata of one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

/// Pods by UID (lower case, with dashes), as a Kubernetes watcher last saw
/// them. Until one sends an index, it is empty and pod selectors match
/// nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodIndex {
    pods: HashMap<String, PodInfo>,
}

impl PodIndex {
    /// Adds or replaces a pod; `uid` may use dashes or underscores and any
    /// case.
    pub fn insert(&mut self, uid: &str, pod: PodInfo) {
        self.pods.insert(normalize_uid(uid), pod);
    }

    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn get(&self, uid: &str) -> Option<&PodInfo> {
        self.pods.get(uid)
    }
}

/// A pod UID as the index keys it: lower case, with dashes.
pub fn normalize_uid(uid: &str) -> String {
    uid.replace('_', "-").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(priority: Priority, execution_time: Option<u64>) -> Strategy {
        Strategy {
            name: String::new(),
            priority,
            execution_time,
            selector: Selector::default(),
        }
    }

    #[test]
    fn precedence_prefers_level_then_shorter_slice_then_file_order() {
        let top = strategy(Priority::Level(0), None);
        let low = strategy(Priority::Level(3), Some(100_000));
        let none = strategy(Priority::NoBoost, Some(100_000));
        let short = strategy(Priority::Level(3), Some(50_000));
        assert_eq!(top.precedence(5, &low, 0), Ordering::Less);
        assert_eq!(low.precedence(0, &none, 1), Ordering::Less);
        assert_eq!(short.precedence(9, &low, 0), Ordering::Less);
        assert_eq!(
            strategy(Priority::Level(3), None).precedence(0, &low, 1),
            Ordering::Greater
        );
        assert_eq!(low.precedence(0, &low.clone(), 1), Ordering::Less);
    }

    #[test]
    fn rule_values_follow_priority_and_slice() {
        assert_eq!(
            strategy(Priority::Level(2), Some(7)).rule(3),
            Rule {
                priority: 2,
                slice_ns: 7,
                strategy: 3,
            }
        );
        assert_eq!(
            strategy(Priority::NoBoost, None).rule(0),
            Rule {
                priority: PRIO_NO_BOOST,
                slice_ns: 0,
                strategy: 0,
            }
        );
    }

    #[test]
    fn pod_uids_are_normalized_to_lower_case_dashes() {
        let mut pods = PodIndex::default();
        pods.insert("AB_cd", PodInfo::default());
        assert!(pods.get("ab-cd").is_some());
    }
}
