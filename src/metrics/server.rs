//! A minimal HTTP/1.x server for `GET /metrics` on a plain thread: one
//! connection at a time, each bounded in request size and total time, so a
//! slow or hostile client costs at most `CONNECTION_TIME` and never reaches
//! the scheduling loop.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::Metrics;

/// Largest request head read; larger requests get 431.
const MAX_REQUEST: usize = 8192;
/// Longest a connection may take, reading and writing together.
const CONNECTION_TIME: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Listens on `addr` and serves `/metrics` from a new thread.
pub fn spawn(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        // The server thread holds no capabilities, so no privileged port.
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied && addr.port() < 1024 {
            "; metrics.listen needs a port of 1024 or above"
        } else {
            ""
        };
        format!("cannot listen for metrics on {addr}: {e}{hint}")
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("metrics listener on {addr}: {e}"))?;
    thread::Builder::new()
        .name("gthulhu-metrics".into())
        .spawn(move || serve(&listener, &metrics))
        .map_err(|e| format!("starting the metrics thread failed: {e}"))?;
    info!("metrics: serving http://{local}/metrics");
    Ok(local)
}

fn serve(listener: &TcpListener, metrics: &Metrics) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(e) = handle(stream, || metrics.render()) {
                    debug!("metrics: connection ended: {e}");
                }
            }
            Err(e) => {
                debug!("metrics: accept failed: {e}");
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
}

/// Reads one request within the deadline and answers it.
fn handle(mut stream: TcpStream, render: impl FnOnce() -> String) -> io::Result<()> {
    let deadline = Instant::now() + CONNECTION_TIME;
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    while !head_complete(&buf[..len]) && len < buf.len() {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut buf[len..])? {
            0 => break,
            n => len += n,
        }
    }
    let response = respond(&buf[..len], render);
    let mut sent = 0;
    while sent < response.len() {
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        sent += stream.write(&response[sent..])?;
    }
    stream.shutdown(Shutdown::Both)
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

fn head_complete(request: &[u8]) -> bool {
    request.windows(4).any(|w| w == b"\r\n\r\n") || request.windows(2).any(|w| w == b"\n\n")
}

/// The whole HTTP response to a request head.
fn respond(request: &[u8], render: impl FnOnce() -> String) -> Vec<u8> {
    if !head_complete(request) {
        return response("431 Request Header Fields Too Large", "text/plain", "");
    }
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, target) = (words.next(), words.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => response("200 OK", CONTENT_TYPE, &render()),
        (Some(b"GET"), _) => response("404 Not Found", "text/plain", "try /metrics\n"),
        _ => response("405 Method Not Allowed", "text/plain", ""),
    }
}

fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(response: &[u8]) -> String {
        let text = String::from_utf8_lossy(response);
        text.lines().next().unwrap_or_default().to_string()
    }

    #[test]
    fn get_metrics_returns_the_exposition_with_its_content_type() {
        let r = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", || {
            "a 1\n".into()
        });
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(text.contains("Content-Length: 4\r\n"));
        assert!(text.ends_with("\r\n\r\na 1\n"));
    }

    #[test]
    fn other_paths_methods_and_truncated_heads_are_refused() {
        let never = || -> String { panic!("rendered for a refused request") };
        assert_eq!(
            status(&respond(b"GET / HTTP/1.0\r\n\r\n", never)),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(&respond(b"POST /metrics HTTP/1.1\r\n\r\n", never)),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(
            status(&respond(b"GET /metrics HTTP/1.1\r\nX: y", never)),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[test]
    fn a_silent_client_is_dropped_and_the_next_one_is_served() {
        let metrics = Arc::new(Metrics::default());
        let addr = spawn("127.0.0.1:0".parse().unwrap(), metrics).unwrap();
        let started = Instant::now();
        // Connects and sends nothing: served last, after its deadline.
        let _silent = TcpStream::connect(addr).unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(CONNECTION_TIME * 2)).unwrap();
        client.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("gthulhu_queued_total 0"));
        assert!(started.elapsed() < CONNECTION_TIME * 2);
    }

    #[test]
    fn an_oversized_request_gets_431_without_reading_it_all() {
        let metrics = Arc::new(Metrics::default());
        let addr = spawn("127.0.0.1:0".parse().unwrap(), metrics).unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(CONNECTION_TIME * 2)).unwrap();
        let _ = client.write_all(&[b'x'; MAX_REQUEST]);
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer);
        assert_eq!(
            status(&answer),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }
}
