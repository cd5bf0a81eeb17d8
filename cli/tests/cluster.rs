//! Cluster mode on real processes: a NATS server with JetStream (Debian's
//! `nats-server`, on a free loopback port, its store in a temp dir) and
//! several `fnhost serve --cluster` nodes.
//!
//! - a function registered through one node is invoked through another
//!   (and aliases and deletion follow); a node that joins later fetches
//!   the compiled artifact instead of compiling; the same for a component,
//!   and an HTTP component streams through every node's route;
//! - 10,000 events while one node is SIGKILLed mid-run: every event ends
//!   succeeded (its result on the results stream, deduplicated by event
//!   id) or dead-lettered, none lost, and the killed node's in-flight
//!   events run again elsewhere;
//! - a sync invocation through a saturated node is served by another; with
//!   every node saturated the caller gets Lambda's throttling error;
//!   `/healthz` reports a lost NATS connection;
//! - NATS SIGKILLed and restarted on the same store: while it is away
//!   events, deploys, unknown and throttled calls are refused at once and
//!   never run later; killed mid-run under thousands of events, forwarded
//!   sync calls and deploys, every accepted event has one outcome, no
//!   refused request ran, the runs add up to the answers, and every node
//!   ends with the same registry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use base64::Engine as _;
use fnhost_test_guests as guests;
use futures::StreamExt as _;
use serde_json::{Value, json};

#[path = "support/listening.rs"]
mod listening;
#[path = "support/cluster.rs"]
mod support;

use support::{Nats, Node, TOKEN};

/// Starts a node of this build.
fn start_node(nats: &Nats, name: &str, config: &Path, cache: &Path) -> Node {
    Node::start_with(
        Path::new(env!("CARGO_BIN_EXE_fnhost")),
        nats,
        name,
        config,
        cache,
    )
}

/// Nodes `n1`..=`n{count}` of this build on `config`, each with its own
/// artifact cache under `dir`.
fn start_nodes(nats: &Nats, count: usize, config: &Path, dir: &Path) -> Vec<Node> {
    (1..=count)
        .map(|i| {
            start_node(
                nats,
                &format!("n{i}"),
                config,
                &dir.join(format!("cache{i}")),
            )
        })
        .collect()
}

/// A config file in `dir` with `functions` (TOML `[[function]]` tables).
fn config(dir: &Path, functions: &str) -> PathBuf {
    let p = dir.join("fnhost.toml");
    std::fs::write(&p, functions).unwrap();
    p
}

struct Http(reqwest::Client);

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Http {
    fn new() -> Http {
        Http(reqwest::Client::new())
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        headers: &[(&str, &str)],
        body: String,
    ) -> Answer {
        let mut req = self.0.request(method, url).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        Answer {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    async fn invoke(&self, node: &Node, target: &str, payload: Value) -> Answer {
        self.send(
            reqwest::Method::POST,
            format!("{}/2015-03-31/functions/{target}/invocations", node.base),
            &[],
            payload.to_string(),
        )
        .await
    }

    async fn control(
        &self,
        node: &Node,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Answer {
        self.send(
            method,
            format!("{}/2015-03-31/{path}", node.base),
            &[("authorization", &format!("Bearer {TOKEN}"))],
            body.to_string(),
        )
        .await
    }

    /// A control-API read (`GET /2015-03-31/{path}`), with the token.
    async fn read(&self, node: &Node, path: &str) -> Answer {
        self.send(
            reqwest::Method::GET,
            format!("{}/2015-03-31/{path}", node.base),
            &[("authorization", &format!("Bearer {TOKEN}"))],
            String::new(),
        )
        .await
    }

    async fn get(&self, node: &Node, path: &str) -> Answer {
        self.send(
            reqwest::Method::GET,
            format!("{}{path}", node.base),
            &[],
            String::new(),
        )
        .await
    }

    /// Starts a call of `slow` (the probe, one slot per node) through
    /// `node` that sleeps `ms`; the task ends with its status.
    fn hold(self: &std::sync::Arc<Self>, node: &Node, ms: u64) -> tokio::task::JoinHandle<u16> {
        let http = self.clone();
        let base = node.base.clone();
        tokio::spawn(async move {
            http.send(
                reqwest::Method::POST,
                format!("{base}/2015-03-31/functions/slow/invocations"),
                &[],
                json!({"op": "sleep", "ms": ms}).to_string(),
            )
            .await
            .status
        })
    }

    /// Waits until `node` runs an invocation (its one slot is taken).
    async fn wait_busy(&self, node: &Node) {
        eventually(Duration::from_secs(5), "the node to be busy", || async {
            self.get(node, "/metrics")
                .await
                .body
                .contains("fnhost_host_concurrent_executions 1")
        })
        .await;
    }

    /// The node's `fnhost_cluster_<name>_total` counter.
    async fn counter(&self, node: &Node, name: &str) -> u64 {
        let text = self.get(node, "/metrics").await.body;
        let prefix = format!("fnhost_cluster_{name}_total{{node=\"{}\"}} ", node.name);
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
            .parse()
            .unwrap()
    }
}

/// The cluster tests start many processes each; on a 2-core machine they
/// run one at a time so their timing does not depend on each other.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Polls `check` every 50 ms until it holds (or panics after `limit`).
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_through_one_node_invoke_through_another() {
    let _serial = one_at_a_time().await;
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let nodes = start_nodes(&nats, 3, &cfg, dir.path());
    let http = Http::new();
    let module = base64::engine::general_purpose::STANDARD.encode(guests::bytes(guests::PROBE));
    let create = |env: &str| {
        json!({
            "FunctionName": "probe",
            "Code": {"ZipFile": module},
            "MemorySize": 64,
            "Timeout": 5,
            "Environment": {"Variables": {"GEN": env}},
            "Publish": true,
        })
    };

    // The control API wants the token. (A small body: the refusal comes
    // before the body is read, and a server may close the connection
    // after answering early, while a client still writing a large body
    // would see the connection end instead of the 403.)
    let r = http
        .send(
            reqwest::Method::POST,
            format!("{}/2015-03-31/functions", nodes[0].base),
            &[],
            json!({"FunctionName": "probe"}).to_string(),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.headers["x-amzn-ErrorType"], "AccessDeniedException");

    let r = http
        .control(&nodes[0], reqwest::Method::POST, "functions", create("1"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["Version"], "1");
    assert_eq!(r.json()["MemorySize"], 64);
    // Creating it again (through another node) is a conflict.
    let r = http
        .control(&nodes[1], reqwest::Method::POST, "functions", create("1"))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // A module that is not one is refused with the host's typed error.
    let mut bad = create("1");
    bad["FunctionName"] = json!("bad");
    bad["Code"]["ZipFile"] = json!(base64::engine::general_purpose::STANDARD.encode(b"\0asm junk"));
    let r = http
        .control(&nodes[1], reqwest::Method::POST, "functions", bad)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.headers["x-amzn-ErrorType"],
        "InvalidParameterValueException"
    );

    // Registered through n1, invoked through n3 (it may take n3 a moment
    // to apply the change; until then it forwards).
    let r = http.invoke(&nodes[2], "probe", json!({"op": "env"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["GEN"], "1");
    eventually(Duration::from_secs(10), "n3 to have probe", || async {
        http.read(&nodes[2], "functions/probe").await.status == 200
    })
    .await;

    // Version 2 and an alias on version 1, through different nodes: every
    // node answers the same.
    let r = http
        .control(
            &nodes[1],
            reqwest::Method::DELETE,
            "functions/probe",
            json!({}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = http
        .control(&nodes[2], reqwest::Method::POST, "functions", create("2"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http
        .control(
            &nodes[0],
            reqwest::Method::POST,
            "functions/probe/aliases",
            json!({"Name": "live", "FunctionVersion": "1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["FunctionVersion"], "1");
    for n in &nodes {
        eventually(
            Duration::from_secs(10),
            "every node to see the alias",
            || async {
                let r = http.invoke(n, "probe:live", json!({"op": "env"})).await;
                r.status == 200 && r.json()["GEN"] == "2"
            },
        )
        .await;
    }
    let r = http
        .control(
            &nodes[1],
            reqwest::Method::DELETE,
            "functions/probe/aliases/live",
            json!({}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    for n in &nodes {
        eventually(
            Duration::from_secs(10),
            "the alias to be gone everywhere",
            || async {
                http.invoke(n, "probe:live", json!({"op": "env"}))
                    .await
                    .status
                    == 404
            },
        )
        .await;
    }

    // A node that joins later (empty cache) starts without compiling.
    let late = start_node(&nats, "n4", &cfg, &dir.path().join("cache4"));
    let health = http.get(&late, "/healthz").await.json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["functions"], 1);
    assert_eq!(health["compiles"], 0, "{health}");
    assert_eq!(health["cache_hits"], 1, "{health}");
    assert_eq!(http.counter(&late, "artifacts_fetched").await, 1);
    assert_eq!(health["cluster"]["node"], "n4");
    assert_eq!(health["cluster"]["connected"], true);
    let r = http.invoke(&late, "probe", json!({"op": "env"})).await;
    assert_eq!(r.json()["GEN"], "2");

    // Deleting through one node removes it everywhere.
    let r = http
        .control(&late, reqwest::Method::DELETE, "functions/probe", json!({}))
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    for n in &nodes {
        eventually(
            Duration::from_secs(10),
            "probe to be gone everywhere",
            || async {
                let r = http.invoke(n, "probe", json!({"op": "env"})).await;
                r.status == 404 && r.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
            },
        )
        .await;
    }
}

/// A component deployed through one node runs on another, and a node
/// that joins later installs its shared artifact instead of compiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_component_is_shared_across_the_cluster() {
    let _serial = one_at_a_time().await;
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let n1 = start_node(&nats, "n1", &cfg, &dir.path().join("cache1"));
    let n2 = start_node(&nats, "n2", &cfg, &dir.path().join("cache2"));
    let http = Http::new();
    let component =
        base64::engine::general_purpose::STANDARD.encode(guests::bytes(guests::COMPONENT_PROBE));
    let r = http
        .control(
            &n1,
            reqwest::Method::POST,
            "functions",
            json!({
                "FunctionName": "comp",
                "Code": {"ZipFile": component},
                "MemorySize": 64,
                "Timeout": 5,
                "Environment": {"Variables": {"WHERE": "cluster"}},
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http.invoke(&n2, "comp", json!({"op": "env"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"WHERE": "cluster"}));
    let r = http.invoke(&n2, "comp", json!({"op": "context"})).await;
    assert_eq!(r.json()["function_name"], "comp");
    assert_eq!(r.json()["memory_limit"], 64 << 20);

    let late = start_node(&nats, "n3", &cfg, &dir.path().join("cache3"));
    let health = http.get(&late, "/healthz").await.json();
    assert_eq!(health["functions"], 1, "{health}");
    assert_eq!(health["compiles"], 0, "{health}");
    assert_eq!(health["cache_hits"], 1, "{health}");
    assert_eq!(http.counter(&late, "artifacts_fetched").await, 1);
    let r = http
        .invoke(&late, "comp", json!({"op": "echo", "data": [1, 2]}))
        .await;
    assert_eq!((r.status, r.json()), (200, json!([1, 2])), "{}", r.body);
}

/// An HTTP component in a two-node cluster: published once, served with
/// streaming through each node's route, and a node that joins later
/// installs the shared artifact and serves it with 0 compiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http_component_is_served_by_every_node() {
    let _serial = one_at_a_time().await;
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            r#"
[[function]]
name = "web"
module = "{}"
timeout = "10s"
routes = ["ANY /app/{{proxy+}}", "GET /stream"]
"#,
            guests::COMPONENT_HTTP_PROBE
        ),
    );
    let n1 = start_node(&nats, "n1", &cfg, &dir.path().join("cache1"));
    let n2 = start_node(&nats, "n2", &cfg, &dir.path().join("cache2"));
    let client = reqwest::Client::new();
    for n in [&n1, &n2] {
        // The guest sees the full path; its probe paths are at the root.
        let r = client
            .get(format!("{}/app/x", n.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.text().await.unwrap(), "no such path");
        let mut r = client
            .get(format!("{}/stream?n=2&ms=300", n.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", n.name);
        assert_eq!(r.chunk().await.unwrap().unwrap(), "chunk 0\n");
        assert_eq!(r.chunk().await.unwrap().unwrap(), "chunk 1\n");
        assert!(r.chunk().await.unwrap().is_none());
    }
    let late = start_node(&nats, "n3", &cfg, &dir.path().join("cache3"));
    let health = Http::new().get(&late, "/healthz").await.json();
    assert_eq!(health["compiles"], 0, "{health}");
    let r = client
        .get(format!("{}/stream?n=1&ms=0", late.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "chunk 0\n");
}

/// One record read back from a stream: event id → (headers, body).
type Records = HashMap<String, (BTreeMap<String, String>, Value)>;

/// Every message on `stream`, by event id; `dups` counts ids seen twice.
async fn read_stream(js: &jetstream::Context, stream: &str) -> (Records, usize) {
    let mut s = js.get_stream(stream).await.unwrap();
    let total = s.info().await.unwrap().state.messages as usize;
    let c = s
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Records::new();
    let mut seen = 0;
    let mut dups = 0;
    while seen < total {
        let mut batch = c
            .fetch()
            .max_messages(1000)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            seen += 1;
            let headers: BTreeMap<String, String> = m
                .headers
                .iter()
                .flat_map(|h| h.iter())
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        v.first()
                            .map(|v| v.as_str().to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            let id = headers["Fnhost-Event-Id"].clone();
            let body = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            if out.insert(id, (headers, body)).is_some() {
                dups += 1;
            }
        }
    }
    (out, dups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_events_survive_a_killed_node() {
    let _serial = one_at_a_time().await;
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            r#"
[[function]]
name = "sink"
module = "{}"
events = {{ max_retries = 1, retry_delay = "1s" }}

[[function]]
name = "slow"
module = "{}"
timeout = "20s"
events = {{ max_retries = 0 }}
"#,
            guests::EVENTSINK,
            guests::PROBE
        ),
    );
    let mut nodes = start_nodes(&nats, 3, &cfg, dir.path());
    let http = Http::new();
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();

    let send = |node: usize, target: &'static str, payload: Value| {
        let http = &http;
        let base = bases[node].clone();
        async move {
            let r = http
                .send(
                    reqwest::Method::POST,
                    format!("{base}/2015-03-31/functions/{target}/invocations"),
                    &[("x-amz-invocation-type", "Event")],
                    payload.to_string(),
                )
                .await;
            assert_eq!(r.status, 202, "{}", r.body);
            r.headers["x-amzn-RequestId"].to_str().unwrap().to_string()
        }
    };

    // Slow events first: every node's 8 event slots fill with 15 s
    // invocations (30 events, 24 slots).
    let mut slow = HashSet::new();
    for i in 0..30 {
        slow.insert(send(i % 3, "slow", json!({"op": "sleep", "ms": 15000})).await);
    }
    // All 24 slots held: n2 holds 8 slow events mid-invocation.
    eventually(
        Duration::from_secs(10),
        "every node to hold slow events",
        || async {
            http.get(&nodes[0], "/healthz").await.json()["cluster"]["events"]["in_flight"] == 24
        },
    )
    .await;
    // n2 dies holding 8 events mid-invocation.
    nodes[1].kill();

    // 10,000 fast events (1 in 100 fails every attempt), sent through all
    // nodes while they run; n2 is SIGKILLed after the first 1,000, while
    // it is still running its slow ones.
    let mut expected: HashMap<String, Value> = HashMap::new();
    let mut sent = 0usize;
    for chunk in 0..10 {
        let live = [0, 2];
        let payloads: Vec<Value> = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                if n % 100 == 7 {
                    json!({"n": n, "fail": true})
                } else {
                    json!({"n": n})
                }
            })
            .collect();
        let ids: Vec<String> = futures::stream::iter(payloads.iter().enumerate())
            .map(|(i, p)| send(live[i % live.len()], "sink", p.clone()))
            .buffered(32)
            .collect()
            .await;
        for (id, p) in ids.into_iter().zip(payloads) {
            assert!(expected.insert(id, p).is_none(), "event ids are unique");
            sent += 1;
        }
    }
    assert_eq!(sent, 10_000);

    // Every event ends: results + dead letters cover every id, none pending.
    eventually(Duration::from_secs(180), "every event to end", || async {
        let c = &http.get(&nodes[0], "/healthz").await.json()["cluster"]["events"];
        c["pending"] == 0 && c["in_flight"] == 0
    })
    .await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = jetstream::new(client);
    let (results, result_dups) = read_stream(&js, "FNHOST_RESULTS").await;
    let (dead, dead_dups) = read_stream(&js, "FNHOST_DLQ").await;
    eprintln!(
        "events: {} results ({result_dups} duplicates dropped by id), {} dead letters ({dead_dups})",
        results.len(),
        dead.len()
    );

    let mut redelivered_slow = 0;
    for id in &slow {
        let (h, body) = results
            .get(id)
            .unwrap_or_else(|| panic!("slow event {id} lost"));
        assert_eq!(body, &json!("slept"));
        assert_eq!(h["Fnhost-Target"], "slow");
        // A node dying with an event is not a failed attempt.
        assert_eq!(h["Fnhost-Attempts"], "1");
        assert_ne!(h["Fnhost-Node"], "n2");
        if h["Fnhost-Deliveries"] != "1" {
            // It was delivered to n2, which died holding it.
            redelivered_slow += 1;
        }
    }
    assert_eq!(
        redelivered_slow, 8,
        "n2 died holding 8 events mid-invocation: they run again elsewhere"
    );

    let mut succeeded = 0;
    let mut failed = 0;
    for (id, payload) in &expected {
        let fails = payload["fail"] == true;
        match (results.get(id), dead.get(id)) {
            (Some((h, body)), None) if !fails => {
                assert_eq!(body["event_id"], json!(id), "the guest saw its event id");
                assert_eq!(body["payload"], *payload);
                assert_eq!(body["attempt"].to_string(), h["Fnhost-Attempts"]);
                succeeded += 1;
            }
            (None, Some((h, body))) if fails => {
                assert_eq!(body, payload, "the dead letter keeps the payload");
                assert_eq!(h["Fnhost-Reason"], "RetriesExhausted");
                let error: Value = serde_json::from_str(&h["Fnhost-Error"]).unwrap();
                assert_eq!(error["kind"], "guest_error");
                assert_eq!(error["error_type"], "Boom");
                // max_retries = 1: exactly two attempts.
                assert_eq!(h["Fnhost-Attempts"], "2");
                failed += 1;
            }
            other => panic!("event {id} ({payload}) ended wrongly: {other:?}"),
        }
    }
    assert_eq!(failed, 100);
    assert_eq!(succeeded + failed, 10_000);
    assert_eq!(results.len(), succeeded + slow.len(), "no stray results");
    assert_eq!(dead.len(), failed, "no stray dead letters");
    // n2 died before finishing anything: the live nodes ran every event
    // to its result.
    let done = http.counter(&nodes[0], "events_succeeded").await
        + http.counter(&nodes[2], "events_succeeded").await;
    assert!(done >= results.len() as u64, "{done} < {}", results.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saturated_node_forwards_to_another() {
    let _serial = one_at_a_time().await;
    let mut nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[[function]]\nname = \"slow\"\nmodule = \"{}\"\nreserved_concurrency = 1\ntimeout = \"10s\"\n",
            guests::PROBE
        ),
    );
    let nodes = start_nodes(&nats, 3, &cfg, dir.path());
    let http = std::sync::Arc::new(Http::new());

    // n1's only slot is busy for 6 s...
    let busy = http.hold(&nodes[0], 6000);
    http.wait_busy(&nodes[0]).await;
    // ...so this call through n1 runs on n2 or n3, with a normal answer.
    let r = http
        .invoke(&nodes[0], "slow", json!({"op": "context"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["function"], "slow");
    assert_eq!(r.headers["x-amz-executed-version"], "$LATEST");
    assert_eq!(http.counter(&nodes[0], "forwarded_out").await, 1);
    let served = http.counter(&nodes[1], "forwarded_in").await
        + http.counter(&nodes[2], "forwarded_in").await;
    assert_eq!(served, 1);
    // A function error crosses the hop as the same error.
    let r = http
        .invoke(
            &nodes[0],
            "slow",
            json!({"op": "fail", "kind": "Nope", "message": "no"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-amz-function-error"], "Unhandled");
    assert_eq!(r.json(), json!({"errorType": "Nope", "errorMessage": "no"}));
    assert_eq!(
        http.counter(&nodes[0], "forwarded_out").await,
        2,
        "it ran elsewhere"
    );
    // A name that cannot travel is not forwarded: the local answer.
    let r = http.invoke(&nodes[0], "slow%0Ax", json!({})).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(busy.await.unwrap(), 200);

    // Every node busy: Lambda's throttling error, after asking the others.
    let holds: Vec<_> = nodes.iter().map(|n| http.hold(n, 6000)).collect();
    for n in &nodes {
        http.wait_busy(n).await;
    }
    let r = http
        .invoke(&nodes[1], "slow", json!({"op": "context"}))
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.headers["x-amzn-ErrorType"], "TooManyRequestsException");
    assert!(http.counter(&nodes[1], "forward_failures").await >= 1);
    for h in holds {
        assert_eq!(h.await.unwrap(), 200);
    }

    // NATS goes away: /healthz says so (503), local invocations go on.
    let _ = nats.child.kill();
    let _ = nats.child.wait();
    eventually(
        Duration::from_secs(15),
        "/healthz to report the lost connection",
        || async {
            let r = http.get(&nodes[2], "/healthz").await;
            r.status == 503 && r.json()["status"] == "degraded"
        },
    )
    .await;
    let r = http
        .invoke(&nodes[2], "slow", json!({"op": "echo", "data": 1}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_data_in_nats_is_refused_and_counted() {
    let _serial = one_at_a_time().await;
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[[function]]\nname = \"probe\"\nmodule = \"{}\"\n",
            guests::PROBE
        ),
    );
    let n1 = start_node(&nats, "n1", &cfg, &dir.path().join("cache1"));
    let http = Http::new();
    assert_eq!(http.counter(&n1, "artifacts_shared").await, 1);

    let js = jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    // Every shared artifact altered under its name: native code that no
    // longer carries a valid MAC.
    let store = js.get_object_store("fnhost_artifacts").await.unwrap();
    let mut names = Vec::new();
    let mut list = store.list().await.unwrap();
    while let Some(info) = list.next().await {
        names.push(info.unwrap().name);
    }
    assert_eq!(names.len(), 1);
    for name in &names {
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut store.get(name).await.unwrap(), &mut bytes)
            .await
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        store.put(name.as_str(), &mut &bytes[..]).await.unwrap();
    }
    // A table that is not JSON, and one whose module is nowhere.
    let kv = js.get_key_value("fnhost_registry").await.unwrap();
    kv.put("junk", "not json".into()).await.unwrap();
    let ghost = json!({"versions": {"1": {"module": "0".repeat(64), "config": {}}}, "aliases": {}});
    kv.put("ghost", ghost.to_string().into()).await.unwrap();

    // A new node refuses the altered artifact (it compiles instead) and
    // the two bad tables, and serves what is good.
    let n2 = start_node(&nats, "n2", &cfg, &dir.path().join("cache2"));
    let health = http.get(&n2, "/healthz").await.json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["functions"], 1, "{health}");
    assert_eq!(health["compiles"], 1, "{health}");
    assert_eq!(health["cache_hits"], 0, "{health}");
    assert_eq!(http.counter(&n2, "artifacts_fetched").await, 0);
    assert!(http.counter(&n2, "registry_errors").await >= 2);
    // The running node saw the same changes through its watch.
    eventually(
        Duration::from_secs(10),
        "n1 to count the bad tables",
        || async { http.counter(&n1, "registry_errors").await >= 2 },
    )
    .await;
    for n in [&n1, &n2] {
        let r = http
            .invoke(n, "probe", json!({"op": "echo", "data": 7}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, "7");
        let r = http.invoke(n, "ghost", json!({})).await;
        assert_eq!(r.status, 404, "{}", r.body);
    }

    // An event whose output is larger than a NATS message: its result is
    // stored with the size and no body, not retried forever.
    let r = http
        .send(
            reqwest::Method::POST,
            format!("{}/2015-03-31/functions/probe/invocations", n1.base),
            &[("x-amz-invocation-type", "Event")],
            json!({"op": "output", "bytes": 2_000_000}).to_string(),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let id = r.headers["x-amzn-RequestId"].to_str().unwrap().to_string();
    eventually(Duration::from_secs(20), "the big event to end", || async {
        let c = &http.get(&n1, "/healthz").await.json()["cluster"]["events"];
        c["pending"] == 0 && c["succeeded"] == 1
    })
    .await;
    let (results, _) = read_stream(&js, "FNHOST_RESULTS").await;
    let (h, body) = &results[&id];
    assert_eq!(h["Fnhost-Output-Bytes"], "2000002");
    assert_eq!(h["Fnhost-Attempts"], "1");
    assert_eq!(*body, Value::Null, "no body: it does not fit in a message");
}

/// The outage tests' functions: `sink` (events, no retries) and `slow`
/// (the probe, one slot per node).
fn outage_config(dir: &Path) -> PathBuf {
    config(
        dir,
        &format!(
            "[[function]]\nname = \"sink\"\nmodule = \"{}\"\nevents = {{ max_retries = 0 }}\n\n[[function]]\nname = \"slow\"\nmodule = \"{}\"\nreserved_concurrency = 1\ntimeout = \"10s\"\n",
            guests::EVENTSINK,
            guests::PROBE
        ),
    )
}

/// NATS SIGKILLed under a running cluster and restarted on the same store:
/// while it is away every refusal comes at once and says so, and nothing
/// refused ever runs; afterwards every accepted event has exactly one
/// outcome and `/healthz` drains to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_outage_refuses_truthfully_and_runs_nothing_refused() {
    let _serial = one_at_a_time().await;
    let mut nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = outage_config(dir.path());
    let nodes = start_nodes(&nats, 2, &cfg, dir.path());
    let http = std::sync::Arc::new(Http::new());
    let event = |node: usize, payload: Value| {
        let http = http.clone();
        let base = nodes[node].base.clone();
        async move {
            http.send(
                reqwest::Method::POST,
                format!("{base}/2015-03-31/functions/sink/invocations"),
                &[("x-amz-invocation-type", "Event")],
                payload.to_string(),
            )
            .await
        }
    };
    let mut accepted = HashSet::new();
    for i in 0..6 {
        let r = event(i % 2, json!({"n": i})).await;
        assert_eq!(r.status, 202, "{}", r.body);
        accepted.insert(r.headers["x-amzn-RequestId"].to_str().unwrap().to_string());
    }

    nats.kill();
    for node in &nodes {
        eventually(
            Duration::from_secs(10),
            "the node to see NATS gone",
            || async { http.get(node, "/healthz").await.status == 503 },
        )
        .await;
    }
    // Events: 503 at once, saying why; none of them runs later.
    for i in 0..6 {
        let started = Instant::now();
        let r = event(i % 2, json!({"refused": i})).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.headers["x-amzn-ErrorType"], "ServiceException");
        assert_eq!(r.headers["fnhost-cluster"], "disconnected");
        assert!(
            r.json()["Message"]
                .as_str()
                .unwrap()
                .contains("will not run"),
            "{}",
            r.body
        );
    }
    // An unknown function: 404 at once (no registry read through the outage).
    let started = Instant::now();
    let r = http.invoke(&nodes[0], "ghost", json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status, 404, "{}", r.body);
    // A throttled call: 429 at once (no forward through the outage).
    let hold = http.hold(&nodes[0], 2000);
    http.wait_busy(&nodes[0]).await;
    let started = Instant::now();
    let r = http
        .invoke(&nodes[0], "slow", json!({"op": "context"}))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(
        hold.await.unwrap(),
        200,
        "the local call runs through the outage"
    );
    // A deploy: refused at once, applied nowhere.
    let started = Instant::now();
    let module =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(guests::HELLO).unwrap());
    let r = http
        .control(
            &nodes[1],
            reqwest::Method::POST,
            "functions",
            json!({"FunctionName": "late", "Code": {"ZipFile": module}}),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status, 503, "{}", r.body);

    nats.restart();
    for node in &nodes {
        eventually(Duration::from_secs(20), "the node to reconnect", || async {
            http.get(node, "/healthz").await.status == 200
        })
        .await;
    }
    eventually(Duration::from_secs(20), "the events to drain", || async {
        let h = http.get(&nodes[0], "/healthz").await.json();
        h["cluster"]["events"]["pending"] == 0 && h["cluster"]["events"]["in_flight"] == 0
    })
    .await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let js = jetstream::new(client);
    let (results, dups) = read_stream(&js, "FNHOST_RESULTS").await;
    assert_eq!(dups, 0);
    let ran: HashSet<String> = results.keys().cloned().collect();
    assert_eq!(ran, accepted, "exactly the accepted events ran, each once");
    for node in &nodes {
        let r = http.read(node, "functions/late").await;
        assert_eq!(r.status, 404, "the refused deploy is nowhere: {}", r.body);
        assert_eq!(http.counter(node, "events_expired").await, 0);
    }
}

/// What one request in the mid-run outage test was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    /// 2xx: accepted (an event) or answered (a call, a deploy).
    Accepted,
    /// A 200 that is a function error (a forwarded call may have timed
    /// out on the peer), or a 500 saying NATS never confirmed: either
    /// outcome is true.
    MayHaveRun,
    /// Any other error: it has not run and never will.
    Refused,
}

fn told(a: &Answer) -> Told {
    match a.status {
        200 if a.headers.contains_key("x-amz-function-error") => Told::MayHaveRun,
        200..=299 => Told::Accepted,
        500 if a.body.contains("did not confirm") => Told::MayHaveRun,
        _ => Told::Refused,
    }
}

/// The sum over `nodes` of `fnhost_invocations_total` for `function`
/// with `outcome`.
async fn runs(http: &Http, nodes: &[Node], function: &str, outcome: &str) -> u64 {
    let prefix =
        format!("fnhost_invocations_total{{function=\"{function}\",outcome=\"{outcome}\"}} ");
    let mut total = 0;
    for node in nodes {
        let text = http.get(node, "/metrics").await.body;
        total += text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.parse::<u64>().unwrap());
    }
    total
}

/// The functions a node lists, as (name, code hash), sorted.
async fn listed(http: &Http, node: &Node) -> Vec<(String, String)> {
    let r = http.read(node, "functions/").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut out: Vec<(String, String)> = r.json()["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["FunctionName"].as_str().unwrap().to_string(),
                f["CodeSha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_killed_mid_run_loses_nothing_accepted_and_runs_nothing_refused() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let _serial = one_at_a_time().await;
    let mut nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = outage_config(dir.path());
    let nodes = Arc::new(start_nodes(&nats, 2, &cfg, dir.path()));
    let http = Arc::new(Http::new());
    let stop = Arc::new(AtomicBool::new(false));
    // Every request and what it was told, by kind.
    let events: Arc<Mutex<Vec<(u64, Told, String)>>> = Arc::default();
    let calls: Arc<Mutex<Vec<Told>>> = Arc::default();
    let deploys: Arc<Mutex<Vec<(String, Told)>>> = Arc::default();
    let mut load = Vec::new();

    // Events through both nodes from four senders, each numbered.
    for sender in 0..4u64 {
        let (http, nodes, stop, events) =
            (http.clone(), nodes.clone(), stop.clone(), events.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let token = sender * 1_000_000 + i;
                let node = &nodes[(i % 2) as usize];
                let r = http
                    .send(
                        reqwest::Method::POST,
                        format!("{}/2015-03-31/functions/sink/invocations", node.base),
                        &[("x-amz-invocation-type", "Event")],
                        json!({ "token": token }).to_string(),
                    )
                    .await;
                let t = told(&r);
                let id = r
                    .headers
                    .get("x-amzn-RequestId")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                events.lock().unwrap().push((token, t, id));
                if t != Told::Accepted {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                i += 1;
            }
        }));
    }
    // Sync calls through n1 from three callers: its one slot is taken, so
    // most are forwarded to n2 (or throttled when n2's is too).
    for _ in 0..3 {
        let (http, nodes, stop, calls) = (http.clone(), nodes.clone(), stop.clone(), calls.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = http
                    .invoke(&nodes[0], "slow", json!({"op": "sleep", "ms": 150}))
                    .await;
                let t = told(&r);
                calls.lock().unwrap().push(t);
                if t != Told::Accepted {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    // Deploys through n2: a new function every 100 ms.
    {
        let (http, nodes, stop, deploys) =
            (http.clone(), nodes.clone(), stop.clone(), deploys.clone());
        let module =
            base64::engine::general_purpose::STANDARD.encode(std::fs::read(guests::HELLO).unwrap());
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("d{i}");
                let r = http
                    .control(
                        &nodes[1],
                        reqwest::Method::POST,
                        "functions",
                        json!({"FunctionName": name, "Code": {"ZipFile": module}}),
                    )
                    .await;
                deploys.lock().unwrap().push((name, told(&r)));
                tokio::time::sleep(Duration::from_millis(100)).await;
                i += 1;
            }
        }));
    }

    // Under load: kill NATS, keep the load on through the outage, restart
    // it on the same store, keep going a little, stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats.kill();
    for node in nodes.iter() {
        eventually(
            Duration::from_secs(10),
            "the node to see NATS gone",
            || async { http.get(node, "/healthz").await.status == 503 },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats.restart();
    for node in nodes.iter() {
        eventually(Duration::from_secs(20), "the node to reconnect", || async {
            http.get(node, "/healthz").await.status == 200
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    eventually(Duration::from_secs(60), "the events to drain", || async {
        let h = http.get(&nodes[0], "/healthz").await.json();
        h["cluster"]["events"]["pending"] == 0 && h["cluster"]["events"]["in_flight"] == 0
    })
    .await;

    // Events: every accepted one has exactly one outcome, under the id it
    // was given; no refused one ran; what ran was accepted or unconfirmed.
    let events = events.lock().unwrap().clone();
    let count = |t: Told| events.iter().filter(|e| e.1 == t).count();
    let (accepted, refused) = (count(Told::Accepted), count(Told::Refused));
    eprintln!(
        "events: {accepted} accepted, {refused} refused, {} unconfirmed",
        count(Told::MayHaveRun)
    );
    assert!(accepted > 200, "{accepted} events accepted");
    assert!(refused > 0, "the outage refused no event");
    let js = jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let (results, dups) = read_stream(&js, "FNHOST_RESULTS").await;
    assert_eq!(dups, 0, "an event has two outcomes");
    let ran: HashMap<u64, &str> = results
        .iter()
        .map(|(id, (_, body))| (body["payload"]["token"].as_u64().unwrap(), id.as_str()))
        .collect();
    for (token, t, id) in &events {
        match t {
            Told::Accepted => {
                assert_eq!(ran.get(token), Some(&id.as_str()), "accepted event {token}")
            }
            Told::Refused => assert!(!ran.contains_key(token), "refused event {token} ran"),
            Told::MayHaveRun => {}
        }
    }
    let may = count(Told::MayHaveRun);
    assert!(
        (accepted..=accepted + may).contains(&results.len()),
        "{} outcomes for {accepted} accepted and {may} unconfirmed events",
        results.len()
    );
    let h = http.get(&nodes[1], "/healthz").await.json();
    assert_eq!(h["cluster"]["events"]["dead_lettered"], 0);

    // Sync calls: the runs add up to the answers that say they ran, plus
    // at most the ones that cannot know.
    let calls = calls.lock().unwrap().clone();
    let said = |t: Told| calls.iter().filter(|c| **c == t).count() as u64;
    let ran_calls =
        runs(&http, &nodes, "slow", "success").await + runs(&http, &nodes, "slow", "error").await;
    let (ok, may) = (said(Told::Accepted), said(Told::MayHaveRun));
    eprintln!(
        "calls: {ok} answered, {} refused, {may} unknown; {ran_calls} runs",
        said(Told::Refused)
    );
    assert!(ok > 10 && said(Told::Refused) > 0, "{calls:?}");
    assert!(
        (ok..=ok + may).contains(&ran_calls),
        "{ran_calls} runs for {ok} answered and {may} unknown calls"
    );
    assert!(http.counter(&nodes[0], "forwarded_out").await > 0);

    // Deploys: every node agrees on the registry (a write reported failed
    // that landed late is taken back); an accepted deploy is everywhere,
    // a refused one nowhere.
    let deploys = deploys.lock().unwrap().clone();
    // (One deploy is usually in flight when NATS dies: it answers once its
    // write's fate is known, so later ones may never start in the outage.
    // The fast refusal itself is the test above's.)
    let refused_deploys = deploys.iter().filter(|d| d.1 == Told::Refused).count();
    eprintln!("deploys: {} made, {refused_deploys} refused", deploys.len());
    assert!(deploys.iter().any(|d| d.1 == Told::Accepted));
    let wrong = |names: &[(String, String)]| -> Vec<String> {
        let have: HashSet<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
        deploys
            .iter()
            .filter(|(name, t)| match t {
                Told::Accepted => !have.contains(name.as_str()),
                Told::Refused => have.contains(name.as_str()),
                Told::MayHaveRun => false,
            })
            .map(|(name, t)| format!("{name} ({t:?})"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (a, b) = (
            listed(&http, &nodes[0]).await,
            listed(&http, &nodes[1]).await,
        );
        if a == b && wrong(&a).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes disagree ({a:?} against {b:?}) or deploys are wrong: {:?}",
            wrong(&a)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
