//! The only module that touches the BPF skeleton: load, attach, the two ring
//! buffers, the strategy-rule map, counters and the kernel's exit info.

use std::cell::RefCell;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr;
use std::rc::Rc;

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{
    AsRawLibbpf, Link, MapCore, MapFlags, OpenObject, RingBuffer, RingBufferBuilder, UserRingBuffer,
};

use crate::counters::Counters;
use crate::metrics::SlotStats;

// Generated code: lints are for the code we write.
#[allow(clippy::all, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/gthulhu.skel.rs"));
}

use skel::types::{bss, dispatched_task, queued_task, slot_stats, task_rule};
pub use skel::types::{dispatched_task as DispatchedTask, queued_task as QueuedTask};
use skel::{MainSkel, MainSkelBuilder};

/// Constants shared with bpf/intf.h (checked against the skeleton in tests).
pub const MAX_CPUS: usize = 1024;
pub const IDLE_MASK_WORDS: usize = MAX_CPUS / 64;
pub const CPU_ANY: i32 = -1;
pub const PRIO_NONE: u32 = u32::MAX;
pub const QF_WAKEUP: u32 = 1;
pub const DF_PREEMPT: u64 = 1;
/// Stats slots of tasks no strategy selects, and of strategies listed
/// beyond the per-strategy slots.
pub const SLOT_UNMATCHED: u32 = crate::metrics::MAX_STRATEGY_SLOTS as u32;
pub const SLOT_OTHER: u32 = SLOT_UNMATCHED + 1;
/// Size of each ring buffer (must match max_entries in main.bpf.c).
const RING_BYTES: usize = 1 << 20;
/// Every record in a BPF ring buffer carries an 8-byte header.
const RING_HDR: usize = 8;
/// The most records the "queued" ring buffer can hold at once.
pub const QUEUED_CAPACITY: usize = RING_BYTES / (size_of::<queued_task>() + RING_HDR);

/// scx_exit_code bit: the kernel asks the scheduler to restart (CPU hotplug).
const SCX_ECODE_ACT_RESTART: i64 = 1 << 48;

/// What the loader needs from the configuration.
pub struct LoadOptions {
    pub slice_ns: u64,
    pub slice_min_ns: u64,
    pub watchdog_timeout_ms: u32,
    pub nr_online_cpus: u64,
}

/// Why sched_ext stopped running gthulhu, as the kernel reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub kind: u32,
    pub code: i64,
    pub reason: String,
    pub msg: String,
}

impl ExitInfo {
    /// The kernel asks for a restart, e.g. after a CPU went on- or offline.
    pub fn wants_restart(&self) -> bool {
        self.code & SCX_ECODE_ACT_RESTART != 0
    }

    /// Unregistered by us (SCX_EXIT_UNREG*) rather than ejected by an error.
    pub fn is_clean(&self) -> bool {
        self.kind < 1024
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kind={} code={:#x} reason={:?}",
            self.kind, self.code, self.reason
        )?;
        if !self.msg.is_empty() {
            write!(f, " msg={:?}", self.msg)?;
        }
        Ok(())
    }
}

/// A strategy's effect, as BPF reads it from `task_rules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRule {
    pub priority: u32,
    pub slice_ns: u64,
    /// Index of the strategy that made it: its stats slot in BPF.
    pub strategy: u32,
}

pub struct Bpf<'obj> {
    skel: MainSkel<'obj>,
    link: Option<Link>,
    queued: RingBuffer<'static>,
    /// Records drained from "queued", filled by the ring buffer callback.
    inbox: Rc<RefCell<Vec<queued_task>>>,
    dispatched: UserRingBuffer,
}

impl<'obj> Bpf<'obj> {
    /// Open, configure, load and attach the sched_ext program.
    pub fn attach(
        object: &'obj mut MaybeUninit<OpenObject>,
        opts: &LoadOptions,
    ) -> Result<Self, String> {
        let mut open = MainSkelBuilder::default()
            .open(object)
            .map_err(|e| format!("opening the BPF object failed: {e}"))?;

        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .ok_or("the BPF object has no .rodata")?;
        rodata.usersched_pid = nix::unistd::gettid().as_raw();
        rodata.usersched_tgid = std::process::id() as i32;
        rodata.slice_ns = opts.slice_ns;
        rodata.slice_ns_min = opts.slice_min_ns;
        open.struct_ops.gthulhu_mut().timeout_ms = opts.watchdog_timeout_ms;

        let mut skel = open.load().map_err(|e| {
            format!("loading the BPF program failed: {e} (needs root or CAP_BPF+CAP_SYS_ADMIN, and a kernel with sched_ext)")
        })?;
        if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
            bss.nr_online_cpus = opts.nr_online_cpus;
        }

        // Written once now so its pages are resident before the hot path.
        let mut records = vec![queued_task::default(); QUEUED_CAPACITY];
        records.clear();
        let inbox = Rc::new(RefCell::new(records));
        let sink = Rc::clone(&inbox);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&skel.maps.queued, move |data: &[u8]| {
                receive_queued(&mut sink.borrow_mut(), data)
            })
            .map_err(|e| format!("opening ring buffer \"queued\" failed: {e}"))?;
        let queued = builder
            .build()
            .map_err(|e| format!("opening ring buffer \"queued\" failed: {e}"))?;
        let dispatched = UserRingBuffer::new(&skel.maps.dispatched)
            .map_err(|e| format!("opening ring buffer \"dispatched\" failed: {e}"))?;

        let link = skel.maps.gthulhu.attach_struct_ops().map_err(|e| {
            format!("attaching to sched_ext failed: {e} (is another sched_ext scheduler running?)")
        })?;

        Ok(Self {
            skel,
            link: Some(link),
            queued,
            inbox,
            dispatched,
        })
    }

    /// Becomes readable when "queued" has records.
    pub fn queued_fd(&self) -> BorrowedFd<'_> {
        let fd: RawFd = self.queued.epoll_fd();
        // SAFETY: the descriptor is owned by `self.queued` and lives as long as `self`.
        unsafe { BorrowedFd::borrow_raw(fd) }
    }

    /// Move up to `max` records waiting in "queued" into the inbox and
    /// return it; the rest stay in the ring buffer for the next call.
    pub fn drain_queued(&self, max: usize) -> std::cell::RefMut<'_, Vec<QueuedTask>> {
        if max > 0 {
            self.queued.consume_raw_n(max);
        }
        self.inbox.borrow_mut()
    }

    /// Send one decision to BPF. False when "dispatched" is full: keep the
    /// task and retry after BPF drained some.
    pub fn dispatch(&self, task: &DispatchedTask) -> bool {
        let size = size_of::<dispatched_task>();
        // Raw libbpf calls: the safe wrapper allocates an error on a full ring.
        let rb = self.dispatched.as_libbpf_object().as_ptr();
        // SAFETY: `rb` is a live user ring buffer; a non-null sample has
        // room for `size` bytes and is submitted exactly once.
        unsafe {
            let sample = libbpf_sys::user_ring_buffer__reserve(rb, size as u32);
            if sample.is_null() {
                return false;
            }
            ptr::write_unaligned(sample.cast::<dispatched_task>(), *task);
            libbpf_sys::user_ring_buffer__submit(rb, sample);
        }
        true
    }

    fn bss(&self) -> *mut bss {
        let bss: *const bss = self
            .skel
            .maps
            .bss_data
            .as_deref()
            .expect("the skeleton always maps .bss");
        bss.cast_mut()
    }

    /// The idle-CPU bitmap BPF maintains in ops.update_idle.
    pub fn idle_mask(&self) -> [u64; IDLE_MASK_WORDS] {
        // SAFETY: .bss is mapped for the skeleton's lifetime; BPF updates it
        // concurrently, so read without assuming it stays unchanged.
        unsafe { ptr::read_volatile(ptr::addr_of!((*self.bss()).idle_mask)) }
    }

    /// Tell BPF how many tasks user space still holds (it then runs us).
    pub fn set_nr_scheduled(&self, n: u64) {
        // SAFETY: see idle_mask; this field is written by user space only.
        unsafe { ptr::write_volatile(ptr::addr_of_mut!((*self.bss()).nr_scheduled), n) }
    }

    pub fn counters(&self) -> Counters {
        // SAFETY: see idle_mask.
        let b = unsafe { ptr::read_volatile(self.bss()) };
        Counters {
            usersched_last_run_at: b.usersched_last_run_at,
            nr_queued: b.nr_queued,
            nr_scheduled: b.nr_scheduled,
            nr_running: b.nr_running,
            nr_online_cpus: b.nr_online_cpus,
            nr_user_dispatches: b.nr_user_dispatches,
            nr_kernel_dispatches: b.nr_kernel_dispatches,
            nr_cancel_dispatches: b.nr_cancel_dispatches,
            nr_bounce_dispatches: b.nr_bounce_dispatches,
            nr_failed_dispatches: b.nr_failed_dispatches,
            nr_sched_congested: b.nr_sched_congested,
            nr_rule_runs: b.nr_rule_runs,
            nr_rule_slice_runs: b.nr_rule_slice_runs,
        }
    }

    /// One stats slot summed over CPUs (allocates: not for the hot path).
    pub fn slot_stats(&self, slot: u32) -> Result<SlotStats, String> {
        let per_cpu = self
            .skel
            .maps
            .slot_stats
            .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| format!("reading slot_stats[{slot}] failed: {e}"))?
            .unwrap_or_default();
        let mut total = SlotStats::default();
        for bytes in per_cpu {
            if bytes.len() < size_of::<slot_stats>() {
                continue;
            }
            // SAFETY: length checked; the map's values are slot_stats.
            let s = unsafe { ptr::read_unaligned(bytes.as_ptr().cast::<slot_stats>()) };
            total.add(&SlotStats {
                lat: s.lat,
                lat_sum_ns: s.lat_sum_ns,
                dispatches: s.dispatches,
                cpu_ns: s.cpu_ns,
            });
        }
        Ok(total)
    }

    /// The kernel's exit record, once sched_ext stopped running us.
    pub fn exit_info(&self) -> Option<ExitInfo> {
        let bss = self.bss();
        // SAFETY: see idle_mask.
        let kind = unsafe { ptr::read_volatile(ptr::addr_of!((*bss).exit_kind)) };
        if kind == 0 {
            return None;
        }
        // SAFETY: ops.exit wrote the record before setting kind was observed.
        let b = unsafe { ptr::read_volatile(bss) };
        Some(ExitInfo {
            kind,
            code: b.exit_code,
            reason: c_string(&b.exit_reason),
            msg: c_string(&b.exit_msg),
        })
    }

    /// Unregister from sched_ext and return the kernel's exit record.
    pub fn detach(&mut self) -> Option<ExitInfo> {
        drop(self.link.take());
        self.exit_info()
    }

    /// Set or replace the rule for a thread or process id.
    pub fn set_rule(&self, id: i32, rule: TaskRule) -> Result<(), String> {
        let value = task_rule {
            priority: rule.priority,
            strategy: rule.strategy,
            slice_ns: rule.slice_ns,
        };
        // SAFETY: task_rule is plain old data with explicit padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(ptr::addr_of!(value).cast::<u8>(), size_of::<task_rule>())
        };
        self.skel
            .maps
            .task_rules
            .update(&id.to_ne_bytes(), bytes, MapFlags::ANY)
            .map_err(|e| format!("updating task_rules[{id}] failed: {e}"))
    }

    pub fn clear_rule(&self, id: i32) -> Result<(), String> {
        match self.skel.maps.task_rules.delete(&id.to_ne_bytes()) {
            Err(e) if e.kind() != libbpf_rs::ErrorKind::NotFound => {
                Err(format!("removing task_rules[{id}] failed: {e}"))
            }
            _ => Ok(()),
        }
    }
}

/// Ring buffer callback: copy one record into the inbox without allocating.
fn receive_queued(inbox: &mut Vec<queued_task>, data: &[u8]) -> i32 {
    if data.len() < size_of::<queued_task>() || inbox.len() == inbox.capacity() {
        // Cannot happen: the inbox holds as many records as the ring buffer.
        return 0;
    }
    // SAFETY: length checked above; BPF wrote a queued_task.
    inbox.push(unsafe { ptr::read_unaligned(data.as_ptr().cast::<queued_task>()) });
    0
}

fn c_string(bytes: &[i8]) -> String {
    let bytes: Vec<u8> = bytes
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_match_bpf_layout() {
        // intf.h lays the records out without implicit padding.
        assert_eq!(size_of::<queued_task>(), 64);
        assert_eq!(size_of::<dispatched_task>(), 48);
        assert_eq!(size_of::<task_rule>(), 16);
        let s = slot_stats::default();
        assert_eq!(s.lat.len(), crate::metrics::LAT_BUCKETS);
        const { assert!(QUEUED_CAPACITY > 10_000) };
    }

    #[test]
    fn idle_mask_covers_max_cpus() {
        let b: bss = unsafe { std::mem::zeroed() };
        assert_eq!(b.idle_mask.len(), IDLE_MASK_WORDS);
    }

    #[test]
    fn hotplug_exit_asks_for_restart() {
        let e = ExitInfo {
            kind: 66,
            code: SCX_ECODE_ACT_RESTART | (1 << 32),
            reason: "hotplug".into(),
            msg: String::new(),
        };
        assert!(e.wants_restart());
        assert!(e.is_clean());
    }

    #[test]
    fn inbox_never_grows() {
        let mut inbox = Vec::with_capacity(1);
        let rec = [0u8; size_of::<queued_task>()];
        receive_queued(&mut inbox, &rec);
        receive_queued(&mut inbox, &rec);
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox.capacity(), 1);
    }
}
