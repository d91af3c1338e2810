//! The scheduling loop: drain runnable tasks, decide, dispatch, and do the
//! periodic work in between. Single-threaded; it blocks only in poll().

use std::time::{Duration, Instant};

use log::{info, warn};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::bpf::{
    Bpf, DispatchedTask, ExitInfo, QueuedTask, CPU_ANY, DF_PREEMPT, PRIO_NONE, QF_WAKEUP,
    QUEUED_CAPACITY,
};
use crate::events::Events;
use crate::policy::{Decision, Policy, PolicyParams, RunQueue, Runnable};
use crate::topology::{IdleCpus, Topology};

/// How long the loop sleeps at most when idle: bounds how late it notices
/// that the kernel ejected the scheduler.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(250);

/// Why the loop returned.
pub enum Outcome {
    /// SIGINT/SIGTERM: we unregistered.
    Terminated(Option<ExitInfo>),
    /// The kernel stopped us (error, stall, hotplug, sysrq).
    Exited(ExitInfo),
}

pub struct Scheduler<'a, 'obj> {
    bpf: Bpf<'obj>,
    events: &'a Events,
    topology: &'a Topology,
    policy: Policy,
    runq: RunQueue,
    interval: Duration,
    next_report: Instant,
}

impl<'a, 'obj> Scheduler<'a, 'obj> {
    pub fn new(
        bpf: Bpf<'obj>,
        events: &'a Events,
        topology: &'a Topology,
        params: PolicyParams,
        interval: Duration,
    ) -> Self {
        Self {
            bpf,
            events,
            topology,
            policy: Policy::new(params),
            // Room for everything the ring buffer can deliver in one drain.
            runq: RunQueue::with_capacity(QUEUED_CAPACITY),
            interval,
            next_report: Instant::now() + interval,
        }
    }

    pub fn run(mut self) -> Outcome {
        loop {
            if let Some(exit) = self.bpf.exit_info() {
                return Outcome::Exited(exit);
            }
            if self.events.terminate_requested() {
                return Outcome::Terminated(self.bpf.detach());
            }
            self.periodic_work();

            if self.schedule() > 0 {
                // Let this CPU run ops.dispatch, which applies the decisions
                // and runs the tasks; BPF brings us back when work arrives.
                nix::sched::sched_yield().ok();
                continue;
            }
            self.wait();
        }
    }

    /// One round: turn every queued task into a decision and send it.
    /// Returns how many decisions were sent or are still held.
    fn schedule(&mut self) -> usize {
        let mut inbox = self.bpf.drain_queued();
        let waiting = inbox.len() + self.runq.len();
        for q in inbox.drain(..) {
            let task = runnable(&q);
            let decision = self.policy.decide(&task, waiting);
            // Cannot fail: the queue is as large as the ring buffer.
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
        let held = self.runq.len();
        self.bpf.set_nr_scheduled(held as u64);
        sent + held
    }

    /// The CPU to run a task on: an idle one close to its cache, its own CPU
    /// for pinned and preempting tasks, or any CPU it may use.
    fn place(&self, task: &Runnable, decision: &Decision, idle: &mut IdleCpus) -> i32 {
        match self.topology.pick_cpu(task.cpu, task.nr_cpus_allowed, idle) {
            Some(cpu) => cpu as i32,
            None if decision.preempt || task.nr_cpus_allowed == 1 => task.cpu,
            None => CPU_ANY,
        }
    }

    /// Sleep until a task is queued, a signal or helper message arrives, or
    /// the next report is due.
    fn wait(&mut self) {
        let until_report = self.next_report.saturating_duration_since(Instant::now());
        let timeout = until_report.min(MAX_IDLE_WAIT);
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::ZERO);
        let mut fds = [
            PollFd::new(self.bpf.queued_fd(), PollFlags::POLLIN),
            PollFd::new(self.events.fd(), PollFlags::POLLIN),
        ];
        if let Err(e) = poll(&mut fds, timeout) {
            if e != nix::errno::Errno::EINTR {
                warn!("poll failed: {e}");
            }
        }
        if fds[1].any().unwrap_or(false) {
            self.events.clear();
        }
    }

    /// Work that is not per task: the counter line.
    fn periodic_work(&mut self) {
        let now = Instant::now();
        if now >= self.next_report {
            self.next_report = now + self.interval;
            info!("bss data: {}", self.bpf.counters());
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
