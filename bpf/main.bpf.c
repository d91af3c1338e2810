/* SPDX-License-Identifier: GPL-2.0 */
/*
 * gthulhu: the kernel half of a sched_ext scheduler whose decisions are made
 * in user space.
 *
 * ops.enqueue sends each runnable task to user space over the "queued" ring
 * buffer. User space orders the tasks, picks a CPU, a time slice and a
 * deadline, and sends its decisions back over the "dispatched" user ring
 * buffer, which ops.dispatch drains into vtime-ordered dispatch queues: one
 * per CPU and a shared one.
 *
 * Some tasks never wait on user space: kernel threads, the scheduler's own
 * helper threads, and any task that finds the ring buffer full. They are
 * dispatched here, with the same strategy rules user space would apply.
 * The scheduler's main thread has a queue of its own and only runs when it
 * has work, or when the heartbeat timer says it is due.
 */
#define BPF_NO_KFUNC_PROTOTYPES
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "intf.h"
#include "compat.h"

char _license[] SEC("license") = "GPL";

#define BPF_STRUCT_OPS(name, args...) \
	SEC("struct_ops/" #name) BPF_PROG(name, ##args)
#define BPF_STRUCT_OPS_SLEEPABLE(name, args...) \
	SEC("struct_ops.s/" #name) BPF_PROG(name, ##args)

#define PF_KTHREAD 0x00200000
#define CLOCK_MONOTONIC 1
#define ENOMEM 12
#define ESRCH 3
#define E2BIG 7
#define NSEC_PER_MSEC 1000000ULL
#define HEARTBEAT_NS (100 * NSEC_PER_MSEC)
#define EXIT_REASON_LEN 128
#define EXIT_MSG_LEN 1024

/* Set by user space before load. */
const volatile s32 usersched_pid;	/* the scheduling loop's thread */
const volatile s32 usersched_tgid;	/* the scheduler process */
const volatile u64 slice_ns = 5 * NSEC_PER_MSEC;
const volatile u64 slice_ns_min = 500 * 1000;

/*
 * Never read: declared so the generated skeleton carries the ring buffer
 * record layouts and the Rust side uses them instead of a copy.
 */
const volatile struct queued_task queued_task_layout;
const volatile struct dispatched_task dispatched_task_layout;

/* Counters, named as Gthulhu names them. See README "Counters". */
u64 nr_queued;			/* tasks sent to user space */
u64 nr_scheduled;		/* tasks user space holds (written by user space) */
u64 nr_running;			/* tasks running on a CPU now */
u64 nr_online_cpus;		/* written by user space at attach */
u64 nr_user_dispatches;		/* user-space decisions applied */
u64 nr_kernel_dispatches;	/* tasks dispatched here, bypassing user space */
u64 nr_cancel_dispatches;	/* stale decisions dropped */
u64 nr_bounce_dispatches;	/* decisions whose CPU the task may not use */
u64 nr_failed_dispatches;	/* malformed decisions */
u64 nr_sched_congested;		/* tasks that found "queued" full */
u64 usersched_last_run_at;	/* ns timestamp the scheduler last ran */
/* Proof that strategies take effect: runs of tasks a rule selects, and how
 * many of those started with exactly the rule's time slice. */
u64 nr_rule_runs;
u64 nr_rule_slice_runs;

/* Idle CPUs, one bit each, read by user space to place tasks. */
u64 idle_mask[IDLE_MASK_WORDS];

/* The kernel's exit kind, code, reason and message, read after detach. */
u32 exit_kind;
s64 exit_code;
char exit_reason[EXIT_REASON_LEN];
char exit_msg[EXIT_MSG_LEN];

/* Highest vtime any task started running with: the clock of new tasks. */
static u64 vtime_now;
/* Set by the heartbeat: the scheduler runs even if nothing is queued. */
static bool usersched_needed;
/* A level-0 task was just put on this CPU to preempt what runs there. */
static bool boost_preempting[MAX_CPUS];

struct task_ctx {
	u64 gen;		/* bumped on every enqueue, dequeue and dispatch */
	u64 vtime;		/* weighted CPU time consumed */
	u64 exec_runtime;	/* CPU time since the task last woke up */
	u64 start_ts;		/* when the task started its current run */
	u64 rule_slice_ns;	/* slice of the rule it was enqueued under, 0: none */
	u64 enqueued_at;	/* when it was last enqueued, 0: not measured */
	u64 last_deadline;	/* of user space's last decision for it */
	u64 last_slice_ns;	/* ... and the slice that decision gave */
	u32 slot;		/* stats slot of the rule of its last enqueue */
	bool has_rule;		/* a strategy selected it at its last enqueue */
	bool boosted;		/* ... with a priority level, not just a slice */
	bool preempted;		/* a level-0 wake-up took its CPU from it */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task_ctx);
} task_ctx_stor SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} queued SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 1 << 20);
} dispatched SEC(".maps");

/*
 * Strategy rules mirrored from user space: thread id first, then process id,
 * so a rule on a process covers every thread, including ones not yet born.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_RULES);
	__type(key, s32);
	__type(value, struct task_rule);
} task_rules SEC(".maps");

/* Per-strategy statistics, written on the scheduling path: per CPU so no
 * two CPUs share a cache line, looked up by index (no hashing). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_SLOTS);
	__type(key, u32);
	__type(value, struct slot_stats);
} slot_stats SEC(".maps");

struct heartbeat {
	struct bpf_timer timer;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct heartbeat);
} heartbeat_timer SEC(".maps");

static struct task_ctx *lookup_task_ctx(struct task_struct *p)
{
	return bpf_task_storage_get(&task_ctx_stor, p, 0, 0);
}

static const struct task_rule *lookup_rule(const struct task_struct *p)
{
	s32 pid = p->pid, tgid = p->tgid;
	struct task_rule *rule;

	rule = bpf_map_lookup_elem(&task_rules, &pid);
	if (rule)
		return rule;
	return bpf_map_lookup_elem(&task_rules, &tgid);
}

static u32 slot_of(const struct task_rule *rule)
{
	if (!rule)
		return SLOT_UNMATCHED;
	return rule->strategy < MAX_STRATEGY_SLOTS ? rule->strategy : SLOT_OTHER;
}

static struct slot_stats *lookup_stats(u32 slot)
{
	return bpf_map_lookup_elem(&slot_stats, &slot);
}

/* Called at every enqueue that looked the rule up: the wait starts now. */
static void remember_rule(struct task_ctx *tctx, const struct task_rule *rule)
{
	tctx->has_rule = rule != NULL;
	tctx->boosted = rule && rule->priority < PRIO_LEVELS;
	tctx->rule_slice_ns = rule ? rule->slice_ns : 0;
	tctx->slot = slot_of(rule);
	tctx->enqueued_at = bpf_ktime_get_ns();
}

static void count_dispatch(u32 slot)
{
	struct slot_stats *st = lookup_stats(slot);

	if (st)
		st->dispatches++;
}

/* Index of the highest set bit, 0 for 0 and 1. */
static u32 log2_u64(u64 v)
{
	u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) r += 1;
	return r;
}

static void record_wait(u32 slot, u64 wait_ns)
{
	struct slot_stats *st = lookup_stats(slot);
	u32 bucket = log2_u64(wait_ns);

	if (!st)
		return;
	if (bucket >= LAT_BUCKETS)
		bucket = LAT_BUCKETS - 1;
	st->lat[bucket]++;
	st->lat_sum_ns += wait_ns;
}

static bool is_usersched(const struct task_struct *p)
{
	return p->pid == usersched_pid;
}

static bool time_before(u64 a, u64 b)
{
	return (s64)(a - b) < 0;
}

static void set_idle(s32 cpu, bool idle)
{
	u32 word = (u32)cpu / 64;
	u64 bit = 1ULL << ((u32)cpu % 64);

	if (word >= IDLE_MASK_WORDS)
		return;
	if (idle)
		__sync_fetch_and_or(&idle_mask[word], bit);
	else
		__sync_fetch_and_and(&idle_mask[word], ~bit);
}

/* Work is waiting for user space, or the heartbeat asks it to run. */
static bool usersched_has_work(void)
{
	return usersched_needed || nr_scheduled ||
	       bpf_ringbuf_query(&queued, BPF_RB_AVAIL_DATA) > 0;
}

/* Kick an idle CPU the task may use, so it does not wait for a tick. */
static void kick_idle_cpu(const struct task_struct *p)
{
	s32 cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);

	if (cpu >= 0)
		scx_bpf_kick_cpu(cpu, SCX_KICK_IDLE);
}

/*
 * A level-0 task goes straight to a CPU (an idle one, or its own,
 * preempting what runs there) only while its virtual time is at most
 * TOP_BOOST_SLICES default slices ahead of the clock: the same bound user
 * space applies (src/policy.rs), so a level-0 task that keeps a CPU busy
 * loses this and waits its turn like the others.
 */
#define TOP_BOOST_SLICES 16

static bool within_top_boost(const struct task_ctx *tctx)
{
	return !time_before(vtime_now + TOP_BOOST_SLICES * slice_ns, tctx->vtime);
}

/* Run a level-0 task next on its CPU, preempting the task running there. */
static void insert_top_preempting(struct task_struct *p, u64 slice, u64 enq_flags)
{
	u32 cpu = scx_bpf_task_cpu(p);

	if (cpu < MAX_CPUS)
		boost_preempting[cpu] = true;
	dsq_insert(p, SCX_DSQ_LOCAL, slice, enq_flags | SCX_ENQ_PREEMPT);
	__sync_fetch_and_add(&nr_kernel_dispatches, 1);
}

/*
 * The task a level-0 wake-up preempted already had user space's decision
 * and was running on it: it goes back to the head of its CPU's line (its
 * queue, by that decision's deadline) here, without a round trip through
 * user space that would also put the scheduler on this CPU next.
 */
static bool requeue_preempted(struct task_struct *p, struct task_ctx *tctx, u64 enq_flags)
{
	s32 cpu;

	if (!tctx->preempted)
		return false;
	tctx->preempted = false;
	cpu = scx_bpf_task_cpu(p);
	if (enq_flags & SCX_ENQ_WAKEUP || !tctx->last_slice_ns ||
	    !bpf_cpumask_test_cpu(cpu, p->cpus_ptr))
		return false;
	tctx->gen++;
	dsq_insert_vtime(p, cpu, tctx->last_slice_ns, tctx->last_deadline, enq_flags);
	__sync_fetch_and_add(&nr_kernel_dispatches, 1);
	count_dispatch(tctx->slot);
	return true;
}

/*
 * Dispatch a task without asking user space: the task keeps its virtual
 * time, bounded so a long sleeper cannot monopolize the CPU, and gets its
 * strategy's slice and priority.
 */
static void dispatch_in_kernel(struct task_struct *p, u64 enq_flags)
{
	const struct task_rule *rule = lookup_rule(p);
	struct task_ctx *tctx = lookup_task_ctx(p);
	u64 slice = slice_ns, vtime = vtime_now;

	count_dispatch(slot_of(rule));
	if (tctx) {
		remember_rule(tctx, rule);
		vtime = tctx->vtime;
		if (time_before(vtime, vtime_now - slice_ns))
			vtime = vtime_now - slice_ns;
		tctx->vtime = vtime;
		tctx->gen++;
	}
	if (rule) {
		if (rule->slice_ns)
			slice = rule->slice_ns;
		if (rule->priority == PRIO_TOP && tctx && within_top_boost(tctx)) {
			insert_top_preempting(p, slice, enq_flags);
			return;
		}
		if (rule->priority < PRIO_LEVELS)
			vtime -= slice_ns >> rule->priority;
	}
	dsq_insert_vtime(p, SHARED_DSQ, slice, vtime, enq_flags);
	__sync_fetch_and_add(&nr_kernel_dispatches, 1);
	kick_idle_cpu(p);
}

/* A waking level-0 task skips the round trip through user space. */
static const struct task_rule *top_priority_wakeup(struct task_struct *p)
{
	const struct task_rule *rule = lookup_rule(p);
	struct task_ctx *tctx;

	if (!rule || rule->priority != PRIO_TOP)
		return NULL;
	tctx = lookup_task_ctx(p);
	return tctx && within_top_boost(tctx) ? rule : NULL;
}

static u64 rule_slice(const struct task_rule *rule)
{
	return rule->slice_ns ?: slice_ns;
}

s32 BPF_STRUCT_OPS(gthulhu_select_cpu, struct task_struct *p, s32 prev_cpu,
		   u64 wake_flags)
{
	const struct task_rule *rule = NULL;
	bool is_idle = false;
	s32 cpu;

	/* User space places every other task. */
	if (!is_usersched(p) && !(rule = top_priority_wakeup(p)))
		return prev_cpu;
	cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &is_idle);
	if (is_idle) {
		dsq_insert(p, SCX_DSQ_LOCAL, rule ? rule_slice(rule) : SCX_SLICE_DFL, 0);
		__sync_fetch_and_add(&nr_kernel_dispatches, 1);
	}
	return cpu;
}

void BPF_STRUCT_OPS(gthulhu_enqueue, struct task_struct *p, u64 enq_flags)
{
	const struct task_rule *rule;
	struct queued_task *task;
	struct task_ctx *tctx;

	if (is_usersched(p)) {
		/* Woken up (timer, signal, new work): run as soon as a CPU asks. */
		if (enq_flags & SCX_ENQ_WAKEUP)
			usersched_needed = true;
		dsq_insert(p, SCHED_DSQ, SCX_SLICE_DFL, enq_flags);
		__sync_fetch_and_add(&nr_kernel_dispatches, 1);
		return;
	}

	/* Per-CPU kernel threads run where they are, right away. */
	if ((p->flags & PF_KTHREAD) && p->nr_cpus_allowed == 1) {
		dsq_insert(p, SCX_DSQ_LOCAL, slice_ns, enq_flags);
		__sync_fetch_and_add(&nr_kernel_dispatches, 1);
		return;
	}

	/*
	 * Other kernel threads (kswapd, khugepaged, unbound workers) and the
	 * scheduler's helper threads must not wait on user space: memory
	 * reclaim and config reloads have to progress even when it is busy.
	 */
	if ((p->flags & PF_KTHREAD) || p->tgid == usersched_tgid) {
		dispatch_in_kernel(p, enq_flags);
		return;
	}

	tctx = lookup_task_ctx(p);
	if (!tctx) {
		dispatch_in_kernel(p, enq_flags);
		return;
	}

	/* No idle CPU for a waking top-priority task: preempt its CPU. */
	if ((enq_flags & SCX_ENQ_WAKEUP) && (rule = top_priority_wakeup(p))) {
		remember_rule(tctx, rule);
		tctx->gen++;
		insert_top_preempting(p, rule_slice(rule), enq_flags);
		return;
	}

	if (requeue_preempted(p, tctx, enq_flags))
		return;

	task = bpf_ringbuf_reserve(&queued, sizeof(*task), 0);
	if (!task) {
		__sync_fetch_and_add(&nr_sched_congested, 1);
		dispatch_in_kernel(p, enq_flags);
		return;
	}

	tctx->gen++;
	task->pid = p->pid;
	task->tgid = p->tgid;
	task->cpu = scx_bpf_task_cpu(p);
	task->nr_cpus_allowed = p->nr_cpus_allowed;
	task->flags = (enq_flags & SCX_ENQ_WAKEUP) ? QF_WAKEUP : 0;
	task->weight = p->scx.weight;
	task->gen = tctx->gen;
	task->vtime = tctx->vtime;
	task->exec_runtime = tctx->exec_runtime;
	rule = lookup_rule(p);
	remember_rule(tctx, rule);
	task->priority = rule ? rule->priority : PRIO_NONE;
	task->slice_ns = rule ? rule->slice_ns : 0;
	task->pad = 0;
	bpf_ringbuf_submit(task, 0);
	__sync_fetch_and_add(&nr_queued, 1);
}

void BPF_STRUCT_OPS(gthulhu_dequeue, struct task_struct *p, u64 deq_flags)
{
	struct task_ctx *tctx = lookup_task_ctx(p);

	/* A decision user space makes for the old enqueue is now stale. */
	if (tctx)
		tctx->gen++;
}

/* Apply one decision from user space; stale or bad ones are dropped. */
static long apply_decision(struct bpf_dynptr *dynptr, void *ctx)
{
	struct dispatched_task d;
	struct task_struct *p;
	struct task_ctx *tctx;
	u64 dsq_id, enq_flags = 0;
	s32 cpu;

	if (bpf_dynptr_read(&d, sizeof(d), dynptr, 0, 0)) {
		__sync_fetch_and_add(&nr_failed_dispatches, 1);
		return 0;
	}

	p = bpf_task_from_pid(d.pid);
	if (!p) {
		/* The task exited while user space held it. */
		__sync_fetch_and_add(&nr_cancel_dispatches, 1);
		return 0;
	}

	tctx = lookup_task_ctx(p);
	if (!tctx || tctx->gen != d.gen) {
		/* Re-enqueued, dequeued or already dispatched since. */
		__sync_fetch_and_add(&nr_cancel_dispatches, 1);
		goto out;
	}
	tctx->gen++;
	tctx->vtime = d.vtime;
	tctx->last_deadline = d.deadline;
	tctx->last_slice_ns = d.slice_ns;

	cpu = d.cpu;
	if (cpu >= MAX_CPUS || cpu < CPU_ANY) {
		__sync_fetch_and_add(&nr_failed_dispatches, 1);
		cpu = CPU_ANY;
	} else if (cpu >= 0 && !bpf_cpumask_test_cpu(cpu, p->cpus_ptr)) {
		/* Affinity changed under the decision: let any allowed CPU run it. */
		__sync_fetch_and_add(&nr_bounce_dispatches, 1);
		cpu = CPU_ANY;
	}

	if (cpu >= 0) {
		dsq_id = cpu;
		if (d.flags & DF_PREEMPT)
			enq_flags |= SCX_ENQ_PREEMPT;
	} else {
		dsq_id = SHARED_DSQ;
	}
	dsq_insert_vtime(p, dsq_id, d.slice_ns, d.deadline, enq_flags);
	__sync_fetch_and_add(&nr_user_dispatches, 1);
	count_dispatch(tctx->slot);

	if (cpu >= 0)
		scx_bpf_kick_cpu(cpu, (d.flags & DF_PREEMPT) ? SCX_KICK_PREEMPT : SCX_KICK_IDLE);
	else
		kick_idle_cpu(p);
out:
	bpf_task_release(p);
	/* Stop while the dispatch buffer has room for one more. */
	return scx_bpf_dispatch_nr_slots() ? 0 : 1;
}

void BPF_STRUCT_OPS(gthulhu_dispatch, s32 cpu, struct task_struct *prev)
{
	bpf_user_ringbuf_drain(&dispatched, apply_decision, NULL, 0);

	/* The scheduler goes first when it has work: everything waits on it. */
	if (usersched_has_work() && dsq_move_to_local(SCHED_DSQ)) {
		usersched_needed = false;
		return;
	}
	if (dsq_move_to_local(cpu))
		return;
	dsq_move_to_local(SHARED_DSQ);
}

void BPF_STRUCT_OPS(gthulhu_runnable, struct task_struct *p, u64 enq_flags)
{
	struct task_ctx *tctx = lookup_task_ctx(p);

	if (tctx && (enq_flags & SCX_ENQ_WAKEUP))
		tctx->exec_runtime = 0;
}

void BPF_STRUCT_OPS(gthulhu_running, struct task_struct *p)
{
	struct task_ctx *tctx = lookup_task_ctx(p);
	u64 now = bpf_ktime_get_ns();
	u32 cpu;

	__sync_fetch_and_add(&nr_running, 1);
	if (is_usersched(p))
		usersched_last_run_at = now;
	if (!tctx)
		return;
	tctx->start_ts = now;
	/* A level-0 task starting here has nobody left to preempt. */
	if (tctx->boosted && (cpu = scx_bpf_task_cpu(p)) < MAX_CPUS)
		boost_preempting[cpu] = false;
	if (tctx->enqueued_at) {
		record_wait(tctx->slot, now - tctx->enqueued_at);
		tctx->enqueued_at = 0;
	}
	if (tctx->has_rule) {
		__sync_fetch_and_add(&nr_rule_runs, 1);
		if (tctx->rule_slice_ns && p->scx.slice == tctx->rule_slice_ns)
			__sync_fetch_and_add(&nr_rule_slice_runs, 1);
	}
	/*
	 * Boosted tasks run ahead of their vtime order: letting them move the
	 * clock would let a boosted hog drag it along and never lose its boost.
	 */
	if (!tctx->boosted && time_before(vtime_now, tctx->vtime))
		vtime_now = tctx->vtime;
}

void BPF_STRUCT_OPS(gthulhu_stopping, struct task_struct *p, bool runnable)
{
	struct task_ctx *tctx = lookup_task_ctx(p);
	u64 used, weight = p->scx.weight ?: 100;
	u32 cpu = scx_bpf_task_cpu(p);
	struct slot_stats *st;

	__sync_fetch_and_sub(&nr_running, 1);
	/* The first task to stop after a level-0 preemption is its victim. */
	if (cpu < MAX_CPUS && boost_preempting[cpu]) {
		boost_preempting[cpu] = false;
		if (tctx && runnable && !is_usersched(p))
			tctx->preempted = true;
	}
	if (!tctx || !tctx->start_ts)
		return;
	used = bpf_ktime_get_ns() - tctx->start_ts;
	tctx->start_ts = 0;
	st = lookup_stats(tctx->slot);
	if (st)
		st->cpu_ns += used;
	tctx->exec_runtime += used;
	/* Weighted: a nice -5 task ages about 3x slower than a nice 0 one. */
	tctx->vtime += used * 100 / weight;
}

void BPF_STRUCT_OPS(gthulhu_update_idle, s32 cpu, bool idle)
{
	set_idle(cpu, idle);
}

s32 BPF_STRUCT_OPS(gthulhu_init_task, struct task_struct *p,
		   struct scx_init_task_args *args)
{
	struct task_ctx *tctx;

	tctx = bpf_task_storage_get(&task_ctx_stor, p, 0,
				    BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!tctx)
		return -ENOMEM;
	tctx->vtime = vtime_now;
	return 0;
}

static int heartbeat_fn(void *map, int *key, struct bpf_timer *timer)
{
	usersched_needed = true;
	scx_bpf_kick_cpu(0, SCX_KICK_IDLE);
	bpf_timer_start(timer, HEARTBEAT_NS, 0);
	return 0;
}

static long create_cpu_dsq(u32 cpu, void *ctx)
{
	s32 *err = ctx;

	*err = scx_bpf_create_dsq(cpu, -1);
	return *err ? 1 : 0;
}

s32 BPF_STRUCT_OPS_SLEEPABLE(gthulhu_init)
{
	struct bpf_timer *timer;
	u32 key = 0, nr_cpus = scx_bpf_nr_cpu_ids();
	s32 err;

	if (nr_cpus > MAX_CPUS) {
		scx_bpf_error("%u CPUs, more than the %d gthulhu supports",
			      nr_cpus, MAX_CPUS);
		return -E2BIG;
	}
	err = 0;
	bpf_loop(nr_cpus, create_cpu_dsq, &err, 0);
	if (err)
		return err;
	err = scx_bpf_create_dsq(SHARED_DSQ, -1);
	if (err)
		return err;
	err = scx_bpf_create_dsq(SCHED_DSQ, -1);
	if (err)
		return err;

	timer = bpf_map_lookup_elem(&heartbeat_timer, &key);
	if (!timer)
		return -ESRCH;
	bpf_timer_init(timer, &heartbeat_timer, CLOCK_MONOTONIC);
	bpf_timer_set_callback(timer, heartbeat_fn);
	return bpf_timer_start(timer, HEARTBEAT_NS, 0);
}

void BPF_STRUCT_OPS(gthulhu_exit, struct scx_exit_info *ei)
{
	exit_kind = ei->kind;
	exit_code = ei->exit_code;
	bpf_probe_read_kernel_str(exit_reason, sizeof(exit_reason), ei->reason);
	bpf_probe_read_kernel_str(exit_msg, sizeof(exit_msg), ei->msg);
}

SEC(".struct_ops.link")
struct sched_ext_ops gthulhu = {
	.select_cpu		= (void *)gthulhu_select_cpu,
	.enqueue		= (void *)gthulhu_enqueue,
	.dequeue		= (void *)gthulhu_dequeue,
	.dispatch		= (void *)gthulhu_dispatch,
	.runnable		= (void *)gthulhu_runnable,
	.running		= (void *)gthulhu_running,
	.stopping		= (void *)gthulhu_stopping,
	.update_idle		= (void *)gthulhu_update_idle,
	.init_task		= (void *)gthulhu_init_task,
	.init			= (void *)gthulhu_init,
	.exit			= (void *)gthulhu_exit,
	.flags			= SCX_OPS_KEEP_BUILTIN_IDLE,
	.dispatch_max_batch	= 512,
	.timeout_ms		= 5000,
	.name			= "gthulhu",
};
