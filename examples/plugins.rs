//! A plugin host: two tenants load untrusted plugins (WebAssembly
//! modules). Each plugin sees only the capabilities its tenant granted it,
//! and only its own key-value namespace.
//!
//! Run with: `cargo run --release --bin plugins` (after
//! `cargo xtask quickstart` has installed the wasm32-wasip1 target).

use anyhow::Context as _;
use fnhost::capability::{self, Capability, Determinism, HostError, MemoryKv};
use fnhost::{FunctionConfig, Host};
use fnhost_test_guests as guests;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Greet {
    name: String,
}

fn main() -> anyhow::Result<()> {
    // The embedder's capabilities: a key-value store, a reproducible clock
    // and an app-specific host function that knows the caller's tenant.
    let host = Host::builder()
        .capabilities(capability::kv(MemoryKv::new()))
        .capability(capability::clock(Determinism::Seeded {
            seed: 1,
            unix_ms: 1_767_225_600_000,
        }))
        .capability(Capability::typed("app.greet", |ctx, g: Greet| {
            if g.name.is_empty() {
                return Err(HostError::new("InvalidName", "name must not be empty"));
            }
            Ok(json!({ "greeting": format!("hello {} from tenant {}", g.name, ctx.tenant().unwrap_or("-")) }))
        }))
        .build()
        .context("starting the host")?;

    // Each tenant installs the same leaderboard plugin; alice also allows
    // hers the greeting. The probe plugin stands in for code that tries
    // what it was not granted.
    for tenant in ["alice", "bob"] {
        let mut cfg = FunctionConfig::from_file(format!("{tenant}-board"), guests::LEADERBOARD)
            .tenant(tenant)
            .grant("kv.get")
            .grant("kv.put");
        if tenant == "alice" {
            cfg = cfg.grant("app.greet");
        }
        host.register(cfg)?;
    }
    host.register(
        FunctionConfig::from_file("alice-probe", guests::PROBE)
            .tenant("alice")
            .grant("app.greet")
            .grant("clock.now"),
    )?;

    let invoke = |f: &str, payload: Value| -> anyhow::Result<Value> {
        let inv = host.invoke(f, payload.to_string().as_bytes())?;
        Ok(serde_json::from_slice(
            inv.output().map_err(|e| anyhow::anyhow!("{f}: {e}"))?,
        )?)
    };
    for (tenant, player, score) in [("alice", "ann", 10), ("bob", "bo", 7), ("alice", "al", 30)] {
        let out = invoke(
            &format!("{tenant}-board"),
            json!({"event": {"player": player, "score": score}}),
        )?;
        println!("{tenant}: top {}", out["top"]);
    }
    let call = |f: &str, name: &str, request: Value| {
        invoke(
            f,
            json!({"op": "host_call", "name": name, "request": request}),
        )
    };
    println!(
        "alice-probe app.greet: {}",
        call("alice-probe", "app.greet", json!({"name": "Ada"}))?
    );
    println!(
        "alice-probe clock.now: {}",
        call("alice-probe", "clock.now", json!({}))?
    );
    // Not granted: a value the plugin sees, counted by the host.
    println!(
        "alice-probe kv.put: {}",
        call("alice-probe", "kv.put", json!({"key": "x", "value": 1}))?
    );
    println!(
        "alice-probe net.fetch: {}",
        call("alice-probe", "net.fetch", json!({}))?
    );
    for f in ["alice-board", "bob-board", "alice-probe"] {
        let m = host.function_metrics(f)?;
        println!(
            "{f}: {} host calls, {} denied",
            m.host_calls, m.host_calls_denied
        );
    }
    Ok(())
}
