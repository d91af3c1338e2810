//! The resolver thread: owns the current strategies and pod index, rescans
//! /proc periodically and on every input, and sends the scheduling loop a
//! complete [`RuleTable`] whenever the rules change.

use std::io;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::matcher::{rule_table, scan};
use super::model::{PodIndex, Strategies};
use super::procfs::ProcFs;
use super::{Rule, RuleTable};
use crate::api::{self, ApiUpdate};

impl From<ApiUpdate> for ResolverInput {
    fn from(update: ApiUpdate) -> Self {
        ResolverInput::ApiStrategies(update.0)
    }
}

/// Messages the resolver thread accepts.
#[derive(Debug)]
pub enum ResolverInput {
    /// A new strategy set (from the config watcher); applied at once.
    Strategies(Strategies),
    /// The API server's complete strategy list; applied at once, after the
    /// file's strategies (see [`crate::api::effective`]).
    ApiStrategies(Strategies),
    /// The pods a Kubernetes watcher currently knows; applied at once.
    Pods(PodIndex),
    /// A new period between /proc scans.
    ScanInterval(Duration),
    /// Scan now, e.g. when the loop saw a new process.
    Rescan,
}

/// Called after each `RuleTable` is sent, so the loop wakes to read it.
pub type Wake = Box<dyn Fn() + Send>;

/// Starts the resolver thread scanning `proc_root` (`/proc` in production)
/// with `strategies`, taking further input from `inputs`.
///
/// The caller makes the input channel (`mpsc::channel()`), so the config
/// watcher can be given its sender before the initial strategies are
/// known. The thread scans at once, then every `scan_interval` and after
/// every input; it sends a `RuleTable` on `rules` after its first scan and
/// whenever the rules differ from the last ones sent, then calls `wake`.
/// The loop should drain `rules` and keep the last table. The thread ends
/// when every input sender is dropped or the `rules` receiver is.
pub fn spawn(
    proc_root: PathBuf,
    strategies: Strategies,
    scan_interval: Duration,
    inputs: Receiver<ResolverInput>,
    rules: Sender<RuleTable>,
    wake: Wake,
) -> io::Result<JoinHandle<()>> {
    let resolver = Resolver {
        proc: ProcFs::new(proc_root),
        strategies: strategies.clone(),
        file: strategies,
        api: Strategies::default(),
        pods: PodIndex::default(),
        scan_interval,
        inputs,
        rules,
        wake,
    };
    thread::Builder::new()
        .name("gthulhu-resolver".into())
        .spawn(move || resolver.run())
}

struct Resolver {
    proc: ProcFs,
    /// What is matched: `file` then `api`.
    strategies: Strategies,
    file: Strategies,
    api: Strategies,
    pods: PodIndex,
    scan_interval: Duration,
    inputs: Receiver<ResolverInput>,
    rules: Sender<RuleTable>,
    wake: Wake,
}

impl Resolver {
    fn run(mut self) {
        let mut last_scan: Option<Instant> = None;
        let mut last_sent: Option<Vec<(i32, Rule)>> = None;
        // Log what a strategy set selects after its first scan.
        let mut announce = true;
        loop {
            let due = last_scan.map_or_else(Instant::now, |t| t + self.scan_interval);
            let mut scan_now = match self
                .inputs
                .recv_timeout(due.saturating_duration_since(Instant::now()))
            {
                Ok(input) => self.apply(input, &mut announce),
                Err(RecvTimeoutError::Timeout) => true,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Coalesce bursts of inputs into one scan.
            while let Ok(input) = self.inputs.try_recv() {
                scan_now |= self.apply(input, &mut announce);
            }
            if !scan_now && Instant::now() < due {
                continue;
            }

            let table = rule_table(
                &self.strategies,
                &scan(&self.proc, &self.strategies, &self.pods),
            );
            last_scan = Some(Instant::now());
            if announce {
                announce = false;
                log::info!(
                    "strategies applied: {} strategies select {} tasks",
                    self.strategies.len(),
                    table.tasks
                );
            }
            if last_sent.as_ref() != Some(&table.rules) {
                last_sent = Some(table.rules.clone());
                if self.rules.send(table).is_err() {
                    return;
                }
                (self.wake)();
            }
        }
    }

    /// Applies one input; returns whether a scan is needed now.
    fn apply(&mut self, input: ResolverInput, announce: &mut bool) -> bool {
        match input {
            ResolverInput::Strategies(file) => {
                self.file = file;
                self.strategies = api::effective(&self.file, &self.api);
                *announce = true;
                true
            }
            ResolverInput::ApiStrategies(list) => {
                self.api = list;
                self.strategies = api::effective(&self.file, &self.api);
                *announce = true;
                true
            }
            ResolverInput::Pods(pods) => {
                let changed = pods != self.pods;
                self.pods = pods;
                changed
            }
            ResolverInput::ScanInterval(interval) => {
                self.scan_interval = interval;
                false
            }
            ResolverInput::Rescan => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use std::sync::mpsc;

    use super::*;
    use crate::config::Config;
    use crate::strategy::model::PodInfo;
    use crate::strategy::testing::{wait_until, FakeProc};

    const WAIT: Duration = Duration::from_secs(5);

    struct Harness {
        proc: FakeProc,
        input: Sender<ResolverInput>,
        tables: Receiver<RuleTable>,
        wakes: Arc<AtomicUsize>,
        thread: JoinHandle<()>,
    }

    fn strategies(yaml: &str) -> Strategies {
        Config::parse(yaml, "test.yaml").unwrap().strategies
    }

    fn start(proc: FakeProc, yaml: &str, interval: Duration) -> Harness {
        let (rules, tables) = mpsc::channel();
        let (input, inputs) = mpsc::channel();
        let wakes = Arc::new(AtomicUsize::new(0));
        let counter = wakes.clone();
        let thread = spawn(
            proc.root().to_path_buf(),
            strategies(yaml),
            interval,
            inputs,
            rules,
            Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
        Harness {
            proc,
            input,
            tables,
            wakes,
            thread,
        }
    }

    impl Harness {
        /// Waits for the next table.
        fn next(&self) -> RuleTable {
            self.tables.recv_timeout(WAIT).expect("a rule table")
        }

        /// Waits for a table whose rule keys are `keys`.
        fn wait_for_keys(&self, keys: &[i32]) -> RuleTable {
            let deadline = Instant::now() + WAIT;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let table = self
                    .tables
                    .recv_timeout(left)
                    .unwrap_or_else(|_| panic!("no rule table with keys {keys:?}"));
                if table.rules.iter().map(|(k, _)| *k).eq(keys.iter().copied()) {
                    return table;
                }
            }
        }
    }

    const DEMO: &str = "strategies: [{name: demo, command_regex: ^demo, priority: 0}]";

    #[test]
    fn first_scan_is_sent_and_wakes_the_loop() {
        let proc = FakeProc::new();
        proc.add_process(10, "demo", "/");
        let h = start(proc, DEMO, Duration::from_secs(60));
        let table = h.next();
        assert_eq!(
            table.rules,
            vec![(
                10,
                Rule {
                    priority: 0,
                    slice_ns: 0,
                    strategy: 0,
                }
            )]
        );
        assert_eq!(table.selected, vec![("demo".to_string(), 1)]);
        assert!(wait_until(WAIT, || h.wakes.load(Ordering::SeqCst) == 1));
    }

    #[test]
    fn periodic_scans_add_and_remove_rules_as_processes_come_and_go() {
        let h = start(FakeProc::new(), DEMO, Duration::from_millis(50));
        assert!(h.next().rules.is_empty());
        h.proc.add_process(20, "demo-a", "/");
        h.wait_for_keys(&[20]);
        h.proc.add_process(30, "sh", "/");
        h.proc.add_thread(30, 31, "demo-worker");
        h.wait_for_keys(&[20, 31]);
        // Exec into another name drops the rule; exit drops it too.
        h.proc.add_thread(20, 20, "bash");
        h.wait_for_keys(&[31]);
        h.proc.remove_thread(30, 31);
        h.wait_for_keys(&[]);
        h.proc.add_process(40, "demo-b", "/");
        h.wait_for_keys(&[40]);
        h.proc.remove_process(40);
        h.wait_for_keys(&[]);
    }

    #[test]
    fn unchanged_rules_are_not_resent() {
        let proc = FakeProc::new();
        proc.add_process(10, "demo", "/");
        let h = start(proc, DEMO, Duration::from_secs(60));
        h.next();
        h.input.send(ResolverInput::Rescan).unwrap();
        h.input.send(ResolverInput::Rescan).unwrap();
        h.proc.add_process(11, "demo", "/");
        h.input.send(ResolverInput::Rescan).unwrap();
        // The next table is the changed one: the unchanged scans sent none.
        assert_eq!(h.next().rules.len(), 2);
        assert!(wait_until(WAIT, || h.wakes.load(Ordering::SeqCst) == 2));
    }

    #[test]
    fn new_strategies_and_pods_apply_without_waiting_for_the_interval() {
        let uid = "0f3b5c1e-9a2d-4b7e-8c6f-1a2b3c4d5e6f";
        let proc = FakeProc::new();
        proc.add_process(10, "demo", "/");
        proc.add_process(20, "upf", &format!("/kubepods/pod{uid}/c1"));
        let h = start(proc, DEMO, Duration::from_secs(60));
        h.wait_for_keys(&[10]);
        h.input
            .send(ResolverInput::Strategies(strategies(
                "strategies: [{name: ns, namespace: core, priority: 1}]",
            )))
            .unwrap();
        h.wait_for_keys(&[]);
        let mut pods = PodIndex::default();
        pods.insert(
            uid,
            PodInfo {
                namespace: "core".into(),
                labels: Default::default(),
            },
        );
        h.input.send(ResolverInput::Pods(pods)).unwrap();
        h.wait_for_keys(&[20]);
    }

    #[test]
    fn scan_interval_input_changes_the_period() {
        let h = start(FakeProc::new(), DEMO, Duration::from_secs(3600));
        h.next();
        h.input
            .send(ResolverInput::ScanInterval(Duration::from_millis(20)))
            .unwrap();
        h.proc.add_process(50, "demo", "/");
        h.wait_for_keys(&[50]);
    }

    #[test]
    fn thread_ends_when_inputs_are_dropped() {
        let h = start(FakeProc::new(), DEMO, Duration::from_secs(3600));
        h.next();
        drop(h.input);
        assert!(wait_until(WAIT, || h.thread.is_finished()));
    }
}
