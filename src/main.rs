//! gthulhu: a sched_ext scheduler that gives chosen workloads the CPU first.

mod bpf_skel {
    include!(concat!(env!("OUT_DIR"), "/gthulhu.skel.rs"));
}

mod policy;
mod topology;

fn main() {}
