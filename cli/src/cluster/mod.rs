//! Cluster mode (`fnhost serve --cluster nats://…`): several fnhost nodes
//! share one workload over NATS JetStream. Nothing here is a home-made
//! distributed system: every shared thing is a JetStream primitive.
//!
//! | what | where in JetStream | module |
//! |---|---|---|
//! | functions, versions, aliases | key-value bucket `fnhost_registry`, one key per function (the JSON of [`Host::export_function`]) | `registry` |
//! | module bytes | object store `fnhost_modules`, named by BLAKE3 hash | `registry` |
//! | compiled artifacts | object store `fnhost_artifacts`, named by module hash + engine fingerprint, authenticated with the cluster key | `registry` |
//! | event invocations | work-queue stream `FNHOST_EVENTS`, one durable pull consumer `fnhost-events` shared by all nodes | `events` |
//! | results / dead letters | streams `FNHOST_RESULTS`, `FNHOST_DLQ` | `events` |
//! | sync invocations a node cannot serve | request-reply on `fnhost.invoke.<function>`, queue group `fnhost-invoke` | `forward` |
//!
//! Changes to the registry go through any node: it brings its host in line
//! with the bucket, makes the change locally (so a bad module is refused
//! with the same typed error as on one node), uploads the module, and
//! writes the new table with a compare-and-set on the key's revision; a
//! node that lost the race re-reads and tries again. Every node watches the
//! bucket and applies what changed ([`Host::apply_function`]).

mod events;
mod forward;
mod objects;
mod registry;
mod stream;

pub(crate) use stream::function_of;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use async_nats::jetstream::{self, kv, object_store::ObjectStore};
use fnhost::{Error, ErrorKind, Host};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// Key-value bucket holding the function table.
pub const REGISTRY_BUCKET: &str = "fnhost_registry";
/// Object store holding module bytes by hash.
pub const MODULES_BUCKET: &str = "fnhost_modules";
/// Object store holding compiled artifacts.
pub const ARTIFACTS_BUCKET: &str = "fnhost_artifacts";
/// Work-queue stream of event invocations (`fnhost.events.<function>`).
pub const EVENTS_STREAM: &str = "FNHOST_EVENTS";
/// Stream of successful event results (`fnhost.results.<function>`).
pub const RESULTS_STREAM: &str = "FNHOST_RESULTS";
/// Stream of dead-lettered events (`fnhost.dlq.<function>`).
pub const DEAD_LETTER_STREAM: &str = "FNHOST_DLQ";
/// The durable consumer every node pulls events from.
pub const EVENTS_CONSUMER: &str = "fnhost-events";
/// Queue group of the nodes that serve forwarded invocations.
pub const INVOKE_GROUP: &str = "fnhost-invoke";

/// How a node joins a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// NATS server URL(s), comma-separated (`nats://10.0.0.1:4222,…`).
    pub url: String,
    /// This node's name (unique in the cluster; shown in metrics).
    pub node: String,
    /// How long an event may be held without a word before JetStream
    /// gives it to another node (nodes send "in progress" while they run
    /// one, so this bounds the redelivery delay after a node dies, not the
    /// function's run time).
    pub ack_wait: Duration,
    /// Event invocations this node runs at once.
    pub event_concurrency: usize,
    /// Shared secret that authenticates compiled artifacts (native code)
    /// between nodes; without it nodes do not share artifacts and each
    /// compiles for itself.
    pub key: Option<[u8; 32]>,
}

impl ClusterOptions {
    /// Options for `url` with this machine's host name and process id as
    /// the node name, a 30 s ack wait, 8 concurrent events and no key.
    pub fn new(url: impl Into<String>) -> ClusterOptions {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "node".into());
        ClusterOptions {
            url: url.into(),
            node: format!("{host}-{}", std::process::id()),
            ack_wait: Duration::from_secs(30),
            event_concurrency: 8,
            key: None,
        }
    }

    /// Derives the artifact key from a passphrase (at least 16 bytes).
    pub fn key_from(passphrase: &str) -> Result<[u8; 32]> {
        anyhow::ensure!(
            passphrase.len() >= 16,
            "the cluster key must be at least 16 bytes long"
        );
        Ok(blake3::derive_key(
            "fnhost cluster artifact key v1",
            passphrase.as_bytes(),
        ))
    }
}

/// Per-node counters (exported on `/metrics` with a `node` label).
#[derive(Default)]
pub struct ClusterStats {
    /// Registry changes this node wrote to the bucket.
    pub registry_writes: AtomicU64,
    /// Bucket changes this node applied to its host.
    pub registry_applied: AtomicU64,
    /// Bucket changes this node could not apply.
    pub registry_errors: AtomicU64,
    /// Artifacts fetched from the cluster instead of compiling.
    pub artifacts_fetched: AtomicU64,
    /// Artifacts this node shared.
    pub artifacts_shared: AtomicU64,
    /// Events this node accepted onto the stream.
    pub events_sent: AtomicU64,
    /// Event invocations that succeeded here.
    pub events_succeeded: AtomicU64,
    /// Failed attempts handed back for a retry.
    pub events_retried: AtomicU64,
    /// Events this node dead-lettered.
    pub events_dead_lettered: AtomicU64,
    /// Sync invocations this node sent to another node.
    pub forwarded_out: AtomicU64,
    /// Sync invocations this node ran for another node.
    pub forwarded_in: AtomicU64,
    /// Forwarded invocations no node could take.
    pub forward_failures: AtomicU64,
    /// Events dropped unrun because the stream stored them after their
    /// sender had refused them (sent late after an outage).
    pub events_expired: AtomicU64,
    /// Forwarded invocations dropped unrun because they arrived after
    /// their asker had given up (delivered late after an outage).
    pub forwards_expired: AtomicU64,
    /// Registry writes this node reported as failed that landed after all
    /// (sent late after an outage) and were taken back.
    pub registry_undone: AtomicU64,
}

/// A node's membership in a cluster: the NATS connection, the shared
/// buckets and streams, and the background tasks (registry watcher, event
/// worker, forwarded-invocation responder).
pub struct Cluster {
    host: Host,
    opts: ClusterOptions,
    client: async_nats::Client,
    js: jetstream::Context,
    kv: kv::Store,
    modules: ObjectStore,
    artifacts: ObjectStore,
    stats: ClusterStats,
    /// One registry change or apply at a time on this node; holds the
    /// bucket revision last applied (or written) per function, so the
    /// watcher never applies an entry older than what the host has.
    registry_lock: tokio::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// Free event slots on this node.
    event_slots: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    runtime: tokio::runtime::Handle,
}

/// A NATS failure as an fnhost error: kind `Store`, the message names the
/// step.
pub(crate) fn nats_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Remote {
        kind: ErrorKind::Store,
        message: format!("cluster {what}: {e}"),
    }
}

/// The refusal while this node cannot reach NATS: `what` was not accepted
/// and will not run (503 on the Lambda API).
pub(crate) fn unavailable(what: &str) -> Error {
    Error::Remote {
        kind: ErrorKind::ShuttingDown,
        message: format!(
            "the cluster is unreachable from this node (NATS is down): {what} was not accepted and will not run"
        ),
    }
}

/// The answer when NATS went away after `what` was handed to it but
/// before it confirmed: NATS may have stored it (then it runs, once) or
/// not (then it never runs). 500 on the Lambda API, never "will not run".
pub(crate) fn unconfirmed(what: &str) -> Error {
    Error::Remote {
        kind: ErrorKind::Store,
        message: format!(
            "the cluster did not confirm {what} before its NATS connection failed: it may still run (once) if NATS stored it"
        ),
    }
}

impl Cluster {
    /// Connects to NATS, creates (or opens) the shared buckets and streams,
    /// brings `host`'s registry in line with the cluster's, and starts the
    /// registry watcher, the event worker and the invocation responder.
    /// Fails, naming the step, when NATS or JetStream cannot be reached.
    pub async fn join(host: Host, opts: ClusterOptions) -> Result<Arc<Cluster>> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("fnhost {}", opts.node))
            .connection_timeout(Duration::from_secs(5))
            .connect(opts.url.as_str())
            .await
            .with_context(|| format!("connecting to NATS at {}", opts.url))?;
        let js = jetstream::new(client.clone());
        let kv = open_kv(&js).await.context("opening the registry bucket")?;
        let modules = open_objects(&js, MODULES_BUCKET)
            .await
            .context("opening the module store")?;
        let artifacts = open_objects(&js, ARTIFACTS_BUCKET)
            .await
            .context("opening the artifact store")?;
        stream::open_streams(&js)
            .await
            .context("opening the event streams (is JetStream enabled on the server?)")?;
        let (stop, _) = watch::channel(false);
        let cluster = Arc::new(Cluster {
            event_slots: Arc::new(Semaphore::new(opts.event_concurrency.max(1))),
            host,
            opts,
            client,
            js,
            kv,
            modules,
            artifacts,
            stats: ClusterStats::default(),
            registry_lock: tokio::sync::Mutex::new(Default::default()),
            stop,
            tasks: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::current(),
        });
        let from = cluster
            .sync_all()
            .await
            .context("reading the cluster's registry")?;
        let responder = cluster
            .clone()
            .start_responder()
            .await
            .context("subscribing to forwarded invocations")?;
        let consumer = cluster
            .events_consumer()
            .await
            .context("opening the event consumer")?;
        let tasks = vec![
            tokio::spawn(cluster.clone().watch_registry(from)),
            tokio::spawn(cluster.clone().run_events(consumer)),
            responder,
        ];
        cluster.tasks.lock().extend(tasks);
        tracing::info!(target: "fnhost::cluster", node = %cluster.opts.node, url = %cluster.opts.url, "joined the cluster");
        Ok(cluster)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.opts.node
    }

    /// The host this node runs.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// This node's counters.
    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// Is the NATS connection up right now?
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// How many times the NATS connection has been (re)established: a
    /// change across a request means the connection failed under it.
    pub(crate) fn connection_epoch(&self) -> u64 {
        self.client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connectivity and the shared event counts, for `/healthz`: a
    /// JetStream round trip (bounded to 2 s) proves more than a socket.
    pub async fn health(&self) -> (bool, Value) {
        let connected = self.is_connected();
        let events = tokio::time::timeout(Duration::from_secs(2), self.event_counts()).await;
        let (ok, events) = match events {
            Ok(Ok(c)) => (connected, c),
            Ok(Err(e)) => (false, json!({"error": e.to_string()})),
            Err(_) => (
                false,
                json!({"error": "JetStream did not answer within 2 s"}),
            ),
        };
        (
            ok,
            json!({
                "node": self.opts.node,
                "connected": connected,
                "jetstream": ok,
                "server": self.client.server_info().server_name,
                "events": events,
            }),
        )
    }

    /// Prometheus lines for this node's counters (`fnhost_cluster_*`,
    /// labelled with the node name).
    pub fn prometheus(&self) -> String {
        let s = &self.stats;
        let node = self.opts.node.replace(['"', '\\', '\n'], "_");
        let mut out = String::new();
        let rows: [(&str, &str, &AtomicU64); 15] = [
            (
                "registry_writes",
                "Registry changes written by this node",
                &s.registry_writes,
            ),
            (
                "registry_applied",
                "Registry changes applied from the cluster",
                &s.registry_applied,
            ),
            (
                "registry_errors",
                "Registry changes that could not be applied",
                &s.registry_errors,
            ),
            (
                "artifacts_fetched",
                "Compiled artifacts fetched instead of compiling",
                &s.artifacts_fetched,
            ),
            (
                "artifacts_shared",
                "Compiled artifacts shared with the cluster",
                &s.artifacts_shared,
            ),
            (
                "events_sent",
                "Event invocations accepted by this node",
                &s.events_sent,
            ),
            (
                "events_succeeded",
                "Event invocations that succeeded on this node",
                &s.events_succeeded,
            ),
            (
                "events_retried",
                "Failed event attempts handed back for retry",
                &s.events_retried,
            ),
            (
                "events_dead_lettered",
                "Events dead-lettered by this node",
                &s.events_dead_lettered,
            ),
            (
                "forwarded_out",
                "Sync invocations sent to another node",
                &s.forwarded_out,
            ),
            (
                "forwarded_in",
                "Sync invocations run for another node",
                &s.forwarded_in,
            ),
            (
                "forward_failures",
                "Forwarded invocations no node could take",
                &s.forward_failures,
            ),
            (
                "events_expired",
                "Events dropped unrun: stored after their sender refused them",
                &s.events_expired,
            ),
            (
                "forwards_expired",
                "Forwarded invocations dropped unrun: arrived after the asker gave up",
                &s.forwards_expired,
            ),
            (
                "registry_undone",
                "Registry writes reported failed that landed late and were taken back",
                &s.registry_undone,
            ),
        ];
        for (name, help, v) in rows {
            out.push_str(&format!(
                "# HELP fnhost_cluster_{name}_total {help}.\n# TYPE fnhost_cluster_{name}_total counter\nfnhost_cluster_{name}_total{{node=\"{node}\"}} {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&format!(
            "# HELP fnhost_cluster_connected 1 when the node's NATS connection is up.\n# TYPE fnhost_cluster_connected gauge\nfnhost_cluster_connected{{node=\"{node}\"}} {}\n",
            u8::from(self.is_connected())
        ));
        out
    }

    /// Stops taking events and forwarded invocations (the first half of a
    /// graceful shutdown; the host drains next).
    pub fn begin_shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits up to `grace` for the events running here to be acknowledged
    /// (an unfinished one is redelivered to another node after the ack
    /// wait), stops the tasks and flushes the connection.
    pub async fn finish_shutdown(&self, grace: Duration) {
        self.begin_shutdown();
        let all = self.opts.event_concurrency.max(1) as u32;
        let drained = tokio::time::timeout(grace, self.event_slots.acquire_many(all)).await;
        if drained.is_err() {
            tracing::warn!(target: "fnhost::cluster", "events still running after the grace period; JetStream will redeliver them");
        }
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        let _ = self.client.flush().await;
    }

    fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

async fn open_kv(js: &jetstream::Context) -> Result<kv::Store> {
    if let Ok(kv) = js.get_key_value(REGISTRY_BUCKET).await {
        return Ok(kv);
    }
    // The bucket's stream, made directly: async-nats's `create_key_value`
    // first reads account info in a shape NATS 2.9 (Debian's) does not
    // send. These are the settings a key-value bucket's stream has.
    let created = js
        .create_stream(jetstream::stream::Config {
            name: format!("KV_{REGISTRY_BUCKET}"),
            description: Some("fnhost: functions, versions and aliases".into()),
            subjects: vec![format!("$KV.{REGISTRY_BUCKET}.>")],
            max_messages_per_subject: 5,
            max_message_size: -1,
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        })
        .await;
    if let Err(e) = created {
        // Another node may have created it first.
        tracing::debug!(target: "fnhost::cluster", error = %e, "creating the registry bucket");
    }
    js.get_key_value(REGISTRY_BUCKET)
        .await
        .context("the registry bucket")
}

async fn open_objects(js: &jetstream::Context, bucket: &str) -> Result<ObjectStore> {
    if let Ok(o) = js.get_object_store(bucket).await {
        return Ok(o);
    }
    let created = js
        .create_object_store(jetstream::object_store::Config {
            bucket: bucket.into(),
            ..Default::default()
        })
        .await;
    match created {
        Ok(o) => Ok(o),
        Err(e) => js.get_object_store(bucket).await.context(e),
    }
}
