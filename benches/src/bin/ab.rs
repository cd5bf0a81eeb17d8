//! One build's side of an A/B comparison of two commits (`benches/ab.sh`):
//! the fresh, warm and queue paths of fnhost, each measured in one round
//! beside its raw-wasmtime baseline in the same process (raw, fnhost),
//! printed as one JSON line of ratios to raw. The script runs the two
//! builds' binaries alternately, round after round, so drift hits both.
//!
//! Uses only fnhost's public API and the raw baseline, so the same file
//! builds against any commit since the baseline existed.

use anyhow::Result;
use fnhost::{FunctionConfig, Host};
use fnhost_benches::{Raw, Submit, measure, measure_threads, queue_round};
use fnhost_test_guests as guests;

fn host(workers: usize) -> Result<Host> {
    Ok(Host::builder()
        .no_artifact_cache()
        .no_log_sink()
        .concurrency_limit(1000)
        .workers(workers)
        .build()?)
}

fn ns(d: std::time::Duration) -> f64 {
    d.as_nanos() as f64
}

fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let echo = guests::bytes(guests::ECHO);
    let p64 = vec![b'x'; 64];
    let raw = Raw::new(&echo, 2000)?;
    let h = host(2)?;
    h.register(FunctionConfig::from_bytes("echo", echo.clone()))?;
    h.register(
        FunctionConfig::from_bytes("echo_warm", echo.clone())
            .reuse(u32::MAX, std::time::Duration::from_secs(3600)),
    )?;
    let call = |name: &str| assert_eq!(h.invoke(name, &p64).unwrap().outcome.unwrap().len(), 64);

    let raw_fresh = measure(n, || assert_eq!(raw.fresh_call(&p64).unwrap().len(), 64));
    let fresh = measure(n, || call("echo"));
    let mut raw_inst = raw.instance()?;
    let raw_reuse = measure(n * 5, || assert_eq!(raw_inst.call(&p64).unwrap().len(), 64));
    let warm = measure(n * 5, || call("echo_warm"));

    // Queue path with 2 workers against raw fresh calls on 2 threads.
    let raw_2t = measure_threads(2, n, || assert_eq!(raw.fresh_call(&p64).unwrap().len(), 64));
    let hq = host(2)?;
    hq.register(FunctionConfig::from_bytes("echo", echo.clone()))?;
    let payloads: Vec<bytes::Bytes> = (0..256).map(|_| bytes::Bytes::from(p64.clone())).collect();
    let batches = (n / 256).max(4);
    queue_round(&hq, "echo", &payloads, 1, Submit::Batch);
    let queue_tput = queue_round(&hq, "echo", &payloads, batches, Submit::Batch).throughput;
    // The async path on the same host: one future per invocation.
    let async_tput = queue_round(&hq, "echo", &payloads, batches, Submit::Async).throughput;

    println!(
        "{}",
        serde_json::json!({
            "fresh_p50_ns": ns(fresh.p50),
            "fresh_vs_raw": ns(fresh.p50) / ns(raw_fresh.p50),
            "warm_p50_ns": ns(warm.p50),
            "warm_vs_raw": ns(warm.p50) / ns(raw_reuse.p50),
            "queue_per_s": queue_tput,
            "queue_vs_raw_2t": queue_tput / raw_2t.throughput,
            "async_per_s": async_tput,
            "async_vs_batch": async_tput / queue_tput,
        })
    );
    Ok(())
}
