//! The rest of what a function has, on a component (the Rust
//! `component-probe`): schedule triggers, provisioned concurrency, fuel
//! metering and REPORT lines.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fnhost::events::{Destination, EventConfig, ManualClock, QueueConfig, Schedule};
use fnhost::{Error, FunctionConfig, Host};
use serde_json::{Value, json};

use super::*;

fn probe(host: &Host, name: &str, cfg: impl FnOnce(FunctionConfig) -> FunctionConfig) {
    host.register(cfg(FunctionConfig::from_file(
        name,
        guests::COMPONENT_PROBE,
    )))
    .expect("component registers");
}

#[test]
fn a_schedule_triggers_a_component_with_its_event_context() {
    let clock: Arc<ManualClock> =
        ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600));
    let host = Host::builder()
        .no_artifact_cache()
        .clock(clock.clone())
        .build()
        .unwrap();
    probe(&host, "tick", |c| c);
    let ev = host.events();
    ev.create_queue("done", QueueConfig::default()).unwrap();
    ev.configure(
        "tick",
        EventConfig::default().on_success(Destination::Queue("done".into())),
    )
    .unwrap();
    ev.add_source(
        "every-5",
        Schedule::new("every-5", "rate(5 minutes)", "tick")
            .unwrap()
            .input(r#"{"op": "context"}"#),
    )
    .unwrap();
    clock.advance(Duration::from_secs(15 * 60));
    assert!(
        ev.wait_for(Duration::from_secs(20), |ev| ev.stats().unwrap().accepted
            == 3)
    );
    assert!(ev.wait_idle(Duration::from_secs(20)), "{:?}", ev.stats());
    let s = ev.stats().unwrap();
    assert_eq!(
        (
            s.accepted,
            s.succeeded,
            s.retried,
            s.dead_lettered,
            s.pending
        ),
        (3, 3, 0, 0, 0)
    );
    let mut ids: Vec<String> = ev
        .queue_messages("done")
        .unwrap()
        .iter()
        .map(|m| {
            let record: Value = serde_json::from_str(&m.body).unwrap();
            let seen = &record["responsePayload"];
            assert_eq!(seen["function_name"], "tick");
            assert_eq!(seen["event"]["attempt"], 1);
            seen["event"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "one event id per firing");
    assert_eq!(host.function_metrics("tick").unwrap().succeeded, 3);
}

#[test]
fn provisioned_component_instances_make_the_first_invocations_warm() {
    let host = Host::builder()
        .no_artifact_cache()
        .concurrency_limit(8)
        .build()
        .unwrap();
    probe(&host, "p", |c| c.provisioned_concurrency(2));
    assert_eq!(host.instances("p").unwrap(), (2, 2));
    let inv = call(&host, "p", json!({"op": "state"}));
    assert!(!inv.report.is_cold());
    // Each provisioned instance ran init once and serves one invocation
    // (fresh mode): nothing is carried over.
    assert_eq!(
        serde_json::from_slice::<Value>(inv.output().unwrap()).unwrap(),
        json!({"counter": 1, "init_runs": 1})
    );
    let second = call(&host, "p", json!({"op": "state"}));
    assert!(!second.report.is_cold());
    let m = host.function_metrics("p").unwrap();
    assert_eq!((m.succeeded, m.cold_starts), (2, 0));
    // A failing init fails registration, and registers nothing.
    let err = host
        .register(
            FunctionConfig::from_file("bad", guests::COMPONENT_PROBE)
                .env("PROBE_INIT_FAIL", "on purpose")
                .provisioned_concurrency(1),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Guest { kind, message } if kind == "InitFailed" && message == "on purpose"),
        "{err:?}"
    );
    assert!(host.function_info("bad").is_err());
}

#[test]
fn fuel_meters_a_component_deterministically_and_the_report_says_so() {
    let host = Host::builder()
        .no_artifact_cache()
        .fuel_metering(true)
        .build()
        .unwrap();
    probe(&host, "metered", |c| {
        c.max_fuel(200_000_000).memory_limit(64 << 20)
    });
    let echo = json!({"op": "echo", "data": {"n": [1, 2, 3]}});
    let a = call(&host, "metered", echo.clone());
    let b = call(&host, "metered", echo);
    assert_eq!(a.output().unwrap(), br#"{"n":[1,2,3]}"#);
    let used = a.report.fuel_used.expect("metered");
    assert!(used > 1000, "{used}");
    assert_eq!(b.report.fuel_used, Some(used), "same input, same cost");
    let line = a.report.report_line();
    let want = format!(
        "REPORT RequestId: {} Duration: {:.2} ms Billed Duration: {} ms Memory Size: 64 MB Max Memory Used: {} MB Init Duration: {:.2} ms Fuel Used: {used}",
        a.report.request_id,
        a.report.duration.as_nanos() as f64 / 1e6,
        a.report.billed_ms(),
        a.report.max_memory_used.div_ceil(1 << 20),
        a.report.init_duration.unwrap().as_nanos() as f64 / 1e6,
    );
    assert_eq!(line, want);
    let spin = call(&host, "metered", json!({"op": "spin"}));
    assert!(
        matches!(spin.output(), Err(Error::OutOfFuel { limit: 200_000_000 })),
        "{:?}",
        spin.outcome
    );
    assert_eq!(spin.report.fuel_used, Some(200_000_000));
    assert!(
        spin.report
            .report_line()
            .ends_with(" Fuel Used: 200000000 Status: error (out_of_fuel)"),
        "{}",
        spin.report.report_line()
    );
    crate::assert_host_goes_on(&host);
}
