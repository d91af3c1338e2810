//! Everything that can wake the scheduling loop besides the ring buffer:
//! signals and messages from the helper threads. Both end in one pipe the
//! loop polls, so the loop never blocks on anything else.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::fcntl::OFlag;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

pub struct Events {
    read: OwnedFd,
    write: Arc<OwnedFd>,
    terminate: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

/// A handle other threads use to wake the loop after sending it a message.
#[derive(Clone)]
pub struct Waker(Arc<OwnedFd>);

impl Waker {
    pub fn wake(&self) {
        // A full pipe already guarantees a wake-up, so EAGAIN is fine.
        let _ = nix::unistd::write(&*self.0, &[1]);
    }
}

impl Events {
    /// Create the wake-up pipe and route SIGINT, SIGTERM and SIGHUP to it.
    pub fn new() -> Result<Self, String> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
            .map_err(|e| format!("creating the wake-up pipe failed: {e}"))?;
        let events = Self {
            read,
            write: Arc::new(write),
            terminate: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
        };
        for (sig, flag) in [
            (SIGINT, &events.terminate),
            (SIGTERM, &events.terminate),
            (SIGHUP, &events.reload),
        ] {
            let pipe = events
                .write
                .try_clone()
                .map_err(|e| format!("duplicating the wake-up pipe failed: {e}"))?;
            signal_hook::flag::register(sig, Arc::clone(flag))
                .and_then(|_| signal_hook::low_level::pipe::register(sig, pipe))
                .map_err(|e| format!("installing the handler for signal {sig} failed: {e}"))?;
        }
        Ok(events)
    }

    pub fn waker(&self) -> Waker {
        Waker(Arc::clone(&self.write))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Empty the pipe after poll() reported it readable.
    pub fn clear(&self) {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.read, &mut buf), Ok(n) if n > 0) {}
    }

    /// SIGINT or SIGTERM arrived.
    pub fn terminate_requested(&self) -> bool {
        self.terminate.load(Ordering::Relaxed)
    }

    /// SIGHUP arrived since the last call.
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    #[test]
    fn waker_makes_the_pipe_readable_until_cleared() {
        let events = Events::new().unwrap();
        events.waker().wake();
        let readable = |e: &Events| {
            let mut fds = [PollFd::new(e.fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
        };
        assert!(readable(&events));
        events.clear();
        assert!(!readable(&events));
    }
}
