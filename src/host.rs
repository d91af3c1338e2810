//! What the host must offer before gthulhu attaches, and the setup that
//! keeps the scheduler itself from stalling.

use std::fs;
use std::path::Path;

use nix::sys::mman::{mlockall, MlockAllFlags};
use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};

const SCHED_EXT: &str = "/sys/kernel/sched_ext";

/// sched_ext exists and no other scheduler is attached.
pub fn check_sched_ext() -> Result<(), String> {
    check_sched_ext_at(Path::new(SCHED_EXT))
}

fn check_sched_ext_at(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!(
            "this kernel has no sched_ext ({} is missing): boot Linux 6.12 or later built with CONFIG_SCHED_CLASS_EXT=y, or use `make run` to try gthulhu in a VM",
            dir.display()
        ));
    }
    let state = fs::read_to_string(dir.join("state")).unwrap_or_default();
    if state.trim() != "disabled" {
        let ops = fs::read_to_string(dir.join("root/ops")).unwrap_or_default();
        let ops = ops.trim();
        let who = if ops.is_empty() { "unknown" } else { ops };
        return Err(format!(
            "another sched_ext scheduler ({who}) is {}: stop it before starting gthulhu",
            state.trim()
        ));
    }
    Ok(())
}

/// Lock every page the scheduler touches, now and later, so the hot path
/// never waits on a page fault under memory pressure. MCL_ONFAULT locks
/// pages as they are first used instead of populating whole mappings, which
/// keeps the resident size small.
pub fn lock_memory() -> Result<(), String> {
    setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY).map_err(|e| {
        format!("raising RLIMIT_MEMLOCK failed: {e} (run as root or with CAP_IPC_LOCK)")
    })?;
    // nix has no name for MCL_ONFAULT (Linux 4.4+); its value is 4 on every arch.
    let on_fault = MlockAllFlags::from_bits_retain(4);
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE | on_fault)
        .map_err(|e| format!("locking memory failed: {e} (run as root or with CAP_IPC_LOCK)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(state: Option<&str>, ops: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gthulhu-host-{}-{}",
            std::process::id(),
            state.unwrap_or("none")
        ));
        let _ = fs::remove_dir_all(&dir);
        if let Some(state) = state {
            fs::create_dir_all(dir.join("root")).unwrap();
            fs::write(dir.join("state"), format!("{state}\n")).unwrap();
            fs::write(dir.join("root/ops"), format!("{ops}\n")).unwrap();
        }
        dir
    }

    #[test]
    fn missing_sched_ext_says_what_to_do() {
        let err = check_sched_ext_at(&fake(None, "")).unwrap_err();
        assert!(err.contains("CONFIG_SCHED_CLASS_EXT"), "{err}");
    }

    #[test]
    fn another_scheduler_is_named() {
        let err = check_sched_ext_at(&fake(Some("enabled"), "rustland")).unwrap_err();
        assert!(err.contains("(rustland) is enabled"), "{err}");
        assert!(check_sched_ext_at(&fake(Some("disabled"), "")).is_ok());
    }
}
