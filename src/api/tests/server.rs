//! A scripted HTTP/1.1 server on 127.0.0.1 for the client's tests: one
//! thread, one request per connection, replies taken in order from a queue
//! per path, and misbehaviour on demand.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The server gives up on its own after this long, whatever happens.
const LIFETIME: Duration = Duration::from_secs(60);
/// How long a test waits for the next request it expects.
pub const WAIT: Duration = Duration::from_secs(10);

pub const TOKEN: &str = "/api/v1/auth/token";
pub const STRATEGIES: &str = "/api/v1/scheduling/strategies";
pub const METRICS: &str = "/api/v1/metrics";

/// What the server does with one request.
pub enum Reply {
    /// A status and a JSON (or not) body.
    Body(u16, String),
    /// Never answer; keep the connection open.
    Stall,
    /// A 200 whose body never ends.
    Endless,
}

pub fn ok(body: impl Into<String>) -> Reply {
    Reply::Body(200, body.into())
}

/// One request as received.
#[derive(Debug)]
pub struct Recorded {
    /// The first bytes received, whatever they are.
    pub head: Vec<u8>,
    pub method: String,
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON request body")
    }
}

type Script = Arc<Mutex<HashMap<&'static str, VecDeque<Reply>>>>;

pub struct TestServer {
    pub addr: SocketAddr,
    script: Script,
    requests: Receiver<Recorded>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local address");
        let script: Script = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, requests) = mpsc::channel();
        let thread = {
            let (script, stop) = (Arc::clone(&script), Arc::clone(&stop));
            thread::spawn(move || serve(&listener, &script, &tx, &stop))
        };
        TestServer {
            addr,
            script,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// A base URL the client can be configured with.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}{STRATEGIES}", self.addr)
    }

    /// Queues replies for requests to `path`.
    pub fn script(&self, path: &'static str, replies: impl IntoIterator<Item = Reply>) {
        self.script
            .lock()
            .unwrap()
            .entry(path)
            .or_default()
            .extend(replies);
    }

    /// The next request received, waiting at most [`WAIT`].
    pub fn next(&self) -> Recorded {
        self.requests.recv_timeout(WAIT).expect("a request in time")
    }

    /// The next request to `path`, skipping others.
    pub fn next_to(&self, path: &str) -> Recorded {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.requests.recv_timeout(left).expect("a request in time");
            if r.path == path {
                return r;
            }
        }
    }

    /// Every request received so far, without waiting.
    pub fn received(&self) -> Vec<Recorded> {
        self.requests.try_iter().collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A port nothing listens on: connections to it are refused.
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local address")
}

fn serve(listener: &TcpListener, script: &Script, tx: &Sender<Recorded>, stop: &AtomicBool) {
    let end = Instant::now() + LIFETIME;
    let mut stalled = Vec::new();
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some(stream) = handle(stream, script, tx) {
                    stalled.push(stream);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return,
        }
    }
}

/// Answers one connection; returns it if it is to be kept open unanswered.
fn handle(mut stream: TcpStream, script: &Script, tx: &Sender<Recorded>) -> Option<TcpStream> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    let request = read_request(&mut stream);
    let path = request.path.clone();
    let _ = tx.send(request);
    let reply = script
        .lock()
        .unwrap()
        .iter_mut()
        .find(|(p, _)| **p == path)
        .and_then(|(_, queue)| queue.pop_front())
        .unwrap_or_else(|| {
            Reply::Body(
                503,
                r#"{"success":false,"error":"script exhausted"}"#.into(),
            )
        });
    match reply {
        Reply::Body(status, body) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            None
        }
        Reply::Stall => Some(stream),
        Reply::Endless => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[",
            );
            let chunk = [b' '; 16 << 10];
            // Until the client hangs up (or 256 MiB, to stay bounded).
            for _ in 0..(256 << 20) / chunk.len() {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
            }
            None
        }
    }
}

/// Reads a request head and a Content-Length body; whatever cannot be
/// parsed is left empty (the raw start is kept in `head`).
fn read_request(stream: &mut TcpStream) -> Recorded {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(i);
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
        if data.len() > 1 << 20 {
            break None;
        }
    };
    let mut recorded = Recorded {
        head: data.iter().take(64).copied().collect(),
        method: String::new(),
        path: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let Some(head_end) = head_end else {
        return recorded;
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    recorded.method = first.next().unwrap_or("").to_string();
    recorded.path = first.next().unwrap_or("").to_string();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            recorded
                .headers
                .push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let length: usize = recorded
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    recorded.body = body;
    recorded
}

/// Waits until `check` holds, at most [`WAIT`]; for state another thread
/// changes.
pub fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    check()
}

/// Receives from `rx`, waiting at most [`WAIT`].
pub fn recv<T>(rx: &Receiver<T>) -> T {
    match rx.recv_timeout(WAIT) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("nothing received in {WAIT:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("sender gone"),
    }
}
