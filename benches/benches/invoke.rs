//! Criterion benches for local regression work: the BENCH.md cases beside
//! their raw-wasmtime baselines. The report runner (`cargo xtask bench`)
//! is what BENCHMARKS.md quotes.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use fnhost::{FunctionConfig, Host};
use fnhost_benches::Raw;
use fnhost_test_guests as guests;

fn host(metrics: bool) -> Host {
    Host::builder()
        .no_artifact_cache()
        .no_log_sink()
        .metrics(metrics)
        .build()
        .expect("host")
}

fn fresh(c: &mut Criterion) {
    let echo = guests::bytes(guests::ECHO);
    let raw = Raw::new(&echo, 1000).expect("raw");
    let h = host(true);
    h.register(FunctionConfig::from_bytes("echo", echo.clone()))
        .unwrap();
    let off = host(false);
    off.register(FunctionConfig::from_bytes("echo", echo.clone()))
        .unwrap();
    let mut g = c.benchmark_group("fresh");
    for size in [64usize, 64 << 10, 1 << 20] {
        let p = vec![b'x'; size];
        g.bench_function(format!("raw-fresh/{size}"), |b| {
            b.iter(|| raw.fresh_call(&p).unwrap())
        });
        g.bench_function(format!("fnhost/{size}"), |b| {
            b.iter(|| h.invoke("echo", &p).unwrap())
        });
    }
    let p = vec![b'x'; 64];
    g.bench_function("fnhost-metrics-off/64", |b| {
        b.iter(|| off.invoke("echo", &p).unwrap())
    });
    g.finish();
}

fn reuse(c: &mut Criterion) {
    let echo = guests::bytes(guests::ECHO);
    let raw = Raw::new(&echo, 16).expect("raw");
    let mut inst = raw.instance().unwrap();
    let h = host(true);
    h.register(FunctionConfig::from_bytes("echo", echo).reuse(u32::MAX, Duration::from_secs(3600)))
        .unwrap();
    let p = vec![b'x'; 64];
    let mut g = c.benchmark_group("reuse");
    g.bench_function("raw-reuse/64", |b| b.iter(|| inst.call(&p).unwrap()));
    g.bench_function("fnhost-reuse/64", |b| {
        b.iter(|| h.invoke("echo", &p).unwrap())
    });
    g.finish();
}

fn queue(c: &mut Criterion) {
    let echo = guests::bytes(guests::ECHO);
    let mut g = c.benchmark_group("queue");
    for workers in [1usize, 2] {
        let h = Host::builder()
            .no_artifact_cache()
            .no_log_sink()
            .workers(workers)
            .build()
            .unwrap();
        h.register(FunctionConfig::from_bytes("echo", echo.clone()))
            .unwrap();
        g.bench_function(
            format!("invoke_async-256-in-flight/{workers}-workers"),
            |b| {
                b.iter(|| {
                    let futs: Vec<_> = (0..256)
                        .map(|_| h.invoke_async("echo", vec![b'x'; 64]))
                        .collect();
                    futures::executor::block_on(futures::future::join_all(futs))
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, fresh, reuse, queue);
criterion_main!(benches);
