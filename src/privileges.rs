//! Capabilities: keep only what attaching the BPF scheduler needs, and only
//! on the thread that attaches it.
//!
//! Capabilities belong to threads, not processes. The helper threads parse
//! untrusted input (YAML, API and Kubernetes responses, /proc), so they start
//! from a thread that has none and pass that on to every thread they spawn.
//! The scheduling loop keeps CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON permitted
//! but not effective: they are raised only to attach again after the kernel
//! asks for a restart (CPU hotplug). Map updates, the ring buffers and
//! detaching need none on the file descriptors gthulhu already holds.

use std::io;
use std::thread;

use nix::libc;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What attaching a sched_ext scheduler needs: struct_ops (CAP_SYS_ADMIN),
/// BPF programs and maps (CAP_BPF), and programs that read kernel pointers
/// (CAP_PERFMON).
pub const ATTACH: CapSet = CapSet::of(&[CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON]);

/// A set of capabilities as the kernel's 64-bit mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapSet(pub u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    pub const fn of(caps: &[u32]) -> CapSet {
        let mut mask = 0;
        let mut i = 0;
        while i < caps.len() {
            mask |= 1 << caps[i];
            i += 1;
        }
        CapSet(mask)
    }
}

/// The calling thread's capability sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadCaps {
    pub effective: CapSet,
    pub permitted: CapSet,
    pub inheritable: CapSet,
}

// The kernel's capget/capset ABI, version 3 (64-bit sets in two halves).
const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn split(set: CapSet) -> [u32; 2] {
    [set.0 as u32, (set.0 >> 32) as u32]
}

fn join(low: u32, high: u32) -> CapSet {
    CapSet(u64::from(low) | (u64::from(high) << 32))
}

/// Reads the calling thread's capabilities.
pub fn current() -> io::Result<ThreadCaps> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array are what version 3 of
    // capget expects; pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ThreadCaps {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

/// Sets the calling thread's capabilities; the kernel refuses to add any the
/// thread does not already have permitted.
fn set(caps: ThreadCaps) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let [e0, e1] = split(caps.effective);
    let [p0, p1] = split(caps.permitted);
    let [i0, i1] = split(caps.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: as in `current`; capset only reads the two data elements.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clears the ambient set, so nothing is handed on even through an exec.
fn clear_ambient() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// No exec can ever grant a privilege again (a uid-0 exec would otherwise
/// regain every capability). Inherited by threads created afterwards.
fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops every capability of the calling thread.
pub fn drop_all() -> io::Result<()> {
    keep_only(CapSet::EMPTY)
}

/// Keeps `keep` (as far as the thread has it) permitted and effective, and
/// drops everything else from the calling thread.
pub fn keep_only(keep: CapSet) -> io::Result<()> {
    set_no_new_privs()?;
    clear_ambient()?;
    let now = current()?;
    let kept = CapSet(now.permitted.0 & keep.0);
    set(ThreadCaps {
        effective: kept,
        permitted: kept,
        inheritable: CapSet::EMPTY,
    })
}

/// Makes the permitted capabilities effective (`true`) or clears the
/// effective set (`false`) on the calling thread.
pub fn set_effective(on: bool) -> io::Result<()> {
    let now = current()?;
    set(ThreadCaps {
        effective: if on { now.permitted } else { CapSet::EMPTY },
        ..now
    })
}

/// Runs `start` on a fresh thread that first drops every capability, and
/// returns what it returns. Threads `start` spawns (and theirs) inherit the
/// empty sets; the calling thread keeps its own.
pub fn without_capabilities<T: Send>(start: impl FnOnce() -> T + Send) -> Result<T, String> {
    thread::scope(|scope| {
        thread::Builder::new()
            .name("gthulhu-start".into())
            .spawn_scoped(scope, || {
                drop_all().map_err(|e| format!("dropping capabilities failed: {e}"))?;
                Ok(start())
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?
            .join()
            .map_err(|_| "starting the helper threads panicked".to_string())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on its own thread, since capabilities are per thread and the
    /// test harness shares its threads.
    fn on_own_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        thread::scope(|s| s.spawn(f).join().unwrap())
    }

    #[test]
    fn sets_are_64_bit_masks() {
        assert_eq!(ATTACH.0, (1 << 21) | (1 << 38) | (1 << 39));
        assert_eq!(join(split(ATTACH)[0], split(ATTACH)[1]), ATTACH);
    }

    #[test]
    fn drop_all_leaves_the_thread_nothing_and_the_caller_untouched() {
        let before = current().unwrap();
        let dropped = on_own_thread(|| {
            drop_all().unwrap();
            current().unwrap()
        });
        assert_eq!(dropped.permitted, CapSet::EMPTY);
        assert_eq!(dropped.effective, CapSet::EMPTY);
        assert_eq!(current().unwrap(), before);
    }

    #[test]
    fn keep_only_keeps_the_intersection() {
        let before = current().unwrap();
        let kept = on_own_thread(|| {
            keep_only(ATTACH).unwrap();
            current().unwrap()
        });
        assert_eq!(kept.permitted.0, before.permitted.0 & ATTACH.0);
        assert_eq!(kept.effective, kept.permitted);
        assert_eq!(kept.inheritable, CapSet::EMPTY);
    }

    #[test]
    fn effective_goes_down_and_back_up_within_permitted() {
        let (lowered, raised) = on_own_thread(|| {
            keep_only(ATTACH).unwrap();
            set_effective(false).unwrap();
            let lowered = current().unwrap();
            set_effective(true).unwrap();
            (lowered, current().unwrap())
        });
        assert_eq!(lowered.effective, CapSet::EMPTY);
        assert_eq!(lowered.permitted, raised.permitted);
        assert_eq!(raised.effective, raised.permitted);
    }

    #[test]
    fn threads_started_without_capabilities_pass_none_on() {
        let grandchild =
            without_capabilities(|| thread::spawn(|| current().unwrap()).join().unwrap()).unwrap();
        assert_eq!(grandchild.permitted, CapSet::EMPTY);
        assert_eq!(grandchild.effective, CapSet::EMPTY);
    }
}
