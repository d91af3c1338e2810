//! The scheduler's counters, as BPF keeps them and as they are reported.

use std::fmt;

/// One snapshot of the BPF program's counters. Names follow Gthulhu.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub usersched_last_run_at: u64,
    pub nr_queued: u64,
    pub nr_scheduled: u64,
    pub nr_running: u64,
    pub nr_online_cpus: u64,
    pub nr_user_dispatches: u64,
    pub nr_kernel_dispatches: u64,
    pub nr_cancel_dispatches: u64,
    pub nr_bounce_dispatches: u64,
    pub nr_failed_dispatches: u64,
    pub nr_sched_congested: u64,
    /// Runs of tasks a strategy selects, and those that started with the
    /// strategy's own time slice (gthulhu's additions).
    pub nr_rule_runs: u64,
    pub nr_rule_slice_runs: u64,
}

impl Counters {
    /// Every field with its name, in the order Gthulhu reports them.
    pub fn fields(&self) -> [(&'static str, u64); 13] {
        [
            ("usersched_last_run_at", self.usersched_last_run_at),
            ("nr_queued", self.nr_queued),
            ("nr_scheduled", self.nr_scheduled),
            ("nr_running", self.nr_running),
            ("nr_online_cpus", self.nr_online_cpus),
            ("nr_user_dispatches", self.nr_user_dispatches),
            ("nr_kernel_dispatches", self.nr_kernel_dispatches),
            ("nr_cancel_dispatches", self.nr_cancel_dispatches),
            ("nr_bounce_dispatches", self.nr_bounce_dispatches),
            ("nr_failed_dispatches", self.nr_failed_dispatches),
            ("nr_sched_congested", self.nr_sched_congested),
            ("nr_rule_runs", self.nr_rule_runs),
            ("nr_rule_slice_runs", self.nr_rule_slice_runs),
        ]
    }
}

/// A one-line JSON object, like Gthulhu's `bss data: {...}` log line.
impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.fields().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "\"{name}\":{value}")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bss_data_line_is_json_with_gthulhu_names() {
        let c = Counters {
            nr_queued: 7,
            nr_user_dispatches: 5,
            ..Default::default()
        };
        let line = c.to_string();
        assert!(line.starts_with("{\"usersched_last_run_at\":0,\"nr_queued\":7,"));
        assert!(line.contains("\"nr_user_dispatches\":5"));
        assert!(line.contains("\"nr_sched_congested\":0,"));
        assert!(line.ends_with("\"nr_rule_slice_runs\":0}"));
        assert_eq!(line.matches(':').count(), 13);
    }
}
