//! Command-line parsing. Flags override the config file, which overrides
//! the built-in defaults.

use std::path::PathBuf;

use log::LevelFilter;

pub const USAGE: &str = "\
gthulhu: a sched_ext scheduler that gives chosen workloads the CPU first

USAGE:
    gthulhu [run] [OPTIONS]            attach to sched_ext and schedule
    gthulhu check --config FILE        validate FILE and list the processes
                                       each strategy selects now (no sched_ext
                                       needed)
    gthulhu stats [ADDR]               live table from a running gthulhu's
                                       /metrics (default 127.0.0.1:9100)

OPTIONS:
    -c, --config FILE            YAML configuration: scheduler settings and
                                 strategies (see config/gthulhu.yaml); watched
                                 and reloaded live. Default: none (built-in
                                 defaults, no strategies)
    -i, --interval SECS          seconds between two \"bss data\" counter lines
                                 (default 10; config: scheduler.interval)
        --slice-us US            default time slice in microseconds
                                 (default 5000; config: scheduler.slice_ns_default)
        --slice-min-us US        shortest slice when many tasks wait
                                 (default 500; config: scheduler.slice_ns_min)
        --watchdog-timeout-ms MS how long a runnable task may wait before the
                                 kernel ejects the scheduler (default 5000;
                                 config: scheduler.watchdog_timeout_ms)
        --log-level LEVEL        error, warn, info or debug (default info)
    -h, --help                   print this help
    -V, --version                print the version

SIGINT/SIGTERM detach cleanly; SIGHUP reloads the config file.
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run(Options),
    Check(PathBuf),
    /// Show the live table of the /metrics served at this address.
    Stats(std::net::SocketAddr),
    Help,
    Version,
}

/// Settings given on the command line; `None` means "not given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub interval_s: Option<u64>,
    pub slice_us: Option<u64>,
    pub slice_min_us: Option<u64>,
    pub watchdog_timeout_ms: Option<u32>,
    pub log_level: Option<LevelFilter>,
}

/// Parse the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut args = args.into_iter().peekable();
    if args.peek().map(String::as_str) == Some("stats") {
        args.next();
        let addr = args.next().unwrap_or_else(|| "127.0.0.1:9100".to_string());
        if let Some(extra) = args.next() {
            return Err(format!("unknown argument {extra:?} (see --help)"));
        }
        return addr.parse().map(Command::Stats).map_err(|_| {
            format!("stats: {addr:?} is not an IP address and port, e.g. 127.0.0.1:9100")
        });
    }
    let check = match args.peek().map(String::as_str) {
        Some("check") => {
            args.next();
            true
        }
        Some("run") => {
            args.next();
            false
        }
        _ => false,
    };

    let mut opts = Options::default();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value (see --help)"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-c" | "--config" => opts.config = Some(PathBuf::from(value()?)),
            "-i" | "--interval" => opts.interval_s = Some(number(&flag, &value()?, 1, 3600)?),
            "--slice-us" => opts.slice_us = Some(number(&flag, &value()?, 50, 1_000_000)?),
            "--slice-min-us" => opts.slice_min_us = Some(number(&flag, &value()?, 50, 1_000_000)?),
            "--watchdog-timeout-ms" => {
                opts.watchdog_timeout_ms = Some(number(&flag, &value()?, 1000, 30_000)? as u32)
            }
            "--log-level" => opts.log_level = Some(level(&value()?)?),
            _ => return Err(format!("unknown argument {arg:?} (see --help)")),
        }
    }

    if check {
        return opts
            .config
            .map(Command::Check)
            .ok_or_else(|| "check needs --config FILE".to_string());
    }
    if let (Some(slice), Some(min)) = (opts.slice_us, opts.slice_min_us) {
        if min > slice {
            return Err(format!(
                "--slice-min-us ({min}) must not exceed --slice-us ({slice})"
            ));
        }
    }
    Ok(Command::Run(opts))
}

fn number(flag: &str, text: &str, min: u64, max: u64) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{flag} takes a whole number from {min} to {max}, not {text:?}"
        )),
    }
}

fn level(text: &str) -> Result<LevelFilter, String> {
    match text {
        "error" => Ok(LevelFilter::Error),
        "warn" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        _ => Err(format!(
            "--log-level takes error, warn, info or debug, not {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Command, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn stats_takes_an_optional_address() {
        assert_eq!(
            parse_str("stats"),
            Ok(Command::Stats("127.0.0.1:9100".parse().unwrap()))
        );
        assert_eq!(
            parse_str("stats [::1]:9464"),
            Ok(Command::Stats("[::1]:9464".parse().unwrap()))
        );
        assert!(parse_str("stats localhost").is_err());
        assert!(parse_str("stats 127.0.0.1:1 x").is_err());
    }

    #[test]
    fn no_arguments_runs_with_defaults() {
        assert_eq!(parse_str(""), Ok(Command::Run(Options::default())));
        assert_eq!(parse_str("run"), Ok(Command::Run(Options::default())));
    }

    #[test]
    fn flags_accept_separate_and_inline_values() {
        let Ok(Command::Run(o)) = parse_str("-c /etc/g.yaml --interval=2 --slice-us 3000") else {
            panic!("expected run");
        };
        assert_eq!(o.config, Some(PathBuf::from("/etc/g.yaml")));
        assert_eq!(o.interval_s, Some(2));
        assert_eq!(o.slice_us, Some(3000));
    }

    #[test]
    fn check_requires_a_config_file() {
        assert_eq!(
            parse_str("check --config a.yaml"),
            Ok(Command::Check(PathBuf::from("a.yaml")))
        );
        assert!(parse_str("check").unwrap_err().contains("--config"));
    }

    #[test]
    fn bad_values_name_the_flag_and_the_range() {
        let err = parse_str("--watchdog-timeout-ms 10").unwrap_err();
        assert!(
            err.contains("--watchdog-timeout-ms") && err.contains("1000"),
            "{err}"
        );
        assert!(parse_str("--interval")
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_str("--bogus")
            .unwrap_err()
            .contains("unknown argument"));
        assert!(parse_str("--slice-us 500 --slice-min-us 900")
            .unwrap_err()
            .contains("must not exceed"));
    }

    #[test]
    fn help_lists_every_flag() {
        for flag in [
            "--config",
            "--interval",
            "--slice-us",
            "--slice-min-us",
            "--watchdog-timeout-ms",
            "--log-level",
            "--help",
            "--version",
        ] {
            assert!(USAGE.contains(flag), "{flag} missing from --help");
        }
        assert_eq!(parse_str("--help"), Ok(Command::Help));
    }
}
