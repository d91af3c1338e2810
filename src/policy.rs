// TEMP stub
pub struct PolicyParams {
    pub slice_ns: u64,
    pub slice_min_ns: u64,
}
#[derive(Clone, Copy, Debug)]
pub struct Runnable {
    pub pid: i32,
    pub cpu: i32,
    pub nr_cpus_allowed: u32,
    pub weight: u32,
    pub vtime: u64,
    pub exec_runtime: u64,
    pub wakeup: bool,
    pub priority: Option<u32>,
    pub rule_slice_ns: u64,
    pub gen: u64,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub vtime: u64,
    pub deadline: u64,
    pub slice_ns: u64,
    pub preempt: bool,
}
pub struct Policy {
    p: PolicyParams,
    now: u64,
}
impl Policy {
    pub fn new(p: PolicyParams) -> Self {
        Self { p, now: 0 }
    }
    pub fn decide(&mut self, t: &Runnable, n: usize) -> Decision {
        let v = t.vtime.max(self.now.saturating_sub(self.p.slice_ns));
        self.now = self.now.max(v);
        Decision {
            vtime: v,
            deadline: v + t.exec_runtime.min(10 * self.p.slice_ns),
            slice_ns: (self.p.slice_ns / (n as u64 + 1)).max(self.p.slice_min_ns),
            preempt: t.priority == Some(0),
        }
    }
}
pub struct RunQueue(Vec<(Runnable, Decision)>);
impl RunQueue {
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }
    pub fn push(&mut self, t: Runnable, d: Decision) -> Result<(), ()> {
        self.0.push((t, d));
        Ok(())
    }
    pub fn pop(&mut self) -> Option<(Runnable, Decision)> {
        self.0.pop()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}
