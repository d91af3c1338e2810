//! Test helpers: unique temporary directories and a fake proc tree.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "gthulhu-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Polls `done` every 10 ms until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A directory laid out like the parts of `/proc` the matcher reads.
pub struct FakeProc {
    dir: TempDir,
}

impl FakeProc {
    pub fn new() -> Self {
        FakeProc {
            dir: TempDir::new("proc"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Adds a process whose leader thread is `tgid`, in cgroup v2 `cgroup`.
    pub fn add_process(&self, tgid: i32, comm: &str, cgroup: &str) {
        let dir = self.root().join(tgid.to_string());
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup"), format!("0::{cgroup}\n")).unwrap();
        self.add_thread(tgid, tgid, comm);
    }

    /// Adds a thread, or renames it if it exists. Renaming the leader
    /// renames the process (as exec or prctl(PR_SET_NAME) do).
    pub fn add_thread(&self, tgid: i32, tid: i32, comm: &str) {
        let process = self.root().join(tgid.to_string());
        let thread = process.join("task").join(tid.to_string());
        fs::create_dir_all(&thread).unwrap();
        fs::write(thread.join("comm"), format!("{comm}\n")).unwrap();
        if tid == tgid {
            fs::write(process.join("comm"), format!("{comm}\n")).unwrap();
        }
    }

    pub fn remove_thread(&self, tgid: i32, tid: i32) {
        let dir = self.root().join(format!("{tgid}/task/{tid}"));
        fs::remove_dir_all(dir).unwrap();
    }

    pub fn remove_process(&self, tgid: i32) {
        fs::remove_dir_all(self.root().join(tgid.to_string())).unwrap();
    }
}
