//! systemd readiness notification (`sd_notify`), without libsystemd.
//!
//! Under `Type=notify` systemd passes `$NOTIFY_SOCKET`, a datagram socket
//! path (or an abstract name written with a leading '@'). Outside systemd
//! the variable is unset and every call here does nothing.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nix::time::{clock_gettime, ClockId};

/// Tells systemd the scheduler is attached and serving; `status` becomes
/// the unit's STATUS= line in `systemctl status`.
pub fn ready(status: &str) -> io::Result<()> {
    notify(&format!("READY=1\nSTATUS={}", one_line(status)))
}

/// Tells systemd a reload (SIGHUP) started; send [`ready`] when it is done.
pub fn reloading() -> io::Result<()> {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).map_err(io::Error::from)?;
    let usec = now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1_000;
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"))
}

/// Tells systemd the scheduler is detaching and about to exit.
pub fn stopping() -> io::Result<()> {
    notify("STOPPING=1")
}

fn notify(message: &str) -> io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(socket) => send(&socket, message),
        None => Ok(()),
    }
}

/// Sends one datagram to `socket`, a path or '@' + abstract name.
fn send(socket: &OsStr, message: &str) -> io::Result<()> {
    let bytes = socket.as_bytes();
    let addr = match bytes.split_first() {
        Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
        Some((b'/', _)) => SocketAddr::from_pathname(socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither an absolute path nor an abstract name",
            ))
        }
    };
    let sent = UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr)?;
    if sent != message.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to NOTIFY_SOCKET",
        ));
    }
    Ok(())
}

/// A STATUS= value must not break the newline-separated message.
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gthulhu-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn sends_ready_with_status_to_a_path_socket() {
        let dir = temp_dir("notify-path");
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.as_os_str(), "READY=1\nSTATUS=attached").unwrap();
        assert_eq!(receive(&listener), "READY=1\nSTATUS=attached");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        let name = format!("gthulhu-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        assert_eq!(receive(&listener), "STOPPING=1");
    }

    #[test]
    fn rejects_a_relative_socket_name() {
        let err = send(OsStr::new("notify.sock"), "READY=1").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(one_line("a\nb"), "a b");
    }

    /// The only test that touches the process environment, so no other test
    /// races with it.
    #[test]
    fn public_calls_reach_notify_socket() {
        let dir = temp_dir("notify-env");
        let path = dir.join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        ready("gthulhu attached: 4 CPUs\nsecond line").unwrap();
        reloading().unwrap();
        stopping().unwrap();
        std::env::remove_var("NOTIFY_SOCKET");
        assert_eq!(
            receive(&listener),
            "READY=1\nSTATUS=gthulhu attached: 4 CPUs second line"
        );
        let reload = receive(&listener);
        let usec = reload
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("unexpected message {reload:?}"));
        assert!(usec.parse::<u64>().unwrap() > 0);
        assert_eq!(receive(&listener), "STOPPING=1");
        ready("outside systemd").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
