//! Test helpers: a fake Kubernetes API server on 127.0.0.1, service-account
//! files for it, and pod lists to serve.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::ApiConfig;

pub(crate) const NODE: &str = "node-1";
pub(crate) const TOKEN: &str = "test-token.abc";

/// One canned answer of the fake API server.
#[derive(Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: String,
}

pub(crate) fn ok(body: &str) -> Answer {
    Answer {
        status: 200,
        body: body.to_string(),
    }
}

/// A fake API server on 127.0.0.1: answers every request with the
/// current `answer` and records each request's head.
pub(crate) struct FakeApi {
    pub(crate) url: String,
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<Mutex<Vec<String>>>,
    served: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl FakeApi {
    pub(crate) fn start(answer: Answer) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let (a, r, s, stop) = (
            answer.clone(),
            requests.clone(),
            served.clone(),
            stopping.clone(),
        );
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { return };
                serve(stream, &a.lock().unwrap().clone(), &r);
                s.fetch_add(1, Ordering::SeqCst);
            }
        });
        FakeApi {
            url: format!("http://{addr}"),
            addr,
            answer,
            requests,
            served,
            stopping,
            thread,
        }
    }

    pub(crate) fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub(crate) fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    pub(crate) fn last_request(&self) -> String {
        self.requests.lock().unwrap().last().cloned().unwrap()
    }

    /// Shuts the server down: once this returns, its port refuses
    /// connections.
    pub(crate) fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag and drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5));
        self.thread.join().unwrap();
    }
}

fn serve(stream: TcpStream, answer: &Answer, requests: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    requests.lock().unwrap().push(head);
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        answer.status,
        answer.body.len(),
        answer.body
    );
}

/// A service-account directory holding [`TOKEN`], removed on drop.
pub(crate) struct Files {
    pub(crate) dir: PathBuf,
}

impl Files {
    pub(crate) fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("gthulhu-k8s-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
        Files { dir }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Lists [`NODE`]'s pods from `url` over plain HTTP, refreshing and
/// retrying every few tens of milliseconds.
pub(crate) fn config(url: &str, files: &Files) -> ApiConfig {
    ApiConfig {
        base_url: url.to_string(),
        token_path: files.dir.join("token"),
        ca_path: files.dir.join("ca.crt"),
        node_name: NODE.to_string(),
        refresh: Duration::from_millis(30),
        timeout: Duration::from_secs(5),
        max_response_bytes: 1 << 20,
        retry_min: Duration::from_millis(10),
        retry_max: Duration::from_millis(40),
        allow_plain_http: true,
    }
}

/// One pod of [`NODE`] as the API server lists it; `labels` is JSON.
pub(crate) fn pod(uid: &str, namespace: &str, labels: &str) -> String {
    format!(
        r#"{{"metadata":{{"uid":"{uid}","namespace":"{namespace}","name":"p","labels":{labels},"managedFields":[{{"manager":"kubelet"}}]}},"spec":{{"nodeName":"{NODE}"}},"status":{{"phase":"Running"}}}}"#
    )
}

pub(crate) fn pod_list(kind: &str, items: &[String]) -> String {
    format!(
        r#"{{"kind":"{kind}","apiVersion":"v1","metadata":{{"resourceVersion":"42"}},"items":[{}]}}"#,
        items.join(",")
    )
}
