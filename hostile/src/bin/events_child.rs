//! A child process for the event kill test (`tests/events_kill.rs`).
//!
//! - `events_child accept <data dir> <n>`: sends `n` durable events to a
//!   slow function, printing `accepted <id>` after each commit, then
//!   `all-accepted`, then keeps processing until it is killed.
//! - `events_child finish <data dir>`: opens the same data dir, lets every
//!   stored event finish, and prints a JSON summary.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use fnhost::events::{Destination, EventConfig, QueueConfig};
use fnhost::{FunctionConfig, Host};
use serde_json::json;

fn host(dir: &str) -> anyhow::Result<Host> {
    let host = Host::builder()
        .no_artifact_cache()
        .data_dir(dir)
        .build()
        .context("building the host")?;
    if host.function_info("slow").is_err() {
        host.register(FunctionConfig::from_file("slow", fnhost_test_guests::PROBE))?;
    }
    let ev = host.events();
    ev.create_queue("done", QueueConfig::default())?;
    ev.configure(
        "slow",
        EventConfig::default().on_success(Destination::Queue("done".into())),
    )?;
    Ok(host)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["accept", dir, n] => {
            let host = host(dir)?;
            let n: usize = n.parse()?;
            let mut out = std::io::stdout().lock();
            for _ in 0..n {
                let id = host
                    .events()
                    .send("slow", json!({"op": "sleep", "ms": 30}).to_string())?;
                writeln!(out, "accepted {id}")?;
                out.flush()?;
            }
            writeln!(out, "all-accepted")?;
            out.flush()?;
            // Keep working until killed.
            loop {
                std::thread::park();
            }
        }
        ["finish", dir] => {
            let host = host(dir)?;
            let ev = host.events();
            let before = ev.stats()?;
            let done = ev.wait_for(Duration::from_secs(120), |ev| {
                ev.stats().is_ok_and(|s| s.pending == 0)
            });
            let after = ev.stats()?;
            let done_ids: Vec<String> = ev
                .queue_messages("done")?
                .iter()
                .filter_map(|m| {
                    let v: serde_json::Value = serde_json::from_str(&m.body).ok()?;
                    Some(v["requestContext"]["requestId"].as_str()?.to_string())
                })
                .collect();
            let dead_ids: Vec<String> = ev.dead_letters()?.into_iter().map(|d| d.id).collect();
            println!(
                "{}",
                json!({
                    "settled": done,
                    "succeeded_before": before.succeeded,
                    "pending_before": before.pending,
                    "accepted": after.accepted,
                    "succeeded": after.succeeded,
                    "dead_lettered": after.dead_lettered,
                    "pending": after.pending,
                    "done_ids": done_ids,
                    "dead_ids": dead_ids,
                })
            );
            Ok(())
        }
        _ => bail!("usage: events_child accept <dir> <n> | finish <dir>"),
    }
}
