//! What one invocation or function leaves behind is invisible to others
//! (HOSTILE 15, 17, 18).

use fnhost::FunctionConfig;
use serde_json::json;

use super::*;

#[test]
fn env_vars_are_visible_only_to_their_function() {
    let host = host();
    with_probe(&host, "a", |c| c.env("A_SECRET", "1").env("SHARED", "a"));
    with_probe(&host, "b", |c| c.env("B_SECRET", "2"));
    assert_eq!(
        call_ok(&host, "a", json!({"op": "env"})),
        json!({"A_SECRET": "1", "SHARED": "a"})
    );
    assert_eq!(
        call_ok(&host, "b", json!({"op": "env"})),
        json!({"B_SECRET": "2"})
    );
    // The host process's own environment never leaks in.
    with_probe(&host, "c", |c| c);
    assert_eq!(call_ok(&host, "c", json!({"op": "env"})), json!({}));
}

#[test]
fn tmp_is_private_per_function_and_per_invocation() {
    let host = host();
    with_probe(&host, "writer", |c| c);
    with_probe(&host, "reader", |c| c);
    let v = call_ok(
        &host,
        "writer",
        json!({"op": "write", "path": "/tmp/secret", "bytes": 10}),
    );
    assert_eq!(v["result"], json!({"ok": 10}));
    for f in ["reader", "writer"] {
        let v = call_ok(&host, f, json!({"op": "read", "path": "/tmp/secret"}));
        assert_eq!(v["raw"], json!(44), "{f}: {v}");
        assert_eq!(
            call_ok(&host, f, json!({"op": "list", "path": "/tmp"})),
            json!({"ok": []})
        );
    }
}

#[test]
fn no_state_survives_between_fresh_invocations() {
    let host = host();
    with_probe(&host, "s", |c| c);
    for _ in 0..3 {
        assert_eq!(
            call_ok(&host, "s", json!({"op": "state"})),
            json!({"counter": 1, "tmp_before": null})
        );
    }
}

#[test]
fn random_differs_between_instances() {
    let host = host();
    with_probe(&host, "rng", |c| c);
    let a = call_ok(&host, "rng", json!({"op": "random"}));
    let b = call_ok(&host, "rng", json!({"op": "random"}));
    assert_ne!(a, b);
}

#[test]
fn paths_outside_tmp_are_denied() {
    // HOSTILE 15
    let host = host();
    with_probe(&host, "esc", |c| c);
    let read = |path: &str| call_ok(&host, "esc", json!({"op": "read", "path": path}));
    for path in [
        "/etc/passwd",
        "/tmp/../etc/passwd",
        "../../etc/passwd",
        "/",
        "/proc/self/environ",
    ] {
        let v = read(path);
        assert!(v.get("err").is_some(), "{path}: {v}");
    }
    // Inside /tmp: `..` that would climb above it is refused (EPERM, as
    // wasmtime-wasi answers).
    let v = call_ok(
        &host,
        "esc",
        json!({"op": "write", "path": "/tmp/../escape", "bytes": 1}),
    );
    assert!(v["result"].get("err").is_some(), "{v}");
    // Symlinks and hard links cannot be made (EPERM = 63).
    let v = call_ok(
        &host,
        "esc",
        json!({"op": "symlink", "target": "/etc/passwd", "link": "l"}),
    );
    assert_eq!(v, json!({"errno": 63}));
    let v = call_ok(
        &host,
        "esc",
        json!({"op": "hard_link", "from": "/tmp/a", "to": "/tmp/b"}),
    );
    assert!(v.get("err").is_some(), "{v}");
    // Renames out of /tmp fail; within /tmp they work.
    let v = call_ok(
        &host,
        "esc",
        json!({"op": "rename", "from": "/tmp/x", "to": "/etc/x"}),
    );
    assert!(v.get("err").is_some(), "{v}");
    assert_host_goes_on(&host);
}

#[test]
fn two_functions_share_no_memory() {
    let host = host();
    with_probe(&host, "m1", |c| c);
    host.register(FunctionConfig::from_file("m2", guests::PROBE))
        .unwrap();
    assert_eq!(
        call_ok(&host, "m1", json!({"op": "state"}))["counter"],
        json!(1)
    );
    assert_eq!(
        call_ok(&host, "m2", json!({"op": "state"}))["counter"],
        json!(1)
    );
    assert_eq!(
        call_ok(&host, "m1", json!({"op": "state"}))["counter"],
        json!(1)
    );
}
