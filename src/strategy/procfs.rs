//! Reads processes and threads from a proc root: `/proc` in production, a
//! fake tree in tests. Processes and threads can exit at any moment, so
//! every read may fail; callers skip whatever vanished.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::model::normalize_uid;

/// Longest file read from proc (a cgroup file of a deeply nested cgroup v1
/// hierarchy stays far below this).
const MAX_FILE: u64 = 64 * 1024;

/// A process (thread group) as proc shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub tgid: i32,
    /// Process name: the thread-group leader's comm.
    pub comm: String,
    /// Cgroup path (the cgroup v2 entry, or a v1 one); empty when not read.
    pub cgroup: String,
    /// Kubernetes pod UID (lower case, dashes) found in the cgroup path.
    pub pod_uid: Option<String>,
}

/// One thread of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    pub tid: i32,
    pub comm: String,
}

/// A proc file system mounted at `root`.
#[derive(Clone, Debug)]
pub struct ProcFs {
    root: PathBuf,
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcFs { root: root.into() }
    }

    /// Ids of the processes (thread groups) proc lists, ascending.
    pub fn tgids(&self) -> io::Result<Vec<i32>> {
        numeric_entries(&self.root)
    }

    /// Reads a process; `with_cgroup` also reads its cgroup path and pod
    /// UID. `None` when the process vanished.
    pub fn process(&self, tgid: i32, with_cgroup: bool) -> Option<ProcessInfo> {
        let dir = self.root.join(tgid.to_string());
        let comm = read_comm(&dir.join("comm"))?;
        let cgroup = if with_cgroup {
            cgroup_path(&read_small(&dir.join("cgroup")).ok()?)
        } else {
            String::new()
        };
        let pod_uid = pod_uid_from_cgroup(&cgroup);
        Some(ProcessInfo {
            tgid,
            comm,
            cgroup,
            pod_uid,
        })
    }

    /// Ids of a process's threads, ascending; `None` when it vanished.
    pub fn tids(&self, tgid: i32) -> Option<Vec<i32>> {
        numeric_entries(&self.task_dir(tgid)).ok()
    }

    /// A thread's name; `None` when it vanished.
    pub fn thread_comm(&self, tgid: i32, tid: i32) -> Option<String> {
        read_comm(&self.task_dir(tgid).join(tid.to_string()).join("comm"))
    }

    fn task_dir(&self, tgid: i32) -> PathBuf {
        self.root.join(tgid.to_string()).join("task")
    }
}

fn numeric_entries(dir: &Path) -> io::Result<Vec<i32>> {
    let mut ids: Vec<i32> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&id: &i32| id > 0)
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

fn read_small(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    File::open(path)?.take(MAX_FILE).read_to_string(&mut text)?;
    Ok(text)
}

fn read_comm(path: &Path) -> Option<String> {
    let text = read_small(path).ok()?;
    Some(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

/// The cgroup path in the content of `/proc/<pid>/cgroup`: the cgroup v2
/// entry (`0::/path`); on a v1-only system the `cpu` controller's entry,
/// else systemd's, else the first one.
pub fn cgroup_path(content: &str) -> String {
    let entries: Vec<(&str, &str)> = content
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            Some((if id == "0" { "" } else { controllers }, path))
        })
        .collect();
    let find = |want: &dyn Fn(&str) -> bool| {
        entries
            .iter()
            .find(|(controllers, _)| want(controllers))
            .map(|(_, path)| path.to_string())
    };
    find(&|c| c.is_empty())
        .or_else(|| find(&|c| c.split(',').any(|c| c == "cpu")))
        .or_else(|| find(&|c| c == "name=systemd"))
        .or_else(|| entries.first().map(|(_, path)| path.to_string()))
        .unwrap_or_default()
}

/// The Kubernetes pod UID in a cgroup path, normalized to lower case with
/// dashes. Knows the cgroupfs layout
/// (`/kubepods/burstable/pod<uid>/<container>`) and the systemd one
/// (`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid
/// with underscores>.slice/cri-containerd-<id>.scope`).
pub fn pod_uid_from_cgroup(path: &str) -> Option<String> {
    if !path.contains("kubepods") {
        return None;
    }
    path.split('/').find_map(|component| {
        let uid = match component.strip_suffix(".slice") {
            Some(slice) => &slice[slice.rfind("-pod")? + 4..],
            None => component.strip_prefix("pod")?,
        };
        let uid = normalize_uid(uid);
        is_uid(&uid).then_some(uid)
    })
}

/// A UID as Kubernetes makes them: 36 hex digits and dashes, 8-4-4-4-12.
fn is_uid(uid: &str) -> bool {
    uid.len() == 36
        && uid.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f3b5c1e-9a2d-4b7e-8c6f-1a2b3c4d5e6f";

    #[test]
    fn pod_uid_from_cgroupfs_layout() {
        let path = format!("/kubepods/burstable/pod{UID}/0123abcd");
        assert_eq!(pod_uid_from_cgroup(&path).as_deref(), Some(UID));
        let guaranteed = format!("/kubepods/pod{UID}/0123abcd");
        assert_eq!(pod_uid_from_cgroup(&guaranteed).as_deref(), Some(UID));
    }

    #[test]
    fn pod_uid_from_systemd_layout_normalizes_underscores() {
        let uid = UID.replace('-', "_");
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-0123.scope"
        );
        assert_eq!(pod_uid_from_cgroup(&path).as_deref(), Some(UID));
        let guaranteed = format!("/kubepods.slice/kubepods-pod{uid}.slice/crio-0123.scope");
        assert_eq!(pod_uid_from_cgroup(&guaranteed).as_deref(), Some(UID));
    }

    #[test]
    fn no_pod_uid_outside_kubepods_or_when_malformed() {
        assert_eq!(pod_uid_from_cgroup(&format!("/user.slice/pod{UID}")), None);
        assert_eq!(
            pod_uid_from_cgroup("/kubepods/burstable/podnotauid/x"),
            None
        );
        assert_eq!(
            pod_uid_from_cgroup("/kubepods.slice/kubepods-besteffort.slice"),
            None
        );
        assert_eq!(pod_uid_from_cgroup("/"), None);
    }

    #[test]
    fn cgroup_path_prefers_v2_then_cpu_controller() {
        assert_eq!(
            cgroup_path("12:cpu,cpuacct:/v1\n0::/system.slice/x.service\n"),
            "/system.slice/x.service"
        );
        assert_eq!(
            cgroup_path("3:memory:/m\n2:cpu,cpuacct:/kubepods/pod1\n1:name=systemd:/s\n"),
            "/kubepods/pod1"
        );
        assert_eq!(cgroup_path("3:memory:/m\n1:name=systemd:/s\n"), "/s");
        assert_eq!(cgroup_path("3:memory:/m\n"), "/m");
        assert_eq!(cgroup_path(""), "");
    }
}
