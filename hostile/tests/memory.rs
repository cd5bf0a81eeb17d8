//! Host memory a guest can cause (HOSTILE 31, 32), measured as the
//! process's resident set (`/proc/self/statm`). The tests in this binary
//! run one at a time, so one's allocations do not show in another's
//! measurement.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use fnhost::{FunctionConfig, Host};
use fnhost_hostile::wasi_diff::{self, Op};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
const MIB: u64 = 1 << 20;

/// Resident bytes of this process.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// One test at a time: the lock, and a host (2 workers) with `function`
/// registered.
fn measured_host(function: FunctionConfig) -> (MutexGuard<'static, ()>, Host) {
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let host = Host::builder()
        .no_artifact_cache()
        .no_log_sink()
        .workers(2)
        .build()
        .unwrap();
    host.register(function.timeout(Duration::from_secs(30)))
        .unwrap();
    (guard, host)
}

/// Resident memory grew by at most `bound` bytes since `before`.
fn assert_grew_at_most(before: u64, bound: u64, what: &str) {
    let grown = rss().saturating_sub(before);
    assert!(
        grown <= bound,
        "{what} grew by {} MiB (bound {} MiB)",
        grown / MIB,
        bound / MIB
    );
}

#[test]
fn row31_tmp_memory_stays_within_the_quota() {
    // Defect 2: create a file, grow it to 60 MiB, truncate it to 0, 24
    // times: with a 64 MiB quota the host held 1.4 GiB. The instance is
    // kept (warm reuse) so its /tmp is still alive when measured.
    let quota = 64 * MIB;
    let (_one, host) = measured_host(
        FunctionConfig::from_file("grow", fnhost_test_guests::WASISEQ)
            .tmp_quota(quota)
            .memory_limit(16 * MIB)
            .reuse(10, Duration::from_secs(600)),
    );
    let mut ops = Vec::new();
    for i in 0..24u8 {
        ops.push(Op::Open {
            dir: 0,
            path: format!("f{i}").into_bytes(),
            oflags: 1,
            rights: 3,
            fdflags: 0,
            to: 1,
        });
        ops.push(Op::Pwrite {
            slot: 1,
            at: 60 * MIB - 1,
            data: vec![1],
        });
        ops.push(Op::SetSize { slot: 1, size: 0 });
        ops.push(Op::Close { slot: 1 });
    }
    // Many empty files and a deep directory chain too.
    for i in 0..2000 {
        ops.push(Op::Open {
            dir: 0,
            path: format!("empty-{i}").into_bytes(),
            oflags: 1,
            rights: 1,
            fdflags: 0,
            to: 2,
        });
        ops.push(Op::Close { slot: 2 });
    }
    let mut deep = String::from("x");
    for _ in 0..200 {
        ops.push(Op::Mkdir {
            dir: 0,
            path: deep.clone().into_bytes(),
        });
        deep.push_str("/x");
    }
    let program = wasi_diff::encode(&ops);
    let before = rss();
    let out = host
        .invoke("grow", &program)
        .unwrap()
        .into_output()
        .unwrap();
    // Every call succeeded (errno 0 after each op code).
    let lines = wasi_diff::describe(&ops, &out);
    assert!(lines.iter().all(|l| l.starts_with("errno 0")), "{lines:?}");
    // The quota, plus the instance's own linear memory and a little slack.
    assert_grew_at_most(before, quota + 16 * MIB + 16 * MIB, "the host");
}

#[test]
fn row32_resident_memory_returns_after_big_guests() {
    // Defect 3: a guest filling a 64 MiB memory, called 10 times in
    // sequence, left +639 MiB resident (31 released slots stayed dirty per
    // decommit batch). Now at most 2 MiB of memory and 2 MiB of table stay
    // resident per slot used at once.
    let (_one, host) = measured_host(
        FunctionConfig::from_file("fill", fnhost_test_guests::PROBE).memory_limit(64 * MIB),
    );
    let fill = br#"{"op":"alloc","bytes":58720256}"#;
    host.invoke("fill", fill).unwrap().into_output().unwrap();
    let before = rss();
    for _ in 0..10 {
        host.invoke("fill", fill).unwrap().into_output().unwrap();
    }
    let payloads = (0..8).map(|_| bytes::Bytes::from_static(fill)).collect();
    for r in host.invoke_batch("fill", payloads).unwrap() {
        r.unwrap().into_output().unwrap();
    }
    // Slots used at once: at most 2 workers + the first call's; 4 MiB each,
    // plus 16 MiB of slack for the allocator.
    assert_grew_at_most(before, 3 * 4 * MIB + 16 * MIB, "resident memory");
}
