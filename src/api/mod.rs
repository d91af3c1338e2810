//! The optional Gthulhu API client.
//!
//! When `api.enabled` is true, a thread of its own (`gthulhu-api`) talks to
//! a Gthulhu API server every `api.interval` seconds with blocking HTTP:
//! it gets a JWT with the configured public key (`POST /api/v1/auth/token`,
//! unless `auth_enabled: false`), fetches the scheduling strategies
//! (`GET /api/v1/scheduling/strategies`) and posts the latest counter
//! snapshot (`POST /api/v1/metrics`). Nothing else ever waits for it.
//!
//! # How file and API strategies combine
//!
//! The effective strategies are the file's, in file order, followed by the
//! API's, in the server's order (named `api[0]`, `api[1]`, ... by their
//! index in the server's list). The resolver matches both with the same
//! rule: where several select a task, the lower priority level wins, then
//! the shorter `execution_time`, then the one listed first, so a file
//! strategy wins a full tie. The API's strategies are replaced as a whole on
//! each good fetch (an empty list removes them); a failed or refused fetch
//! changes nothing, so the last strategies received stay in force while the
//! server is unreachable, and the file's always apply.
//!
//! An API strategy with a `pid` selects that process (and, if it has a
//! `command_regex`, only while its name matches); the server has already
//! resolved its label `selectors` into that pid. One without a pid is
//! matched locally by its `command_regex` and label selectors, like a file
//! strategy. Entries that cannot do anything (no boost and no
//! `execution_time`, or nothing to select by) are left out.
//!
//! # Failures
//!
//! Each request is bounded by `connect_timeout_ms` and `timeout_ms`, and
//! each response by `max_response_bytes`. After a failure the next attempt
//! waits twice as long each time (from `interval` up to 5 minutes). The log
//! gets one line when the server becomes unavailable, one when it is back,
//! and a reminder at most every 5 minutes in between. Tokens and keys are
//! never logged.

pub mod config;

mod auth;
mod client;
mod tls;
mod urls;
mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, TryLockError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};

use self::client::Client;
use self::config::ApiConfig;
use self::wire::Entry;
use crate::counters::Counters;
use crate::strategy::model::Strategies;

/// Longest wait between attempts while the server fails.
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// Longest silence about a server that keeps failing.
const REMINDER: Duration = Duration::from_secs(300);

/// The API's complete, checked strategy list, replacing the previous one.
/// Sent only when it differs from the last one sent.
#[derive(Debug)]
pub struct ApiUpdate(pub Strategies);

/// The strategies in force: the file's, in file order, then the API's.
/// Matching the result with the resolver's one precedence rule makes a
/// file strategy win a full tie with an API one.
pub fn effective(file: &Strategies, api: &Strategies) -> Strategies {
    Strategies {
        list: file.list.iter().chain(&api.list).cloned().collect(),
    }
}

/// The running client. Dropping it stops the thread at its next wait
/// (without waiting for a request in flight, which its timeouts bound).
pub struct ApiHandle {
    counters: Arc<Mutex<Option<Counters>>>,
    status: Arc<Status>,
    _stop: Sender<()>,
}

/// How the last fetch and post cycles went, for /metrics.
#[derive(Default)]
struct Status {
    consecutive_failures: AtomicU64,
    /// Unix time of the last good cycle; 0: none yet.
    last_success_unix: AtomicU64,
}

/// [`Status`] as read at one time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiStatus {
    pub consecutive_failures: u64,
    pub last_success_unix: u64,
}

impl ApiHandle {
    /// Hands the latest counters to the client for its next metrics post.
    /// Never blocks: if the client is copying the previous snapshot right
    /// now, this one is skipped (the next call brings a newer one).
    pub fn publish_counters(&self, counters: Counters) {
        match self.counters.try_lock() {
            Ok(mut slot) => *slot = Some(counters),
            Err(TryLockError::Poisoned(e)) => *e.into_inner() = Some(counters),
            Err(TryLockError::WouldBlock) => {}
        }
    }

    pub fn status(&self) -> ApiStatus {
        ApiStatus {
            consecutive_failures: self.status.consecutive_failures.load(Ordering::Relaxed),
            last_success_unix: self.status.last_success_unix.load(Ordering::Relaxed),
        }
    }
}

/// Starts the client if `config.enabled`; `Ok(None)` if it is not.
///
/// Reads the key and certificate files first, so a missing, unreadable,
/// world-writable or malformed one fails here, with a one-line reason.
/// Each new strategy list goes to `tx` as `M::from(ApiUpdate)`, followed by
/// a call to `wake`. `slice_ns_min` (`scheduler.slice_ns_min`) bounds API
/// `execution_time`s as it bounds the file's. The thread ends when the
/// handle is dropped or `tx`'s receiver is gone.
pub fn spawn<M>(
    config: &ApiConfig,
    slice_ns_min: u64,
    tx: Sender<M>,
    wake: Box<dyn Fn() + Send>,
) -> Result<Option<ApiHandle>, String>
where
    M: From<ApiUpdate> + Send + 'static,
{
    if !config.enabled {
        return Ok(None);
    }
    let client = Client::new(config, slice_ns_min)?;
    let counters = Arc::new(Mutex::new(None));
    let status = Arc::new(Status::default());
    let (stop_tx, stop_rx) = mpsc::channel();
    let worker = Worker {
        client,
        interval: config.interval,
        tx,
        wake,
        counters: Arc::clone(&counters),
        status: Arc::clone(&status),
        last: None,
    };
    thread::Builder::new()
        .name("gthulhu-api".to_string())
        .spawn(move || worker.run(&stop_rx))
        .map_err(|e| format!("cannot start the API client thread: {e}"))?;
    Ok(Some(ApiHandle {
        counters,
        status,
        _stop: stop_tx,
    }))
}

struct Worker<M> {
    client: Client,
    interval: Duration,
    tx: Sender<M>,
    wake: Box<dyn Fn() + Send>,
    counters: Arc<Mutex<Option<Counters>>>,
    status: Arc<Status>,
    /// What the server sent last time it was sent on, if ever.
    last: Option<Vec<Entry>>,
}

/// The receiver of updates is gone: nobody wants them any more.
struct Disconnected;

impl<M: From<ApiUpdate>> Worker<M> {
    fn run(mut self, stop: &Receiver<()>) {
        let mut health = Health::default();
        loop {
            let line = match self.cycle() {
                Err(Disconnected) => return,
                Ok(Ok(())) => {
                    self.status.consecutive_failures.store(0, Ordering::Relaxed);
                    let now = SystemTime::now().duration_since(UNIX_EPOCH);
                    self.status
                        .last_success_unix
                        .store(now.map_or(0, |d| d.as_secs()), Ordering::Relaxed);
                    health.success().map(|l| (false, l))
                }
                Ok(Err(reason)) => {
                    self.status
                        .consecutive_failures
                        .fetch_add(1, Ordering::Relaxed);
                    health.failure(Instant::now(), &reason).map(|l| (true, l))
                }
            };
            match line {
                Some((true, line)) => warn!("{line}"),
                Some((false, line)) => info!("{line}"),
                None => {}
            }
            // Nothing is ever sent on `stop`: it disconnects when the
            // handle is dropped.
            if stop.recv_timeout(health.delay(self.interval)) != Err(RecvTimeoutError::Timeout) {
                return;
            }
        }
    }

    /// Fetches strategies (sending them on if they changed), then posts the
    /// latest counters if there are new ones.
    fn cycle(&mut self) -> Result<Result<(), String>, Disconnected> {
        let fetched = match self.client.fetch_strategies() {
            Ok(fetched) => fetched,
            Err(e) => return Ok(Err(format!("fetching strategies: {e}"))),
        };
        if fetched.skipped > 0 {
            debug!(
                "Gthulhu API: left out {} strategies that cannot do anything",
                fetched.skipped
            );
        }
        if self.last.as_ref() != Some(&fetched.entries) {
            info!(
                "Gthulhu API: {} strategies now in force",
                fetched.strategies.len()
            );
            self.tx
                .send(M::from(ApiUpdate(fetched.strategies)))
                .map_err(|_| Disconnected)?;
            (self.wake)();
            self.last = Some(fetched.entries);
        }
        let snapshot = match self.counters.lock() {
            Ok(mut slot) => slot.take(),
            Err(e) => e.into_inner().take(),
        };
        Ok(match snapshot {
            Some(counters) => self
                .client
                .post_metrics(&counters)
                .map_err(|e| format!("posting metrics: {e}")),
            None => Ok(()),
        })
    }
}

/// Whether the server answers, and what to log about it.
#[derive(Default)]
struct Health {
    failing: Option<Failing>,
}

struct Failing {
    since: Instant,
    failures: u32,
    last_logged: Instant,
}

impl Health {
    /// Records a good cycle; the line to log if that is news.
    fn success(&mut self) -> Option<String> {
        self.failing.take().map(|f| {
            format!(
                "Gthulhu API reachable again after {} failed attempts",
                f.failures
            )
        })
    }

    /// Records a failed cycle; the line to log if it is news or a reminder
    /// is due.
    fn failure(&mut self, now: Instant, reason: &str) -> Option<String> {
        match &mut self.failing {
            None => {
                self.failing = Some(Failing {
                    since: now,
                    failures: 1,
                    last_logged: now,
                });
                Some(format!(
                    "Gthulhu API unavailable: {reason}; keeping the strategies it last sent"
                ))
            }
            Some(f) => {
                f.failures = f.failures.saturating_add(1);
                if now.duration_since(f.last_logged) < REMINDER {
                    return None;
                }
                f.last_logged = now;
                Some(format!(
                    "Gthulhu API still unavailable ({} failed attempts in {} s): {reason}",
                    f.failures,
                    now.duration_since(f.since).as_secs()
                ))
            }
        }
    }

    /// How long to wait before the next cycle: `interval`, doubled for each
    /// consecutive failure after the first, up to [`BACKOFF_CAP`] (or
    /// `interval`, if that is longer).
    fn delay(&self, interval: Duration) -> Duration {
        let failures = self.failing.as_ref().map_or(0, |f| f.failures);
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        interval
            .saturating_mul(factor)
            .min(BACKOFF_CAP.max(interval))
    }
}

#[cfg(test)]
mod tests;
