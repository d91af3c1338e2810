//! gthulhu: a sched_ext scheduler that gives chosen workloads the CPU first.

// Not yet called from main: remove these allows when main wires them in.
#[cfg_attr(not(test), allow(dead_code))]
mod check;
#[cfg_attr(not(test), allow(dead_code))]
mod config;
#[cfg_attr(not(test), allow(dead_code))]
mod strategy;

mod bpf_skel {
    include!(concat!(env!("OUT_DIR"), "/gthulhu.skel.rs"));
}

fn main() {}
