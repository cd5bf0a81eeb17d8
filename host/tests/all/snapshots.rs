//! Snapshots after init: init state in every instance, no leaks between
//! instances, reuse across a restart without init or compile, invalidation
//! on env or module change, and a failing init as a typed register error.

use std::time::Duration;

use fnhost::{Error, FunctionConfig, Host};
use serde_json::{Value, json};

use crate::{call_ok, guests};

fn host(cache: &std::path::Path) -> Host {
    Host::builder()
        .cache_dir(cache)
        .concurrency_limit(8)
        .epoch_tick(Duration::from_millis(2))
        .build()
        .unwrap()
}

fn snapped(name: &str, value: &str) -> FunctionConfig {
    FunctionConfig::from_file(name, guests::PROBE)
        .env("PROBE_INIT_VALUE", value)
        .snapshot(true)
}

#[test]
fn every_fresh_instance_starts_from_init_state_and_nothing_leaks() {
    let cache = tempfile::tempdir().unwrap();
    let host = host(cache.path());
    host.register(snapped("p", "alpha")).unwrap();
    let s = host.stats();
    assert_eq!((s.snapshots_created, s.snapshots_reused), (1, 0));
    let mut nonces = std::collections::BTreeSet::new();
    let mut init_random = std::collections::BTreeSet::new();
    for _ in 0..3 {
        // Init ran once, at register time; the instance did not run it.
        let mut info = call_ok(&host, "p", json!({"op": "init_info"}));
        let nonce = info
            .as_object_mut()
            .unwrap()
            .remove("restore_nonce")
            .unwrap();
        let random = info["init"]
            .as_object_mut()
            .unwrap()
            .remove("random")
            .unwrap();
        assert_eq!(
            info,
            json!({"init": {"value": "alpha", "table": 333_833_500u64}, "init_runs": 1, "counter": 0})
        );
        nonces.insert(nonce.as_str().unwrap().to_string());
        init_random.insert(random.as_str().unwrap().to_string());
        // State an invocation leaves behind is gone in the next instance.
        let v = call_ok(&host, "p", json!({"op": "state"}));
        assert_eq!(v, json!({"counter": 1, "tmp_before": null}));
    }
    // Randomness drawn in init is frozen into the snapshot: every instance
    // shares it (docs/snapshots.md). `#[restore]` runs per instance and
    // draws fresh randomness.
    assert_eq!(init_random.len(), 1);
    assert_eq!(nonces.len(), 3);
    // Without a snapshot, every fresh instance runs init itself.
    host.register(FunctionConfig::from_file("q", guests::PROBE).env("PROBE_INIT_VALUE", "beta"))
        .unwrap();
    assert_eq!(
        call_ok(&host, "q", json!({"op": "init_info"}))["init_runs"],
        1
    );
    assert_eq!(host.stats().snapshots_created, 1);
}

#[test]
fn a_snapshot_is_reused_across_a_restart_and_remade_when_env_or_module_change() {
    let cache = tempfile::tempdir().unwrap();
    {
        let first = host(cache.path());
        first.register(snapped("p", "alpha")).unwrap();
        let s = first.stats();
        assert_eq!(
            (s.snapshots_created, s.snapshots_reused, s.compiles),
            (1, 0, 1)
        );
    }
    // A new host on the same cache: no init, no compile.
    let second = host(cache.path());
    second.register(snapped("p", "alpha")).unwrap();
    let s = second.stats();
    assert_eq!(
        (
            s.snapshots_created,
            s.snapshots_reused,
            s.compiles,
            s.cache_hits
        ),
        (0, 1, 0, 1)
    );
    let info = call_ok(&second, "p", json!({"op": "init_info"}));
    assert_eq!(info["init"]["value"], "alpha");
    assert_eq!(info["init_runs"], 1);
    // Another env value: init must run again, and its state shows it.
    second.register(snapped("p", "gamma")).unwrap();
    assert_eq!(second.stats().snapshots_created, 1);
    assert_eq!(
        call_ok(&second, "p", json!({"op": "init_info"}))["init"]["value"],
        "gamma"
    );
    // Another name: init can read it, so another snapshot.
    second.register(snapped("p2", "gamma")).unwrap();
    assert_eq!(second.stats().snapshots_created, 2);
    // Another module: another snapshot.
    second
        .register(FunctionConfig::from_file("news", guests::NEWS).snapshot(true))
        .unwrap();
    assert_eq!(second.stats().snapshots_created, 3);
    let out: Value = call_ok(
        &second,
        "news",
        json!({"html": "<p>The goverment won the vote.</p>"}),
    );
    assert_eq!(out["category"], "politics");
    assert_eq!(out["scores"], json!({"politics": 2}));
}

#[test]
fn a_failing_init_fails_the_register_with_inits_error() {
    let cache = tempfile::tempdir().unwrap();
    let host = host(cache.path());
    let e = host
        .register(
            FunctionConfig::from_file("bad", guests::PROBE)
                .env("PROBE_INIT_FAIL", "no config")
                .snapshot(true),
        )
        .unwrap_err();
    match e {
        Error::Guest { kind, message } => {
            assert_eq!(
                (kind.as_str(), message.as_str()),
                ("InitFailed", "no config")
            );
        }
        other => panic!("expected the init's guest error, got {other:?}"),
    }
    assert!(host.function_info("bad").is_err(), "nothing registered");
    assert_eq!(host.stats().snapshots_created, 0);
    // Not a snapshot: the same init fails the first invocation instead.
    host.register(FunctionConfig::from_file("lazy", guests::PROBE).env("PROBE_INIT_FAIL", "x"))
        .unwrap();
    let inv = host.invoke("lazy", br#"{"op":"echo","data":1}"#).unwrap();
    assert!(
        matches!(inv.output(), Err(Error::Guest { .. })),
        "{:?}",
        inv.outcome
    );
}

#[test]
fn a_torn_snapshot_file_is_ignored_and_made_again() {
    let cache = tempfile::tempdir().unwrap();
    host(cache.path()).register(snapped("p", "alpha")).unwrap();
    let dir = cache.path().join("snapshots");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "the snapshot and its seal: {files:?}");
    let wasm = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "wasm"))
        .unwrap();
    let mut bytes = std::fs::read(wasm).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(wasm, bytes).unwrap();
    let again = host(cache.path());
    again.register(snapped("p", "alpha")).unwrap();
    let s = again.stats();
    assert_eq!((s.snapshots_created, s.snapshots_reused), (1, 0));
    assert_eq!(
        call_ok(&again, "p", json!({"op": "init_info"}))["init"]["value"],
        "alpha"
    );
}
