//! Durability for real: a process accepts events and is killed with
//! SIGKILL while they run; a new process on the same data dir finishes
//! them. Every accepted event ends processed or dead-lettered, none lost.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

const CHILD: &str = env!("CARGO_BIN_EXE_events_child");
const N: usize = 200;

#[test]
fn events_accepted_before_a_sigkill_are_finished_by_the_next_process() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let mut child = Command::new(CHILD)
        .args(["accept", dir, &N.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut accepted = BTreeSet::new();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        if line == "all-accepted" {
            break;
        }
        let id = line.strip_prefix("accepted ").expect("accepted <id>");
        accepted.insert(id.to_string());
    }
    // Child::kill sends SIGKILL on Unix: no destructor, no flush.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed: {status}");
    assert_eq!(accepted.len(), N, "every event was acknowledged once");

    let out = Command::new(CHILD).args(["finish", dir]).output().unwrap();
    assert!(
        out.status.success(),
        "finish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["settled"], true, "{v}");
    // The kill came mid-flight: some work was left for the new process.
    let before = v["succeeded_before"].as_u64().unwrap();
    assert!(before < N as u64, "nothing was left to finish: {v}");
    assert!(v["pending_before"].as_u64().unwrap() > 0, "{v}");
    // Counts add up, with none lost.
    let (acc, ok, dead, pending) = (
        v["accepted"].as_u64().unwrap(),
        v["succeeded"].as_u64().unwrap(),
        v["dead_lettered"].as_u64().unwrap(),
        v["pending"].as_u64().unwrap(),
    );
    assert_eq!((acc, pending), (N as u64, 0));
    assert_eq!(ok + dead, N as u64);
    let ids = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let done = ids("done_ids");
    let dead_ids = ids("dead_ids");
    let finished: BTreeSet<String> = done.iter().chain(&dead_ids).cloned().collect();
    assert_eq!(
        finished, accepted,
        "every accepted event finished, none lost"
    );
    // A success and its record commit together: one record per success,
    // even for an event whose first attempt the kill cut off (and which
    // therefore ran twice: delivery is at-least-once).
    assert_eq!(done.len() as u64, ok);
    assert_eq!(done.iter().collect::<BTreeSet<_>>().len(), done.len());
}
