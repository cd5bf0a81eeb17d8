//! Cluster throughput with 1, 2 and 3 nodes (docs/cluster.md, BENCHMARKS.md).
//!
//! `cargo run --release -p fnhost-cli --example cluster_bench [events] [seconds]`
//!
//! For each cluster size it starts a fresh NATS server (JetStream) and that
//! many `fnhost serve --cluster` nodes, then measures:
//! - **events/s**: `events` event invocations (default 20,000) of the
//!   `eventsink` guest published straight onto the shared stream, timed
//!   from the first publish until the stream is empty (every event run and
//!   its result stored);
//! - **sync req/s**: `seconds` (default 5) of `RequestResponse`
//!   invocations of the `echo` guest over HTTP, 32 clients spread over
//!   the nodes round-robin.
//!
//! All processes share this machine's cores: more nodes add no CPU here,
//! so the numbers show the coordination cost, not scale-out.

#[path = "../tests/support/listening.rs"]
mod listening;
#[path = "../tests/support/cluster.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use fnhost_test_guests as guests;
use futures::StreamExt as _;
use support::{Nats, Node};

fn fnhost_binary() -> PathBuf {
    // target/release/examples/cluster_bench → target/release/fnhost
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("fnhost"))
        .filter(|p| p.exists())
        .expect("build the fnhost binary first: cargo build --release -p fnhost-cli")
}

async fn stream_messages(js: &jetstream::Context, name: &str) -> u64 {
    let mut s = js.get_stream(name).await.expect("stream");
    s.info().await.expect("stream info").state.messages
}

async fn events_per_second(nats: &Nats, events: usize) -> f64 {
    let client = async_nats::connect(&nats.url).await.expect("connect");
    let js = jetstream::new(client);
    let started = Instant::now();
    futures::stream::iter(0..events)
        .map(|i| {
            let js = js.clone();
            async move {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", format!("bench-{i}").as_str());
                h.insert("Fnhost-Target", "sink");
                js.publish_with_headers("fnhost.events.sink", h, format!("{{\"n\":{i}}}").into())
                    .await
                    .expect("publish")
                    .await
                    .expect("stored")
            }
        })
        .buffered(256)
        .for_each(|_| async {})
        .await;
    while stream_messages(&js, "FNHOST_EVENTS").await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let done = stream_messages(&js, "FNHOST_RESULTS").await;
    assert_eq!(done as usize, events, "every event has its result");
    events as f64 / secs
}

/// How many events each node ran (its `events_succeeded` counter).
async fn split(nodes: &[Node]) -> String {
    let mut out = Vec::new();
    for n in nodes {
        let text = reqwest::get(format!("{}/metrics", n.base))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        let prefix = format!(
            "fnhost_cluster_events_succeeded_total{{node=\"{}\"}} ",
            n.name
        );
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or("?");
        out.push(format!("{}={count}", n.name));
    }
    out.join(" ")
}

async fn sync_per_second(nodes: &[Node], seconds: u64) -> f64 {
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let clients: Vec<_> = (0..32)
        .map(|c| {
            let http = http.clone();
            let url = format!(
                "{}/2015-03-31/functions/echo/invocations",
                nodes[c % nodes.len()].base
            );
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    let r = http
                        .post(&url)
                        .body("{\"x\":1}")
                        .send()
                        .await
                        .expect("request");
                    assert_eq!(r.status(), 200);
                    r.bytes().await.expect("body");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for c in clients {
        total += c.await.expect("client");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let fnhost = fnhost_binary();
    println!(
        "| nodes | events/s (eventsink, {events} events) | events run per node | sync req/s (echo over HTTP, 32 clients) |"
    );
    println!("|---|---|---|---|");
    for n in 1..=3 {
        let nats = Nats::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("fnhost.toml");
        std::fs::write(
            &cfg,
            format!(
                "[[function]]\nname = \"sink\"\nmodule = \"{}\"\n\n[[function]]\nname = \"echo\"\nmodule = \"{}\"\n",
                guests::EVENTSINK,
                guests::ECHO
            ),
        )
        .expect("config");
        let nodes: Vec<Node> = (1..=n)
            .map(|i| {
                Node::start_with(
                    &fnhost,
                    &nats,
                    &format!("n{i}"),
                    &cfg,
                    &dir.path().join(format!("cache{i}")),
                )
            })
            .collect();
        let ev = events_per_second(&nats, events).await;
        let per_node = split(&nodes).await;
        let rq = sync_per_second(&nodes, seconds).await;
        println!("| {n} | {ev:.0} | {per_node} | {rq:.0} |");
    }
}
