//! The scheduling policy: turns a runnable task into a dispatch decision
//! (virtual time, deadline, time slice, preemption), plus the fixed-size
//! queue that hands decisions out earliest deadline first.
//!
//! Pure logic: no I/O and no allocation per decision, so it can be unit
//! tested and benchmarked without BPF.
//!
//! Units. BPF charges a task's `vtime` with `used_ns * 100 / weight` in
//! ops.stopping, so vtime is "weighted runtime": a nice-0 task (weight 100)
//! ages one vtime ns per CPU ns, heavier tasks age slower. `S` below is the
//! default slice (`PolicyParams::slice_ns`).
//!
//! The kernel orders its dispatch queues by `deadline`, comparing u64s with
//! wrap-around, and so does everything here (see [`before`]).
//!
//! # How far a boost goes
//!
//! A strategy level `n` lowers the task's deadline: level 0 by
//! `BOOST_TOP = 16 S`, level `n >= 1` by `(4 S) >> (n - 1)`. The deadline
//! still starts from the task's own vtime, which BPF keeps charging, so a
//! boosted CPU hog keeps pushing its own deadline back and eventually passes
//! the deadline of whatever waits behind it.
//!
//! Bound: let `N` be a task without a strategy waiting in a dispatch queue
//! and `H` a boosted CPU hog competing for the same queue, with boost `B`.
//! Until `N` runs, `H` is charged at most `B + EXEC_CAP + CREDIT`
//! (= `B + 11 S`) of weighted runtime in slices decided after `N`, plus the
//! one slice it was granted before `N` was decided, plus the slice granted
//! just before its deadline passes `N`'s. For level 0 with default slices
//! that is `27 S + 2 S = 29 S` of weighted runtime: 29 slices of CPU for a
//! nice-0 hog (145 ms with BPF's 5 ms default), `weight / 100` times that
//! for a heavier one (weight is meant to buy CPU). Level 1: `15 S` plus two
//! slices; level 3: `12 S` plus two slices.
//! Why: when `N` is decided its deadline is at most `vtime_now + EXEC_CAP`
//! (its vtime is at most the clock, and it gets no boost); every later
//! decision for `H` starts from at least `vtime_now - CREDIT` (the sleeper
//! credit floor; the clock only grows) plus what BPF charged since; and `H`
//! is picked first only while its deadline, at least `vtime - B`, is earlier.
//! `boosted_hog_cannot_starve_others` simulates this.
//!
//! The clock ignores boosted tasks: they run ahead of their vtime order, and
//! a boosted hog that moved the clock would drag every other task's floor
//! along and stay ahead for ever. So a boost is a lead of at most `B` of
//! virtual time, spent when the task wakes up; in the long run the CPU still
//! splits by weight. BPF's clock and its level-0 fast path follow the same
//! rule (bpf/main.bpf.c, `within_top_boost`).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Strategy levels that boost (0..PRIO_LEVELS); higher values only set a
/// slice (bpf/intf.h PRIO_LEVELS).
const PRIO_LEVELS: u32 = 8;

/// `p->scx.weight` of a nice-0 task. BPF treats a weight of 0 as this too.
const NICE0_WEIGHT: u64 = 100;

/// The default slice is clamped to this so that every offset below (at most
/// 16 slices) stays far from the 2^63 limit of wrap-around comparisons.
const MAX_SLICE_NS: u64 = 10_000_000_000;

/// `exec_runtime` (CPU time since the task last woke up) counts towards the
/// deadline only up to this many default slices: enough to separate tasks
/// that sleep often from CPU hogs, small enough that a hog's deadline is
/// never more than 10 S past its vtime (this bounds `BOOST_TOP` below).
const EXEC_CAP_SLICES: u64 = 10;

/// Sleeper credit, in default slices of vtime: how far behind the clock a
/// task's vtime may be. See `Policy::decide`.
const CREDIT_SLICES: u64 = 1;

/// Level 1 boost, in default slices; level n >= 1 gets `BOOST_BASE >> (n-1)`
/// (4 S, 2 S, S, S/2, ...): a level-1 task still waits for tasks whose
/// deadlines are more than 4 S earlier than its own.
const BOOST_BASE_SLICES: u64 = 4;

/// Level 0 boost, in default slices. Every non-level-0 deadline decided at
/// the same time or later is at least `vtime_now - CREDIT - BOOST_BASE`,
/// every level-0 deadline at most `vtime_now + EXEC_CAP - BOOST_TOP`; one
/// slice more than the sum keeps level 0 strictly first.
const BOOST_TOP_SLICES: u64 = EXEC_CAP_SLICES + CREDIT_SLICES + BOOST_BASE_SLICES + 1;

/// `a` is earlier than `b` on a u64 clock that may wrap (the kernel's
/// `time_before`); valid while the two are less than 2^63 apart.
fn before(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) < 0
}

/// Total order of two clock values closer than 2^63 to each other.
fn wrap_cmp(a: u64, b: u64) -> Ordering {
    (a.wrapping_sub(b) as i64).cmp(&0)
}

pub struct PolicyParams {
    /// Default time slice; also the unit of credit and boosts.
    pub slice_ns: u64,
    /// Shortest slice handed out when many tasks wait.
    pub slice_min_ns: u64,
}

/// What the policy needs to know about one runnable task (a `queued_task`).
#[derive(Clone, Copy, Debug)]
pub struct Runnable {
    pub pid: i32,
    /// CPU the task last ran on.
    pub cpu: i32,
    pub nr_cpus_allowed: u32,
    /// `p->scx.weight`, 100 = nice 0.
    pub weight: u32,
    /// Weighted CPU time consumed, as charged by BPF.
    pub vtime: u64,
    /// CPU time since the task last woke up.
    pub exec_runtime: u64,
    /// The task just woke up (rather than used up its slice or was preempted).
    pub wakeup: bool,
    /// Strategy level; 0 = highest (picked before all others, may preempt),
    /// higher = gentler boost; None = no strategy.
    pub priority: Option<u32>,
    /// Strategy time slice, 0 = none.
    pub rule_slice_ns: u64,
    /// Enqueue generation, echoed back so BPF can drop stale decisions.
    pub gen: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The task's new vtime (BPF stores it back).
    pub vtime: u64,
    /// Dispatch-queue ordering key, earliest runs first (wrap-around).
    pub deadline: u64,
    pub slice_ns: u64,
    /// Kick the target CPU so the task runs now.
    pub preempt: bool,
}

pub struct Policy {
    /// The virtual clock: the largest vtime seen so far (wrap-around).
    vtime_now: u64,
    /// `vtime_now` holds a real value (it starts from the first task seen,
    /// so the clock does not depend on where BPF's vtimes happen to start).
    clock_started: bool,
    slice_ns: u64,
    slice_min_ns: u64,
    exec_cap: u64,
    boost_top: u64,
    boost_base: u64,
}

impl Policy {
    /// `slice_ns` is clamped to 1 ns..10 s and `slice_min_ns` to
    /// 1 ns..`slice_ns`, so no decision gets a zero slice and no offset gets
    /// near the wrap-around limit.
    pub fn new(params: PolicyParams) -> Self {
        let slice_ns = params.slice_ns.clamp(1, MAX_SLICE_NS);
        Self {
            vtime_now: 0,
            clock_started: false,
            slice_ns,
            slice_min_ns: params.slice_min_ns.clamp(1, slice_ns),
            exec_cap: EXEC_CAP_SLICES * slice_ns,
            boost_top: BOOST_TOP_SLICES * slice_ns,
            boost_base: BOOST_BASE_SLICES * slice_ns,
        }
    }

    /// Decide how to dispatch `t`. `nr_waiting` is how many other tasks wait
    /// to be dispatched besides this one.
    pub fn decide(&mut self, t: &Runnable, nr_waiting: usize) -> Decision {
        let s = self.slice_ns;
        let weight = match u64::from(t.weight) {
            0 => NICE0_WEIGHT,
            w => w,
        };

        // The clock is the largest vtime of the tasks without a boost; it
        // only moves forward. Boosted tasks run ahead of their vtime order,
        // so letting them move the clock would let a boosted hog drag the
        // clock along and stay ahead of everyone for ever.
        let boosted = matches!(t.priority, Some(level) if level < PRIO_LEVELS);
        if !self.clock_started || (!boosted && before(self.vtime_now, t.vtime)) {
            self.vtime_now = t.vtime;
            self.clock_started = true;
        }

        // Bounded sleeper credit: a task that slept keeps its lag, but at
        // most the vtime one default slice costs it (S * 100 / weight), and
        // never more than S of vtime. So after a sleep it runs at most one
        // default slice of CPU ahead of the pack, whatever its weight (as
        // EEVDF's lag limit), and a light task cannot get a huge vtime lead.
        let credit = (s * CREDIT_SLICES * NICE0_WEIGHT / weight).min(s * CREDIT_SLICES);
        let floor = self.vtime_now.wrapping_sub(credit);
        let vtime = if before(t.vtime, floor) {
            floor
        } else {
            t.vtime
        };

        // Deadline: vtime plus the weighted CPU time used since the last
        // wakeup, so tasks that run briefly between frequent wakeups
        // (interactive ones) go before CPU hogs at the same vtime. The part
        // added is capped at EXEC_CAP in both CPU time and vtime.
        let exec = t.exec_runtime.min(self.exec_cap);
        let penalty = (exec * NICE0_WEIGHT / weight).min(self.exec_cap);
        let mut deadline = vtime.wrapping_add(penalty);

        // Strategy boost. Level 0 gets BOOST_TOP, which puts it before every
        // task of another level decided now or later, and may preempt when
        // it wakes up; a level-0 task that merely used up its slice does not
        // preempt, else two level-0 hogs on one CPU would keep preempting
        // each other. Level n >= 1 gets BOOST_BASE >> (n-1), no preemption.
        // The bound on how much CPU a boost buys is in the module docs.
        let mut preempt = false;
        match t.priority {
            Some(0) => {
                deadline = deadline.wrapping_sub(self.boost_top);
                preempt = t.wakeup;
            }
            Some(level) => {
                deadline =
                    deadline.wrapping_sub(self.boost_base.checked_shr(level - 1).unwrap_or(0));
            }
            None => {}
        }

        // Slice: the strategy's if it sets one; otherwise the default slice
        // shared by everything waiting, but never below slice_min_ns (so a
        // crowd does not turn into context-switch overhead) and never 0.
        let slice_ns = if t.rule_slice_ns != 0 {
            t.rule_slice_ns
        } else {
            let sharers = u64::try_from(nr_waiting)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            (s / sharers).max(self.slice_min_ns)
        };

        Decision {
            vtime,
            deadline,
            slice_ns,
            preempt,
        }
    }
}

/// One queued decision. The heap is a max-heap, so "greater" means "earlier
/// deadline" (then "pushed earlier", to keep equal deadlines in FIFO order).
#[derive(Clone)]
struct Entry {
    seq: u64,
    task: Runnable,
    decision: Decision,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        wrap_cmp(other.decision.deadline, self.decision.deadline)
            .then_with(|| wrap_cmp(other.seq, self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

/// Decisions waiting to be sent, handed out earliest deadline first.
/// Its storage is reserved at construction and never grows.
pub struct RunQueue {
    heap: BinaryHeap<Entry>,
    capacity: usize,
    next_seq: u64,
}

impl RunQueue {
    pub fn with_capacity(capacity: usize) -> Self {
        let mut heap = BinaryHeap::with_capacity(capacity);
        // Write every slot once so the pages are resident (and locked, as
        // the scheduler locks its memory) before the hot path uses them.
        let filler = Entry {
            seq: 0,
            task: Runnable {
                pid: 0,
                cpu: 0,
                nr_cpus_allowed: 0,
                weight: 0,
                vtime: 0,
                exec_runtime: 0,
                wakeup: false,
                priority: None,
                rule_slice_ns: 0,
                gen: 0,
            },
            decision: Decision {
                vtime: 0,
                deadline: 0,
                slice_ns: 0,
                preempt: false,
            },
        };
        heap.extend(std::iter::repeat_n(filler, capacity));
        heap.clear();
        Self {
            heap,
            capacity,
            next_seq: 0,
        }
    }

    /// Queue a decision; when the queue is full, hand it back instead of
    /// allocating.
    pub fn push(&mut self, task: Runnable, decision: Decision) -> Result<(), (Runnable, Decision)> {
        if self.heap.len() >= self.capacity {
            return Err((task, decision));
        }
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        self.heap.push(Entry {
            seq,
            task,
            decision,
        });
        Ok(())
    }

    /// The entry with the earliest deadline (wrap-around aware).
    pub fn pop(&mut self) -> Option<(Runnable, Decision)> {
        self.heap.pop().map(|e| (e.task, e.decision))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

// Public only so that benches/policy.rs, which includes this file and is
// built with cfg(test) but without the test harness, sees the helpers used.
#[cfg(test)]
pub mod tests {
    use super::*;

    pub const S: u64 = 5_000_000;
    pub const MIN: u64 = 500_000;

    pub fn policy() -> Policy {
        Policy::new(PolicyParams {
            slice_ns: S,
            slice_min_ns: MIN,
        })
    }

    pub fn task(pid: i32, weight: u32, vtime: u64, exec_runtime: u64) -> Runnable {
        Runnable {
            pid,
            cpu: 0,
            nr_cpus_allowed: 4,
            weight,
            vtime,
            exec_runtime,
            wakeup: false,
            priority: None,
            rule_slice_ns: 0,
            gen: pid as u64,
        }
    }

    pub fn boosted(mut t: Runnable, level: u32, wakeup: bool) -> Runnable {
        t.priority = Some(level);
        t.wakeup = wakeup;
        t
    }

    #[test]
    fn sleeper_credit_is_bounded() {
        let mut p = policy();
        let now = 1_000_000_000_000;
        assert_eq!(p.decide(&task(1, 100, now, 0), 0).vtime, now);

        // Long sleepers come back at most one slice's worth of vtime behind.
        assert_eq!(p.decide(&task(2, 100, 0, 0), 0).vtime, now - S);
        // Heavier: one default slice of CPU costs it less vtime.
        assert_eq!(p.decide(&task(3, 1000, 0, 0), 0).vtime, now - S / 10);
        // Lighter: capped at S of vtime, not the 100 S a slice would cost.
        assert_eq!(p.decide(&task(4, 1, 0, 0), 0).vtime, now - S);
        // Weight 0 is treated as nice 0, as BPF does.
        assert_eq!(p.decide(&task(5, 0, 0, 0), 0).vtime, now - S);
        // Lag within the credit is kept.
        assert_eq!(
            p.decide(&task(6, 100, now - S / 2, 0), 0).vtime,
            now - S / 2
        );
        // The clock never moved back for the sleepers.
        assert_eq!(p.decide(&task(7, 100, 0, 0), 0).vtime, now - S);
        // And it moves forward with the largest vtime.
        assert_eq!(
            p.decide(&task(8, 100, now + 7 * S, 0), 0).vtime,
            now + 7 * S
        );
        assert_eq!(p.decide(&task(9, 100, now, 0), 0).vtime, now + 6 * S);
    }

    #[test]
    fn heavier_task_ages_slower() {
        let mut p = policy();
        let now = 1_000_000_000_000;
        let deadline =
            |p: &mut Policy, weight, exec| p.decide(&task(1, weight, now, exec), 0).deadline;

        assert_eq!(deadline(&mut p, 100, 2 * S), now + 2 * S);
        assert_eq!(deadline(&mut p, 1000, 2 * S), now + 2 * S / 10);
        assert_eq!(deadline(&mut p, 50, 2 * S), now + 4 * S);
        assert!(deadline(&mut p, 10000, 2 * S) < deadline(&mut p, 1000, 2 * S));
        // A task that ran little since waking up goes before a hog.
        assert!(deadline(&mut p, 100, S / 10) < deadline(&mut p, 100, 3 * S));
        // The exec_runtime part is capped, in CPU time and in vtime.
        assert_eq!(deadline(&mut p, 100, 1000 * S), now + EXEC_CAP_SLICES * S);
        assert_eq!(deadline(&mut p, 1, 2 * S), now + EXEC_CAP_SLICES * S);
        assert_eq!(
            deadline(&mut p, 1000, 1000 * S),
            now + EXEC_CAP_SLICES * S / 10
        );
    }

    /// Every mix of weight, lag, exec_runtime and lower level that can be
    /// decided around a level-0 task.
    pub fn crowd(now: u64) -> impl Iterator<Item = Runnable> {
        let mut pid = 100;
        let mut all = Vec::new();
        for weight in [1, 50, 100, 1000, 10000] {
            for vtime in [0, now - S / 3, now] {
                for exec in [0, S / 7, 1000 * S] {
                    for level in [None, Some(1), Some(2), Some(9), Some(64), Some(u32::MAX)] {
                        pid += 1;
                        let mut t = task(pid, weight, vtime, exec);
                        t.priority = level;
                        t.wakeup = exec == 0;
                        all.push(t);
                    }
                }
            }
        }
        all.into_iter()
    }

    #[test]
    fn top_priority_goes_first_and_preempts() {
        let now = 1_000_000_000_000;
        let mut p = policy();
        let mut q = RunQueue::with_capacity(4096);
        // The guarantee covers tasks decided with the clock where it is now
        // or later (earlier ones waited long enough to go first).
        p.decide(&task(99, 100, now, 0), 0);
        for t in crowd(now) {
            q.push(t, p.decide(&t, 0)).unwrap();
        }
        // Worst case for the top task: lightest weight, the clock's vtime,
        // the full exec_runtime penalty.
        let top = boosted(task(1, 1, now, 1000 * S), 0, true);
        let d = p.decide(&top, 0);
        assert!(d.preempt);
        q.push(top, d).unwrap();
        // Decided later, after the clock moved on: still behind.
        for t in crowd(now + 3 * S) {
            q.push(t, p.decide(&t, 0)).unwrap();
        }

        let (first, d) = q.pop().unwrap();
        assert_eq!((first.pid, d.preempt), (1, true));
        while let Some((t, d)) = q.pop() {
            assert_ne!(t.priority, Some(0));
            assert!(!d.preempt, "only level 0 preempts");
        }
    }

    #[test]
    fn top_task_preempts_only_when_it_wakes_up() {
        let now = 1_000_000_000_000;
        let mut p = policy();
        let normal = task(2, 100, now, 0);
        let dn = p.decide(&normal, 0);
        let requeued = boosted(task(1, 100, now, 3 * S), 0, false);
        let d = p.decide(&requeued, 0);
        assert!(!d.preempt);
        assert!(before(d.deadline, dn.deadline));
        assert!(p.decide(&boosted(requeued, 0, true), 0).preempt);
        assert!(!p.decide(&boosted(requeued, 1, true), 0).preempt);
    }

    #[test]
    fn lower_levels_get_gentler_boosts() {
        let now = 1_000_000_000_000;
        let mut p = policy();
        let t = task(1, 100, now, S);
        let plain = p.decide(&t, 0).deadline;
        let at = |p: &mut Policy, level| plain - p.decide(&boosted(t, level, true), 0).deadline;
        assert_eq!(at(&mut p, 0), BOOST_TOP_SLICES * S);
        assert_eq!(at(&mut p, 1), BOOST_BASE_SLICES * S);
        assert_eq!(at(&mut p, 2), BOOST_BASE_SLICES * S / 2);
        assert_eq!(at(&mut p, 3), BOOST_BASE_SLICES * S / 4);
        assert_eq!(at(&mut p, 65), 0);
        assert_eq!(at(&mut p, u32::MAX), 0);
    }

    /// One CPU, a boosted CPU hog `H` and a plain nice-0 CPU hog `N`, both
    /// always runnable; each round the earliest deadline runs its slice, BPF
    /// charges `slice * 100 / weight` and the task is decided again. The
    /// clocks start just before u64 wrap-around and cross it.
    ///
    /// Proves the module-level bound: while `N` waits, `H` is charged at most
    /// `boost + 11 S` plus two of its slices of weighted runtime. With the
    /// default slice split between the two (S/2 per round), a nice-0 level-0
    /// hog therefore runs at most 58 rounds in a row; measured here, and `H`
    /// still gets the bulk of the CPU.
    #[test]
    fn boosted_hog_cannot_starve_others() {
        struct Case {
            level: u32,
            weight: u32,
            rule_slice_ns: u64,
            max_rounds_in_a_row: u64,
        }
        let cases = [
            Case {
                level: 0,
                weight: 100,
                rule_slice_ns: 0,
                max_rounds_in_a_row: 58,
            },
            Case {
                level: 0,
                weight: 100,
                rule_slice_ns: 2 * S,
                max_rounds_in_a_row: 15,
            },
            Case {
                level: 0,
                weight: 1000,
                rule_slice_ns: 0,
                max_rounds_in_a_row: 544,
            },
            Case {
                level: 1,
                weight: 100,
                rule_slice_ns: 0,
                max_rounds_in_a_row: 34,
            },
            Case {
                level: 3,
                weight: 100,
                rule_slice_ns: 0,
                max_rounds_in_a_row: 28,
            },
        ];
        for c in cases {
            let mut p = policy();
            let mut q = RunQueue::with_capacity(2);
            let start = u64::MAX - 20 * S;
            let mut hog = boosted(task(1, c.weight, start, 0), c.level, true);
            hog.rule_slice_ns = c.rule_slice_ns;
            let normal = task(2, 100, start, 0);
            for t in [hog, normal] {
                q.push(t, p.decide(&t, 1)).unwrap();
            }
            let boost = match c.level {
                0 => BOOST_TOP_SLICES * S,
                n => (BOOST_BASE_SLICES * S) >> (n - 1),
            };
            let hog_slice = if c.rule_slice_ns != 0 {
                c.rule_slice_ns
            } else {
                S
            };
            let bound = boost
                + (EXEC_CAP_SLICES + CREDIT_SLICES) * S
                + 2 * hog_slice * 100 / c.weight as u64;

            let (mut hog_while_waiting, mut in_a_row, mut max_in_a_row) = (0, 0, 0);
            let (mut hog_cpu, mut total_cpu, mut normal_runs) = (0, 0, 0);
            for _ in 0..20_000 {
                let (mut t, d) = q.pop().unwrap();
                let charged = d.slice_ns * 100 / t.weight as u64;
                total_cpu += d.slice_ns;
                if t.pid == 1 {
                    hog_cpu += d.slice_ns;
                    hog_while_waiting += charged;
                    in_a_row += 1;
                    max_in_a_row = max_in_a_row.max(in_a_row);
                    assert!(
                        hog_while_waiting <= bound,
                        "level {}: {hog_while_waiting} > {bound}",
                        c.level
                    );
                } else {
                    normal_runs += 1;
                    in_a_row = 0;
                }
                // BPF's ops.stopping, then the task is queued again.
                t.vtime = d.vtime.wrapping_add(charged);
                t.exec_runtime += d.slice_ns;
                t.wakeup = false;
                t.gen += 1;
                if t.pid == 2 {
                    hog_while_waiting = 0;
                }
                q.push(t, p.decide(&t, q.len())).unwrap();
            }
            assert!(normal_runs > 0);
            assert!(
                max_in_a_row <= c.max_rounds_in_a_row,
                "level {}: {max_in_a_row} rounds",
                c.level
            );
            let share = hog_cpu as f64 / total_cpu as f64;
            // In the long run a boost is a bounded lead, not a bigger share:
            // the CPU splits by weight alone.
            let fair = f64::from(c.weight) / f64::from(c.weight + 100);
            assert!(
                (share - fair).abs() < 0.02,
                "level {}: hog share {share}, fair share {fair}",
                c.level
            );
            assert!(p.vtime_now < start, "the clock wrapped around");
        }
    }

    #[test]
    fn slice_shrinks_with_waiting_tasks_but_not_below_min() {
        let mut p = policy();
        let t = task(1, 100, 0, 0);
        assert_eq!(p.decide(&t, 0).slice_ns, S);
        assert_eq!(p.decide(&t, 1).slice_ns, S / 2);
        assert_eq!(p.decide(&t, 4).slice_ns, S / 5);
        assert_eq!(p.decide(&t, 1000).slice_ns, MIN);
        assert_eq!(p.decide(&t, usize::MAX).slice_ns, MIN);
        // A strategy's slice wins, however crowded.
        let custom = Runnable {
            rule_slice_ns: 7 * S,
            ..t
        };
        assert_eq!(p.decide(&custom, 1000).slice_ns, 7 * S);

        // Nonsense parameters still never give a zero slice.
        let mut zero = Policy::new(PolicyParams {
            slice_ns: 0,
            slice_min_ns: 0,
        });
        assert_eq!(zero.decide(&t, usize::MAX).slice_ns, 1);
        let mut inverted = Policy::new(PolicyParams {
            slice_ns: S,
            slice_min_ns: 10 * S,
        });
        assert_eq!(inverted.decide(&t, 1000).slice_ns, S);
    }

    #[test]
    fn deadline_order_survives_wraparound() {
        let mut q = RunQueue::with_capacity(16);
        let decided = |deadline| Decision {
            vtime: 0,
            deadline,
            slice_ns: S,
            preempt: false,
        };
        let deadlines = [3, u64::MAX, 0, u64::MAX - 100, u64::MAX - 5, 0];
        for (pid, deadline) in deadlines.into_iter().enumerate() {
            q.push(task(pid as i32, 100, 0, 0), decided(deadline))
                .unwrap();
        }
        let mut order = Vec::new();
        while let Some((t, d)) = q.pop() {
            order.push((d.deadline, t.pid, t.gen));
        }
        // Equal deadlines come out in the order they were pushed.
        assert_eq!(
            order,
            [
                (u64::MAX - 100, 3, 3),
                (u64::MAX - 5, 4, 4),
                (u64::MAX, 1, 1),
                (0, 2, 2),
                (0, 5, 5),
                (3, 0, 0)
            ]
        );

        // The policy's clock and credit wrap too.
        let mut p = policy();
        p.decide(&task(1, 100, u64::MAX - S / 2, 0), 0);
        assert_eq!(p.decide(&task(2, 100, 10, 0), 0).vtime, 10);
        let sleeper = p.decide(&task(3, 100, u64::MAX - 10 * S, 0), 0);
        assert_eq!(sleeper.vtime, 10u64.wrapping_sub(S));
        let hog = p.decide(&task(4, 100, 10, 3 * S), 0);
        assert!(before(sleeper.deadline, hog.deadline));
    }

    #[test]
    fn queue_never_grows_past_capacity() {
        let mut q = RunQueue::with_capacity(8);
        let reserved = q.heap.capacity();
        assert!(q.is_empty());
        let mut p = policy();
        for pid in 0..8 {
            let t = task(pid, 100, 0, 0);
            assert!(q.push(t, p.decide(&t, 0)).is_ok());
        }
        let extra = task(8, 100, 0, 0);
        let (back, _) = q.push(extra, p.decide(&extra, 0)).unwrap_err();
        assert_eq!(back.pid, 8);
        assert_eq!(q.len(), 8);
        assert_eq!(q.heap.capacity(), reserved);

        let (t, d) = q.pop().unwrap();
        assert_eq!(
            (t.cpu, t.nr_cpus_allowed),
            (0, 4),
            "entries come back intact"
        );
        assert_eq!(q.len(), 7);
        assert!(q.push(t, d).is_ok());
        assert!(q.push(t, d).is_err());
        assert_eq!(q.heap.capacity(), reserved);
        while q.pop().is_some() {}
        assert!(q.is_empty());

        let mut none = RunQueue::with_capacity(0);
        assert!(none.push(t, d).is_err());
    }
}
