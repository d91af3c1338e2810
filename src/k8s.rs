//! Pod metadata of this node from the Kubernetes API.
//!
//! Strategies select processes by the namespace and labels of their pod; the
//! pod is found from the pod UID in `/proc/<pid>/cgroup`. This module keeps
//! the UID -> metadata table up to date: a plain thread lists the pods bound
//! to this node (`GET /api/v1/pods?fieldSelector=spec.nodeName=<node>`)
//! every `refresh` and publishes a complete snapshot whenever it changed.
//!
//! When the API cannot be reached, or answers something unusable, nothing is
//! published, so the labels last seen stay in force; the thread retries with
//! an exponential back-off and logs one line per change of state, not one per
//! failed attempt.

use crate::strategy::model::{PodIndex, PodInfo};
use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use log::{debug, info, warn};
use nix::sched::{setns, CloneFlags};
use serde::Deserialize;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// Where Kubernetes mounts the pod's service-account token and cluster CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Ask for metadata only (about a tenth of a full pod); an API server that
/// cannot do that answers a plain PodList, which parses the same way.
const ACCEPT: &str =
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";

/// Largest pod list accepted (after decompression). A node runs at most a
/// few hundred pods; full pod objects are 5-20 KiB each.
const MAX_RESPONSE_BYTES: u64 = 32 << 20;
/// Largest service-account token or CA bundle read.
const MAX_SECRET_BYTES: u64 = 1 << 20;
/// How much of an error answer is read to report its message.
const MAX_ERROR_BYTES: u64 = 4096;

/// All pods of this node by UID, as the strategy resolver takes them.
pub type Pods = PodIndex;

/// Where and how to reach the API server.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// `https://host:port`, without a trailing path.
    pub base_url: String,
    /// Bearer token file; read before every request since kubelet rotates it.
    pub token_path: PathBuf,
    /// PEM bundle of the CAs that sign the API server's certificate.
    pub ca_path: PathBuf,
    /// The node whose pods are listed (from the downward API).
    pub node_name: String,
    /// Time between two lists while the API answers.
    pub refresh: Duration,
    /// Bound on one whole request, connect to last byte.
    pub timeout: Duration,
    /// Largest answer accepted.
    pub max_response_bytes: u64,
    /// First and longest wait between failed attempts.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Allow an `http://` base URL (tests against a local fake server only).
    pub allow_plain_http: bool,
}

impl ApiConfig {
    /// The in-cluster configuration of a pod: API address from
    /// `KUBERNETES_SERVICE_HOST`/`_PORT`, node from `NODE_NAME`, credentials
    /// from [`SERVICE_ACCOUNT_DIR`]. `Ok(None)` outside Kubernetes.
    pub fn in_cluster(refresh: Duration) -> Result<Option<ApiConfig>, String> {
        Self::from_env(
            |name| std::env::var(name).ok(),
            Path::new(SERVICE_ACCOUNT_DIR),
            refresh,
        )
    }

    fn from_env(
        var: impl Fn(&str) -> Option<String>,
        service_account: &Path,
        refresh: Duration,
    ) -> Result<Option<ApiConfig>, String> {
        let Some(host) = var("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty()) else {
            return Ok(None);
        };
        let port = var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".to_string());
        port.parse::<u16>()
            .map_err(|_| format!("KUBERNETES_SERVICE_PORT {port:?} is not a port number"))?;
        let node_name = var("NODE_NAME").filter(|n| !n.is_empty()).ok_or(
            "NODE_NAME is unset: set it from the downward API (fieldRef spec.nodeName) \
             so pod selectors can match",
        )?;
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(Some(ApiConfig {
            base_url: format!("https://{host}:{port}"),
            token_path: service_account.join("token"),
            ca_path: service_account.join("ca.crt"),
            node_name,
            refresh,
            timeout: Duration::from_secs(10),
            max_response_bytes: MAX_RESPONSE_BYTES,
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60).max(refresh),
            allow_plain_http: false,
        }))
    }

    fn validate(&self) -> Result<(), String> {
        let plain = self.base_url.starts_with("http://");
        if !(self.base_url.starts_with("https://") || plain && self.allow_plain_http) {
            return Err(format!(
                "Kubernetes API URL {:?} must start with https://",
                self.base_url
            ));
        }
        let valid_node = !self.node_name.is_empty()
            && self.node_name.len() <= 253
            && self
                .node_name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_node {
            return Err(format!(
                "node name {:?} is not a Kubernetes node name",
                self.node_name
            ));
        }
        if self.refresh.is_zero() || self.retry_min.is_zero() {
            return Err("Kubernetes refresh and retry periods must be positive".to_string());
        }
        Ok(())
    }

    fn pods_url(&self) -> String {
        // resourceVersion=0 lets the API server answer from its cache, which
        // matters when every node of a large cluster lists periodically.
        format!(
            "{}/api/v1/pods?fieldSelector=spec.nodeName%3D{}&resourceVersion=0",
            self.base_url.trim_end_matches('/'),
            self.node_name
        )
    }
}

/// Makes the calling thread see cgroup paths as the host does.
///
/// A container has its own cgroup namespace, in which `/proc/<pid>/cgroup`
/// of other pods reads relative to the container's cgroup, e.g.
/// `0::/../../pod<uid>/<ctr>` instead of `/kubepods/burstable/pod<uid>/<ctr>`.
/// With hostPID and CAP_SYS_ADMIN, joining the cgroup namespace of the
/// host's init (`<proc>/1`, `proc` being `/proc`) gives back full paths. A no-op (`Ok(false)`)
/// where the namespaces are already the same, as under systemd. Namespaces
/// belong to threads: call it before starting the threads that read
/// `/proc/<pid>/cgroup`, which then inherit it.
pub fn use_host_cgroup_namespace(proc: &Path) -> io::Result<bool> {
    let ours = std::fs::metadata("/proc/thread-self/ns/cgroup")?;
    let theirs = File::open(proc.join("1/ns/cgroup"))?;
    let meta = theirs.metadata()?;
    if (meta.dev(), meta.ino()) == (ours.dev(), ours.ino()) {
        return Ok(false);
    }
    setns(&theirs, CloneFlags::CLONE_NEWCGROUP).map_err(io::Error::from)?;
    Ok(true)
}

/// Keeps the pod thread running; dropping it stops the thread at its next
/// wait (an ongoing request still runs to its timeout).
#[must_use = "dropping the Watcher stops the pod thread"]
pub struct Watcher {
    _stop: mpsc::Sender<()>,
}

/// Starts the pod thread. `publish` receives each new snapshot (the first
/// one as soon as the API answers) and returns false once nobody listens,
/// which ends the thread; it typically sends the snapshot to the resolver's
/// channel and wakes the resolver.
pub fn spawn(
    config: ApiConfig,
    publish: impl FnMut(Pods) -> bool + Send + 'static,
) -> Result<Watcher, String> {
    config.validate()?;
    let (stop, stopped) = mpsc::channel();
    thread::Builder::new()
        .name("gthulhu-k8s".to_string())
        .spawn(move || watch(&config, publish, &stopped))
        .map_err(|e| format!("cannot start the Kubernetes pod thread: {e}"))?;
    Ok(Watcher { _stop: stop })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Starting,
    Up,
    Down(Kind),
}

fn watch(config: &ApiConfig, mut publish: impl FnMut(Pods) -> bool, stopped: &mpsc::Receiver<()>) {
    let mut client: Option<Client> = None;
    let mut last: Option<Pods> = None;
    let mut health = Health::Starting;
    let mut retry = config.retry_min;
    loop {
        let result = match &client {
            Some(c) => c.fetch(),
            None => Client::new(config).and_then(|c| c.fetch().inspect(|_| client = Some(c))),
        };
        let wait = match result {
            Ok(pods) => {
                if health != Health::Up {
                    info!(
                        "kubernetes: listing the pods of node {} from {}: {} pods",
                        config.node_name,
                        config.base_url,
                        pods.len()
                    );
                    health = Health::Up;
                }
                retry = config.retry_min;
                if last.as_ref() != Some(&pods) {
                    debug!("kubernetes: pods changed, now {}", pods.len());
                    if !publish(pods.clone()) {
                        return;
                    }
                    last = Some(pods);
                }
                config.refresh
            }
            Err(e) => {
                client = None;
                if health != Health::Down(e.kind) {
                    let kept = match &last {
                        Some(pods) => {
                            format!("keeping the labels of the {} pods last seen", pods.len())
                        }
                        None => "pod selectors match nothing until it answers".to_string(),
                    };
                    warn!("kubernetes: {e}; retrying with back-off, {kept}");
                    health = Health::Down(e.kind);
                }
                let wait = jittered(retry);
                retry = (retry * 2).min(config.retry_max);
                wait
            }
        };
        if stopped.recv_timeout(wait) != Err(RecvTimeoutError::Timeout) {
            return;
        }
    }
}

/// `base` plus up to a quarter more, so nodes that lost the API together do
/// not come back in lockstep.
fn jittered(base: Duration) -> Duration {
    let random = RandomState::new().build_hasher().finish();
    base + base.mul_f64((random % 1024) as f64 / 4096.0)
}

/// What went wrong, coarsely: a change of kind is logged, a repeat is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Credentials,
    Transport,
    Status(u16),
    TooLarge,
    Invalid,
}

#[derive(Debug)]
struct FetchError {
    kind: Kind,
    message: String,
}

impl FetchError {
    fn new(kind: Kind, message: impl Into<String>) -> Self {
        FetchError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

struct Client {
    agent: ureq::Agent,
    url: String,
    token_path: PathBuf,
    max_response_bytes: u64,
}

impl Client {
    fn new(config: &ApiConfig) -> Result<Client, FetchError> {
        let mut builder = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .user_agent(concat!("gthulhu/", env!("CARGO_PKG_VERSION")));
        if config.base_url.starts_with("https://") {
            let roots = load_ca(&config.ca_path)?;
            builder = builder.tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::Specific(Arc::new(roots)))
                    .build(),
            );
        }
        Ok(Client {
            agent: builder.build().into(),
            url: config.pods_url(),
            token_path: config.token_path.clone(),
            max_response_bytes: config.max_response_bytes,
        })
    }

    fn fetch(&self) -> Result<Pods, FetchError> {
        let token = read_secret(&self.token_path)?;
        let token = String::from_utf8(token)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty() && !t.contains(char::is_whitespace))
            .ok_or_else(|| {
                FetchError::new(
                    Kind::Credentials,
                    format!("{}: not a bearer token", self.token_path.display()),
                )
            })?;
        let mut response = self
            .agent
            .get(&self.url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Accept", ACCEPT)
            .call()
            .map_err(|e| FetchError::new(Kind::Transport, format!("GET {}: {e}", self.url)))?;
        let status = response.status().as_u16();
        if status != 200 {
            let detail = response
                .body_mut()
                .with_config()
                .limit(MAX_ERROR_BYTES)
                .read_to_vec()
                .ok()
                .and_then(|body| status_message(&body))
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Err(FetchError::new(
                Kind::Status(status),
                format!("GET {}: HTTP {status}{detail}", self.url),
            ));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(self.max_response_bytes)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(limit) => FetchError::new(
                    Kind::TooLarge,
                    format!("GET {}: answer larger than {limit} bytes", self.url),
                ),
                e => FetchError::new(Kind::Transport, format!("GET {}: {e}", self.url)),
            })?;
        parse_pods(&body)
            .map_err(|e| FetchError::new(Kind::Invalid, format!("GET {}: {e}", self.url)))
    }
}

fn read_secret(path: &Path) -> Result<Vec<u8>, FetchError> {
    let fail =
        |e: std::io::Error| FetchError::new(Kind::Credentials, format!("{}: {e}", path.display()));
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(fail)?
        .take(MAX_SECRET_BYTES)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    Ok(bytes)
}

fn load_ca(path: &Path) -> Result<Vec<Certificate<'static>>, FetchError> {
    let pem = read_secret(path)?;
    let mut roots = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => roots.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(FetchError::new(
                    Kind::Credentials,
                    format!("{}: {e}", path.display()),
                ))
            }
        }
    }
    if roots.is_empty() {
        return Err(FetchError::new(
            Kind::Credentials,
            format!("{}: no PEM certificate", path.display()),
        ));
    }
    Ok(roots)
}

#[derive(Deserialize)]
struct List {
    kind: String,
    items: Option<Vec<Item>>,
}

#[derive(Deserialize)]
struct Item {
    metadata: Metadata,
}

#[derive(Deserialize)]
struct Metadata {
    uid: String,
    namespace: String,
    labels: Option<BTreeMap<String, String>>,
}

/// Parses a PodList or PartialObjectMetadataList, keeping uid, namespace
/// and labels. Anything else (another kind, a pod without uid or
/// namespace) rejects the whole answer rather than publish a partial view.
fn parse_pods(body: &[u8]) -> Result<Pods, String> {
    let list: List = serde_json::from_slice(body).map_err(|e| format!("not a pod list: {e}"))?;
    if list.kind != "PodList" && list.kind != "PartialObjectMetadataList" {
        return Err(format!("not a pod list: kind {:?}", list.kind));
    }
    let mut pods = Pods::default();
    for item in list.items.unwrap_or_default() {
        let Metadata {
            uid,
            namespace,
            labels,
        } = item.metadata;
        if uid.is_empty() || namespace.is_empty() {
            return Err("a pod without uid or namespace".to_string());
        }
        pods.insert(
            &uid,
            PodInfo {
                namespace,
                labels: labels.unwrap_or_default(),
            },
        );
    }
    Ok(pods)
}

/// The `message` of a Kubernetes Status answer, on one line.
fn status_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Status {
        message: String,
    }
    let status: Status = serde_json::from_slice(body).ok()?;
    Some(status.message.replace('\n', " "))
}

#[cfg(test)]
mod pod_strategies;
#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::testing::{config, ok, pod, pod_list, Answer, FakeApi, Files, TOKEN};
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    const UID_A: &str = "0f2c3ad4-7c1e-4a7b-9d52-2c3c1b1f0a01";
    const UID_B: &str = "5B8A1E7C-1111-4222-8333-944455556666";

    fn two_pods() -> String {
        pod_list(
            "PodList",
            &[
                pod(UID_A, "default", r#"{"app":"upf","tier":"core"}"#),
                pod(UID_B, "kube-system", "null"),
            ],
        )
    }

    fn expected_two_pods() -> Pods {
        let mut pods = Pods::default();
        pods.insert(
            UID_A,
            PodInfo {
                namespace: "default".to_string(),
                labels: BTreeMap::from([
                    ("app".to_string(), "upf".to_string()),
                    ("tier".to_string(), "core".to_string()),
                ]),
            },
        );
        pods.insert(
            UID_B,
            PodInfo {
                namespace: "kube-system".to_string(),
                labels: BTreeMap::new(),
            },
        );
        pods
    }

    fn fetch(config: &ApiConfig) -> Result<Pods, FetchError> {
        Client::new(config)?.fetch()
    }

    #[test]
    fn lists_this_nodes_pods_with_the_bearer_token() {
        let api = FakeApi::start(ok(&two_pods()));
        let files = Files::new("list");
        let pods = fetch(&config(&api.url, &files)).unwrap();
        assert_eq!(pods, expected_two_pods());
        let request = api.last_request();
        let mut lines = request.lines();
        assert_eq!(
            lines.next().unwrap(),
            "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&resourceVersion=0 HTTP/1.1"
        );
        let headers: Vec<String> = lines.map(str::to_ascii_lowercase).collect();
        assert!(headers.contains(&format!(
            "authorization: bearer {}",
            TOKEN.to_ascii_lowercase()
        )));
        assert!(headers.contains(&format!("accept: {}", ACCEPT.to_ascii_lowercase())));
    }

    #[test]
    fn parses_metadata_only_lists_and_empty_lists() {
        let partial = pod_list(
            "PartialObjectMetadataList",
            &[format!(
                r#"{{"metadata":{{"uid":"{UID_A}","namespace":"ran","labels":{{"app":"du"}}}}}}"#
            )],
        );
        let pods = parse_pods(partial.as_bytes()).unwrap();
        assert_eq!(pods.get(UID_A).unwrap().namespace, "ran");
        assert_eq!(pods.get(UID_A).unwrap().labels["app"], "du");
        assert_eq!(
            parse_pods(br#"{"kind":"PodList","items":[]}"#)
                .unwrap()
                .len(),
            0
        );
        assert_eq!(
            parse_pods(br#"{"kind":"PodList","items":null}"#)
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn rejects_garbage() {
        for body in [
            "",
            "<html>proxy error</html>",
            r#"{"items":[]}"#,
            r#"{"kind":"Status","status":"Failure"}"#,
            r#"{"kind":"PodList","items":[{"metadata":{"namespace":"x"}}]}"#,
            r#"{"kind":"PodList","items":[{"metadata":{"uid":"","namespace":"x"}}]}"#,
            r#"{"kind":"PodList","items":[{"metadata":{"uid":"u","namespace":"x","labels":{"a":1}}}]}"#,
            r#"{"kind":"PodList","items":[{"metadata":{"uid":"u","namespace":"x"}}"#,
        ] {
            assert!(parse_pods(body.as_bytes()).is_err(), "accepted {body:?}");
        }
        let api = FakeApi::start(ok("not json"));
        let files = Files::new("garbage");
        let err = fetch(&config(&api.url, &files)).unwrap_err();
        assert_eq!(err.kind, Kind::Invalid);
    }

    #[test]
    fn rejects_oversized_answers() {
        let big: Vec<String> = (0..200)
            .map(|i| {
                pod(
                    &format!("{i:08}-0000-0000-0000-000000000000"),
                    "default",
                    r#"{"app":"x"}"#,
                )
            })
            .collect();
        let api = FakeApi::start(ok(&pod_list("PodList", &big)));
        let files = Files::new("big");
        let mut cfg = config(&api.url, &files);
        cfg.max_response_bytes = 4096;
        let err = fetch(&cfg).unwrap_err();
        assert_eq!(err.kind, Kind::TooLarge, "{err}");
        cfg.max_response_bytes = 1 << 20;
        assert_eq!(fetch(&cfg).unwrap().len(), 200);
    }

    #[test]
    fn reports_the_api_status_message() {
        let api = FakeApi::start(Answer {
            status: 403,
            body: r#"{"kind":"Status","message":"pods is forbidden: User \"system:serviceaccount:x:y\" cannot list resource \"pods\""}"#.to_string(),
        });
        let files = Files::new("forbidden");
        let err = fetch(&config(&api.url, &files)).unwrap_err();
        assert_eq!(err.kind, Kind::Status(403));
        assert!(err.message.ends_with("HTTP 403: pods is forbidden: User \"system:serviceaccount:x:y\" cannot list resource \"pods\""), "{err}");
    }

    #[test]
    fn unreachable_server_and_missing_token_are_errors() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let files = Files::new("unreachable");
        let cfg = config(&format!("http://127.0.0.1:{port}"), &files);
        assert_eq!(fetch(&cfg).unwrap_err().kind, Kind::Transport);
        std::fs::remove_file(files.dir.join("token")).unwrap();
        assert_eq!(fetch(&cfg).unwrap_err().kind, Kind::Credentials);
    }

    #[test]
    fn https_needs_a_readable_ca_bundle() {
        let files = Files::new("ca");
        let mut cfg = config("https://127.0.0.1:1", &files);
        let err = Client::new(&cfg).err().unwrap();
        assert_eq!(err.kind, Kind::Credentials);
        std::fs::write(&cfg.ca_path, "not a certificate\n").unwrap();
        let err = Client::new(&cfg).err().unwrap();
        assert!(err.message.contains("no PEM certificate"), "{err}");
        cfg.allow_plain_http = false;
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn plain_http_only_when_allowed() {
        let files = Files::new("plain");
        let mut cfg = config("http://127.0.0.1:1", &files);
        cfg.allow_plain_http = false;
        let err = spawn(cfg, |_| true).err().unwrap();
        assert!(err.contains("must start with https://"), "{err}");
    }

    #[test]
    fn rejects_node_names_that_would_change_the_query() {
        let files = Files::new("node");
        for node in ["", "node&labelSelector=x", "Node-1", "node 1"] {
            let mut cfg = config("http://127.0.0.1:1", &files);
            cfg.node_name = node.to_string();
            assert!(cfg.validate().is_err(), "accepted {node:?}");
        }
    }

    #[test]
    fn in_cluster_config_from_the_environment() {
        let sa = Path::new("/sa");
        let refresh = Duration::from_secs(10);
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(ApiConfig::from_env(env(&[("NODE_NAME", "n")]), sa, refresh)
            .unwrap()
            .is_none());
        let cfg = ApiConfig::from_env(
            env(&[
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("KUBERNETES_SERVICE_PORT", "443"),
                ("NODE_NAME", "worker-2"),
            ]),
            sa,
            refresh,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            cfg.pods_url(),
            "https://10.96.0.1:443/api/v1/pods?fieldSelector=spec.nodeName%3Dworker-2&resourceVersion=0"
        );
        assert_eq!(cfg.token_path, Path::new("/sa/token"));
        assert_eq!(cfg.ca_path, Path::new("/sa/ca.crt"));
        assert!(!cfg.allow_plain_http);
        assert!(cfg.validate().is_ok());
        let v6 = ApiConfig::from_env(
            env(&[
                ("KUBERNETES_SERVICE_HOST", "fd00::1"),
                ("KUBERNETES_SERVICE_PORT", "6443"),
                ("NODE_NAME", "n"),
            ]),
            sa,
            refresh,
        )
        .unwrap()
        .unwrap();
        assert_eq!(v6.base_url, "https://[fd00::1]:6443");
        let err = ApiConfig::from_env(
            env(&[("KUBERNETES_SERVICE_HOST", "10.96.0.1")]),
            sa,
            refresh,
        )
        .unwrap_err();
        assert!(err.contains("NODE_NAME"), "{err}");
    }

    #[test]
    fn outside_kubernetes_there_is_nothing_to_watch() {
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
            assert!(ApiConfig::in_cluster(Duration::from_secs(10))
                .unwrap()
                .is_none());
        }
        assert!(Path::new(SERVICE_ACCOUNT_DIR).is_absolute());
    }

    fn own_cgroup() -> String {
        std::fs::read_to_string("/proc/thread-self/cgroup").unwrap()
    }

    #[test]
    fn joining_a_cgroup_namespace_restores_full_paths() {
        // A proc root whose "init" is this test's thread.
        let files = Files::new("cgroupns");
        std::fs::create_dir_all(files.dir.join("1/ns")).unwrap();
        let this_thread = format!(
            "/proc/{}/task/{}/ns/cgroup",
            std::process::id(),
            nix::unistd::gettid()
        );
        std::os::unix::fs::symlink(this_thread, files.dir.join("1/ns/cgroup")).unwrap();
        let full = own_cgroup();
        assert!(!use_host_cgroup_namespace(&files.dir).unwrap());
        let proc = files.dir.clone();
        thread::spawn(move || {
            if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP) {
                eprintln!("skipped: cannot create a cgroup namespace here: {e}");
                return;
            }
            if own_cgroup() == full {
                eprintln!("skipped: cgroup paths already start at the root here");
                return;
            }
            assert!(use_host_cgroup_namespace(&proc).unwrap());
            assert_eq!(own_cgroup(), full);
        })
        .join()
        .unwrap();
    }

    fn next(rx: &mpsc::Receiver<Pods>) -> Pods {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("no snapshot")
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn watcher_publishes_changes_and_keeps_the_last_snapshot_on_failure() {
        let api = FakeApi::start(ok(&two_pods()));
        let files = Files::new("watch");
        let (tx, rx) = mpsc::channel();
        let wakes = Arc::new(AtomicUsize::new(0));
        let counted = wakes.clone();
        let watcher = spawn(config(&api.url, &files), move |pods| {
            counted.fetch_add(1, Ordering::SeqCst);
            tx.send(pods).is_ok()
        })
        .unwrap();
        assert_eq!(next(&rx), expected_two_pods());

        // Unchanged lists publish nothing.
        let seen = api.served();
        wait_for("two more lists", || api.served() >= seen + 2);
        // Failures of every kind publish nothing either.
        for answer in [
            Answer {
                status: 500,
                body: "oops".to_string(),
            },
            ok("garbage"),
            ok(r#"{"kind":"PodList","items":[{"metadata":{}}]}"#),
        ] {
            api.set(answer);
            let seen = api.served();
            wait_for("retries", || api.served() >= seen + 2);
        }
        assert!(rx.try_recv().is_err());
        assert_eq!(wakes.load(Ordering::SeqCst), 1);

        // Recovery with a changed list publishes it.
        let one = pod_list(
            "PodList",
            &[pod(UID_A, "default", r#"{"app":"upf","v":"2"}"#)],
        );
        api.set(ok(&one));
        let pods = next(&rx);
        assert_eq!(pods.len(), 1);
        assert_eq!(pods.get(UID_A).unwrap().labels["v"], "2");

        // Dropping the watcher stops the thread: the server sees no more lists.
        drop(watcher);
        thread::sleep(Duration::from_millis(100));
        let seen = api.served();
        thread::sleep(Duration::from_millis(200));
        assert_eq!(api.served(), seen);
    }

    #[test]
    fn watcher_ends_when_nobody_listens() {
        let api = FakeApi::start(ok(&two_pods()));
        let files = Files::new("closed");
        let (tx, rx) = mpsc::channel::<Pods>();
        drop(rx);
        let watcher = spawn(config(&api.url, &files), move |pods| tx.send(pods).is_ok()).unwrap();
        wait_for("the first list", || api.served() >= 1);
        thread::sleep(Duration::from_millis(200));
        assert_eq!(api.served(), 1);
        drop(watcher);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(1000) && d <= Duration::from_millis(1250));
        }
    }
}
