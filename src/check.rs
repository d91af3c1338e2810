//! `gthulhu check --config FILE`: validates a configuration file and shows
//! which running processes each strategy selects now, with the matcher the
//! scheduler uses. Needs neither root nor sched_ext.

use std::io::{self, Write};
use std::path::Path;

use crate::config::Config;
use crate::strategy::matcher::{rule_table, scan, ProcessMatch, Scope};
use crate::strategy::model::{PodIndex, Priority, Strategy};
use crate::strategy::procfs::ProcFs;

/// Runs the check against `/proc`, printing to stdout (the error to
/// stderr); returns the process exit code: 0 if valid, 1 if not.
pub fn run(config: &Path) -> i32 {
    run_with(
        config,
        Path::new("/proc"),
        &mut io::stdout().lock(),
        &mut io::stderr().lock(),
    )
}

fn run_with(path: &Path, proc_root: &Path, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match Config::load(path) {
        Ok(config) => match report(path, &config, proc_root, out) {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(err, "cannot write the report: {e}");
                1
            }
        },
        Err(e) => {
            let _ = writeln!(err, "{e}");
            1
        }
    }
}

fn report(path: &Path, config: &Config, proc_root: &Path, out: &mut dyn Write) -> io::Result<()> {
    let strategies = &config.strategies;
    writeln!(
        out,
        "{}: valid, {} strategies",
        path.display(),
        strategies.len()
    )?;
    // Pod metadata comes from the Kubernetes watcher, which check does not
    // run: pod selectors match nothing here.
    let matches = scan(&ProcFs::new(proc_root), strategies, &PodIndex::default());
    for (index, strategy) in strategies.list.iter().enumerate() {
        let selected: Vec<&ProcessMatch> = matches.iter().filter(|m| m.strategy == index).collect();
        writeln!(
            out,
            "strategy {} ({}): {} processes, {} tasks",
            strategy.name,
            effect(strategy),
            selected.len(),
            selected.iter().map(|m| m.tasks()).sum::<usize>()
        )?;
        if strategy.selector.needs_pod() {
            writeln!(
                out,
                "  (namespace and selectors need Kubernetes pod metadata: they match nothing in check)"
            )?;
        }
        for m in selected {
            match &m.scope {
                Scope::Process { threads } => writeln!(
                    out,
                    "  pid {} {}: whole process ({threads} threads)",
                    m.tgid, m.comm
                )?,
                Scope::Threads(threads) => {
                    let list: Vec<String> = threads
                        .iter()
                        .map(|t| format!("{} {}", t.tid, t.comm))
                        .collect();
                    writeln!(
                        out,
                        "  pid {} {}: threads {}",
                        m.tgid,
                        m.comm,
                        list.join(", ")
                    )?
                }
            }
        }
    }
    let table = rule_table(strategies, &matches);
    writeln!(
        out,
        "{} task rules would cover {} tasks",
        table.rules.len(),
        table.tasks
    )
}

fn effect(strategy: &Strategy) -> String {
    let priority = match strategy.priority {
        Priority::Level(level) => format!("priority {level}"),
        Priority::NoBoost => "no boost".to_string(),
    };
    match strategy.execution_time {
        Some(ns) => format!("{priority}, execution_time {ns} ns"),
        None => format!("{priority}, default slice"),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::strategy::testing::{FakeProc, TempDir};

    fn check(config: &Path, proc: &FakeProc) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(config, proc.root(), &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn check_lists_what_each_strategy_selects() {
        let proc = FakeProc::new();
        proc.add_process(100, "gthulhu-demo", "/");
        proc.add_thread(100, 101, "gthulhu-demo");
        proc.add_process(200, "java", "/");
        proc.add_thread(200, 201, "io-1");
        proc.add_thread(200, 202, "gc");
        proc.add_thread(200, 203, "io-2");
        let dir = TempDir::new("check");
        let path = dir.path().join("cfg.yaml");
        fs::write(
            &path,
            "strategies:
  - {name: demo, command_regex: ^gthulhu-demo, priority: 0, execution_time: 2000000}
  - {name: io, command_regex: ^io-, execution_time: 1000000}
  - {name: pods, namespace: core, priority: 3}
",
        )
        .unwrap();
        let (code, out, err) = check(&path, &proc);
        assert_eq!((code, err.as_str()), (0, ""));
        assert_eq!(
            out,
            format!(
                "{}: valid, 3 strategies
strategy demo (priority 0, execution_time 2000000 ns): 1 processes, 2 tasks
  pid 100 gthulhu-demo: whole process (2 threads)
strategy io (no boost, execution_time 1000000 ns): 1 processes, 2 tasks
  pid 200 java: threads 201 io-1, 203 io-2
strategy pods (priority 3, default slice): 0 processes, 0 tasks
  (namespace and selectors need Kubernetes pod metadata: they match nothing in check)
3 task rules would cover 4 tasks
",
                path.display()
            )
        );
    }

    #[test]
    fn check_reports_an_invalid_file_and_exits_1() {
        let proc = FakeProc::new();
        let dir = TempDir::new("check-invalid");
        let path = dir.path().join("cfg.yaml");
        fs::write(&path, "strategies:\n  - {name: a, pid: 1, priority: yes}\n").unwrap();
        let (code, out, err) = check(&path, &proc);
        assert_eq!((code, out.as_str()), (1, ""));
        assert_eq!(
            err,
            format!(
                "{}:2:33: strategies[0].priority: invalid type: string \"yes\", \
                 expected an integer 0..=7 or a boolean\n",
                path.display()
            )
        );
    }

    #[test]
    fn run_exits_1_when_the_file_is_missing() {
        let dir = TempDir::new("check-run");
        assert_eq!(run(&dir.path().join("missing.yaml")), 1);
    }
}
