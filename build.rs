//! Compiles bpf/main.bpf.c and generates its Rust skeleton.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "bpf/main.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"))
        .join("gthulhu.skel.rs");
    // sched_ext needs clang 16 or later; Debian 12's default clang is 14.
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang-19".to_string());

    SkeletonBuilder::new()
        .source(SRC)
        .clang(&clang)
        .clang_args([
            "-Ibpf",
            "-Wall",
            "-Wno-compare-distinct-pointer-types",
            "-Wno-missing-declarations",
        ])
        .build_and_generate(&out)
        .unwrap_or_else(|e| panic!("building {SRC} with {clang} failed: {e:#}"));

    for f in [SRC, "bpf/intf.h", "bpf/compat.h", "bpf/vmlinux.h"] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=CLANG");
}
