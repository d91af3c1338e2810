//! Reloads the configuration file when it changes.
//!
//! The parent directory is watched (not recursively) rather than the file,
//! so every way a file gets replaced is seen: in-place writes, an editor's
//! temporary file renamed over it, delete and re-create, and a Kubernetes
//! ConfigMap volume, where `cfg.yaml -> ..data/cfg.yaml` and the `..data`
//! symlink is swapped atomically by renaming a new one over it. When the
//! file is itself a symlink to another directory, that directory is
//! watched too. After a burst of events settles, the file is read through
//! its symlinks and, if its content changed, validated: a valid file is
//! applied, an invalid one is logged in one line and the last good
//! configuration stays.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};

use super::{read_file, Config, ConfigError};
use crate::strategy::resolver::ResolverInput;

/// Quiet time that ends a burst of file system events.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// A burst that never goes quiet is cut after this long.
const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// What a reload attempt produced, for the caller's callback.
#[derive(Debug)]
pub enum ConfigEvent {
    /// A valid new configuration, already sent to the resolver.
    Reloaded(Config),
    /// The file changed but cannot be read or is invalid; nothing changed.
    Rejected(ConfigError),
}

/// Receives every [`ConfigEvent`], on the watcher's thread.
pub type OnConfig = Box<dyn FnMut(ConfigEvent) + Send>;

enum Msg {
    Fs(notify::Result<notify::Event>),
    Reload,
    Stop,
}

/// Watches a configuration file; stops when dropped.
pub struct ConfigWatcher {
    control: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl ConfigWatcher {
    /// Starts watching `path`, then loads it. Returns the watcher and the
    /// configuration as loaded now, or why it cannot be loaded or watched.
    ///
    /// On every later valid change it sends `ResolverInput::Strategies` and
    /// `ResolverInput::ScanInterval` to `resolver`, logs
    /// `config reloaded from FILE: N strategies`, and calls `on_config`
    /// with `ConfigEvent::Reloaded`; on an invalid one it logs the error and
    /// calls `on_config` with `ConfigEvent::Rejected`.
    pub fn start(
        path: PathBuf,
        resolver: Sender<ResolverInput>,
        on_config: OnConfig,
    ) -> Result<(ConfigWatcher, Config), ConfigError> {
        let file = path.display().to_string();
        let fail = |message: String| ConfigError {
            file: file.clone(),
            location: None,
            message,
        };
        let (control, messages) = mpsc::channel();
        let events = control.clone();
        let mut watcher = notify::recommended_watcher(move |event| {
            let _ = events.send(Msg::Fs(event));
        })
        .map_err(|e| fail(format!("cannot watch: {e}")))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| fail(format!("cannot watch {}: {e}", dir.display())))?;

        // Watching first means no change after this read is missed.
        let content = read_file(&path).map_err(fail)?;
        let config = Config::parse(&content, &file)?;
        let mut state = State {
            path,
            dir,
            watcher,
            target_dir: None,
            last_seen: Some(content),
            last_error: None,
            resolver,
            on_config,
        };
        state.follow_target();
        let thread = thread::Builder::new()
            .name("gthulhu-config".into())
            .spawn(move || state.run(messages))
            .map_err(|e| fail(format!("cannot start the watcher thread: {e}")))?;
        Ok((
            ConfigWatcher {
                control,
                thread: Some(thread),
            },
            config,
        ))
    }

    /// Rereads the file now, even if unchanged (for SIGHUP).
    pub fn reload(&self) {
        let _ = self.control.send(Msg::Reload);
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        let _ = self.control.send(Msg::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct State {
    path: PathBuf,
    /// The watched directory holding `path`.
    dir: PathBuf,
    watcher: RecommendedWatcher,
    /// The directory of the file `path` resolves to, when elsewhere.
    target_dir: Option<PathBuf>,
    /// Content last read, valid or not.
    last_seen: Option<String>,
    /// Last read error logged, so a missing file is reported once.
    last_error: Option<String>,
    resolver: Sender<ResolverInput>,
    on_config: OnConfig,
}

/// Whether an event may mean the content changed: opening or reading the
/// file (as this watcher does) does not.
fn may_change(event: &notify::Result<notify::Event>) -> bool {
    match event {
        Ok(event) => match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        },
        Err(e) => {
            log::warn!("config watch: {e}");
            true
        }
    }
}

impl State {
    fn run(mut self, messages: Receiver<Msg>) {
        loop {
            let mut force = match messages.recv() {
                Ok(Msg::Fs(event)) if may_change(&event) => false,
                Ok(Msg::Fs(_)) => continue,
                Ok(Msg::Reload) => true,
                Ok(Msg::Stop) | Err(_) => return,
            };
            let start = Instant::now();
            while start.elapsed() < MAX_DEBOUNCE {
                match messages.recv_timeout(DEBOUNCE) {
                    Ok(Msg::Fs(_)) => {}
                    Ok(Msg::Reload) => force = true,
                    Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    Err(RecvTimeoutError::Timeout) => break,
                }
            }
            self.check(force);
            self.follow_target();
        }
    }

    /// Rereads the file and applies it if it changed (or if `force`).
    fn check(&mut self, force: bool) {
        let file = self.path.display().to_string();
        let content = match read_file(&self.path) {
            Ok(content) => content,
            Err(message) => {
                if force || self.last_error.as_ref() != Some(&message) {
                    let error = ConfigError {
                        file,
                        location: None,
                        message: message.clone(),
                    };
                    log::error!("config not reloaded: {error}");
                    (self.on_config)(ConfigEvent::Rejected(error));
                }
                self.last_error = Some(message);
                return;
            }
        };
        self.last_error = None;
        if !force && self.last_seen.as_ref() == Some(&content) {
            return;
        }
        let parsed = Config::parse(&content, &file);
        self.last_seen = Some(content);
        match parsed {
            Ok(config) => {
                let _ = self
                    .resolver
                    .send(ResolverInput::Strategies(config.strategies.clone()));
                let _ = self
                    .resolver
                    .send(ResolverInput::ScanInterval(Duration::from_millis(
                        config.scheduler.scan_interval_ms,
                    )));
                log::info!(
                    "config reloaded from {file}: {} strategies",
                    config.strategies.len()
                );
                (self.on_config)(ConfigEvent::Reloaded(config));
            }
            Err(error) => {
                log::error!("config not reloaded: {error}");
                (self.on_config)(ConfigEvent::Rejected(error));
            }
        }
    }

    /// Also watches the directory of the file `path` resolves to, when it
    /// differs from the one holding `path`, so in-place writes to a
    /// symlink's target are seen.
    fn follow_target(&mut self) {
        let target = fs::canonicalize(&self.path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let target = target.filter(|t| fs::canonicalize(&self.dir).ok().as_ref() != Some(t));
        if target == self.target_dir {
            return;
        }
        if let Some(old) = self.target_dir.take() {
            let _ = self.watcher.unwatch(&old);
        }
        if let Some(new) = target {
            if self
                .watcher
                .watch(&new, RecursiveMode::NonRecursive)
                .is_ok()
            {
                self.target_dir = Some(new);
            }
        }
    }
}

#[cfg(test)]
mod tests;
