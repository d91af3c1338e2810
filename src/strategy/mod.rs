//! Strategies: which tasks get which priority and time slice.
//!
//! The scheduling loop never reads files or /proc: a resolver thread
//! ([`resolver`]) scans /proc with the [`matcher`] and sends the loop
//! complete [`matcher::RuleTable`]s to mirror into the BPF `task_rules` map.

pub mod matcher;
pub mod model;
pub mod procfs;
pub mod resolver;
#[cfg(test)]
pub mod testing;

pub use matcher::RuleTable;
pub use model::Rule;
