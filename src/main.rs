//! gthulhu: a sched_ext scheduler that gives chosen workloads the CPU first.
//!
//! main wires the pieces together: parse the command line, check the host,
//! attach the BPF program and run the scheduling loop until a signal or the
//! kernel ends it (restarting when the kernel asks, e.g. on CPU hotplug).

mod bpf;
mod cli;
mod counters;
mod events;
mod host;
mod logger;
mod policy;
mod scheduler;
mod topology;

// Not yet called from main: remove these allows when main wires them in.
#[cfg_attr(not(test), allow(dead_code))]
mod api;
#[cfg_attr(not(test), allow(dead_code))]
mod check;
#[cfg_attr(not(test), allow(dead_code))]
mod config;
#[cfg_attr(not(test), allow(dead_code))]
mod strategy;

use std::mem::MaybeUninit;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use log::{error, info, warn, LevelFilter};

use crate::bpf::{Bpf, LoadOptions};
use crate::cli::{Command, Options};
use crate::events::Events;
use crate::policy::PolicyParams;
use crate::scheduler::{Outcome, Scheduler};
use crate::topology::Topology;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gthulhu: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("gthulhu {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check(_) => {
            eprintln!("gthulhu: check is not available yet");
            ExitCode::from(2)
        }
        Command::Run(opts) => {
            logger::init(opts.log_level.unwrap_or(LevelFilter::Info));
            match run(&opts) {
                Ok(code) => code,
                Err(e) => {
                    error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Scheduler settings after applying the command line over the defaults.
struct Settings {
    slice_ns: u64,
    slice_min_ns: u64,
    watchdog_timeout_ms: u32,
    interval: Duration,
}

impl Settings {
    fn from_options(opts: &Options) -> Self {
        Self {
            slice_ns: opts.slice_us.unwrap_or(5_000) * 1_000,
            slice_min_ns: opts.slice_min_us.unwrap_or(500) * 1_000,
            watchdog_timeout_ms: opts.watchdog_timeout_ms.unwrap_or(5_000),
            interval: Duration::from_secs(opts.interval_s.unwrap_or(10)),
        }
    }
}

fn run(opts: &Options) -> Result<ExitCode, String> {
    host::check_sched_ext()?;
    let settings = Settings::from_options(opts);
    let topology = Topology::from_sysfs(Path::new("/sys"))?;
    let events = Events::new()?;
    if let Err(e) = host::lock_memory() {
        warn!("{e}; the scheduler may stall on page faults under memory pressure");
    }

    loop {
        let mut object = MaybeUninit::uninit();
        let bpf = Bpf::attach(
            &mut object,
            &LoadOptions {
                slice_ns: settings.slice_ns,
                slice_min_ns: settings.slice_min_ns,
                watchdog_timeout_ms: settings.watchdog_timeout_ms,
                nr_online_cpus: topology.nr_online() as u64,
            },
        )?;
        info!(
            "gthulhu attached: {} CPUs, slice {} us (min {} us), watchdog {} ms",
            topology.nr_online(),
            settings.slice_ns / 1000,
            settings.slice_min_ns / 1000,
            settings.watchdog_timeout_ms
        );
        let scheduler = Scheduler::new(
            bpf,
            &events,
            &topology,
            PolicyParams {
                slice_ns: settings.slice_ns,
                slice_min_ns: settings.slice_min_ns,
            },
            settings.interval,
        );
        match scheduler.run() {
            Outcome::Terminated(exit) => {
                match exit {
                    Some(exit) => info!("exit: {exit}"),
                    None => info!("exit: detached"),
                }
                return Ok(ExitCode::SUCCESS);
            }
            Outcome::Exited(exit) if exit.wants_restart() => {
                info!("exit: {exit}; restarting as the kernel asked");
            }
            Outcome::Exited(exit) => {
                error!("exit: {exit}");
                return Ok(if exit.is_clean() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
        }
    }
}
