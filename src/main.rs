//! gthulhu: a sched_ext scheduler that gives chosen workloads the CPU first.
//!
//! main wires the pieces together: parse the command line, check the host,
//! attach the BPF program and run the scheduling loop until a signal or the
//! kernel ends it (restarting when the kernel asks, e.g. on CPU hotplug).

mod api;
mod bpf;
mod check;
mod cli;
mod config;
mod counters;
mod events;
#[cfg(test)]
mod fuzz;
mod host;
mod k8s;
mod logger;
mod metrics;
mod notify;
mod policy;
mod privileges;
mod rules;
mod scheduler;
mod stats;
mod strategy;
mod topology;

use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use log::{error, info, warn, LevelFilter};

use crate::bpf::{Bpf, LoadOptions};
use crate::cli::{Command, Options};
use crate::config::watch::{ConfigEvent, ConfigWatcher};
use crate::config::{Config, SchedulerConfig};
use crate::events::Events;
use crate::metrics::Metrics;
use crate::policy::PolicyParams;
use crate::rules::RuleMirror;
use crate::scheduler::{Context, Outcome, Scheduler};
use crate::strategy::resolver::{self, ResolverInput};
use crate::strategy::RuleTable;
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
        Command::Stats(addr) => ExitCode::from(stats::run(addr).clamp(0, 255) as u8),
        Command::Check(path) => {
            logger::init(LevelFilter::Warn);
            ExitCode::from(check::run(&path).clamp(0, 255) as u8)
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

/// How often the pods of this node are listed from the Kubernetes API.
const POD_REFRESH: Duration = Duration::from_secs(10);

/// Scheduler settings: command-line flags over the config file's values.
#[derive(PartialEq, Eq)]
struct Settings {
    slice_ns: u64,
    slice_min_ns: u64,
    watchdog_timeout_ms: u32,
    interval: Option<Duration>,
}

impl Settings {
    fn new(file: &SchedulerConfig, opts: &Options) -> Result<Self, String> {
        let settings = Self {
            slice_ns: opts.slice_us.map_or(file.slice_ns_default, |us| us * 1_000),
            slice_min_ns: opts.slice_min_us.map_or(file.slice_ns_min, |us| us * 1_000),
            watchdog_timeout_ms: opts
                .watchdog_timeout_ms
                .unwrap_or(file.watchdog_timeout_ms as u32),
            interval: match opts.interval_s.unwrap_or(file.interval) {
                0 => None,
                s => Some(Duration::from_secs(s)),
            },
        };
        if settings.slice_min_ns > settings.slice_ns {
            return Err(format!(
                "the minimum slice ({} us) exceeds the default slice ({} us): lower --slice-min-us or scheduler.slice_ns_min",
                settings.slice_min_ns / 1000,
                settings.slice_ns / 1000
            ));
        }
        Ok(settings)
    }
}

/// Start watching the config file (if any) and return what it holds now.
fn load_config(
    opts: &Options,
    events: &Events,
    resolver_inputs: &mpsc::Sender<resolver::ResolverInput>,
    metrics: &Arc<Metrics>,
) -> Result<(Option<ConfigWatcher>, Config), String> {
    let Some(path) = &opts.config else {
        return Ok((None, Config::default()));
    };
    let waker = events.waker();
    let metrics = Arc::clone(metrics);
    // The scheduler section in force, set once the first load returns.
    let started: Arc<OnceLock<SchedulerConfig>> = Arc::default();
    let in_force = Arc::clone(&started);
    let (watcher, config) = ConfigWatcher::start(
        path.clone(),
        resolver_inputs.clone(),
        Box::new(move |event| {
            // `systemctl status` shows how the last reload went.
            let status = match event {
                ConfigEvent::Reloaded(config) => {
                    metrics.config_reloaded(true);
                    // Strategies apply live; the scheduler section is read at start.
                    if in_force.get().is_some_and(|s| *s != config.scheduler) {
                        warn!(
                            "the scheduler: section changed; it takes effect when gthulhu restarts"
                        );
                    }
                    format!("scheduling; {} strategies", config.strategies.len())
                }
                ConfigEvent::Rejected(e) => {
                    metrics.config_reloaded(false);
                    format!("scheduling; config not reloaded: {e}")
                }
            };
            let _ = notify::ready(&status);
            waker.wake();
        }),
    )
    .map_err(|e| e.to_string())?;
    let _ = started.set(config.scheduler.clone());
    Ok((Some(watcher), config))
}

/// In Kubernetes, keep the resolver told about this node's pods.
fn watch_pods(
    resolver_inputs: &mpsc::Sender<ResolverInput>,
) -> Result<Option<k8s::Watcher>, String> {
    let Some(api) = k8s::ApiConfig::in_cluster(POD_REFRESH)? else {
        return Ok(None);
    };
    send_pods_to_resolver(api, resolver_inputs).map(Some)
}

/// Starts listing the pods of `api`'s node, each new list going to the
/// resolver; the thread ends with the resolver.
fn send_pods_to_resolver(
    api: k8s::ApiConfig,
    resolver_inputs: &mpsc::Sender<ResolverInput>,
) -> Result<k8s::Watcher, String> {
    let inputs = resolver_inputs.clone();
    k8s::spawn(api, move |pods| {
        inputs.send(ResolverInput::Pods(pods)).is_ok()
    })
}

/// The helper threads, kept alive while the scheduler runs.
struct Helpers {
    watcher: Option<ConfigWatcher>,
    config: Config,
    _pods: Option<k8s::Watcher>,
    api: Option<api::ApiHandle>,
}

/// Starts every helper thread: config watcher, metrics server, Kubernetes
/// pod list, API client and strategy resolver.
fn start_helpers(
    opts: &Options,
    events: &Events,
    metrics: &Arc<Metrics>,
    resolver_inputs: &mpsc::Sender<ResolverInput>,
    resolver_rx: mpsc::Receiver<ResolverInput>,
    rules_tx: mpsc::Sender<RuleTable>,
) -> Result<Helpers, String> {
    let (watcher, config) = load_config(opts, events, resolver_inputs, metrics)?;
    if let Some(addr) = config.metrics.listen {
        metrics::server::spawn(addr, Arc::clone(metrics))?;
    }
    let pods = watch_pods(resolver_inputs)?;
    let waker = events.waker();
    let api = api::spawn(
        &config.api,
        config.scheduler.slice_ns_min,
        resolver_inputs.clone(),
        Box::new(move || waker.wake()),
    )?;
    let waker = events.waker();
    resolver::spawn(
        PathBuf::from("/proc"),
        config.strategies.clone(),
        Duration::from_millis(config.scheduler.scan_interval_ms),
        resolver_rx,
        rules_tx,
        Box::new(move || waker.wake()),
    )
    .map_err(|e| format!("starting the strategy resolver failed: {e}"))?;
    Ok(Helpers {
        watcher,
        config,
        _pods: pods,
        api,
    })
}

/// Raises or lowers the capabilities kept for attaching; a failure leaves
/// them as they are, which `Bpf::attach` reports if it matters.
fn set_attach_capabilities(on: bool) {
    if let Err(e) = privileges::set_effective(on) {
        warn!("cannot change the effective capabilities: {e}");
    }
}

fn run(opts: &Options) -> Result<ExitCode, String> {
    host::check_sched_ext()?;
    let events = Events::new()?;
    let (resolver_inputs, resolver_rx) = mpsc::channel();
    let (rules_tx, rules_rx) = mpsc::channel();
    let metrics = Arc::new(Metrics::default());

    if let Err(e) = host::lock_memory() {
        warn!("{e}; the scheduler may stall on page faults under memory pressure");
    }
    // In a pod, see other pods' cgroup paths in full (before any thread starts).
    if let Err(e) = k8s::use_host_cgroup_namespace(Path::new("/proc")) {
        warn!("cannot join the host's cgroup namespace: {e}; pod selectors may match nothing");
    }
    // The helpers parse untrusted input: they run with no capabilities.
    let helpers = privileges::without_capabilities(|| {
        start_helpers(
            opts,
            &events,
            &metrics,
            &resolver_inputs,
            resolver_rx,
            rules_tx,
        )
    })??;
    let Helpers {
        watcher,
        config,
        api,
        ..
    } = &helpers;
    let settings = Settings::new(&config.scheduler, opts)?;
    if let Err(e) = privileges::keep_only(privileges::ATTACH) {
        warn!("cannot drop capabilities: {e}; gthulhu keeps all it was started with");
    }

    let mut rules = RuleMirror::default();
    loop {
        // Read at every attach: a restart after CPU hotplug must not place
        // tasks on a CPU that went offline (their local queue never runs).
        let topology = Topology::from_sysfs(Path::new("/sys"))?;
        let mut object = MaybeUninit::uninit();
        // Only attaching needs capabilities: they are effective just for it.
        set_attach_capabilities(true);
        let bpf = Bpf::attach(
            &mut object,
            &LoadOptions {
                slice_ns: settings.slice_ns,
                slice_min_ns: settings.slice_min_ns,
                watchdog_timeout_ms: settings.watchdog_timeout_ms,
                nr_online_cpus: u64::from(topology.nr_online()),
            },
        )?;
        set_attach_capabilities(false);
        info!(
            "gthulhu attached: {} CPUs, slice {} us (min {} us), watchdog {} ms, {} file strategies",
            topology.nr_online(),
            settings.slice_ns / 1000,
            settings.slice_min_ns / 1000,
            settings.watchdog_timeout_ms,
            config.strategies.len(),
        );
        if let Err(e) = notify::ready("scheduling") {
            warn!("cannot notify the service manager: {e}");
        }
        let context = Context {
            events: &events,
            topology: &topology,
            rule_updates: &rules_rx,
            watcher: watcher.as_ref(),
            interval: settings.interval,
            resolver: &resolver_inputs,
            api: api.as_ref(),
            metrics: config.metrics.listen.map(|_| &*metrics),
        };
        let params = PolicyParams {
            slice_ns: settings.slice_ns,
            slice_min_ns: settings.slice_min_ns,
        };
        match Scheduler::new(bpf, context, &mut rules, params).run() {
            Outcome::Terminated(exit) => {
                let _ = notify::stopping();
                match exit {
                    Some(exit) => info!("exit: {exit}"),
                    None => info!("exit: detached"),
                }
                return Ok(ExitCode::SUCCESS);
            }
            Outcome::Exited(exit) if exit.wants_restart() => {
                info!("exit: {exit}; restarting as the kernel asked");
                metrics.kernel_exited(exit.to_string());
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
