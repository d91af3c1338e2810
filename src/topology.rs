// TEMP stub
use std::path::Path;
pub struct Topology {
    n: usize,
}
pub struct IdleCpus([u64; 16]);
impl IdleCpus {
    pub fn from_words(w: [u64; 16]) -> Self {
        Self(w)
    }
}
impl Topology {
    pub fn from_sysfs(_r: &Path) -> Result<Self, String> {
        Ok(Self {
            n: std::thread::available_parallelism().unwrap().get(),
        })
    }
    pub fn nr_online(&self) -> usize {
        self.n
    }
    pub fn pick_cpu(&self, prev: i32, _n: u32, idle: &mut IdleCpus) -> Option<u32> {
        for c in (prev as usize..self.n).chain(0..prev as usize) {
            if idle.0[c / 64] & (1 << (c % 64)) != 0 {
                idle.0[c / 64] &= !(1 << (c % 64));
                return Some(c as u32);
            }
        }
        None
    }
}
