//! A minimal `log` backend: one line per record on stderr, which journald
//! and `kubectl logs` timestamp themselves.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        let _ = writeln!(std::io::stderr().lock(), "{level} {}", record.args());
    }

    fn flush(&self) {}
}

pub fn init(level: LevelFilter) {
    static LOGGER: StderrLogger = StderrLogger;
    // Only fails if a logger is already set, which keeps that one.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
