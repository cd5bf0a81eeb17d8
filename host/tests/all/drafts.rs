//! `$LATEST` as a mutable draft (Lambda's UpdateFunctionCode without
//! Publish, then PublishVersion): staged code runs as `$LATEST` only, is
//! replaced in place, publishes under its number, survives a restart and
//! replicates like any version.

use std::collections::HashMap;

use bytes::Bytes;
use fnhost::{Alias, Error, FunctionConfig};
use serde_json::json;

use super::*;

fn probe(name: &str, generation: u32) -> FunctionConfig {
    FunctionConfig::from_file(name, guests::PROBE).env("GEN", generation.to_string())
}

fn env_gen(host: &Host, target: &str) -> String {
    call_ok(host, target, json!({"op": "env"}))["GEN"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Applies `from`'s table of `f` on `to` (the probe module is the only
/// one there is); whether anything changed.
fn apply(from: &Host, to: &Host) -> bool {
    let bytes = Bytes::from(guests::bytes(guests::PROBE));
    let store = HashMap::from([(blake3::hash(&bytes).to_hex().to_string(), bytes)]);
    let table = from.export_function("f").unwrap();
    to.apply_function("f", Some(&table), &mut |h| {
        store
            .get(h)
            .cloned()
            .ok_or_else(|| format!("no module {h}"))
    })
    .unwrap()
}

fn not_found<T: std::fmt::Debug>(r: fnhost::Result<T>, want: &str) {
    match r {
        Err(Error::NotFound { name }) => assert_eq!(name, want),
        other => panic!("expected NotFound({want}), got {other:?}"),
    }
}

#[test]
fn a_staged_draft_is_latest_only_until_published() {
    let host = host();
    // A new name stages its first version: $LATEST runs it, its number
    // does not exist yet.
    let d = host.stage(probe("d", 1)).unwrap();
    assert_eq!((d.version, d.draft), (1, true));
    assert!(host.versions("d").unwrap().is_empty());
    assert_eq!(env_gen(&host, "d"), "1");
    assert_eq!(env_gen(&host, "d:$LATEST"), "1");
    let inv = call(&host, "d", json!({"op": "env"}));
    assert_eq!(&*inv.report.version, "$LATEST");
    not_found(host.invoke("d:1", b"{}"), "d:1");
    not_found(host.set_alias("d", "live", Alias::to(1)), "d:1");
    // An alias may follow $LATEST, draft or not, but not split traffic.
    host.set_alias("d", "edge", Alias::to(Alias::LATEST))
        .unwrap();
    assert_eq!(env_gen(&host, "d:edge"), "1");
    assert!(matches!(
        host.set_alias("d", "x", Alias::weighted(Alias::LATEST, 1, 0.5)),
        Err(Error::InvalidConfig { field: "alias", .. })
    ));

    // Staging again replaces the draft in place; staging what it already
    // is changes nothing.
    let d = host.stage(probe("d", 2)).unwrap();
    assert_eq!((d.version, d.draft), (1, true));
    assert_eq!(env_gen(&host, "d:edge"), "2");
    let again = host.stage(probe("d", 2)).unwrap();
    assert_eq!(again, d);
    assert!(host.function_info("d").unwrap().draft);

    // Publishing gives it its number; publishing again publishes nothing.
    let v1 = host.publish_version("d").unwrap();
    assert_eq!((v1.version, v1.draft), (1, false));
    assert_eq!(host.versions("d").unwrap(), vec![1]);
    assert_eq!(env_gen(&host, "d:1"), "2");
    assert_eq!(host.publish_version("d").unwrap(), v1);
    assert!(!host.function_info("d").unwrap().draft);

    // A draft that is the newest published version again publishes
    // nothing new: that version is the answer.
    assert_eq!(host.stage(probe("d", 3)).unwrap().version, 2);
    assert_eq!(env_gen(&host, "d"), "3");
    assert_eq!(env_gen(&host, "d:1"), "2");
    host.stage(probe("d", 2)).unwrap();
    assert_eq!(host.publish_version("d").unwrap().version, 1);
    assert_eq!(host.versions("d").unwrap(), vec![1]);

    // register over a draft publishes under the draft's number.
    let v2 = host.register(probe("d", 5)).unwrap();
    assert_eq!((v2.version, v2.draft), (2, false));
    assert_eq!(host.versions("d").unwrap(), vec![1, 2]);
    assert_eq!(env_gen(&host, "d:2"), "5");

    // Deleting the newest published version keeps $LATEST as a draft
    // under the next number: numbers are never reused.
    host.remove_version("d", 2).unwrap();
    assert_eq!(host.versions("d").unwrap(), vec![1]);
    let latest = host.function_info("d").unwrap();
    assert_eq!((latest.version, latest.draft), (3, true));
    assert_eq!(env_gen(&host, "d"), "5");
    not_found(host.invoke("d:2", b"{}"), "d:2");
    not_found(host.remove_version("d", 3), "d:3");
    assert_eq!(host.publish_version("d").unwrap().version, 3);
    assert_eq!(host.versions("d").unwrap(), vec![1, 3]);
}

#[test]
fn config_round_trips_and_annotations_are_settings() {
    let host = host();
    let v1 = host
        .register(probe("a", 1).annotate("Description", "first"))
        .unwrap();
    let cfg = host.function_config("a").unwrap();
    assert_eq!(cfg.annotations()["Description"], "first");
    assert_eq!(cfg.env_vars(), &[("GEN".to_string(), "1".to_string())]);
    // The same config again is no change; another annotation is one.
    assert_eq!(host.register(cfg.clone()).unwrap(), v1);
    let v2 = host
        .register(cfg.clone().annotate("Description", "second"))
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.module_hash, v1.module_hash);
    // A new environment from the kept config, code unchanged.
    let v3 = host.register(cfg.clear_env().env("GEN", "9")).unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(env_gen(&host, "a"), "9");
    assert_eq!(env_gen(&host, "a:1"), "1");
    assert!(v3.last_modified >= v1.last_modified);
    // Annotations are bounded like every other setting.
    let mut big = probe("a", 1);
    for i in 0..=fnhost::MAX_ANNOTATIONS.0 {
        big = big.annotate(format!("k{i}"), "v");
    }
    assert!(matches!(
        host.register(big),
        Err(Error::InvalidConfig {
            field: "annotations",
            ..
        })
    ));
}

#[test]
fn a_draft_survives_a_restart_and_replicates() {
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
    let staged = {
        let host = build();
        host.register(probe("f", 1)).unwrap();
        host.stage(probe("f", 2).annotate("Handler", "probe.wasm"))
            .unwrap()
    };
    let a = build();
    assert_eq!(a.versions("f").unwrap(), vec![1]);
    assert_eq!(a.function_info("f").unwrap(), staged);
    assert_eq!(
        a.function_config("f").unwrap().annotations()["Handler"],
        "probe.wasm"
    );
    assert_eq!(env_gen(&a, "f"), "2");

    // Another host applies the table: the same draft, the same answers;
    // replacing and publishing the draft follow without a rebuild.
    let b = host();
    assert!(apply(&a, &b));
    assert_eq!(b.function_info("f").unwrap(), staged);
    assert_eq!(
        b.export_function("f").unwrap(),
        a.export_function("f").unwrap()
    );
    assert_eq!(env_gen(&b, "f"), "2");
    // Version 1 served once here: a rebuild would lose its counters.
    assert_eq!(env_gen(&b, "f:1"), "1");

    a.stage(probe("f", 3)).unwrap();
    assert!(apply(&a, &b));
    assert_eq!(env_gen(&b, "f"), "3");
    assert_eq!(b.versions("f").unwrap(), vec![1]);
    assert_eq!(
        b.function_metrics("f:1").unwrap().succeeded,
        1,
        "version 1 was kept, not rebuilt"
    );

    a.publish_version("f").unwrap();
    assert!(apply(&a, &b));
    assert_eq!(b.versions("f").unwrap(), vec![1, 2]);
    assert_eq!(env_gen(&b, "f:2"), "3");
    assert!(!apply(&a, &b), "nothing left to change");
    assert_eq!(
        b.export_function("f").unwrap(),
        a.export_function("f").unwrap()
    );

    // New settings for the same code: the replica has the module already
    // and fetches nothing.
    a.stage(probe("f", 4)).unwrap();
    let table = a.export_function("f").unwrap();
    let fetched = b
        .apply_function("f", Some(&table), &mut |h| Err(format!("fetched {h}")))
        .unwrap();
    assert!(fetched);
    assert_eq!(env_gen(&b, "f"), "4");
    assert_eq!(b.export_function("f").unwrap(), table);
}

#[test]
fn a_replica_whose_draft_raced_a_publish_is_rebuilt_to_the_table() {
    // b removed version 1 locally (its $LATEST became draft 2) while a
    // published another version 2: b must end as a is, never with its
    // own code under a's number.
    let (a, b) = (host(), host());
    a.register(probe("f", 1)).unwrap();
    assert!(apply(&a, &b));
    b.remove_version("f", 1).unwrap();
    assert_eq!(b.function_info("f").unwrap().version, 2);
    a.register(probe("f", 2)).unwrap();
    assert!(apply(&a, &b));
    assert_eq!(
        b.export_function("f").unwrap(),
        a.export_function("f").unwrap()
    );
    assert_eq!(b.versions("f").unwrap(), vec![1, 2]);
    assert_eq!(env_gen(&b, "f:2"), "2");
    assert_eq!(env_gen(&b, "f:1"), "1");
}

#[test]
fn function_annotations_persist_replicate_and_are_bounded() {
    let data = tempfile::tempdir().unwrap();
    let build = || {
        Host::builder()
            .data_dir(data.path())
            .concurrency_limit(8)
            .build()
            .unwrap()
    };
    let a = build();
    not_found(a.annotate_function("f", "k", Some("v")), "f");
    a.register(probe("f", 1)).unwrap();
    let seen = a.registry_generation();
    assert!(a.annotate_function("f", "url", Some("one")).unwrap());
    assert!(
        a.registry_generation() > seen,
        "a change moves the generation"
    );
    assert!(!a.annotate_function("f", "url", Some("one")).unwrap());
    assert!(!a.annotate_function("f", "gone", None).unwrap());
    // A new version keeps them: they belong to the function.
    a.register(probe("f", 2)).unwrap();
    let want = std::collections::BTreeMap::from([("url".to_string(), "one".to_string())]);
    assert_eq!(a.function_annotations("f").unwrap(), want);
    // Bounded: the refused change leaves what was there.
    let big = "x".repeat(fnhost::MAX_FUNCTION_ANNOTATIONS.1);
    match a.annotate_function("f", "big", Some(&big)) {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "annotations"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    assert_eq!(a.function_annotations("f").unwrap(), want);
    drop(a);

    // A restart keeps them; a replica gets them, and their removal.
    let a = build();
    assert_eq!(a.function_annotations("f").unwrap(), want);
    let b = host();
    assert!(apply(&a, &b));
    assert_eq!(b.function_annotations("f").unwrap(), want);
    assert!(a.annotate_function("f", "url", None).unwrap());
    assert!(apply(&a, &b));
    assert!(b.function_annotations("f").unwrap().is_empty());
    assert!(!apply(&a, &b));
    // They go with the function.
    a.annotate_function("f", "url", Some("two")).unwrap();
    a.unregister("f").unwrap();
    a.register(probe("f", 1)).unwrap();
    assert!(a.function_annotations("f").unwrap().is_empty());
}
