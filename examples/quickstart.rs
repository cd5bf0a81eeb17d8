//! The quickstart: registers the example guests (echo, hello, thumbnail,
//! news, leaderboard as ABI v1 modules; hello in JavaScript, Python and
//! Rust as components), invokes each with a sample event, and prints the
//! results with Lambda-style START/END/REPORT lines; then sends two event
//! invocations (one succeeds, one is dead-lettered) and prints the usage.
//!
//! Run with: `cargo xtask quickstart` (which builds the JavaScript and
//! Python components first; or, once they and the wasm targets are there,
//! `cargo run --release --bin quickstart`).
//!
//! Compiled modules are cached (see `fnhost::default_cache_dir`), so the
//! second run compiles nothing.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use fnhost::capability::{self, MemoryKv};
use fnhost::events::{Destination, EventConfig, QueueConfig};
use fnhost::{FunctionConfig, Host, PriceModel};
use fnhost_examples::{print_invocation, summarize_thumbnails};
use fnhost_test_guests as guests;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    // The key-value capability: functions granted `kv.*` keep state in
    // their own namespace.
    let host = Host::builder()
        .capabilities(capability::kv(MemoryKv::new()))
        .build()
        .context("starting the host")?;
    host.register(FunctionConfig::from_file("echo", guests::ECHO))?;
    host.register(FunctionConfig::from_file("hello", guests::HELLO).env("GREETING", "Hello"))?;
    host.register(
        FunctionConfig::from_file("thumbnail", guests::THUMBNAIL)
            .memory_limit(256 << 20)
            .timeout(Duration::from_secs(10))
            .env("THUMBNAIL_SIZES", "64,128"),
    )?;
    // news builds a large keyword index in init: snapshot it once at
    // register time, so each fresh instance starts with it built.
    host.register(FunctionConfig::from_file("news", guests::NEWS).snapshot(true))?;
    host.register(
        FunctionConfig::from_file("leaderboard", guests::LEADERBOARD)
            .grant("kv.get")
            .grant("kv.put"),
    )?;
    // The same function as components, in three languages.
    for (name, path) in [
        ("hello-js", guests::component("hello-js")),
        ("hello-python", guests::component("hello-python")),
        ("hello-rust", guests::HELLO_RUST.to_string()),
    ] {
        host.register(FunctionConfig::from_file(name, path))?;
    }
    let stats = host.stats();
    println!(
        "registered {} functions in {:.1} ms ({} compiled, {} from the artifact cache at {})\n",
        host.functions().len(),
        started.elapsed().as_secs_f64() * 1e3,
        stats.compiles,
        stats.cache_hits,
        fnhost::default_cache_dir().display(),
    );

    // echo: raw bytes in, the same bytes out.
    let inv = host.invoke("echo", b"ping")?;
    print_invocation(&inv, |out| String::from_utf8_lossy(out).into_owned());

    // hello: typed JSON, with the function's own environment.
    let inv = host.invoke("hello", json!({"name": "Ada"}).to_string().as_bytes())?;
    print_invocation(&inv, |out| String::from_utf8_lossy(out).into_owned());

    // hello again, with a handled error.
    let inv = host.invoke("hello", json!({"name": ""}).to_string().as_bytes())?;
    print_invocation(&inv, |out| String::from_utf8_lossy(out).into_owned());

    // Components: JSON in and out through each language's helper.
    for name in ["hello-js", "hello-python", "hello-rust"] {
        let inv = host.invoke(name, json!({"name": "Lin"}).to_string().as_bytes())?;
        print_invocation(&inv, |out| String::from_utf8_lossy(out).into_owned());
    }

    // thumbnail: a 1024x768 PNG made here, resized in the sandbox.
    let png = guests::sample_png(1024, 768);
    println!("thumbnail input: {} byte PNG, 1024x768", png.len());
    let inv = host.invoke("thumbnail", &png)?;
    print_invocation(&inv, summarize_thumbnails);

    // news: an article in, title/links/word counts/category out.
    let article = json!({
        "html": "<html><head><title>Election results</title></head><body>\
                 <p>The government won the vote in parliament; the minister promised a new law.</p>\
                 <a href=\"https://example.com/results\">Full results</a></body></html>"
    });
    let inv = host.invoke("news", article.to_string().as_bytes())?;
    print_invocation(&inv, |out| String::from_utf8_lossy(out).into_owned());

    // leaderboard: three score events; the board stays in the host's
    // key-value store between them.
    for (player, score) in [("ann", 120), ("bob", 300), ("ann", 410)] {
        let event = json!({"event": {"player": player, "score": score}});
        let inv = host.invoke("leaderboard", event.to_string().as_bytes())?;
        let out: serde_json::Value = match inv.output() {
            Ok(bytes) => serde_json::from_slice(bytes)?,
            Err(e) => anyhow::bail!("leaderboard failed: {e}"),
        };
        print_invocation(&inv, |_| format!("top: {}", out["top"]));
    }

    // Event invocations: accepted, run asynchronously, retried, and
    // dead-lettered when they keep failing (no retries here, to be quick).
    let events = host.events();
    events.create_queue("results", QueueConfig::default())?;
    events.configure(
        "hello",
        EventConfig::default()
            .max_retries(0)
            .on_success(Destination::Queue("results".into())),
    )?;
    for name in ["Grace", ""] {
        let id = events.send("hello", json!({ "name": name }).to_string())?;
        println!("event {id} accepted");
    }
    anyhow::ensure!(
        events.wait_idle(Duration::from_secs(30)),
        "events did not settle"
    );
    for m in events.queue_messages("results")? {
        let record: serde_json::Value = serde_json::from_str(&m.body)?;
        println!(
            "event {} succeeded: {}",
            record["requestContext"]["requestId"]
                .as_str()
                .unwrap_or("?"),
            record["responsePayload"]
        );
    }
    for d in events.dead_letters()? {
        let e = d.error.unwrap_or_default();
        println!(
            "event {} dead-lettered ({}): {}: {}",
            d.id, d.condition, e.kind, e.message
        );
    }
    let s = events.stats()?;
    println!(
        "event stats: accepted {}, succeeded {}, dead-lettered {}, pending {}\n",
        s.accepted, s.succeeded, s.dead_lettered, s.pending
    );

    // Metering: what this run would cost at Lambda's prices.
    let usage = host.usage(&PriceModel::default());
    for (name, u, cost) in &usage.functions {
        println!(
            "usage {name}: {} requests, {:.6} GB-s, {}",
            u.requests,
            u.gb_seconds(),
            cost.total()
        );
    }
    println!(
        "usage total: {} requests, {:.6} GB-s, {} before the free tier, {} after",
        usage.total.requests,
        usage.total.gb_seconds(),
        usage.total_cost.total(),
        usage.total_cost_after_free_tier.total()
    );
    Ok(())
}
