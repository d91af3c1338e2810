//! CPU topology from sysfs (which CPUs share an L2 or L3 cache) and the
//! choice of an idle CPU for a task close to where it last ran.
//!
//! Parsing happens once at startup; `pick_cpu` runs per decision and does
//! not allocate.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

/// BPF's MAX_CPUS: CPU ids must be below this.
const MAX_CPUS: usize = 1024;
/// u64 words in a CPU mask, as BPF's `u64 idle_mask[IDLE_MASK_WORDS]`.
const WORDS: usize = MAX_CPUS / 64;

type Mask = [u64; WORDS];

fn mask_has(mask: &Mask, cpu: usize) -> bool {
    cpu < MAX_CPUS && mask[cpu / 64] & (1 << (cpu % 64)) != 0
}

fn mask_set(mask: &mut Mask, cpu: usize) {
    mask[cpu / 64] |= 1 << (cpu % 64);
}

/// The lowest CPU in both masks.
fn first_common(a: &Mask, b: &Mask) -> Option<u32> {
    a.iter()
        .zip(b)
        .enumerate()
        .find(|(_, (x, y))| *x & *y != 0)
        .map(|(i, (x, y))| i as u32 * 64 + (x & y).trailing_zeros())
}

/// Parse a kernel CPU list such as `0-3,8,10-11` (a trailing newline is
/// fine; an empty list is an empty mask). Ids beyond MAX_CPUS - 1 are an
/// error, since BPF could not represent them.
fn parse_cpu_list(text: &str) -> Result<Mask, String> {
    let mut mask = [0; WORDS];
    let text = text.trim();
    if text.is_empty() {
        return Ok(mask);
    }
    let id = |s: &str| -> Result<usize, String> {
        let cpu: usize = s
            .trim()
            .parse()
            .map_err(|_| format!("bad CPU id {s:?} in list {text:?}"))?;
        if cpu >= MAX_CPUS {
            return Err(format!(
                "CPU {cpu} is beyond the supported maximum of {}",
                MAX_CPUS - 1
            ));
        }
        Ok(cpu)
    };
    for part in text.split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (id(a)?, id(b)?),
            None => (id(part)?, id(part)?),
        };
        if first > last {
            return Err(format!("bad CPU range {part:?} in list {text:?}"));
        }
        for cpu in first..=last {
            mask_set(&mut mask, cpu);
        }
    }
    Ok(mask)
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The CPUs sharing `cpu`'s L2 and L3 caches, from `<cpu_dir>/cache/index*`.
/// Missing cache information leaves the CPU alone in its group; a present
/// but malformed CPU list is an error.
fn cache_groups(cpu_dir: &Path, cpu: usize) -> Result<(Mask, Mask), String> {
    let mut own = [0; WORDS];
    mask_set(&mut own, cpu);
    let (mut l2, mut l3) = (own, own);
    let cache_dir = cpu_dir.join("cache");
    let entries = match fs::read_dir(&cache_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok((l2, l3)),
        Err(e) => return Err(format!("{}: {e}", cache_dir.display())),
    };
    for entry in entries {
        let dir = entry
            .map_err(|e| format!("{}: {e}", cache_dir.display()))?
            .path();
        let is_index = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("index"));
        if !is_index {
            continue;
        }
        // Caches the kernel describes only partly are skipped.
        let (Ok(level), Ok(kind)) = (read(&dir.join("level")), read(&dir.join("type"))) else {
            continue;
        };
        if kind.trim() == "Instruction" {
            continue;
        }
        let group = match level.trim() {
            "2" => &mut l2,
            "3" => &mut l3,
            _ => continue,
        };
        let list_path = dir.join("shared_cpu_list");
        let Ok(list) = read(&list_path) else {
            continue;
        };
        let shared = parse_cpu_list(&list).map_err(|e| format!("{}: {e}", list_path.display()))?;
        for (g, s) in group.iter_mut().zip(shared) {
            *g |= s;
        }
    }
    // Whoever shares the L2 shares whatever is above it, even without an L3.
    for (l3, l2) in l3.iter_mut().zip(l2) {
        *l3 |= l2;
    }
    Ok((l2, l3))
}

#[derive(Debug)]
pub struct Topology {
    online: Mask,
    nr_online: u32,
    /// Distinct cache-sharing masks (online CPUs only).
    groups: Vec<Mask>,
    /// Per CPU id: index in `groups` of its L2 and its L3 group (entries of
    /// offline CPUs are unused).
    l2_of: Vec<u16>,
    l3_of: Vec<u16>,
}

impl Topology {
    /// Read `<root>/devices/system/cpu` ("/sys" in production).
    pub fn from_sysfs(root: &Path) -> Result<Topology, String> {
        let cpu_root = root.join("devices/system/cpu");
        let online_path = cpu_root.join("online");
        let online = parse_cpu_list(&read(&online_path)?)
            .map_err(|e| format!("{}: {e}", online_path.display()))?;
        let nr_online: u32 = online.iter().map(|w| w.count_ones()).sum();
        if nr_online == 0 {
            return Err(format!("{}: no online CPUs", online_path.display()));
        }

        let mut topo = Topology {
            online,
            nr_online,
            groups: Vec::new(),
            l2_of: vec![0; MAX_CPUS],
            l3_of: vec![0; MAX_CPUS],
        };
        let mut known: HashMap<Mask, u16> = HashMap::new();
        for cpu in (0..MAX_CPUS).filter(|&c| mask_has(&online, c)) {
            let (l2, l3) = cache_groups(&cpu_root.join(format!("cpu{cpu}")), cpu)?;
            for (mask, slot) in [(l2, &mut topo.l2_of[cpu]), (l3, &mut topo.l3_of[cpu])] {
                let mut mask = mask;
                for (m, o) in mask.iter_mut().zip(online) {
                    *m &= o;
                }
                // At most one group per online CPU and level: fits u16.
                *slot = *known.entry(mask).or_insert_with(|| {
                    topo.groups.push(mask);
                    (topo.groups.len() - 1) as u16
                });
            }
        }
        Ok(topo)
    }

    pub fn nr_online(&self) -> u32 {
        self.nr_online
    }

    /// An idle CPU for a task that last ran on `prev_cpu`, claimed in `idle`
    /// so one round does not place two tasks on it; None if none fits.
    ///
    /// A task allowed on every online CPU gets, in order: `prev_cpu` if idle
    /// (warm caches), an idle CPU sharing its L2, one sharing its L3, any
    /// idle CPU. A task with a narrower affinity (whose mask user space does
    /// not know) gets only `prev_cpu`, which it surely may use, if idle.
    pub fn pick_cpu(
        &self,
        prev_cpu: i32,
        nr_cpus_allowed: u32,
        idle: &mut IdleCpus,
    ) -> Option<u32> {
        let prev = usize::try_from(prev_cpu)
            .ok()
            .filter(|&c| mask_has(&self.online, c));
        if let Some(prev) = prev {
            if idle.is_idle(prev as u32) {
                idle.claim(prev as u32);
                return Some(prev as u32);
            }
        }
        if nr_cpus_allowed < self.nr_online {
            return None;
        }
        let near =
            |of: &[u16], p: usize| first_common(&self.groups[usize::from(of[p])], &idle.words);
        let cpu = prev
            .and_then(|p| near(&self.l2_of, p).or_else(|| near(&self.l3_of, p)))
            .or_else(|| first_common(&self.online, &idle.words))?;
        idle.claim(cpu);
        Some(cpu)
    }
}

/// Idle CPUs as BPF publishes them (`u64 idle_mask[16]` in bss, bit `cpu % 64`
/// of word `cpu / 64`), consumed as tasks are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleCpus {
    words: Mask,
}

impl IdleCpus {
    pub fn from_words(words: [u64; WORDS]) -> Self {
        Self { words }
    }

    pub fn is_idle(&self, cpu: u32) -> bool {
        mask_has(&self.words, cpu as usize)
    }

    /// Mark `cpu` busy (no-op for ids beyond MAX_CPUS).
    pub fn claim(&mut self, cpu: u32) {
        if let Some(word) = self.words.get_mut(cpu as usize / 64) {
            *word &= !(1 << (cpu % 64));
        }
    }

    pub fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }
}

// Public only so that benches/policy.rs, which includes this file and is
// built with cfg(test) but without the test harness, sees the helpers used.
#[cfg(test)]
pub mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fake sysfs tree in a unique temp dir, removed on drop.
    pub struct FakeSys {
        root: PathBuf,
    }

    impl FakeSys {
        pub fn new(online: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let root =
                std::env::temp_dir().join(format!("gthulhu-topology-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("devices/system/cpu")).unwrap();
            let sys = Self { root };
            sys.write("online", online);
            sys
        }

        pub fn write(&self, rel: &str, text: &str) {
            let path = self.root.join("devices/system/cpu").join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, format!("{text}\n")).unwrap();
        }

        pub fn cache(&self, cpu: usize, index: usize, level: u32, kind: &str, shared: &str) {
            let dir = format!("cpu{cpu}/cache/index{index}");
            self.write(&format!("{dir}/level"), &level.to_string());
            self.write(&format!("{dir}/type"), kind);
            self.write(&format!("{dir}/shared_cpu_list"), shared);
        }

        pub fn topology(&self) -> Result<Topology, String> {
            Topology::from_sysfs(&self.root)
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    /// 16 CPUs, L2 shared by pairs (0-1, 2-3, ...), two L3s (0-7, 8-15),
    /// plus L1 caches and an instruction cache that must be ignored.
    pub fn two_l3_machine() -> FakeSys {
        let sys = FakeSys::new("0-15");
        for cpu in 0..16 {
            let pair = format!("{}-{}", cpu & !1, cpu | 1);
            let l3 = if cpu < 8 { "0-7" } else { "8-15" };
            sys.cache(cpu, 0, 1, "Data", &cpu.to_string());
            sys.cache(cpu, 1, 1, "Instruction", &cpu.to_string());
            sys.cache(cpu, 2, 2, "Unified", &pair);
            sys.cache(cpu, 3, 3, "Unified", l3);
            sys.cache(cpu, 4, 2, "Instruction", "0-15");
        }
        sys
    }

    pub fn idle(cpus: &[u32]) -> IdleCpus {
        let mut words = [0; WORDS];
        for &cpu in cpus {
            mask_set(&mut words, cpu as usize);
        }
        IdleCpus::from_words(words)
    }

    pub fn cpus(mask: &Mask) -> Vec<usize> {
        (0..MAX_CPUS).filter(|&c| mask_has(mask, c)).collect()
    }

    #[test]
    fn cpu_lists_parse_edge_cases() {
        let ok = |s: &str| cpus(&parse_cpu_list(s).unwrap());
        assert_eq!(ok("0-3,8,10-11\n"), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(ok("5"), [5]);
        assert_eq!(ok(" 7 \n"), [7]);
        assert_eq!(ok("63-65"), [63, 64, 65]);
        assert_eq!(ok("4-4"), [4]);
        assert_eq!(ok("1023"), [1023]);
        assert_eq!(ok("\n"), Vec::<usize>::new());
        assert_eq!(ok("0-1023").len(), 1024);

        let err = |s: &str| parse_cpu_list(s).unwrap_err();
        assert!(err("1024").contains("maximum of 1023"), "{}", err("1024"));
        assert!(err("0-4096").contains("maximum of 1023"));
        for bad in ["3-1", "a", "1,,2", "1-", "-1", "0-3,", "1 2", "0x1"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn multi_l3_machine_groups_by_l2_and_l3() {
        let topo = two_l3_machine().topology().unwrap();
        assert_eq!(topo.nr_online(), 16);
        let l2 = |cpu: usize| cpus(&topo.groups[usize::from(topo.l2_of[cpu])]);
        let l3 = |cpu: usize| cpus(&topo.groups[usize::from(topo.l3_of[cpu])]);
        assert_eq!(l2(5), [4, 5]);
        assert_eq!(l2(14), [14, 15]);
        assert_eq!(l3(5), (0..8).collect::<Vec<_>>());
        assert_eq!(l3(8), (8..16).collect::<Vec<_>>());
        // 8 pairs + 2 L3s, each stored once.
        assert_eq!(topo.groups.len(), 10);
    }

    #[test]
    fn pick_order_is_prev_then_l2_then_l3_then_any() {
        let topo = two_l3_machine().topology().unwrap();
        let mut all = idle(&(0..16).collect::<Vec<_>>());
        assert_eq!(topo.pick_cpu(5, 16, &mut all), Some(5));

        let mut some = idle(&[4, 6, 12, 13]);
        assert_eq!(topo.pick_cpu(5, 16, &mut some), Some(4), "L2 sibling");
        assert_eq!(topo.pick_cpu(5, 16, &mut some), Some(6), "same L3");
        assert_eq!(topo.pick_cpu(5, 16, &mut some), Some(12), "any");
        assert_eq!(topo.pick_cpu(13, 16, &mut some), Some(13), "prev");
        assert_eq!(topo.pick_cpu(5, 16, &mut some), None);
        // No known previous CPU: anything idle.
        let mut one = idle(&[9]);
        assert_eq!(topo.pick_cpu(-1, 16, &mut one), Some(9));
    }

    #[test]
    fn claimed_cpus_are_not_picked_twice() {
        let topo = two_l3_machine().topology().unwrap();
        let mut idle = idle(&(0..16).collect::<Vec<_>>());
        assert_eq!(idle.count(), 16);
        let mut seen = [false; 16];
        for _ in 0..16 {
            let cpu = topo.pick_cpu(3, 16, &mut idle).unwrap() as usize;
            assert!(!seen[cpu], "CPU {cpu} picked twice");
            seen[cpu] = true;
        }
        assert_eq!(idle.count(), 0);
        assert_eq!(topo.pick_cpu(3, 16, &mut idle), None);
    }

    #[test]
    fn restricted_task_gets_only_its_idle_prev_cpu() {
        let topo = two_l3_machine().topology().unwrap();
        let mut idle = idle(&[2, 3, 4]);
        assert_eq!(topo.pick_cpu(2, 1, &mut idle), Some(2));
        assert!(!idle.is_idle(2));
        assert_eq!(
            topo.pick_cpu(2, 15, &mut idle),
            None,
            "sibling 3 may be outside its mask"
        );
        assert_eq!(topo.pick_cpu(-1, 1, &mut idle), None);
        assert_eq!(topo.pick_cpu(4000, 1, &mut idle), None);
        assert_eq!(idle.count(), 2);
    }

    #[test]
    fn vm_without_cache_info_gets_one_group_per_cpu() {
        let sys = FakeSys::new("0-3");
        // cpu1 has a cache dir with an incomplete entry, the rest nothing.
        sys.write("cpu1/cache/index0/level", "2");
        let topo = sys.topology().unwrap();
        assert_eq!(topo.nr_online(), 4);
        for cpu in 0..4 {
            assert_eq!(cpus(&topo.groups[usize::from(topo.l2_of[cpu])]), [cpu]);
            assert_eq!(cpus(&topo.groups[usize::from(topo.l3_of[cpu])]), [cpu]);
        }
        let mut idle = idle(&[0, 3]);
        assert_eq!(topo.pick_cpu(2, 4, &mut idle), Some(0));
        assert_eq!(topo.pick_cpu(2, 4, &mut idle), Some(3));
        assert_eq!(topo.pick_cpu(2, 4, &mut idle), None);
    }

    #[test]
    fn offline_cpus_are_never_picked() {
        let sys = FakeSys::new("0-3,6-7");
        for cpu in [0, 1, 2, 3, 6, 7] {
            sys.cache(cpu, 0, 2, "Unified", "0-7");
        }
        let topo = sys.topology().unwrap();
        assert_eq!(topo.nr_online(), 6);
        assert_eq!(
            cpus(&topo.groups[usize::from(topo.l2_of[0])]),
            [0, 1, 2, 3, 6, 7]
        );
        // A stale idle bit for offline CPU 4 is ignored, also as prev.
        let mut idle = idle(&[4, 5, 7]);
        assert_eq!(topo.pick_cpu(4, 6, &mut idle), Some(7));
        assert_eq!(topo.pick_cpu(0, 6, &mut idle), None);
    }

    #[test]
    fn bad_sysfs_gives_clear_errors() {
        let sys = FakeSys::new("0-1024");
        assert!(sys.topology().unwrap_err().contains("maximum of 1023"));
        sys.write("online", "");
        assert!(sys.topology().unwrap_err().contains("no online CPUs"));
        sys.write("online", "0-1");
        sys.cache(1, 0, 3, "Unified", "0-2000");
        let err = sys.topology().unwrap_err();
        assert!(
            err.contains("cpu1/cache/index0/shared_cpu_list") && err.contains("1023"),
            "{err}"
        );

        let missing = Topology::from_sysfs(Path::new("/nonexistent-gthulhu-root")).unwrap_err();
        assert!(
            missing.contains("/nonexistent-gthulhu-root/devices/system/cpu/online"),
            "{missing}"
        );
    }
}
