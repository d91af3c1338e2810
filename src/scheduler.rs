//! The scheduling loop: drain runnable tasks, decide, dispatch, and do the
//! periodic work in between. Single-threaded; it blocks only in poll().

use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::api::ApiHandle;
use crate::bpf::{
    Bpf, DispatchedTask, ExitInfo, QueuedTask, CPU_ANY, DF_PREEMPT, PRIO_NONE, QF_WAKEUP,
    QUEUED_CAPACITY, SLOT_OTHER, SLOT_UNMATCHED,
};
use crate::config::watch::ConfigWatcher;
use crate::events::Events;
use crate::metrics::{Metrics, SlotSnapshot, Snapshot, MAX_STRATEGY_SLOTS, OTHER, UNMATCHED};
use crate::notify;
use crate::policy::{Decision, Policy, PolicyParams, RunQueue, Runnable};
use crate::rules::RuleMirror;
use crate::strategy::resolver::ResolverInput;
use crate::strategy::RuleTable;
use crate::topology::{IdleCpus, Topology};

/// How long the loop sleeps at most when idle: bounds how late it notices
/// that the kernel ejected the scheduler.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(250);
/// How often the metrics snapshot is refreshed.
const METRICS_PERIOD: Duration = Duration::from_secs(1);

/// Why the loop returned.
pub enum Outcome {
    /// SIGINT/SIGTERM: we unregistered.
    Terminated(Option<ExitInfo>),
    /// The kernel stopped us (error, stall, hotplug, sysrq).
    Exited(ExitInfo),
}

/// What the loop shares with the rest of the process; outlives a restart.
pub struct Context<'a> {
    pub events: &'a Events,
    pub topology: &'a Topology,
    /// Rule tables from the strategy resolver thread.
    pub rule_updates: &'a Receiver<RuleTable>,
    /// The config file watcher, asked to reload on SIGHUP.
    pub watcher: Option<&'a ConfigWatcher>,
    /// The strategy resolver, asked to rescan /proc on SIGHUP.
    pub resolver: &'a Sender<ResolverInput>,
    /// The Gthulhu API client, given the counters every interval.
    pub api: Option<&'a ApiHandle>,
    /// Seconds between two "bss data" lines; None: no such lines.
    pub interval: Option<Duration>,
    /// Where metrics snapshots go, when /metrics is served.
    pub metrics: Option<&'a Metrics>,
}

pub struct Scheduler<'a, 'obj> {
    bpf: Bpf<'obj>,
    ctx: Context<'a>,
    rules: &'a mut RuleMirror,
    policy: Policy,
    runq: RunQueue,
    next_report: Option<Instant>,
    next_publish: Option<Instant>,
}

impl<'a, 'obj> Scheduler<'a, 'obj> {
    /// Take over an attached program; rules known from before a restart
    /// are written into its fresh map.
    pub fn new(
        bpf: Bpf<'obj>,
        ctx: Context<'a>,
        rules: &'a mut RuleMirror,
        params: PolicyParams,
    ) -> Self {
        if let Err(e) = rules.restore(&bpf) {
            warn!("strategy rules not fully restored: {e}");
        }
        Self {
            next_report: ctx.interval.map(|i| Instant::now() + i),
            next_publish: ctx.metrics.map(|_| Instant::now()),
            bpf,
            ctx,
            rules,
            policy: Policy::new(params),
            // Room for everything the ring buffer can deliver in one drain.
            runq: RunQueue::with_capacity(QUEUED_CAPACITY),
        }
    }

    pub fn run(mut self) -> Outcome {
        loop {
            if let Some(exit) = self.bpf.exit_info() {
                return Outcome::Exited(exit);
            }
            if self.ctx.events.terminate_requested() {
                return Outcome::Terminated(self.bpf.detach());
            }
            self.periodic_work();

            if self.schedule() > 0 || !self.runq.is_empty() {
                // Let this CPU run ops.dispatch, which applies the decisions
                // and runs the tasks; BPF brings us back when work arrives.
                nix::sched::sched_yield().ok();
                continue;
            }
            self.wait();
        }
    }

    /// One round: turn every queued task into a decision and send it.
    /// Returns how many decisions were sent.
    fn schedule(&mut self) -> usize {
        // Take no more than the run queue has room for: tasks held back
        // when "dispatched" was full still occupy it.
        let mut inbox = self.bpf.drain_queued(QUEUED_CAPACITY - self.runq.len());
        let waiting = inbox.len() + self.runq.len();
        for q in inbox.drain(..) {
            let task = runnable(&q);
            let decision = self.policy.decide(&task, waiting);
            // Cannot fail: at most the room left was drained.
            let _ = self.runq.push(task, decision);
        }
        drop(inbox);

        let mut idle = IdleCpus::from_words(self.bpf.idle_mask());
        let mut sent = 0;
        while let Some((task, decision)) = self.runq.pop() {
            let cpu = self.place(&task, &decision, &mut idle);
            if !self.bpf.dispatch(&dispatched(&task, &decision, cpu)) {
                // "dispatched" is full: keep the rest for the next round.
                let _ = self.runq.push(task, decision);
                break;
            }
            sent += 1;
        }
        self.bpf.set_nr_scheduled(self.runq.len() as u64);
        sent
    }

    /// The CPU to run a task on: an idle one close to its cache, its own CPU
    /// for pinned and preempting tasks, or any CPU it may use.
    fn place(&self, task: &Runnable, decision: &Decision, idle: &mut IdleCpus) -> i32 {
        let picked = if idle.count() > 0 {
            self.ctx
                .topology
                .pick_cpu(task.cpu, task.nr_cpus_allowed, idle)
        } else {
            None
        };
        match picked {
            Some(cpu) => cpu as i32,
            None if decision.preempt || task.nr_cpus_allowed == 1 => task.cpu,
            None => CPU_ANY,
        }
    }

    /// Sleep until a task is queued, a signal or helper message arrives, or
    /// the next report is due.
    fn wait(&mut self) {
        let until_report = self.next_report.map_or(MAX_IDLE_WAIT, |at| {
            at.saturating_duration_since(Instant::now())
        });
        let timeout =
            PollTimeout::try_from(until_report.min(MAX_IDLE_WAIT)).unwrap_or(PollTimeout::ZERO);
        let mut fds = [
            PollFd::new(self.bpf.queued_fd(), PollFlags::POLLIN),
            PollFd::new(self.ctx.events.fd(), PollFlags::POLLIN),
        ];
        if let Err(e) = poll(&mut fds, timeout) {
            if e != nix::errno::Errno::EINTR {
                warn!("poll failed: {e}");
            }
        }
        if fds[1].any().unwrap_or(false) {
            self.ctx.events.clear();
        }
    }

    /// Work that is not per task: new strategy rules, SIGHUP, the counters.
    fn periodic_work(&mut self) {
        if let Some(table) = self.ctx.rule_updates.try_iter().last() {
            match self.rules.apply(&self.bpf, table) {
                Ok(changed) => debug!("strategy rules: {changed} map entries changed"),
                Err(e) => warn!("strategy rules not fully applied: {e}"),
            }
        }
        if self.ctx.events.take_reload() {
            let _ = notify::reloading();
            if let Some(watcher) = self.ctx.watcher {
                watcher.reload();
            }
            let _ = self.ctx.resolver.send(ResolverInput::Rescan);
            let _ = notify::ready("scheduling");
        }
        if self.next_report.is_none() && self.next_publish.is_none() {
            return;
        }
        let now = Instant::now();
        if let (Some(at), Some(metrics)) = (self.next_publish, self.ctx.metrics) {
            if now >= at {
                self.next_publish = Some(now + METRICS_PERIOD);
                self.publish(metrics);
            }
        }
        if let (Some(at), Some(interval)) = (self.next_report, self.ctx.interval) {
            if now >= at {
                self.next_report = Some(now + interval);
                let counters = self.bpf.counters();
                info!("bss data: {counters}");
                if let Some(api) = self.ctx.api {
                    api.publish_counters(counters);
                }
            }
        }
    }
}

impl Scheduler<'_, '_> {
    /// Read the counters and per-strategy stats into a new snapshot; skipped
    /// if a scrape holds the old one.
    fn publish(&self, metrics: &Metrics) {
        let selected = self.rules.selected();
        let mut slots = Vec::with_capacity(selected.len().min(MAX_STRATEGY_SLOTS) + 2);
        let mut read =
            |slot: u32, strategy: &str, tasks: Option<usize>| match self.bpf.slot_stats(slot) {
                Ok(stats) => slots.push(SlotSnapshot {
                    strategy: strategy.to_string(),
                    tasks,
                    stats,
                }),
                Err(e) => debug!("metrics: {e}"),
            };
        for (slot, (name, tasks)) in selected.iter().take(MAX_STRATEGY_SLOTS).enumerate() {
            read(slot as u32, name, Some(*tasks));
        }
        read(SLOT_UNMATCHED, UNMATCHED, None);
        if selected.len() > MAX_STRATEGY_SLOTS {
            let others = selected[MAX_STRATEGY_SLOTS..].iter().map(|s| s.1).sum();
            read(SLOT_OTHER, OTHER, Some(others));
        }
        let snapshot = Snapshot {
            counters: self.bpf.counters(),
            slots,
            api: self.ctx.api.map(|api| api.status()),
        };
        if let Ok(mut current) = metrics.snapshot.try_lock() {
            *current = snapshot;
        }
    }
}

fn runnable(q: &QueuedTask) -> Runnable {
    Runnable {
        pid: q.pid,
        cpu: q.cpu,
        nr_cpus_allowed: q.nr_cpus_allowed,
        weight: q.weight,
        vtime: q.vtime,
        exec_runtime: q.exec_runtime,
        wakeup: q.flags & QF_WAKEUP != 0,
        priority: (q.priority != PRIO_NONE).then_some(q.priority),
        rule_slice_ns: q.slice_ns,
        gen: q.r#gen,
    }
}

fn dispatched(task: &Runnable, d: &Decision, cpu: i32) -> DispatchedTask {
    DispatchedTask {
        pid: task.pid,
        cpu,
        r#gen: task.gen,
        flags: if d.preempt { DF_PREEMPT } else { 0 },
        slice_ns: d.slice_ns,
        vtime: d.vtime,
        deadline: d.deadline,
    }
}
