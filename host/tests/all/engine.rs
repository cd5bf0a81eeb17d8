//! The invocation engine: concurrency limits, backpressure, the async
//! path through the worker queue, warm pools, idle release, shutdown
//! (HOSTILE 18–20, 23). Concurrency is measured inside the host
//! (`max_in_flight`), never by timing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fnhost::{Error, ErrorKind, FunctionConfig, MetricsSnapshot};
use serde_json::json;

use super::*;

fn sleep_cmd(ms: u64) -> Vec<u8> {
    json!({"op": "sleep", "ms": ms}).to_string().into_bytes()
}

/// Once nothing is in flight, every request has exactly one outcome.
fn assert_accounted(m: &MetricsSnapshot) {
    assert_eq!(m.in_flight, 0);
    assert_eq!(
        m.submitted,
        m.succeeded + m.failed + m.throttled + m.rejected,
        "{m:?}"
    );
}

fn engine_host(limit: u32, workers: usize) -> Host {
    Host::builder()
        .no_artifact_cache()
        .concurrency_limit(limit)
        .workers(workers)
        .epoch_tick(Duration::from_millis(2))
        .build()
        .unwrap()
}

#[test]
fn reserved_limit_is_never_exceeded_and_throttles_are_exact() {
    // HOSTILE 20
    let host = engine_host(16, 2);
    with_probe(&host, "r3", |c| c.reserved_concurrency(3));
    let throttled = AtomicU64::new(0);
    let ok = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..12 {
            s.spawn(|| {
                for _ in 0..8 {
                    match host.invoke("r3", &sleep_cmd(3)) {
                        Ok(inv) => {
                            assert_eq!(inv.output().unwrap(), b"\"slept\"");
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Throttled { function, limit }) => {
                            assert_eq!((function.as_str(), limit), ("r3", 3));
                            throttled.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            });
        }
    });
    let m = host.function_metrics("r3").unwrap();
    assert!(m.max_in_flight <= 3, "max in flight {}", m.max_in_flight);
    assert_eq!(m.submitted, 96);
    assert_eq!(m.succeeded, ok.load(Ordering::Relaxed));
    assert_eq!(m.throttled, throttled.load(Ordering::Relaxed));
    assert_eq!(m.errors_of(ErrorKind::Throttled), m.throttled);
    assert!(m.succeeded >= 3);
    assert_accounted(&m);
}

#[test]
fn one_functions_burst_does_not_starve_a_reserved_one() {
    // Global 4; `vip` reserves 2, so the unreserved pool is 2.
    let host = engine_host(4, 2);
    with_probe(&host, "noisy", |c| c);
    with_probe(&host, "vip", |c| c.reserved_concurrency(2));
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..10 {
                    let _ = host.invoke("noisy", &sleep_cmd(2));
                }
            });
        }
        // While `noisy` saturates its pool, `vip` is always served.
        s.spawn(|| {
            for _ in 0..30 {
                let inv = host
                    .invoke("vip", &sleep_cmd(1))
                    .expect("vip is never throttled");
                assert_eq!(inv.output().unwrap(), b"\"slept\"");
            }
        });
    });
    let noisy = host.function_metrics("noisy").unwrap();
    assert!(noisy.max_in_flight <= 2, "{}", noisy.max_in_flight);
    assert!(noisy.throttled > 0);
    assert_accounted(&noisy);
    let vip = host.function_metrics("vip").unwrap();
    assert_eq!((vip.succeeded, vip.throttled), (30, 0));
    let all = host.metrics();
    assert!(all.max_in_flight <= 4, "{}", all.max_in_flight);
    assert_accounted(&all);
}

#[test]
fn reserved_concurrency_is_carved_out_of_the_global_limit() {
    let host = engine_host(10, 1);
    with_probe(&host, "a", |c| c.reserved_concurrency(6));
    match host.register(FunctionConfig::from_file("b", guests::PROBE).reserved_concurrency(5)) {
        Err(Error::InvalidConfig { field, reason }) => {
            assert_eq!(field, "reserved_concurrency");
            assert_eq!(
                reason,
                "5 is more than the 4 left unreserved of the host's 10"
            );
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    host.unregister("a").unwrap();
    with_probe(&host, "b", |c| c.reserved_concurrency(5));
}

#[test]
fn backpressure_waits_for_a_slot_then_throttles() {
    let host = engine_host(8, 1);
    with_probe(&host, "patient", |c| {
        c.reserved_concurrency(1).max_wait(Duration::from_secs(20))
    });
    with_probe(&host, "hasty", |c| {
        c.reserved_concurrency(1).max_wait(Duration::from_millis(1))
    });
    std::thread::scope(|s| {
        for name in ["patient", "hasty"] {
            let host = &host;
            s.spawn(move || {
                let outcomes: Vec<_> = std::thread::scope(|s| {
                    let hs: Vec<_> = (0..4)
                        .map(|_| s.spawn(move || host.invoke(name, &sleep_cmd(20))))
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).collect()
                });
                let ok = outcomes.iter().filter(|o| o.is_ok()).count();
                let throttled = outcomes
                    .iter()
                    .filter(|o| matches!(o, Err(Error::Throttled { .. })))
                    .count();
                assert_eq!(ok + throttled, 4);
                if name == "patient" {
                    assert_eq!(ok, 4, "every waiting caller got a slot");
                }
            });
        }
    });
    for name in ["patient", "hasty"] {
        let m = host.function_metrics(name).unwrap();
        assert_eq!(m.max_in_flight, 1);
        assert_accounted(&m);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_async_runs_on_the_worker_pool() {
    let host = engine_host(64, 2);
    host.register(FunctionConfig::from_file("echo", guests::ECHO))
        .unwrap();
    let futures: Vec<_> = (0..50)
        .map(|i| host.invoke_async("echo", format!("msg-{i}")))
        .collect();
    let results = futures::future::join_all(futures).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap().into_output().unwrap(), format!("msg-{i}"));
    }
    assert!(matches!(
        host.invoke_async("nope", "x").await,
        Err(Error::NotFound { .. })
    ));
    let m = host.function_metrics("echo").unwrap();
    assert_eq!((m.submitted, m.succeeded), (50, 50));
    assert_accounted(&m);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_async_throttles_and_waits_without_blocking_the_executor() {
    let host = engine_host(64, 4);
    with_probe(&host, "one", |c| c.reserved_concurrency(1));
    with_probe(&host, "queue", |c| {
        c.reserved_concurrency(1).max_wait(Duration::from_secs(30))
    });
    let results =
        futures::future::join_all((0..6).map(|_| host.invoke_async("one", sleep_cmd(30)))).await;
    let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
    let throttled = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Throttled { .. })))
        .count() as u64;
    assert_eq!(ok + throttled, 6);
    assert!(ok >= 1 && throttled >= 1, "ok {ok}, throttled {throttled}");
    let m = host.function_metrics("one").unwrap();
    assert_eq!((m.succeeded, m.throttled), (ok, throttled));
    // With a wait bound, every future eventually gets the single slot.
    let results =
        futures::future::join_all((0..6).map(|_| host.invoke_async("queue", sleep_cmd(5)))).await;
    assert!(results.iter().all(|r| r.is_ok()));
    let m = host.function_metrics("queue").unwrap();
    assert_eq!((m.succeeded, m.max_in_flight), (6, 1));
    assert_accounted(&m);
}

#[test]
fn reuse_keeps_state_within_one_instance_only() {
    // HOSTILE 18
    let host = engine_host(8, 1);
    with_probe(&host, "warm", |c| c.reuse(100, Duration::from_secs(600)));
    with_probe(&host, "other", |c| c.reuse(100, Duration::from_secs(600)));
    let first = call(&host, "warm", json!({"op": "state"}));
    assert!(first.report.is_cold());
    let v: Value = serde_json::from_slice(first.output().unwrap()).unwrap();
    assert_eq!(v, json!({"counter": 1, "tmp_before": null}));
    for n in 2..=4 {
        let inv = call(&host, "warm", json!({"op": "state"}));
        assert!(
            !inv.report.is_cold(),
            "invocation {n} reuses the warm instance"
        );
        assert_eq!(inv.report.init_duration, None);
        let v: Value = serde_json::from_slice(inv.output().unwrap()).unwrap();
        assert_eq!(v, json!({"counter": n, "tmp_before": (n - 1).to_string()}));
    }
    // Another function never sees it.
    assert_eq!(
        call_ok(&host, "other", json!({"op": "state"})),
        json!({"counter": 1, "tmp_before": null})
    );
    assert_eq!(host.instances("warm").unwrap(), (1, 1));
    let m = host.function_metrics("warm").unwrap();
    assert_eq!((m.cold_starts, m.succeeded), (1, 4));
}

#[test]
fn a_trapped_or_timed_out_instance_is_never_reused() {
    // HOSTILE 19
    let host = engine_host(8, 1);
    with_probe(&host, "w", |c| {
        c.reuse(100, Duration::from_secs(600))
            .timeout(Duration::from_millis(100))
    });
    for poison in [
        json!({"op": "panic", "message": "x"}),
        json!({"op": "spin"}),
        json!({"op": "alloc", "bytes": 1u64 << 31}),
    ] {
        assert_eq!(
            call_ok(&host, "w", json!({"op": "state"}))["counter"],
            json!(1)
        );
        assert_eq!(
            call_ok(&host, "w", json!({"op": "state"}))["counter"],
            json!(2)
        );
        assert!(
            call(&host, "w", poison.clone()).output().is_err(),
            "{poison}"
        );
        assert_eq!(
            host.instances("w").unwrap(),
            (0, 0),
            "discarded after {poison}"
        );
    }
    // A handled error does not poison the instance.
    assert_eq!(
        call_ok(&host, "w", json!({"op": "state"}))["counter"],
        json!(1)
    );
    assert!(
        call(
            &host,
            "w",
            json!({"op": "fail", "kind": "K", "message": "m"})
        )
        .output()
        .is_err()
    );
    assert_eq!(
        call_ok(&host, "w", json!({"op": "state"}))["counter"],
        json!(2)
    );
}

#[test]
fn max_uses_bounds_an_instance() {
    let host = engine_host(8, 1);
    with_probe(&host, "w", |c| c.reuse(2, Duration::from_secs(600)));
    let counters: Vec<_> = (0..5)
        .map(|_| call_ok(&host, "w", json!({"op": "state"}))["counter"].clone())
        .collect();
    assert_eq!(
        counters,
        vec![json!(1), json!(2), json!(1), json!(2), json!(1)]
    );
}

#[test]
fn idle_instances_are_released_after_their_ttl() {
    let host = engine_host(8, 1);
    with_probe(&host, "w", |c| c.reuse(100, Duration::from_secs(60)));
    call_ok(&host, "w", json!({"op": "echo", "data": 1}));
    assert_eq!(host.instances("w").unwrap(), (1, 1));
    // Not yet idle long enough.
    assert_eq!(host.release_idle(Instant::now()), 0);
    assert_eq!(host.instances("w").unwrap(), (1, 1));
    // Past the TTL: scale to zero.
    assert_eq!(
        host.release_idle(Instant::now() + Duration::from_secs(61)),
        1
    );
    assert_eq!(host.instances("w").unwrap(), (0, 0));
    // The next invocation is a cold start again.
    assert!(
        call(&host, "w", json!({"op": "echo", "data": 1}))
            .report
            .is_cold()
    );
}

#[test]
fn provisioned_instances_make_the_first_invocations_warm() {
    let host = engine_host(8, 1);
    with_probe(&host, "p", |c| c.provisioned_concurrency(2));
    assert_eq!(host.instances("p").unwrap(), (2, 2));
    let inv = call(&host, "p", json!({"op": "state"}));
    assert!(!inv.report.is_cold());
    // Fresh mode: a provisioned instance serves one invocation.
    assert_eq!(
        serde_json::from_slice::<Value>(inv.output().unwrap()).unwrap()["counter"],
        json!(1)
    );
    assert_eq!(host.function_metrics("p").unwrap().cold_starts, 0);
    // A failing init fails registration (and registers nothing).
    let bad = wat_guest(
        "",
        r#"(func (export "fnhost_init") (result i32) (unreachable))"#,
        "(i32.const 0)",
    );
    let err = host
        .register(FunctionConfig::from_bytes("bad", bad).provisioned_concurrency(1))
        .unwrap_err();
    assert!(matches!(err, Error::Trap { .. }), "{err:?}");
    assert!(host.function_info("bad").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_invocation_exactly_once() {
    // HOSTILE 23
    let host = engine_host(64, 1);
    with_probe(&host, "slow", |c| c);
    let futures: Vec<_> = (0..10)
        .map(|_| tokio::spawn(host.invoke_async("slow", sleep_cmd(100))))
        .collect();
    // Let the single worker pick up the first job.
    let m = loop {
        let m = host.function_metrics("slow").unwrap();
        if m.succeeded + m.failed > 0 || host.metrics().in_flight > 0 {
            break m;
        }
        tokio::task::yield_now().await;
    };
    let _ = m;
    let report = tokio::task::spawn_blocking({
        let host = host.clone();
        move || host.shutdown(Duration::from_secs(10))
    })
    .await
    .unwrap();
    let mut ok = 0;
    let mut shutting = 0;
    for f in futures {
        match f.await.unwrap() {
            Ok(inv) => {
                assert_eq!(inv.output().unwrap(), b"\"slept\"");
                ok += 1;
            }
            Err(Error::ShuttingDown) => shutting += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok + shutting, 10, "count in = count out");
    assert!(ok >= 1);
    assert_eq!(report.still_running, 0);
    let m = host.function_metrics("slow").unwrap();
    assert_eq!((m.succeeded, m.rejected), (ok, shutting));
    assert_accounted(&m);
    assert!(matches!(
        host.invoke("slow", b"{}"),
        Err(Error::ShuttingDown)
    ));
    assert!(matches!(
        host.invoke_async("slow", "{}").await,
        Err(Error::ShuttingDown)
    ));
}

#[test]
fn many_threads_many_functions_counts_add_up() {
    let host = Arc::new(engine_host(6, 2));
    for name in ["f1", "f2", "f3"] {
        with_probe(&host, name, |c| c.reuse(50, Duration::from_secs(60)));
    }
    std::thread::scope(|s| {
        for t in 0..6 {
            let host = host.clone();
            s.spawn(move || {
                for i in 0..40 {
                    let name = ["f1", "f2", "f3"][(t + i) % 3];
                    let cmd = if i % 7 == 0 {
                        json!({"op": "panic", "message": "p"})
                    } else {
                        json!({"op": "echo", "data": i})
                    };
                    let _ = host.invoke(name, cmd.to_string().as_bytes());
                }
            });
        }
    });
    let all = host.metrics();
    assert_eq!(all.submitted, 240);
    assert!(all.max_in_flight <= 6);
    assert_accounted(&all);
    assert_host_goes_on(&host);
}

#[test]
fn invoke_batch_returns_every_result_in_order() {
    // Every payload holds a slot while queued: 100 need a limit above 100.
    let host = engine_host(128, 2);
    host.register(FunctionConfig::from_file("echo", guests::ECHO))
        .unwrap();
    with_probe(&host, "one", |c| c.reserved_concurrency(1));
    let payloads: Vec<bytes::Bytes> = (0..100)
        .map(|i| bytes::Bytes::from(format!("p{i}")))
        .collect();
    let results = host.invoke_batch("echo", payloads).unwrap();
    assert_eq!(results.len(), 100);
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap().into_output().unwrap(), format!("p{i}"));
    }
    // Admission applies per payload: with one slot, the excess is throttled
    // in its own slot and nothing is lost.
    let results = host
        .invoke_batch("one", vec![bytes::Bytes::from(sleep_cmd(20)); 5])
        .unwrap();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let throttled = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Throttled { .. })))
        .count();
    assert_eq!(ok + throttled, 5);
    assert!(ok >= 1 && throttled >= 1);
    assert_accounted(&host.function_metrics("one").unwrap());
    assert!(matches!(
        host.invoke_batch("nope", vec![]),
        Err(Error::NotFound { .. })
    ));
}
