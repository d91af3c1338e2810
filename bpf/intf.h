/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Records and constants shared by the BPF program and user space.
 * The Rust side uses these through the generated skeleton types, so the
 * two sides cannot drift.
 */
#ifndef __GTHULHU_INTF_H
#define __GTHULHU_INTF_H

enum gthulhu_consts {
	MAX_CPUS = 1024,
	IDLE_MASK_WORDS = MAX_CPUS / 64,
	/* Dispatch queue ids: 0..MAX_CPUS-1 are the per-CPU queues. */
	SHARED_DSQ = MAX_CPUS,
	SCHED_DSQ = MAX_CPUS + 1,
	/* A dispatched_task.cpu that lets any allowed CPU run the task. */
	CPU_ANY = -1,
	/* Strategy priority value meaning "no strategy selects this task". */
	PRIO_NONE = 0xffffffff,
	/* Highest priority level: picked first and may preempt. */
	PRIO_TOP = 0,
	/* Levels 0..PRIO_LEVELS-1 boost; a rule with PRIO_NO_BOOST only sets
	 * the time slice. */
	PRIO_LEVELS = 8,
	PRIO_NO_BOOST = 63,
	MAX_RULES = 65536,
	/* Statistics slots: one per strategy index below MAX_STRATEGY_SLOTS,
	 * then one for tasks no strategy selects, then one shared by
	 * strategies listed beyond MAX_STRATEGY_SLOTS. */
	MAX_STRATEGY_SLOTS = 256,
	SLOT_UNMATCHED = MAX_STRATEGY_SLOTS,
	SLOT_OTHER = MAX_STRATEGY_SLOTS + 1,
	NR_SLOTS = MAX_STRATEGY_SLOTS + 2,
	/* Latency histogram: bucket i counts waits in [2^i, 2^(i+1)) ns; the
	 * last one also counts everything longer. */
	LAT_BUCKETS = 32,
};

/* queued_task.flags */
enum queued_flags {
	QF_WAKEUP = 1 << 0,	/* the task just woke up */
	QF_KTHREAD = 1 << 1,	/* a kernel thread that was not bypassed */
};

/* dispatched_task.flags */
enum dispatched_flags {
	DF_PREEMPT = 1 << 0,	/* kick the target CPU to run this task now */
};

/* A runnable task, sent from ops.enqueue to user space over "queued". */
struct queued_task {
	s32 pid;
	s32 tgid;
	s32 cpu;		/* CPU the task last ran on */
	u32 nr_cpus_allowed;
	u32 flags;		/* enum queued_flags */
	u32 weight;		/* 100 = nice 0 */
	u32 priority;		/* strategy level, PRIO_NONE if unmatched */
	u32 pad;
	u64 gen;		/* enqueue generation, echoed back to detect staleness */
	u64 vtime;		/* weighted CPU time the task consumed (virtual) */
	u64 exec_runtime;	/* CPU time used since the task last woke up */
	u64 slice_ns;		/* strategy time slice, 0 if none */
};

/* A decision, sent from user space to ops.dispatch over "dispatched". */
struct dispatched_task {
	s32 pid;
	s32 cpu;		/* target CPU, or CPU_ANY */
	u64 gen;		/* queued_task.gen this decision answers */
	u64 flags;		/* enum dispatched_flags */
	u64 slice_ns;
	u64 vtime;		/* the task's new virtual time */
	u64 deadline;		/* ordering key in the dispatch queue */
};

/* A strategy's effect on one task or process, mirrored into task_rules. */
struct task_rule {
	u32 priority;		/* level, PRIO_TOP highest */
	u32 strategy;		/* index of the strategy that made the rule, in
				 * the combined file+API list: its stats slot */
	u64 slice_ns;		/* 0: use the default slice */
};

/*
 * What the tasks of one stats slot got, per CPU (map "slot_stats", key =
 * slot). Summed over CPUs by user space.
 */
struct slot_stats {
	u64 lat[LAT_BUCKETS];	/* runnable -> running waits, log2 ns buckets */
	u64 lat_sum_ns;		/* sum of those waits */
	u64 dispatches;		/* tasks inserted into a dispatch queue */
	u64 cpu_ns;		/* CPU time received */
};

#endif /* __GTHULHU_INTF_H */
