//! Mirrors the resolver's rule table into BPF's task_rules map, writing only
//! what changed so a rescan that finds nothing new costs no syscalls.

use std::cmp::Ordering;

use crate::bpf::{Bpf, TaskRule};
use crate::strategy::{Rule, RuleTable};

#[derive(Default)]
pub struct RuleMirror {
    /// What the map holds now, sorted by key.
    current: Vec<(i32, Rule)>,
    /// Strategy names and tasks selected, from the latest table; the index
    /// is the strategy's stats slot.
    selected: Vec<(String, usize)>,
}

/// One change to apply to the map.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Set(i32, Rule),
    Clear(i32),
}

impl RuleMirror {
    /// Bring the map in line with `table`; returns how many entries changed.
    /// On error the mirror is forgotten, so the next table rewrites all.
    pub fn apply(&mut self, bpf: &Bpf, table: RuleTable) -> Result<usize, String> {
        let changes = diff(&self.current, &table.rules);
        self.selected = table.selected;
        match write(bpf, &changes) {
            Ok(()) => {
                self.current = table.rules;
                Ok(changes.len())
            }
            Err(e) => {
                self.current.clear();
                Err(e)
            }
        }
    }

    pub fn selected(&self) -> &[(String, usize)] {
        &self.selected
    }

    /// Write every entry again, into the fresh map of a re-attached program.
    pub fn restore(&self, bpf: &Bpf) -> Result<usize, String> {
        let all = diff(&[], &self.current);
        write(bpf, &all).map(|()| all.len())
    }
}

/// Apply every change, carrying on past failures; report the first one.
fn write(bpf: &Bpf, changes: &[Change]) -> Result<(), String> {
    let mut first_error = Ok(());
    for change in changes {
        let written = match *change {
            Change::Set(id, rule) => bpf.set_rule(
                id,
                TaskRule {
                    priority: rule.priority,
                    slice_ns: rule.slice_ns,
                    strategy: rule.strategy,
                },
            ),
            Change::Clear(id) => bpf.clear_rule(id),
        };
        if let (Err(e), Ok(())) = (written, &first_error) {
            first_error = Err(e);
        }
    }
    first_error
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
        Rule {
            priority,
            slice_ns,
            strategy: 0,
        }
    }

    #[test]
    fn rule_moved_to_another_strategy_is_rewritten() {
        let old = vec![(10, rule(0, 0))];
        let moved = Rule {
            strategy: 1,
            ..rule(0, 0)
        };
        assert_eq!(diff(&old, &[(10, moved)]), vec![Change::Set(10, moved)]);
    }

    #[test]
    fn unchanged_table_writes_nothing() {
        let t = vec![(10, rule(0, 0)), (20, rule(1, 2_000_000))];
        assert!(diff(&t, &t).is_empty());
    }

    #[test]
    fn added_changed_and_removed_entries_are_written() {
        let old = vec![(10, rule(0, 0)), (20, rule(1, 0)), (30, rule(2, 0))];
        let new = vec![
            (5, rule(0, 0)),
            (20, rule(1, 9)),
            (30, rule(2, 0)),
            (40, rule(3, 0)),
        ];
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
