//! Mirrors the resolver's rule table into BPF's task_rules map, writing only
//! what changed so a rescan that finds nothing new costs no syscalls.

use std::cmp::Ordering;

use crate::bpf::{Bpf, TaskRule};
use crate::strategy::{Rule, RuleTable};

#[derive(Default)]
pub struct RuleMirror {
    /// What the map holds now, sorted by key.
    current: Vec<(i32, Rule)>,
}

/// One change to apply to the map.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Set(i32, Rule),
    Clear(i32),
}

impl RuleMirror {
    /// Bring the map in line with `table`. On error the mirror keeps the
    /// entries it could not change, so the next table retries them.
    pub fn apply(&mut self, bpf: &Bpf, table: RuleTable) -> Result<usize, String> {
        let changes = diff(&self.current, &table.rules);
        let mut result = Ok(changes.len());
        for change in &changes {
            let applied = match *change {
                Change::Set(id, rule) => bpf.set_rule(
                    id,
                    TaskRule {
                        priority: rule.priority,
                        slice_ns: rule.slice_ns,
                    },
                ),
                Change::Clear(id) => bpf.clear_rule(id),
            };
            if let Err(e) = applied {
                result = Err(e);
            }
        }
        if result.is_ok() {
            self.current = table.rules;
        } else {
            // Forget the mirror so the next table rewrites every entry.
            self.current.clear();
        }
        result
    }

    pub fn len(&self) -> usize {
        self.current.len()
    }
}

/// Entries to set and to clear to turn `old` into `new` (both sorted by key).
fn diff(old: &[(i32, Rule)], new: &[(i32, Rule)]) -> Vec<Change> {
    let mut changes = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) => o.0.cmp(&n.0),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                changes.push(Change::Clear(old[i].0));
                i += 1;
            }
            Ordering::Greater => {
                changes.push(Change::Set(new[j].0, new[j].1));
                j += 1;
            }
            Ordering::Equal => {
                if old[i].1 != new[j].1 {
                    changes.push(Change::Set(new[j].0, new[j].1));
                }
                i += 1;
                j += 1;
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(priority: u32, slice_ns: u64) -> Rule {
        Rule { priority, slice_ns }
    }

    #[test]
    fn unchanged_table_writes_nothing() {
        let t = vec![(10, rule(0, 0)), (20, rule(1, 2_000_000))];
        assert!(diff(&t, &t).is_empty());
    }

    #[test]
    fn added_changed_and_removed_entries_are_written() {
        let old = vec![(10, rule(0, 0)), (20, rule(1, 0)), (30, rule(2, 0))];
        let new = vec![(5, rule(0, 0)), (20, rule(1, 9)), (30, rule(2, 0)), (40, rule(3, 0))];
        assert_eq!(
            diff(&old, &new),
            vec![
                Change::Set(5, rule(0, 0)),
                Change::Clear(10),
                Change::Set(20, rule(1, 9)),
                Change::Set(40, rule(3, 0)),
            ]
        );
        assert_eq!(diff(&new, &[]).len(), 4);
    }
}
