//! Versions, aliases and zero-downtime updates: each result says which
//! version produced it; nothing is dropped when an alias moves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fnhost::{Alias, Error, FunctionConfig};
use serde_json::json;

use super::*;

/// Registers the probe as `name` with `GEN` = `generation` in its env, so
/// each version answers differently.
fn publish(host: &Host, name: &str, generation: u32) -> u32 {
    host.register(FunctionConfig::from_file(name, guests::PROBE).env("GEN", generation.to_string()))
        .unwrap()
        .version
}

fn generation_of(inv: &Invocation) -> String {
    let v: Value = serde_json::from_slice(inv.output().unwrap()).unwrap();
    v["GEN"].as_str().unwrap().to_string()
}

#[test]
fn registering_again_publishes_numbered_versions() {
    let host = host();
    assert_eq!(publish(&host, "f", 1), 1);
    assert_eq!(publish(&host, "f", 2), 2);
    assert_eq!(publish(&host, "f", 3), 3);
    assert_eq!(host.versions("f").unwrap(), vec![1, 2, 3]);
    // The same code and settings again publish nothing new.
    assert_eq!(publish(&host, "f", 3), 3);
    assert_eq!(host.versions("f").unwrap(), vec![1, 2, 3]);
    // Unqualified and $LATEST run the newest; numbers run exactly that one.
    let env = json!({"op": "env"});
    for (q, want, label) in [
        ("f", "3", "$LATEST"),
        ("f:$LATEST", "3", "$LATEST"),
        ("f:1", "1", "1"),
        ("f:2", "2", "2"),
    ] {
        let inv = call(&host, q, env.clone());
        assert_eq!(generation_of(&inv), want, "{q}");
        assert_eq!(&*inv.report.version, label, "{q}");
    }
    assert_eq!(host.function_info("f").unwrap().version, 3);
    // Versions are identified by module hash too.
    assert_eq!(
        host.function_info("f:1").unwrap().module_hash,
        host.function_info("f:3").unwrap().module_hash
    );
    assert_eq!(host.function_metrics("f").unwrap().succeeded, 4);
    assert_eq!(host.function_metrics("f:1").unwrap().succeeded, 1);
}

#[test]
fn aliases_route_and_bad_references_are_typed() {
    let host = host();
    for g in 1..=3 {
        publish(&host, "f", g);
    }
    host.set_alias("f", "prod", Alias::to(2)).unwrap();
    let inv = call(&host, "f:prod", json!({"op": "env"}));
    assert_eq!(
        (generation_of(&inv), &*inv.report.version),
        ("2".to_string(), "2")
    );
    // Moving the alias is immediate.
    host.set_alias("f", "prod", Alias::to(3)).unwrap();
    assert_eq!(
        generation_of(&call(&host, "f:prod", json!({"op": "env"}))),
        "3"
    );

    let not_found = |r: fnhost::Result<()>, want: &str| match r {
        Err(Error::NotFound { name }) => assert_eq!(name, want),
        other => panic!("expected NotFound({want}), got {other:?}"),
    };
    not_found(host.set_alias("f", "canary", Alias::to(9)), "f:9");
    not_found(
        host.set_alias("f", "canary", Alias::weighted(3, 8, 0.1)),
        "f:8",
    );
    not_found(host.set_alias("ghost", "prod", Alias::to(1)), "ghost");
    not_found(host.remove_alias("f", "nope"), "f:nope");
    assert!(matches!(host.invoke("f:7", b"{}"), Err(Error::NotFound { name }) if name == "f:7"));
    assert!(
        matches!(host.invoke("f:nope", b"{}"), Err(Error::NotFound { name }) if name == "f:nope")
    );
    assert!(matches!(
        host.set_alias("f", "x", Alias::weighted(1, 2, 1.5)),
        Err(Error::InvalidConfig { field: "alias", .. })
    ));
    assert!(matches!(
        host.set_alias("f", "12", Alias::to(1)),
        Err(Error::InvalidConfig { field: "alias", .. })
    ));

    // A version an alias points to cannot be removed.
    match host.remove_version("f", 3) {
        Err(Error::InUse { what, by }) => {
            assert_eq!((what.as_str(), by.as_str()), ("f:3", "alias `f:prod`"))
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    host.set_alias("f", "prod", Alias::to(1)).unwrap();
    host.remove_version("f", 2).unwrap();
    assert_eq!(host.versions("f").unwrap(), vec![1, 3]);
    assert!(matches!(
        host.invoke("f:2", b"{}"),
        Err(Error::NotFound { .. })
    ));
    host.remove_alias("f", "prod").unwrap();
    host.remove_version("f", 1).unwrap();
    assert_eq!(host.versions("f").unwrap(), vec![3]);
    // Removing the newest keeps $LATEST (as a draft: see drafts.rs).
    host.remove_version("f", 3).unwrap();
    assert!(host.versions("f").unwrap().is_empty());
    assert_eq!(generation_of(&call(&host, "f", json!({"op": "env"}))), "3");
}

#[test]
fn weighted_routing_converges_to_its_weights() {
    let host = host();
    publish(&host, "f", 1);
    publish(&host, "f", 2);
    host.set_alias("f", "canary", Alias::weighted(1, 2, 0.1))
        .unwrap();
    let n = 4000;
    let mut to_two = 0;
    for _ in 0..n {
        let inv = call(&host, "f:canary", json!({"op": "echo", "data": 0}));
        if &*inv.report.version == "2" {
            to_two += 1;
        } else {
            assert_eq!(&*inv.report.version, "1");
        }
    }
    // Binomial(4000, 0.1): mean 400, σ ≈ 19; allow ±5σ.
    assert!(
        (305..=495).contains(&to_two),
        "{to_two} of {n} went to version 2"
    );
}

#[test]
fn moving_an_alias_under_load_drops_nothing() {
    let host = Host::builder()
        .no_artifact_cache()
        .concurrency_limit(64)
        .workers(2)
        .epoch_tick(Duration::from_millis(2))
        .build()
        .unwrap();
    publish(&host, "f", 1);
    publish(&host, "f", 2);
    host.set_alias("f", "live", Alias::to(1)).unwrap();
    let stop = AtomicBool::new(false);
    let (ok, by_one, by_two) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let submitted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    submitted.fetch_add(1, Ordering::Relaxed);
                    let inv = host
                        .invoke("f:live", json!({"op": "env"}).to_string().as_bytes())
                        .expect("never refused");
                    let generation = generation_of(&inv);
                    // Each result is tagged with the version that produced it.
                    assert_eq!(generation, inv.report.version.to_string());
                    ok.fetch_add(1, Ordering::Relaxed);
                    match generation.as_str() {
                        "1" => by_one.fetch_add(1, Ordering::Relaxed),
                        _ => by_two.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        for flip in 0..40 {
            std::thread::sleep(Duration::from_millis(5));
            host.set_alias("f", "live", Alias::to(1 + (flip % 2 + 1) % 2))
                .unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    let (ok, one, two) = (ok.into_inner(), by_one.into_inner(), by_two.into_inner());
    assert_eq!(ok, submitted.into_inner(), "count in = count out");
    assert_eq!(one + two, ok);
    assert!(one > 0 && two > 0, "both versions served: {one}/{two}");
    let m = host.function_metrics("f").unwrap();
    assert_eq!(
        (m.succeeded, m.failed, m.throttled, m.rejected),
        (ok, 0, 0, 0)
    );
}

#[test]
fn old_versions_warm_pools_drain_when_nothing_points_to_them() {
    let host = host();
    host.register(
        FunctionConfig::from_file("w", guests::PROBE).reuse(100, Duration::from_secs(600)),
    )
    .unwrap();
    call_ok(&host, "w", json!({"op": "echo", "data": 1}));
    assert_eq!(host.instances("w:1").unwrap(), (1, 1));
    host.register(
        FunctionConfig::from_file("w", guests::PROBE)
            .reuse(100, Duration::from_secs(600))
            .env("V", "2"),
    )
    .unwrap();
    // Version 1 is no longer $LATEST and no alias points to it.
    assert_eq!(host.instances("w:1").unwrap(), (0, 0));
    call_ok(&host, "w", json!({"op": "echo", "data": 1}));
    assert_eq!(host.instances("w:2").unwrap(), (1, 1));
}

#[test]
fn the_registry_persists_across_a_restart_without_compiling() {
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let build = || {
        Host::builder()
            .data_dir(data.path())
            .cache_dir(cache.path())
            .concurrency_limit(8)
            .build()
            .unwrap()
    };
    {
        let host = build();
        publish(&host, "f", 1);
        publish(&host, "f", 2);
        publish(&host, "f", 3);
        host.set_alias("f", "prod", Alias::weighted(2, 3, 0.25))
            .unwrap();
        host.remove_version("f", 1).unwrap();
        host.register(
            FunctionConfig::from_file("g", guests::ECHO)
                .memory_limit(32 << 20)
                .reserved_concurrency(2),
        )
        .unwrap();
        host.register(FunctionConfig::from_file("gone", guests::ECHO))
            .unwrap();
        host.unregister("gone").unwrap();
    }
    let host = build();
    assert_eq!(
        host.stats().compiles,
        0,
        "restored through the artifact cache"
    );
    assert_eq!(host.versions("f").unwrap(), vec![2, 3]);
    assert_eq!(
        host.aliases("f").unwrap()["prod"],
        Alias::weighted(2, 3, 0.25)
    );
    assert_eq!(
        generation_of(&call(&host, "f:2", json!({"op": "env"}))),
        "2"
    );
    assert_eq!(generation_of(&call(&host, "f", json!({"op": "env"}))), "3");
    let g = host.function_info("g").unwrap();
    assert_eq!(
        (g.memory_limit, g.reserved_concurrency),
        (32 << 20, Some(2))
    );
    assert!(host.function_info("gone").is_err());
    // Publishing continues the numbering.
    assert_eq!(publish(&host, "f", 4), 4);
    // A corrupt table is a clear error, not a panic.
    drop(host);
    std::fs::write(data.path().join("registry.json"), b"{ not json").unwrap();
    match Host::builder()
        .data_dir(data.path())
        .cache_dir(cache.path())
        .concurrency_limit(8)
        .build()
    {
        Err(Error::InvalidConfig {
            field: "data_dir",
            reason,
        }) => assert!(reason.contains("registry.json"), "{reason}"),
        Err(other) => panic!("expected InvalidConfig, got {other:?}"),
        Ok(_) => panic!("expected an error"),
    }
}
