//! The soak: many invocations mixing normal and hostile ones through the
//! worker queue, each checked against the outcome its kind must get, with
//! the counts that must add up (HOSTILE row 28).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fnhost::{Error, ErrorKind, FunctionConfig, Host, Invocation};
use fnhost_test_guests as guests;
use serde_json::json;

/// Soak settings.
#[derive(Debug, Clone, Copy)]
pub struct SoakConfig {
    /// Invocations to submit.
    pub invocations: u64,
    /// Worker threads.
    pub workers: usize,
    /// Invocations in flight per round.
    pub batch: usize,
}

/// What a soak saw.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// Invocations submitted.
    pub submitted: u64,
    /// Outcomes received (a result or a typed error).
    pub completed: u64,
    /// Outcomes that were not the one their kind must get.
    pub wrong: Vec<String>,
    /// Outcomes by kind: `ok` or the error kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Host RSS when starting, after the first tenth (warm-up) and at the end.
    pub rss_start: u64,
    /// See `rss_start`.
    pub rss_warm: u64,
    /// See `rss_start`.
    pub rss_end: u64,
    /// Instances still alive at the end across all (fresh-mode) functions.
    pub live_instances: u32,
    /// Invocations in flight at the end.
    pub in_flight: u32,
    /// Host counters: submitted − (succeeded + failed + throttled + rejected).
    pub unaccounted: i64,
    /// Wall time.
    pub elapsed: Duration,
}

impl SoakReport {
    /// Lost invocations: submitted but never answered.
    pub fn lost(&self) -> u64 {
        self.submitted - self.completed
    }
}

/// One kind of invocation in the mix: function, payload, and the check
/// its outcome must pass.
struct Case {
    weight: u32,
    function: &'static str,
    payload: Vec<u8>,
    expect: fn(&Result<Invocation, Error>) -> bool,
}

fn kind_of(r: &Result<Invocation, Error>) -> Option<ErrorKind> {
    match r {
        Ok(inv) => inv.output().err().map(|e| e.kind()),
        Err(e) => Some(e.kind()),
    }
}

fn guest_kind(r: &Result<Invocation, Error>) -> Option<String> {
    match r {
        Ok(inv) => match inv.output() {
            Err(Error::Guest { kind, .. }) => Some(kind.clone()),
            _ => None,
        },
        Err(_) => None,
    }
}

fn cases() -> Vec<Case> {
    let probe = |v: serde_json::Value| v.to_string().into_bytes();
    vec![
        Case {
            weight: 40,
            function: "echo",
            payload: b"soak-payload".to_vec(),
            expect: |r| matches!(r, Ok(inv) if inv.output().ok() == Some(&b"soak-payload"[..])),
        },
        Case {
            weight: 12,
            function: "hello",
            payload: br#"{"name":"soak"}"#.to_vec(),
            expect: |r| matches!(r, Ok(inv) if inv.output().is_ok_and(|o| o.starts_with(br#"{"message":"Hello, soak!""#))),
        },
        Case {
            weight: 4,
            function: "hello",
            payload: b"{not json".to_vec(),
            expect: |r| guest_kind(r).as_deref() == Some("InvalidEvent"),
        },
        Case {
            weight: 5,
            function: "probe",
            payload: probe(json!({"op": "panic", "message": "soak"})),
            expect: |r| guest_kind(r).as_deref() == Some("Panic"),
        },
        Case {
            weight: 5,
            function: "probe",
            payload: probe(json!({"op": "fail", "kind": "Soak", "message": "m"})),
            expect: |r| guest_kind(r).as_deref() == Some("Soak"),
        },
        Case {
            weight: 3,
            function: "probe",
            payload: probe(json!({"op": "alloc", "bytes": 64u64 << 20})),
            expect: |r| kind_of(r) == Some(ErrorKind::OutOfMemory),
        },
        Case {
            weight: 3,
            function: "probe",
            payload: probe(json!({"op": "recurse", "depth": 1u64 << 40})),
            expect: |r| kind_of(r) == Some(ErrorKind::Trap),
        },
        Case {
            weight: 3,
            function: "probe",
            payload: probe(json!({"op": "write", "path": "/tmp/fill", "bytes": 2u64 << 20})),
            expect: |r| matches!(r, Ok(inv) if inv.output().is_ok_and(|o| o.windows(9).any(|w| w == b"\"raw\":51}"))),
        },
        Case {
            weight: 3,
            function: "probe",
            payload: probe(json!({"op": "output", "bytes": 70_000})),
            expect: |r| kind_of(r) == Some(ErrorKind::OutputTooLarge),
        },
        Case {
            weight: 1,
            function: "probe",
            payload: probe(json!({"op": "spin"})),
            expect: |r| kind_of(r) == Some(ErrorKind::Timeout),
        },
        Case {
            weight: 2,
            function: "probe",
            payload: vec![b' '; 70_000],
            expect: |r| kind_of(r) == Some(ErrorKind::PayloadTooLarge),
        },
        Case {
            weight: 2,
            function: "ghost",
            payload: b"{}".to_vec(),
            expect: |r| kind_of(r) == Some(ErrorKind::NotFound),
        },
        Case {
            weight: 3,
            function: "wild",
            payload: b"x".to_vec(),
            expect: |r| kind_of(r) == Some(ErrorKind::AbiViolation),
        },
        Case {
            weight: 3,
            function: "bomb",
            payload: Vec::new(),
            expect: |r| kind_of(r) == Some(ErrorKind::OutOfMemory),
        },
        Case {
            // HOSTILE 29, 31, 37: reads past the end, a file grown and cut
            // again and again in a small /tmp, a huge iovec count.
            weight: 3,
            function: "wasiseq",
            payload: crate::wasi_diff::encode(&wasi_attack()),
            expect: |r| {
                matches!(r, Ok(inv) if inv.output().is_ok_and(|o| {
                    crate::wasi_diff::describe(&wasi_attack(), o)
                        .iter()
                        .all(|l| l.starts_with("errno 0"))
                }))
            },
        },
        Case {
            // HOSTILE 30: a host panic (injected) inside the invocation.
            weight: 2,
            function: "boom",
            payload: b"x".to_vec(),
            expect: |r| kind_of(r) == Some(ErrorKind::Internal),
        },
        Case {
            // HOSTILE 36: a guest error of invalid UTF-8, stored capped.
            weight: 2,
            function: "badtext",
            payload: Vec::new(),
            expect: |r| {
                guest_kind(r).is_some_and(|k| {
                    k.len() <= fnhost::abi::MAX_ERROR_KIND && k.starts_with('\u{fffd}')
                })
            },
        },
        Case {
            // HOSTILE 33: one host call asked for far more work than the
            // deadline allows.
            weight: 1,
            function: "longcall",
            payload: Vec::new(),
            expect: |r| kind_of(r) == Some(ErrorKind::Timeout),
        },
        Case {
            weight: 11,
            function: "narrow",
            payload: b"x".to_vec(),
            expect: |r| {
                matches!(r, Ok(inv) if inv.output().ok() == Some(&b"x"[..]))
                    || kind_of(r) == Some(ErrorKind::Throttled)
            },
        },
    ]
}

/// The WASI part of the soak: every call must succeed (0 bytes past EOF).
fn wasi_attack() -> Vec<crate::wasi_diff::Op> {
    use crate::wasi_diff::Op;
    let mut ops = vec![Op::Open {
        dir: 0,
        path: b"f".to_vec(),
        oflags: 1,
        rights: 3,
        fdflags: 0,
        to: 1,
    }];
    for _ in 0..4 {
        ops.extend([
            Op::Pwrite {
                slot: 1,
                at: 900 << 10,
                data: vec![7; 64],
            },
            Op::Pread {
                slot: 1,
                len: 64,
                at: 1 << 30,
            },
            Op::SetSize { slot: 1, size: 0 },
            Op::Read { slot: 1, len: 64 },
        ]);
    }
    ops
}

fn host(workers: usize) -> anyhow::Result<Host> {
    let host = Host::builder()
        .no_artifact_cache()
        .no_log_sink()
        .concurrency_limit(256)
        .workers(workers)
        .build()?;
    host.register(FunctionConfig::from_file("echo", guests::ECHO))?;
    host.register(FunctionConfig::from_file("hello", guests::HELLO))?;
    host.register(
        FunctionConfig::from_file("probe", guests::PROBE)
            .memory_limit(16 << 20)
            .tmp_quota(1 << 20)
            .max_input(64 << 10)
            .max_output(64 << 10)
            .timeout(Duration::from_millis(20)),
    )?;
    host.register(
        FunctionConfig::from_file("wasiseq", guests::WASISEQ)
            .tmp_quota(1 << 20)
            .memory_limit(16 << 20),
    )?;
    host.register(FunctionConfig::from_bytes(
        "wild",
        crate::wat_guest(
            "",
            "",
            "(i32.const 1024)",
            "(call $output (i32.const -16) (i32.const 64)) (i32.const 0)",
        ),
    ))?;
    host.register(
        FunctionConfig::from_bytes(
            "bomb",
            crate::wat_guest(
                "",
                "",
                "(i32.const 1024)",
                "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
            ),
        )
        .memory_limit(8 << 20),
    )?;
    host.register(FunctionConfig::from_file("narrow", guests::ECHO).reserved_concurrency(1))?;
    host.register(FunctionConfig::from_file("boom", guests::ECHO))?;
    fnhost::fault::arm(fnhost::fault::Point::Execute, "boom", u32::MAX);
    host.register(FunctionConfig::from_bytes(
        "badtext",
        crate::wat_guest(
            "",
            "",
            "(i32.const 1024)",
            "(memory.fill (i32.const 0) (i32.const 0xff) (i32.const 4096))
             (call $error (i32.const 0) (i32.const 4096) (i32.const 0) (i32.const 4096))
             (i32.const 1)",
        ),
    ))?;
    host.register(
        FunctionConfig::from_bytes(
            "longcall",
            crate::wat_guest(
                r#"(import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))"#,
                "",
                "(i32.const 1024)",
                "(loop $l (drop (call $random (i32.const 0) (i32.const 65536))) (br $l)) (i32.const 0)",
            ),
        )
        .timeout(Duration::from_millis(20)),
    )?;
    Ok(host)
}

/// Runs the soak and returns what it saw (it does not assert: callers do).
pub fn run(cfg: SoakConfig) -> anyhow::Result<SoakReport> {
    let start = Instant::now();
    let mut report = SoakReport {
        rss_start: rss_bytes(),
        ..SoakReport::default()
    };
    let host = host(cfg.workers)?;
    let cases = cases();
    let total_weight: u32 = cases.iter().map(|c| c.weight).sum();
    // A fixed, deterministic interleaving of the cases.
    let schedule: Vec<usize> = cases
        .iter()
        .enumerate()
        .flat_map(|(i, c)| std::iter::repeat_n(i, c.weight as usize))
        .collect();
    let mut next = 0usize;
    let warm_at = cfg.invocations / 10;
    while report.submitted < cfg.invocations {
        let n = (cfg.batch as u64).min(cfg.invocations - report.submitted) as usize;
        let round: Vec<usize> = (0..n)
            .map(|_| {
                next = (next + 7) % total_weight as usize;
                schedule[next]
            })
            .collect();
        let futures: Vec<_> = round
            .iter()
            .map(|&i| host.invoke_async(cases[i].function, cases[i].payload.clone()))
            .collect();
        report.submitted += n as u64;
        for (&i, outcome) in
            round
                .iter()
                .zip(futures::executor::block_on(futures::future::join_all(
                    futures,
                )))
        {
            report.completed += 1;
            let kind = kind_of(&outcome).map_or("ok".to_string(), |k| k.as_str().to_string());
            *report.by_kind.entry(kind.clone()).or_default() += 1;
            if !(cases[i].expect)(&outcome) && report.wrong.len() < 20 {
                report.wrong.push(format!(
                    "{} {:?}: got {kind}",
                    cases[i].function,
                    String::from_utf8_lossy(&cases[i].payload)
                ));
            }
        }
        if report.rss_warm == 0 && report.submitted >= warm_at {
            report.rss_warm = rss_bytes();
        }
    }
    let m = host.metrics();
    report.in_flight = m.in_flight;
    report.unaccounted =
        m.submitted as i64 - (m.succeeded + m.failed + m.throttled + m.rejected) as i64;
    report.live_instances = host
        .functions()
        .iter()
        .map(|f| host.instances(&f.name).map_or(0, |(live, _)| live))
        .sum();
    report.rss_end = rss_bytes();
    report.elapsed = start.elapsed();
    Ok(report)
}

/// Resident set size of this process in bytes (Linux).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / 1048576.0;
        writeln!(f, "submitted:        {}", self.submitted)?;
        writeln!(f, "completed:        {}", self.completed)?;
        writeln!(f, "lost:             {}", self.lost())?;
        writeln!(f, "host crashes:     0 (this process is still running)")?;
        writeln!(f, "wrong outcomes:   {}", self.wrong.len())?;
        for w in &self.wrong {
            writeln!(f, "  {w}")?;
        }
        writeln!(f, "outcomes by kind:")?;
        for (k, n) in &self.by_kind {
            writeln!(f, "  {k:<20} {n}")?;
        }
        writeln!(
            f,
            "RSS start / after warm-up / end: {:.1} / {:.1} / {:.1} MiB",
            mib(self.rss_start),
            mib(self.rss_warm),
            mib(self.rss_end)
        )?;
        writeln!(
            f,
            "instances alive at end: {}, in flight: {}, unaccounted: {}",
            self.live_instances, self.in_flight, self.unaccounted
        )?;
        write!(
            f,
            "elapsed: {:.1} s ({:.0} invocations/s)",
            self.elapsed.as_secs_f64(),
            self.completed as f64 / self.elapsed.as_secs_f64()
        )
    }
}
