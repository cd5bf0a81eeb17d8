//! Replication between hosts (what a cluster builds on): a function's table
//! exported on one host and applied on another gives the same versions,
//! aliases and answers; compiled artifacts move between caches.

use std::collections::HashMap;

use bytes::Bytes;
use fnhost::{Alias, Error, FunctionConfig};
use serde_json::json;

use super::*;

fn publish(host: &Host, name: &str, generation: u32) -> u32 {
    host.register(FunctionConfig::from_file(name, guests::PROBE).env("GEN", generation.to_string()))
        .unwrap()
        .version
}

/// A module store filled from `host`'s registrations (by hash).
fn modules() -> HashMap<String, Bytes> {
    let bytes = Bytes::from(guests::bytes(guests::PROBE));
    HashMap::from([(blake3::hash(&bytes).to_hex().to_string(), bytes)])
}

fn apply(to: &Host, from: &Host, name: &str) -> bool {
    let store = modules();
    let table = from.export_function(name).ok();
    to.apply_function(name, table.as_ref(), &mut |h| {
        store
            .get(h)
            .cloned()
            .ok_or_else(|| format!("no module {h}"))
    })
    .unwrap()
}

fn env_gen(host: &Host, target: &str) -> String {
    call_ok(host, target, json!({"op": "env"}))["GEN"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn applying_an_exported_table_reproduces_versions_and_aliases() {
    let (a, b) = (host(), host());
    for g in 1..=3 {
        publish(&a, "f", g);
    }
    a.set_alias("f", "live", Alias::to(2)).unwrap();
    a.remove_version("f", 1).unwrap();
    assert!(apply(&b, &a, "f"));
    assert_eq!(b.versions("f").unwrap(), vec![2, 3]);
    assert_eq!(b.aliases("f").unwrap(), a.aliases("f").unwrap());
    assert_eq!(env_gen(&b, "f:live"), "2");
    assert_eq!(env_gen(&b, "f"), "3");
    assert_eq!(
        b.export_function("f").unwrap(),
        a.export_function("f").unwrap()
    );
    // Applying the same table again changes nothing.
    assert!(!apply(&b, &a, "f"));

    // Moves, new versions and removals follow.
    publish(&a, "f", 4);
    a.set_alias("f", "live", Alias::weighted(3, 4, 0.5))
        .unwrap();
    a.remove_version("f", 2).unwrap();
    assert!(apply(&b, &a, "f"));
    assert_eq!(b.versions("f").unwrap(), vec![3, 4]);
    assert_eq!(b.aliases("f").unwrap(), a.aliases("f").unwrap());

    // A function gone from the table is unregistered.
    a.unregister("f").unwrap();
    assert!(apply(&b, &a, "f"));
    assert!(matches!(b.invoke("f", b"{}"), Err(Error::NotFound { .. })));
}

#[test]
fn a_diverged_history_is_rebuilt_from_the_table() {
    let (a, b) = (host(), host());
    publish(&a, "f", 1);
    publish(&a, "f", 2);
    // b has its own version 1 (other settings) and a version 3.
    publish(&b, "f", 9);
    publish(&b, "f", 8);
    publish(&b, "f", 7);
    assert!(apply(&b, &a, "f"));
    assert_eq!(b.versions("f").unwrap(), vec![1, 2]);
    assert_eq!(env_gen(&b, "f:1"), "1");
    assert_eq!(env_gen(&b, "f"), "2");
}

#[test]
fn a_missing_or_wrong_module_is_a_store_error_and_changes_nothing() {
    let (a, b) = (host(), host());
    publish(&a, "f", 1);
    let table = a.export_function("f").unwrap();
    let e = b
        .apply_function("f", Some(&table), &mut |_| Err("object store down".into()))
        .unwrap_err();
    assert!(
        matches!(e, Error::Store { ref reason } if reason.contains("object store down")),
        "{e}"
    );
    let e = b
        .apply_function("f", Some(&table), &mut |_| Ok(Bytes::from_static(b"\0asm")))
        .unwrap_err();
    assert!(
        matches!(e, Error::Store { ref reason } if reason.contains("does not match its hash")),
        "{e}"
    );
    assert!(b.functions().is_empty());
    // A table that is not one is a config error.
    let e = b
        .apply_function("f", Some(&json!({"versions": 3})), &mut |_| {
            Err(String::new())
        })
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidConfig { field: "table", .. }),
        "{e}"
    );
}

#[test]
fn an_installed_artifact_spares_the_compile() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let build = |d: &std::path::Path| {
        Host::builder()
            .cache_dir(d)
            .concurrency_limit(4)
            .build()
            .unwrap()
    };
    let (a, b) = (build(dirs.0.path()), build(dirs.1.path()));
    let info = a
        .register(FunctionConfig::from_file("f", guests::PROBE))
        .unwrap();
    assert_eq!(a.stats().compiles, 1);
    let (key, bytes) = a.artifact(&info.module_hash).expect("a cached artifact");
    assert_eq!(Some(key.clone()), b.artifact_key(&info.module_hash));
    assert!(key.starts_with(&info.module_hash));
    b.install_artifact(&info.module_hash, &bytes).unwrap();
    assert!(apply(&b, &a, "f"));
    assert_eq!(b.stats().compiles, 0);
    assert_eq!(b.stats().cache_hits, 1);
    assert_eq!(env_gen_or_none(&b), None);
}

fn env_gen_or_none(host: &Host) -> Option<String> {
    call_ok(host, "f", json!({"op": "env"}))
        .get("GEN")
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

#[test]
fn an_event_config_travels_with_the_table_and_goes_with_the_function() {
    let (a, b) = (host(), host());
    publish(&a, "f", 1);
    let config = fnhost::events::EventConfig::default()
        .max_retries(1)
        .max_event_age(std::time::Duration::from_secs(600));
    a.events().configure("f", config.clone()).unwrap();
    assert!(apply(&b, &a, "f"));
    assert_eq!(b.events().configured("f"), Some(config));
    assert!(!apply(&b, &a, "f"), "nothing left to change");
    // Removed on one side, removed by the next apply.
    assert!(a.events().remove_config("f").unwrap());
    assert!(apply(&b, &a, "f"));
    assert_eq!(b.events().configured("f"), None);
    // Unregistering a function drops its config (a new function of the
    // same name starts from the defaults, as on Lambda).
    b.events()
        .configure("f", fnhost::events::EventConfig::default().max_retries(0))
        .unwrap();
    b.unregister("f").unwrap();
    publish(&b, "f", 2);
    assert_eq!(b.events().configured("f"), None);
}
