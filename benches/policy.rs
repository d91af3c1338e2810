//! Cost of the per-task hot path: `Policy::decide` + `RunQueue` push/pop,
//! and `Topology::pick_cpu` on a fake 64-CPU machine, over synthetic task
//! streams with mixed weights, with and without strategies. Also proves the
//! hot path allocates nothing, with a counting global allocator.
//!
//! Run with `cargo bench --bench policy`.

// A bench cannot see the binary crate's modules, so it compiles them again.
// Cargo builds it with cfg(test) but no harness: the modules are public so
// their (harness-less, hence unused) test helpers do not count as dead code.
#[path = "../src/policy.rs"]
pub mod policy;
#[path = "../src/topology.rs"]
pub mod topology;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use policy::{Decision, Policy, PolicyParams, RunQueue, Runnable};
use topology::{IdleCpus, Topology};

/// Counts every allocation (and reallocation) made through the global
/// allocator.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to System unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SLICE_NS: u64 = 5_000_000;
const SLICE_MIN_NS: u64 = 500_000;
/// Distinct tasks in the stream.
const TASKS: usize = 4096;
/// Tasks decided per scheduling round (one ring-buffer drain).
const ROUND: usize = 512;
const ROUNDS_PER_RUN: usize = 400;
const RUNS: usize = 9;
const CPUS: usize = 64;

/// xorshift64*: deterministic, allocation-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn make_tasks(rng: &mut Rng, strategies: bool) -> Vec<Runnable> {
    // Mostly nice 0, the rest spread over the whole weight range.
    const WEIGHTS: [u32; 10] = [1, 15, 50, 100, 100, 100, 100, 400, 1000, 10000];
    (0..TASKS)
        .map(|i| {
            let (priority, rule_slice_ns) = if strategies {
                let priority = match rng.below(20) {
                    0 => Some(0),
                    1 | 2 => Some(1),
                    3 | 4 => Some(3),
                    _ => None,
                };
                let slice = if priority.is_some() && rng.below(3) == 0 {
                    1_000_000 * (1 + rng.below(20))
                } else {
                    0
                };
                (priority, slice)
            } else {
                (None, 0)
            };
            Runnable {
                pid: i as i32,
                cpu: rng.below(CPUS as u64) as i32,
                // One task in eight is pinned to a single CPU.
                nr_cpus_allowed: if rng.below(8) == 0 { 1 } else { CPUS as u32 },
                weight: WEIGHTS[rng.below(WEIGHTS.len() as u64) as usize],
                vtime: rng.below(1_000_000_000),
                exec_runtime: 0,
                wakeup: true,
                priority,
                rule_slice_ns,
                gen: 0,
            }
        })
        .collect()
}

/// A fake sysfs tree for 64 CPUs: L2 shared by pairs, two L3s of 32.
fn fake_topology() -> Topology {
    let root = std::env::temp_dir().join(format!("gthulhu-bench-topology-{}", std::process::id()));
    let cpu_dir = root.join("devices/system/cpu");
    let write = |rel: String, text: String| {
        let path = cpu_dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    write("online".into(), format!("0-{}\n", CPUS - 1));
    for cpu in 0..CPUS {
        let l3 = if cpu < CPUS / 2 {
            (0, CPUS / 2 - 1)
        } else {
            (CPUS / 2, CPUS - 1)
        };
        for (index, level, kind, shared) in [
            (0, 1, "Data", format!("{cpu}")),
            (1, 1, "Instruction", format!("{cpu}")),
            (2, 2, "Unified", format!("{}-{}", cpu & !1, cpu | 1)),
            (3, 3, "Unified", format!("{}-{}", l3.0, l3.1)),
        ] {
            let dir = format!("cpu{cpu}/cache/index{index}");
            write(format!("{dir}/level"), format!("{level}\n"));
            write(format!("{dir}/type"), format!("{kind}\n"));
            write(format!("{dir}/shared_cpu_list"), format!("{shared}\n"));
        }
    }
    let topo = Topology::from_sysfs(Path::new(&root)).expect("fake topology");
    fs::remove_dir_all(&root).ok();
    topo
}

struct RunResult {
    decide: Duration,
    pick: Duration,
    decisions: u64,
    picks: u64,
    allocations: u64,
    checksum: u64,
}

/// One run: rounds of ROUND tasks are decided into the queue, popped in
/// deadline order and placed; then BPF's side is simulated (charge vtime,
/// sometimes sleep) outside the timed parts.
fn run(tasks: &mut [Runnable], topo: &Topology, rng: &mut Rng) -> RunResult {
    let mut policy = Policy::new(PolicyParams {
        slice_ns: SLICE_NS,
        slice_min_ns: SLICE_MIN_NS,
    });
    let mut queue = RunQueue::with_capacity(ROUND);
    let mut popped: Vec<(Runnable, Decision)> = Vec::with_capacity(ROUND);
    let mut placed: Vec<i32> = Vec::with_capacity(ROUND);
    let (mut decide, mut pick) = (Duration::ZERO, Duration::ZERO);
    let (mut decisions, mut picks, mut checksum) = (0, 0, 0u64);
    let mut cursor = 0;

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..ROUNDS_PER_RUN {
        // Policy: decide the whole drain, then hand it out by deadline.
        let start = Instant::now();
        for i in 0..ROUND {
            let t = &tasks[(cursor + i) % TASKS];
            let d = policy.decide(t, ROUND - i - 1 + queue.len());
            if queue.push(*t, d).is_err() {
                unreachable!("queue sized for a round");
            }
        }
        while let Some(entry) = queue.pop() {
            popped.push(entry);
        }
        decide += start.elapsed();
        decisions += ROUND as u64;
        debug_assert!(queue.is_empty());

        // Topology: place each task, refreshing the idle mask every 32.
        let start = Instant::now();
        let mut idle = IdleCpus::from_words([0; 16]);
        for (i, (t, d)) in popped.iter().enumerate() {
            if i % 32 == 0 {
                let mut words = [0; 16];
                words[0] = rng.next() & rng.next();
                idle = IdleCpus::from_words(words);
            }
            let cpu = match topo.pick_cpu(t.cpu, t.nr_cpus_allowed, &mut idle) {
                Some(cpu) => cpu as i32,
                None if d.preempt || t.nr_cpus_allowed == 1 => t.cpu,
                None => -1,
            };
            debug_assert!(
                cpu < 0 || !idle.is_idle(cpu as u32),
                "picked CPUs are claimed"
            );
            placed.push(cpu);
        }
        pick += start.elapsed();
        picks += popped.len() as u64;
        checksum = checksum.wrapping_add(u64::from(idle.count()));

        // BPF: the task runs its slice on that CPU, then sleeps or stays
        // runnable and is queued again.
        for ((t, d), cpu) in popped.drain(..).zip(placed.drain(..)) {
            let task = &mut tasks[t.pid as usize];
            let ran = d.slice_ns / (1 + rng.below(4));
            task.vtime = d.vtime.wrapping_add(ran * 100 / u64::from(task.weight));
            task.wakeup = rng.below(2) == 0;
            task.exec_runtime = if task.wakeup {
                0
            } else {
                task.exec_runtime + ran
            };
            task.cpu = if cpu >= 0 { cpu } else { t.cpu };
            task.gen = t.gen + 1;
            checksum = checksum.wrapping_add(d.deadline ^ u64::from(d.preempt));
        }
        cursor = (cursor + ROUND + rng.below(64) as usize) % TASKS;
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    RunResult {
        decide,
        pick,
        decisions,
        picks,
        allocations,
        checksum,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let topo = fake_topology();
    assert_eq!(topo.nr_online(), CPUS as u32);
    let mut allocations = 0;
    let mut decisions = 0;
    for (name, strategies) in [("no strategies", false), ("with strategies", true)] {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut tasks = make_tasks(&mut rng, strategies);
        let (mut decide_ns, mut pick_ns) = (Vec::new(), Vec::new());
        // One warm-up run, then the measured ones.
        black_box(run(&mut tasks, &topo, &mut rng).checksum);
        for _ in 0..RUNS {
            let r = run(&mut tasks, &topo, &mut rng);
            decide_ns.push(r.decide.as_nanos() as f64 / r.decisions as f64);
            pick_ns.push(r.pick.as_nanos() as f64 / r.picks as f64);
            allocations += r.allocations;
            decisions += r.decisions;
            black_box(r.checksum);
        }
        println!(
            "{name}: decide + queue push/pop: {:.1} ns per decision, pick_cpu (64 CPUs): {:.1} ns per pick \
             (median of {RUNS} runs x {} decisions)",
            median(decide_ns),
            median(pick_ns),
            ROUNDS_PER_RUN * ROUND,
        );
    }
    let per_decision = allocations as f64 / decisions as f64;
    println!("allocations per decision: {per_decision} ({allocations} in {decisions} decisions)");
    if allocations != 0 {
        std::process::exit(1);
    }
}
