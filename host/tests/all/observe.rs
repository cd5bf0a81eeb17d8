//! Metering and observability: usage and cost add up exactly, metrics
//! render for Prometheus, every invocation reaches the log sink.

use std::sync::{Arc, Mutex};

use fnhost::{ErrorKind, FunctionConfig, LogSink, Logs, Money, PriceModel, Report};
use serde_json::json;

use super::*;

#[test]
fn usage_and_cost_add_up_exactly_from_the_reports() {
    let host = host();
    with_probe(&host, "m128", |c| c.memory_limit(128 << 20));
    with_probe(&host, "m512", |c| c.memory_limit(512 << 20));
    let mut expected_mib_ms = 0u128;
    for (name, mib) in [("m128", 128u128), ("m512", 512)] {
        for i in 0..5 {
            let inv = call(&host, name, json!({"op": "echo", "data": i}));
            expected_mib_ms += mib * inv.report.billed_ms() as u128;
        }
    }
    let bad = call(
        &host,
        "m128",
        json!({"op": "fail", "kind": "K", "message": "m"}),
    );
    expected_mib_ms += 128 * bad.report.billed_ms() as u128;
    let prices = PriceModel::default();
    let summary = host.usage(&prices);
    assert_eq!(summary.total.requests, 11, "errors are billed requests too");
    assert_eq!(summary.total.mib_ms, expected_mib_ms);
    let names: Vec<_> = summary
        .functions
        .iter()
        .map(|(n, u, _)| (n.as_str(), u.requests))
        .collect();
    assert_eq!(names, vec![("m128", 6), ("m512", 5)]);
    // The cost is the hand formula: $0.20/1M requests, $0.0000166667 per
    // GB-s where 1 GB-s = 1024 MiB x 1000 ms; in picodollars, rounded once.
    let requests_pico = 11u128 * 200_000_000_000 / 1_000_000;
    let compute_pico = (expected_mib_ms * 16_666_700 + 512_000) / 1_024_000;
    assert_eq!(summary.total_cost.requests, Money(requests_pico));
    assert_eq!(summary.total_cost.compute, Money(compute_pico));
    // Everything is inside the monthly free tier.
    assert_eq!(summary.total_cost_after_free_tier.total(), Money(0));
    let zero_free = PriceModel {
        free_requests: 0,
        free_gb_seconds: 0,
        ..prices
    };
    assert_eq!(
        host.usage(&zero_free).total_cost_after_free_tier,
        summary.total_cost
    );
}

#[test]
fn prometheus_text_has_exact_counters() {
    let host = Host::builder()
        .no_artifact_cache()
        .concurrency_limit(4)
        .build()
        .unwrap();
    with_probe(&host, "p", |c| c.max_input(64));
    call_ok(&host, "p", json!({"op": "echo", "data": 1}));
    call_ok(&host, "p", json!({"op": "echo", "data": 2}));
    let _ = call(
        &host,
        "p",
        json!({"op": "fail", "kind": "K", "message": "m"}),
    );
    assert!(host.invoke("p", &[b' '; 65]).is_err());
    let text = host.prometheus();
    for line in [
        "# TYPE fnhost_invocations_total counter",
        "fnhost_invocations_total{function=\"p\",outcome=\"success\"} 2",
        "fnhost_invocations_total{function=\"p\",outcome=\"error\"} 1",
        "fnhost_invocations_total{function=\"p\",outcome=\"throttled\"} 0",
        "fnhost_invocations_total{function=\"p\",outcome=\"rejected\"} 1",
        "fnhost_errors_total{function=\"p\",kind=\"payload_too_large\"} 1",
        "fnhost_errors_total{function=\"p\",kind=\"guest_error\"} 1",
        "fnhost_cold_starts_total{function=\"p\"} 3",
        "fnhost_duration_seconds_count{function=\"p\"} 3",
        "fnhost_concurrent_executions{function=\"p\"} 0",
        "fnhost_max_concurrent_executions{function=\"p\"} 1",
        "fnhost_host_concurrent_executions 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Every sample line is `name{labels} value` or `name value`.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let value = l.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
    let m = host.function_metrics("p").unwrap();
    assert_eq!(m.errors_of(ErrorKind::Guest), 1);
    assert_eq!(m.duration().count, 3);
    assert!(m.duration().p50 <= m.duration().p99);
}

#[derive(Default)]
struct Collect(Mutex<Vec<(String, String, String)>>);

impl LogSink for Collect {
    fn record(&self, r: &Report, logs: &Logs) {
        self.0.lock().unwrap().push((
            r.request_id.to_string(),
            r.function.to_string(),
            logs.to_display_string(),
        ));
    }
}

#[test]
fn every_invocation_reaches_the_log_sink() {
    let sink = Arc::new(Collect::default());
    let host = Host::builder()
        .no_artifact_cache()
        .concurrency_limit(4)
        .log_sink(sink.clone())
        .build()
        .unwrap();
    with_probe(&host, "talk", |c| c);
    let a = call(
        &host,
        "talk",
        json!({"op": "print", "text": "hi \u{1b}[2J\n"}),
    );
    let b = call(&host, "talk", json!({"op": "panic", "message": "bye"}));
    let got = sink.0.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        (
            a.report.request_id.to_string(),
            "talk".into(),
            "hi \\x1b[2J\n".into()
        )
    );
    assert_eq!(got[1].0, b.report.request_id.to_string());
    assert!(got[1].2.starts_with("panicked: bye"), "{}", got[1].2);
}

#[test]
fn metrics_can_be_switched_off() {
    let host = Host::builder()
        .no_artifact_cache()
        .concurrency_limit(4)
        .metrics(false)
        .build()
        .unwrap();
    host.register(FunctionConfig::from_file("echo", guests::ECHO))
        .unwrap();
    assert_eq!(
        host.invoke("echo", b"x").unwrap().into_output().unwrap(),
        "x"
    );
    let m = host.function_metrics("echo").unwrap();
    assert_eq!((m.succeeded, m.duration().count), (0, 0));
}
