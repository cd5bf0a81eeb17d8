//! Event invocations and triggers (HOSTILE 24–25): retries on a clock the
//! test moves, dead letters, destinations, schedules, queues, topics and
//! file events. Every test checks that the counts add up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fnhost::events::{
    Destination, EventConfig, EventStats, Events, FileEvents, ManualClock, QueueConfig,
    QueueMapping, Schedule, Subscription,
};
use fnhost::{Error, ErrorKind, FunctionConfig, Host};
use serde_json::{Value, json};

use crate::guests;

const WAIT: Duration = Duration::from_secs(20);

fn start() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600) // 2026-01-01T00:00:00Z
}

/// A host on a manual clock with the event sink registered as `sink`.
fn host(clock: &Arc<ManualClock>) -> Host {
    let host = Host::builder()
        .no_artifact_cache()
        .concurrency_limit(8)
        .clock(clock.clone())
        .build()
        .expect("host builds");
    register(&host, "sink");
    host
}

fn register(host: &Host, name: &str) {
    host.register(FunctionConfig::from_file(name, guests::EVENTSINK))
        .expect("event sink registers");
}

/// Sends successes' records to queue `done`.
fn record_successes(ev: &Events, function: &str) {
    ev.create_queue("done", QueueConfig::default()).unwrap();
    ev.configure(
        function,
        EventConfig::default().on_success(Destination::Queue("done".into())),
    )
    .unwrap();
}

fn idle(ev: &Events) {
    assert!(
        ev.wait_idle(WAIT),
        "events did not settle: {:?}",
        ev.stats()
    );
}

fn bodies(ev: &Events, queue: &str) -> Vec<Value> {
    ev.queue_messages(queue)
        .unwrap()
        .iter()
        .map(|m| serde_json::from_str(&m.body).unwrap())
        .collect()
}

fn assert_adds_up(s: &EventStats) {
    assert_eq!(
        s.accepted,
        s.succeeded + s.dead_lettered + s.pending,
        "accepted = succeeded + dead-lettered + pending: {s:?}"
    );
}

#[test]
fn event_invocations_run_once_each_and_the_guest_sees_a_stable_id() {
    let clock = ManualClock::new(start());
    let host = host(&clock);
    let ev = host.events();
    assert!(!ev.is_durable(), "no data dir: memory only");
    record_successes(ev, "sink");
    let ids: Vec<String> = (0..20)
        .map(|i| ev.send("sink", json!({ "n": i }).to_string()).unwrap())
        .collect();
    idle(ev);
    let s = ev.stats().unwrap();
    assert_eq!(
        (s.accepted, s.succeeded, s.pending, s.dead_lettered),
        (20, 20, 0, 0)
    );
    assert_adds_up(&s);
    let records = bodies(ev, "done");
    assert_eq!(records.len(), 20);
    let mut seen = BTreeSet::new();
    for r in &records {
        let id = r["requestContext"]["requestId"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(r["requestContext"]["condition"], "Success");
        assert_eq!(r["requestContext"]["approximateInvokeCount"], 1);
        assert_eq!(r["responsePayload"]["event_id"], id.as_str());
        assert_eq!(r["responsePayload"]["attempt"], 1);
        assert_eq!(r["responsePayload"]["payload"], r["requestPayload"]);
        assert_eq!(
            r["requestContext"]["functionArn"],
            "arn:aws:lambda:local:000000000000:function:sink:$LATEST"
        );
        seen.insert(id);
    }
    assert_eq!(seen, ids.into_iter().collect::<BTreeSet<_>>());
    // A synchronous invocation has no event id.
    let out: Value =
        serde_json::from_slice(&host.invoke("sink", b"{}").unwrap().into_output().unwrap())
            .unwrap();
    assert_eq!(out["event_id"], Value::Null);
    assert_eq!(out["attempt"], Value::Null);
}

#[test]
fn a_failing_event_is_retried_twice_with_backoff_then_dead_lettered() {
    // HOSTILE 25: retried per policy, dead-lettered with the error, never
    // retried forever.
    let clock = ManualClock::new(start());
    let host = host(&clock);
    let ev = host.events();
    let id = ev.send("sink", r#"{"fail": true}"#).unwrap();
    idle(ev);
    let s = ev.stats().unwrap();
    assert_eq!((s.retried, s.pending, s.dead_lettered), (1, 1, 0));
    // The first retry waits 60 s.
    clock.advance(Duration::from_secs(59));
    idle(ev);
    assert_eq!(ev.stats().unwrap().retried, 1);
    clock.advance(Duration::from_secs(1));
    idle(ev);
    assert_eq!(ev.stats().unwrap().retried, 2);
    // The second waits 120 s; then no third.
    clock.advance(Duration::from_secs(119));
    idle(ev);
    assert_eq!(ev.stats().unwrap().dead_lettered, 0);
    clock.advance(Duration::from_secs(1));
    idle(ev);
    let s = ev.stats().unwrap();
    assert_eq!(
        (s.retried, s.pending, s.dead_lettered, s.succeeded),
        (2, 0, 1, 0)
    );
    assert_adds_up(&s);
    let dead = ev.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!((d.id.as_str(), d.target.as_str()), (id.as_str(), "sink"));
    assert_eq!(d.condition, "RetriesExhausted");
    assert_eq!(d.attempts, 3);
    let err = d.error.as_ref().unwrap();
    assert_eq!(err.kind, "Boom");
    assert_eq!(err.message, "failed on attempt Some(3)");
    assert_eq!(&d.payload[..], br#"{"fail": true}"#);
    assert_eq!(d.record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(d.record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(d.record["responsePayload"]["errorType"], "Boom");
    assert_eq!(d.record["requestPayload"], json!({"fail": true}));
    assert_eq!(host.function_metrics("sink").unwrap().failed, 3);
    // Never again, however long we wait.
    clock.advance(Duration::from_secs(24 * 3600));
    idle(ev);
    assert_eq!(ev.stats().unwrap(), s);
    assert_eq!(host.function_metrics("sink").unwrap().failed, 3);
}

#[test]
fn a_retry_delivers_the_same_event_id_and_attempt_number() {
    // HOSTILE 24: at-least-once delivery; the guest sees the idempotency
    // key (its event id) and which attempt this is.
    let clock = ManualClock::new(start());
    let host = host(&clock);
    let ev = host.events();
    record_successes(ev, "sink");
    let id = ev.send("sink", r#"{"fail_until": 2}"#).unwrap();
    idle(ev);
    clock.advance(Duration::from_secs(60));
    idle(ev);
    let records = bodies(ev, "done");
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["responsePayload"]["event_id"], id.as_str());
    assert_eq!(r["responsePayload"]["attempt"], 2);
    assert_eq!(r["requestContext"]["approximateInvokeCount"], 2);
    let s = ev.stats().unwrap();
    assert_eq!((s.succeeded, s.retried, s.dead_lettered), (1, 1, 0));
    assert_adds_up(&s);
}

#[test]
fn event_age_limits_retries_and_configs_are_validated() {
    let clock = ManualClock::new(start());
    let host = host(&clock);
    let ev = host.events();
    let field = |c: EventConfig| match ev.configure("sink", c) {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    assert_eq!(field(EventConfig::default().max_retries(3)), "max_retries");
    assert_eq!(
        field(EventConfig::default().max_event_age(Duration::from_secs(59))),
        "max_event_age"
    );
    assert_eq!(
        field(EventConfig::default().max_event_age(Duration::from_secs(6 * 3600 + 1))),
        "max_event_age"
    );
    assert_eq!(
        field(EventConfig::default().on_success(Destination::DeadLetters)),
        "on_success"
    );
    let e = ev
        .configure(
            "sink",
            EventConfig::default().on_failure(Destination::Queue("nope".into())),
        )
        .unwrap_err();
    assert!(matches!(e, Error::NoSuch { what: "queue", .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = ev.configure("ghost", EventConfig::default()).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let e = ev.send("ghost", "{}").unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");

    // 60 s of age; retry after 50 s fits, the next (100 s later) does not.
    let cfg = EventConfig::default()
        .max_event_age(Duration::from_secs(60))
        .retry_delay(Duration::from_secs(50));
    ev.configure("sink", cfg.clone()).unwrap();
    assert_eq!(
        field(EventConfig::default().retry_delay(Duration::ZERO)),
        "retry_delay"
    );
    let e = ev.configure("sink:1", EventConfig::default()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidConfig {
                field: "function",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(ev.config("sink"), cfg);
    ev.send("sink", r#"{"fail": true}"#).unwrap();
    idle(ev);
    clock.advance(Duration::from_secs(50));
    idle(ev);
    let dead = ev.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].condition.as_str(), dead[0].attempts),
        ("EventAgeExceeded", 2)
    );
    assert_adds_up(&ev.stats().unwrap());
}

#[test]
fn dead_letters_can_be_redriven_and_purged_and_destinations_chain() {
    let clock = ManualClock::new(start());
    let host = host(&clock);
    register(&host, "collector");
    let ev = host.events();
    // Failures of `sink` become events of `collector`, whose successes
    // are recorded on `done`.
    record_successes(ev, "collector");
    ev.configure(
        "sink",
        EventConfig::default()
            .max_retries(0)
            .on_failure(Destination::Function("collector".into())),
    )
    .unwrap();
    let id = ev.send("sink", r#"{"fail": true}"#).unwrap();
    idle(ev);
    let records = bodies(ev, "done");
    assert_eq!(records.len(), 1);
    let failure = &records[0]["responsePayload"]["payload"];
    assert_eq!(failure["requestContext"]["requestId"], id.as_str());
    assert_eq!(failure["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(failure["responsePayload"]["errorType"], "Boom");

    // Back to the dead letters: redrive runs it again (it fails again).
    ev.configure("sink", EventConfig::default().max_retries(0))
        .unwrap();
    ev.send("sink", r#"{"fail": true}"#).unwrap();
    idle(ev);
    let dead = ev.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    ev.redrive(&dead[0].id).unwrap();
    idle(ev);
    let again = ev.dead_letters().unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, dead[0].id);
    assert_eq!(again[0].attempts, 1);
    let s = ev.stats().unwrap();
    // sink: 2 sends + 1 redrive; collector: 1 event.
    assert_eq!(
        (s.accepted, s.redriven, s.dead_lettered, s.succeeded),
        (4, 1, 3, 1)
    );
    assert_adds_up(&s);
    ev.purge_dead_letter(&dead[0].id).unwrap();
    assert!(ev.dead_letters().unwrap().is_empty());
    let e = ev.redrive(&dead[0].id).unwrap_err();
    assert!(
        matches!(
            e,
            Error::NoSuch {
                what: "dead letter",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn schedules_fire_on_the_controlled_clock() {
    let clock = ManualClock::new(start());
    let host = host(&clock);
    let ev = host.events();
    record_successes(ev, "sink");
    let rate = ev
        .add_source(
            "every-5",
            Schedule::new("every-5", "rate(5 minutes)", "sink").unwrap(),
        )
        .unwrap();
    ev.add_source(
        "hourly",
        Schedule::new("hourly", "cron(0 * * * ? *)", "sink")
            .unwrap()
            .input(r#"{"job": "hourly"}"#),
    )
    .unwrap();
    clock.advance(Duration::from_secs(3600));
    assert!(ev.wait_for(WAIT, |ev| ev.stats().unwrap().accepted == 13));
    idle(ev);
    let records = bodies(ev, "done");
    let mut times: Vec<String> = records
        .iter()
        .map(|r| &r["responsePayload"]["payload"])
        .filter(|p| p["detail-type"] == "Scheduled Event")
        .map(|p| {
            assert_eq!(
                p["resources"][0],
                "arn:aws:events:local:000000000000:rule/every-5"
            );
            assert_eq!(p["source"], "aws.events");
            p["time"].as_str().unwrap().to_string()
        })
        .collect();
    times.sort();
    let want: Vec<String> = (1..=12)
        .map(|i| format!("2026-01-01T{:02}:{:02}:00Z", i * 5 / 60, i * 5 % 60))
        .collect();
    assert_eq!(times, want);
    let hourly: Vec<&Value> = records
        .iter()
        .filter(|r| r["responsePayload"]["payload"] == json!({"job": "hourly"}))
        .collect();
    assert_eq!(hourly.len(), 1);
    // A stopped schedule fires no more.
    assert!(ev.remove_source(rate));
    clock.advance(Duration::from_secs(3600));
    assert!(ev.wait_for(WAIT, |ev| ev.stats().unwrap().accepted == 14));
    idle(ev);
    let s = ev.stats().unwrap();
    assert_eq!((s.accepted, s.succeeded), (14, 14));
}

#[test]
fn queue_batches_delete_successes_and_redrive_repeated_failures() {
    let clock = ManualClock::new(start());
    let host = host(&clock);
    let ev = host.events();
    ev.create_queue(
        "jobs",
        QueueConfig::default()
            .visibility_timeout(Duration::from_secs(30))
            .max_receive_count(Some(2)),
    )
    .unwrap();
    for body in ["ok1", "fail-a", "ok2", "ok3", "ok4", "fail-b", "ok5"] {
        ev.send_message("jobs", body, BTreeMap::new()).unwrap();
    }
    ev.map_queue(
        "jobs",
        "sink",
        QueueMapping::default()
            .batch_size(3)
            .report_batch_item_failures(true),
    )
    .unwrap();
    idle(ev);
    // Batches of 3, 3 and 1; the two failures wait out their visibility.
    assert_eq!(host.function_metrics("sink").unwrap().succeeded, 3);
    let left: Vec<String> = ev
        .queue_messages("jobs")
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(left, ["fail-a", "fail-b"]);
    clock.advance(Duration::from_secs(30));
    idle(ev);
    assert_eq!(host.function_metrics("sink").unwrap().succeeded, 4);
    // Received twice: the third receive moves them to the dead letters.
    clock.advance(Duration::from_secs(30));
    idle(ev);
    assert_eq!(host.function_metrics("sink").unwrap().succeeded, 4);
    assert!(ev.queue_messages("jobs").unwrap().is_empty());
    let dead: Vec<(String, u32)> = ev
        .queue_dead_letters("jobs")
        .unwrap()
        .into_iter()
        .map(|m| (m.body, m.receive_count))
        .collect();
    assert_eq!(dead, [("fail-a".into(), 2), ("fail-b".into(), 2)]);
    let s = ev.stats().unwrap();
    assert_eq!(
        (
            s.messages_sent,
            s.messages_deleted,
            s.messages_dead_lettered
        ),
        (7, 5, 2)
    );
}

#[test]
fn a_failed_batch_is_retried_whole_and_the_window_gathers_small_batches() {
    let clock = ManualClock::new(start());
    let host = host(&clock);
    let ev = host.events();
    ev.create_queue("q", QueueConfig::default()).unwrap();
    // Without partial responses a failing invocation fails the batch.
    for body in ["a", "crash", "b"] {
        ev.send_message("q", body, BTreeMap::new()).unwrap();
    }
    let mapping = ev
        .map_queue("q", "sink", QueueMapping::default().batch_size(10))
        .unwrap();
    idle(ev);
    assert_eq!(host.function_metrics("sink").unwrap().failed, 1);
    assert_eq!(ev.queue_messages("q").unwrap().len(), 3);
    assert!(
        ev.queue_messages("q")
            .unwrap()
            .iter()
            .all(|m| m.receive_count == 1)
    );
    assert!(ev.remove_source(mapping));
    for m in ev.receive_messages("q", 10).unwrap_or_default() {
        ev.delete_message("q", m.receipt).unwrap();
    }
    // Hidden for 30 s, so nothing was received above; after that the
    // three come back and are deleted by hand.
    clock.advance(Duration::from_secs(30));
    let got = ev.receive_messages("q", 10).unwrap();
    assert_eq!(got.len(), 3);
    for m in &got {
        assert_eq!(m.receive_count, 2);
        ev.delete_message("q", m.receipt).unwrap();
    }
    assert!(ev.queue_messages("q").unwrap().is_empty());

    // A 20 s window: 10 messages go at once, 2 wait for the window.
    ev.map_queue(
        "q",
        "sink",
        QueueMapping::default()
            .batch_size(10)
            .batch_window(Duration::from_secs(20)),
    )
    .unwrap();
    for i in 0..10 {
        ev.send_message("q", format!("m{i}"), BTreeMap::new())
            .unwrap();
    }
    idle(ev);
    assert_eq!(host.function_metrics("sink").unwrap().succeeded, 1);
    ev.send_message("q", "late1", BTreeMap::new()).unwrap();
    ev.send_message("q", "late2", BTreeMap::new()).unwrap();
    assert!(
        !ev.wait_idle(Duration::from_millis(300)),
        "a partial batch waits for its window"
    );
    assert_eq!(host.function_metrics("sink").unwrap().succeeded, 1);
    clock.advance(Duration::from_secs(20));
    idle(ev);
    assert_eq!(host.function_metrics("sink").unwrap().succeeded, 2);
    assert!(ev.queue_messages("q").unwrap().is_empty());
}

#[test]
fn a_publish_reaches_each_matching_subscriber_once() {
    let clock = ManualClock::new(start());
    let host = host(&clock);
    register(&host, "north-only");
    let ev = host.events();
    ev.create_queue("audit", QueueConfig::default()).unwrap();
    ev.create_topic("orders").unwrap();
    ev.subscribe("orders", Subscription::function("sink"))
        .unwrap();
    ev.subscribe(
        "orders",
        Subscription::function("north-only")
            .filter_policy(r#"{"store": ["north"]}"#)
            .unwrap(),
    )
    .unwrap();
    ev.subscribe("orders", Subscription::queue("audit"))
        .unwrap();
    let attrs = |s: &str| BTreeMap::from([("store".to_string(), s.to_string())]);
    let mut delivered = 0;
    for (i, store) in ["north", "south", "north"].into_iter().enumerate() {
        let p = ev
            .publish("orders", &format!("order {i}"), attrs(store))
            .unwrap();
        delivered += p.delivered;
        assert_eq!(p.delivered + p.filtered, 3);
    }
    idle(ev);
    let s = ev.stats().unwrap();
    assert_eq!((s.published, s.deliveries, s.filtered), (3, 8, 1));
    assert_eq!(s.deliveries, delivered as u64);
    assert_eq!(s.published * 3, s.deliveries + s.filtered);
    assert_eq!(host.function_metrics("sink").unwrap().succeeded, 3);
    assert_eq!(host.function_metrics("north-only").unwrap().succeeded, 2);
    assert_eq!(s.accepted, 5);
    assert_adds_up(&s);
    let audit = bodies(ev, "audit");
    let messages: Vec<&str> = audit
        .iter()
        .map(|n| n["Message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["order 0", "order 1", "order 2"]);
    assert_eq!(audit[1]["MessageAttributes"]["store"]["Value"], "south");
    assert_eq!(
        audit[0]["TopicArn"],
        "arn:aws:sns:local:000000000000:orders"
    );
    let e = ev.publish("nope", "x", BTreeMap::new()).unwrap_err();
    assert!(matches!(e, Error::NoSuch { what: "topic", .. }), "{e}");
}

#[test]
fn a_watched_directory_produces_s3_notifications() {
    let clock = ManualClock::new(start());
    let host = host(&clock);
    let ev = host.events();
    record_successes(ev, "sink");
    let tmp = tempfile::tempdir().unwrap();
    let inbox = tmp.path().join("inbox");
    std::fs::create_dir_all(inbox.join("sub")).unwrap();
    ev.watch_dir(FileEvents::new(&inbox, "sink").unwrap())
        .unwrap();
    std::fs::write(inbox.join("a b.txt"), b"hello").unwrap();
    std::fs::write(inbox.join("sub/c.bin"), [0u8; 1000]).unwrap();
    assert!(ev.wait_for(WAIT, |ev| ev.stats().unwrap().succeeded == 2));
    std::fs::remove_file(inbox.join("a b.txt")).unwrap();
    assert!(ev.wait_for(WAIT, |ev| ev.stats().unwrap().succeeded == 3));
    idle(ev);
    let mut seen: Vec<(String, String, Option<u64>)> = bodies(ev, "done")
        .iter()
        .map(|r| {
            let rec = &r["responsePayload"]["payload"]["Records"][0];
            assert_eq!(rec["eventSource"], "aws:s3");
            assert_eq!(rec["s3"]["bucket"]["name"], "inbox");
            (
                rec["eventName"].as_str().unwrap().to_string(),
                rec["s3"]["object"]["key"].as_str().unwrap().to_string(),
                rec["s3"]["object"]["size"].as_u64(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("ObjectCreated:Put".into(), "a+b.txt".into(), Some(5)),
            ("ObjectCreated:Put".into(), "sub/c.bin".into(), Some(1000)),
            ("ObjectRemoved:Delete".into(), "a+b.txt".into(), None),
        ]
    );
}

#[test]
fn events_survive_a_restart_on_the_same_data_dir() {
    let clock = ManualClock::new(start());
    let data = tempfile::tempdir().unwrap();
    let build = || {
        Host::builder()
            .no_artifact_cache()
            .data_dir(data.path())
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let first = build();
    register(&first, "sink");
    let ev = first.events();
    assert!(ev.is_durable());
    ev.configure("sink", EventConfig::default().max_retries(1))
        .unwrap();
    ev.send("sink", r#"{"fail": true}"#).unwrap();
    idle(ev);
    assert_eq!(ev.stats().unwrap().pending, 1);
    drop(first);

    let second = build();
    let ev = second.events();
    // The config, the pending retry and the counters came back.
    assert_eq!(ev.config("sink"), EventConfig::default().max_retries(1));
    assert_eq!(ev.stats().unwrap().pending, 1);
    clock.advance(Duration::from_secs(60));
    idle(ev);
    let s = ev.stats().unwrap();
    assert_eq!(
        (s.accepted, s.retried, s.dead_lettered, s.pending),
        (1, 1, 1, 0)
    );
    assert_eq!(ev.dead_letters().unwrap()[0].attempts, 2);
}

#[test]
fn events_wait_for_a_full_function_without_being_charged_an_attempt() {
    // Lambda retries throttled events until their max age; here an event
    // waits for a free slot of its function, and the wait is not an
    // attempt.
    let clock = ManualClock::new(start());
    let host = host(&clock);
    host.register(FunctionConfig::from_file("slow", guests::PROBE).reserved_concurrency(1))
        .unwrap();
    let ev = host.events();
    record_successes(ev, "slow");
    for _ in 0..6 {
        ev.send("slow", json!({"op": "sleep", "ms": 30}).to_string())
            .unwrap();
    }
    idle(ev);
    let s = ev.stats().unwrap();
    assert_eq!(
        (s.accepted, s.succeeded, s.retried, s.dead_lettered),
        (6, 6, 0, 0)
    );
    let records = bodies(ev, "done");
    assert_eq!(records.len(), 6);
    assert!(
        records
            .iter()
            .all(|r| r["requestContext"]["approximateInvokeCount"] == 1),
        "{records:?}"
    );
    let m = host.function_metrics("slow").unwrap();
    assert_eq!((m.succeeded, m.throttled), (6, 0));
}
