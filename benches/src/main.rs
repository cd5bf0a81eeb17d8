//! The benchmark report: every case beside its baseline, measured in this
//! one process, printed as a markdown table (see BENCHMARKS.md).
//!
//! Run with: `cargo xtask bench` (add `-- --quick` for a short run).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use fnhost::{FunctionConfig, Host};
use fnhost_benches::charts::Charts;
use fnhost_benches::{
    Raw, Stats, fmt_dur, measure, measure_threads, process_echo, rounds, rss_bytes, thread_echo,
};
use fnhost_test_guests as guests;

mod report_components;
mod report_gateway;
mod report_http;
mod report_queue;

struct Row {
    case: String,
    stats: Stats,
    ratio: String,
}

struct Report {
    rows: Vec<Row>,
    targets: Vec<(String, String, bool)>,
    notes: Vec<String>,
    charts: Charts,
}

/// A duration in µs, as the charts draw it.
fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e3
}

/// A case's latency curve for the charts (`None` when it was not timed
/// per operation).
fn curve(label: &str, s: &Stats) -> Option<(String, Vec<f64>)> {
    Some((
        label.to_string(),
        s.percentiles?.iter().map(|d| us(*d)).collect(),
    ))
}

impl Report {
    fn row(&mut self, case: impl Into<String>, stats: Stats, ratio: impl Into<String>) {
        let case = case.into();
        eprintln!("  {case}: p50 {}", fmt_dur(stats.p50));
        self.rows.push(Row {
            case,
            stats,
            ratio: ratio.into(),
        });
    }

    fn target(&mut self, what: impl Into<String>, measured: impl Into<String>, ok: bool) {
        self.targets.push((what.into(), measured.into(), ok));
    }
}

fn host(workers: usize, metrics: bool) -> Result<Host> {
    Ok(Host::builder()
        .no_artifact_cache()
        .no_log_sink()
        .concurrency_limit(1000)
        .workers(workers)
        .metrics(metrics)
        .build()?)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--cold-start-child") {
        return cold_start_child(PathBuf::from(&args[2]));
    }
    if args.get(1).map(String::as_str) == Some(report_components::CHILD_FLAG) {
        return report_components::child_main(PathBuf::from(&args[2]), &args[3..]);
    }
    if args.get(1).map(String::as_str) == Some(report_components::RAW_CHILD_FLAG) {
        return report_components::raw_child_main(PathBuf::from(&args[2]), &args[3..]);
    }
    if args.get(1).map(String::as_str) == Some("--snapshot-child") {
        return snapshot_child(PathBuf::from(&args[2]));
    }
    if args.get(1).map(String::as_str) == Some("--profile-fresh") {
        // A steady loop of fresh 64 B invocations, for `perf record`.
        let h = host(1, true)?;
        h.register(FunctionConfig::from_bytes(
            "echo",
            guests::bytes(guests::ECHO),
        ))?;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            for _ in 0..1000 {
                h.invoke("echo", &[b'x'; 64])?.outcome?;
            }
        }
        return Ok(());
    }
    if args.get(1).map(String::as_str) == Some("--profile-queue") {
        // A steady loop of 256-invocation rounds through the worker pool
        // (`--profile-queue async|batch WORKERS`), for `perf record`.
        let how = match args.get(2).map(String::as_str) {
            Some("batch") => fnhost_benches::Submit::Batch,
            _ => fnhost_benches::Submit::Async,
        };
        let workers = args.get(3).and_then(|w| w.parse().ok()).unwrap_or(1);
        let h = host(workers, true)?;
        h.register(FunctionConfig::from_bytes(
            "echo",
            guests::bytes(guests::ECHO),
        ))?;
        let payloads: Vec<bytes::Bytes> = (0..256)
            .map(|_| bytes::Bytes::from(vec![b'x'; 64]))
            .collect();
        let t = Instant::now();
        let (mut n, mut rate) = (0, 0.0);
        while t.elapsed() < Duration::from_secs(5) {
            rate += fnhost_benches::queue_round(&h, "echo", &payloads, 10, how).throughput;
            n += 1;
        }
        println!("{how:?}, {workers} worker(s): {:.0}/s", rate / n as f64);
        return Ok(());
    }
    let quick = args.iter().any(|a| a == "--quick");
    let n = if quick { 2_000 } else { 20_000 };
    let mut r = Report {
        rows: Vec::new(),
        targets: Vec::new(),
        notes: Vec::new(),
        charts: Charts::default(),
    };
    // Every ratio below comes from interleaved rounds (see `rounds`).
    const R: usize = 5;
    if args.iter().any(|a| a == "--http") {
        // Only the HTTP component rows (issue #20).
        report_http::report(&mut r, quick, R)?;
        print_report(&r, quick);
        return Ok(());
    }
    if args.iter().any(|a| a == "--gateway") {
        // Only the gateway rows (issue #22).
        report_gateway::report(&mut r, quick, R)?;
        print_report(&r, quick);
        return Ok(());
    }
    if args.iter().any(|a| a == "--queue") {
        // Only the worker-pool rows (issue #22 item 3).
        let echo = guests::bytes(guests::ECHO);
        let raw = Raw::new(&echo, 2000)?;
        report_queue::report(&mut r, quick, R, &echo, &raw, &[b'x'; 64])?;
        print_report(&r, quick);
        return Ok(());
    }
    if args.iter().any(|a| a == "--components") {
        // Only the component rows (issue #19).
        report_components::report(&mut r, quick, R)?;
        print_report(&r, quick);
        return Ok(());
    }
    let echo = guests::bytes(guests::ECHO);
    let raw = Raw::new(&echo, 2000)?;
    let p64 = vec![b'x'; 64];
    let p64k = vec![b'x'; 64 << 10];
    let p1m = vec![b'x'; 1 << 20];

    // Every ratio below comes from interleaved rounds (baseline, subject,
    // baseline, subject...): the median of the per-round ratios, with their
    // min-max. Each side runs `n / R` iterations a round.
    let per = n / R;

    eprintln!("fresh path");
    let h = host(2, true)?;
    h.register(FunctionConfig::from_bytes("echo", echo.clone()))?;
    let fn_call = |h: &Host, name: &str, p: &[u8]| {
        assert_eq!(h.invoke(name, p).unwrap().outcome.unwrap().len(), p.len())
    };
    let fresh = rounds(
        R,
        || measure(per, || assert_eq!(raw.fresh_call(&p64).unwrap().len(), 64)),
        || measure(per, || fn_call(&h, "echo", &p64)),
    );
    r.row("raw-fresh, 64 B (baseline)", fresh.a(), "1.00");
    r.row(
        "fnhost invoke, fresh instance, 64 B",
        fresh.b(),
        format!("{} raw-fresh", fresh.p50_ratio()),
    );
    r.charts.latency.extend(
        [
            curve("raw wasmtime, fresh instance", &fresh.a()),
            curve("fnhost invoke, fresh instance", &fresh.b()),
        ]
        .into_iter()
        .flatten(),
    );
    let fr = fresh.p50_ratio().median;
    r.target(
        "fresh invoke 64 B p50 ≤ 1.3× raw-fresh",
        format!("{}", fresh.p50_ratio()),
        fr <= 1.3,
    );
    let fresh_64k = rounds(
        R,
        || {
            measure(per / 4, || {
                assert_eq!(raw.fresh_call(&p64k).unwrap().len(), 64 << 10)
            })
        },
        || measure(per / 4, || fn_call(&h, "echo", &p64k)),
    );
    r.row("raw-fresh, 64 KiB (baseline)", fresh_64k.a(), "1.00");
    r.row(
        "fnhost invoke, fresh, 64 KiB",
        fresh_64k.b(),
        format!("{} raw-fresh 64 KiB", fresh_64k.p50_ratio()),
    );
    let fresh_1m = rounds(
        R,
        || {
            measure(per / 40, || {
                assert_eq!(raw.fresh_call(&p1m).unwrap().len(), 1 << 20)
            })
        },
        || measure(per / 40, || fn_call(&h, "echo", &p1m)),
    );
    r.row("raw-fresh, 1 MiB (baseline)", fresh_1m.a(), "1.00");
    r.row(
        "fnhost invoke, fresh, 1 MiB",
        fresh_1m.b(),
        format!("{} raw-fresh 1 MiB", fresh_1m.p50_ratio()),
    );
    // Fuel metering (a deterministic CPU quota) is engine-wide: what it
    // costs on the same fresh path.
    let hf = Host::builder()
        .no_artifact_cache()
        .no_log_sink()
        .concurrency_limit(1000)
        .workers(2)
        .fuel_metering(true)
        .build()?;
    hf.register(FunctionConfig::from_bytes("echo", echo.clone()))?;
    let fuel = rounds(
        R,
        || measure(per, || fn_call(&h, "echo", &p64)),
        || measure(per, || fn_call(&hf, "echo", &p64)),
    );
    r.row(
        "fnhost invoke, fresh instance, 64 B, fuel metering on",
        fuel.b(),
        format!("{} fnhost fresh", fuel.p50_ratio()),
    );
    drop(hf);

    eprintln!("warm path");
    h.register(
        FunctionConfig::from_bytes("echo_warm", echo.clone())
            .reuse(u32::MAX, Duration::from_secs(3600)),
    )?;
    let mut raw_inst = raw.instance()?;
    let warm = rounds(
        R,
        || {
            measure(per * 5, || {
                assert_eq!(raw_inst.call(&p64).unwrap().len(), 64)
            })
        },
        || measure(per * 5, || fn_call(&h, "echo_warm", &p64)),
    );
    r.row("raw-reuse, 64 B (baseline)", warm.a(), "1.00");
    let diff = warm.p50_diff_us();
    r.row(
        "fnhost invoke, warm reuse, 64 B",
        warm.b(),
        format!(
            "{:+.2} µs ({:+.2} to {:+.2}) vs raw-reuse",
            diff.median, diff.min, diff.max
        ),
    );
    r.target(
        "warm-reuse p50 within 1 µs of raw-reuse",
        format!("{:+.2} µs", diff.median),
        diff.median <= 1.0,
    );

    eprintln!("isolation baselines");
    let fresh_raw = || {
        measure(per / 4, || {
            assert_eq!(raw.fresh_call(&p64).unwrap().len(), 64)
        })
    };
    let thread = rounds(R, fresh_raw, || {
        measure(per / 4, || assert_eq!(thread_echo(&p64).len(), 64))
    });
    r.row(
        "thread spawn+join per call (baseline)",
        thread.b(),
        format!("{} raw-fresh p50", thread.p50_ratio()),
    );
    let native_echo = std::env::current_exe()?.with_file_name("native_echo");
    let spawns = if quick { 20 } else { 100 };
    let process = rounds(
        R,
        || measure(per / 4, || fn_call(&h, "echo", &p64)),
        || {
            measure(spawns, || {
                assert_eq!(process_echo(&native_echo, &p64).unwrap().len(), 64)
            })
        },
    );
    r.row(
        "process spawn per call (baseline)",
        process.b(),
        format!("{} fnhost fresh p50", process.p50_ratio()),
    );
    r.charts.ladder = vec![
        ("raw wasmtime, reused instance".into(), us(warm.a().p50)),
        ("fnhost, warm reuse".into(), us(warm.b().p50)),
        ("raw wasmtime, fresh instance".into(), us(fresh.a().p50)),
        ("fnhost, fresh instance".into(), us(fresh.b().p50)),
        ("thread spawn + join".into(), us(thread.b().p50)),
        ("process spawn".into(), us(process.b().p50)),
    ];
    r.target(
        "fresh invoke ≥ 200× faster than process spawn",
        format!("{}", process.p50_ratio()),
        process.p50_ratio().median >= 200.0,
    );
    // What decommit batching (wasmtime's batch of 32, fnhost's setting
    // before HOSTILE 32) would buy on this path: the same raw baseline with
    // either setting, interleaved.
    let batched = Raw::with_config(
        &echo,
        fnhost::wasmtime_config_with_decommit_batch(2000, 4 << 30, 512 << 10, 32),
    )?;
    let fresh_of = |raw: &Raw| assert_eq!(raw.fresh_call(&p64).unwrap().len(), 64);
    let one = rounds(
        7,
        || measure(per, || fresh_of(&raw)),
        || measure(per, || fresh_of(&batched)),
    );
    let two = rounds(
        5,
        || measure_threads(2, per, || fresh_of(&raw)),
        || measure_threads(2, per, || fresh_of(&batched)),
    );
    drop(batched);
    r.notes.push(format!(
        "decommit batch 32 (before HOSTILE 32) against 1 (fnhost), raw-fresh 64 B, interleaved rounds: 1 thread p50 {} of batch 1's, 2 threads throughput {} of batch 1's",
        one.p50_ratio(),
        two.throughput_ratio(),
    ));

    // Two hosts built alike, differing only in counting; interleaved
    // rounds so drift and pool history hit both equally.
    let h_on = host(2, true)?;
    h_on.register(FunctionConfig::from_bytes("echo", echo.clone()))?;
    let h_off = host(2, false)?;
    h_off.register(FunctionConfig::from_bytes("echo", echo.clone()))?;
    let metering = rounds(
        7,
        || measure(per, || fn_call(&h_off, "echo", &p64)),
        || measure(per, || fn_call(&h_on, "echo", &p64)),
    );
    drop((h_on, h_off));
    let cost = metering.p50_ratio();
    r.notes.push(format!(
        "metrics/metering on vs off, fresh 64 B, 7 interleaved rounds: on/off p50 {cost}"
    ));
    r.target(
        "metering and metrics cost ≤ 3 %",
        format!("{:+.1} %", (cost.median - 1.0) * 100.0),
        cost.median <= 1.03,
    );

    report_queue::report(&mut r, quick, R, &echo, &raw, &p64)?;

    eprintln!("realistic guests");
    let image = guests::sample_png(1024, 1024);
    h.register(
        FunctionConfig::from_file("thumbnail", guests::THUMBNAIL)
            .memory_limit(512 << 20)
            .timeout(Duration::from_secs(30)),
    )?;
    let k = if quick { 1 } else { 4 };
    let thumb = rounds(
        R,
        || measure(k, || assert!(thumbnail::make_thumbnails(&image).is_ok())),
        || {
            measure(k, || {
                assert!(h.invoke("thumbnail", &image).unwrap().outcome.is_ok())
            })
        },
    );
    r.row("thumbnail 1 MP PNG, native (baseline)", thumb.a(), "1.00");
    r.row(
        "thumbnail 1 MP PNG, fnhost fresh",
        thumb.b(),
        format!("{} native", thumb.p50_ratio()),
    );
    let article = serde_json::json!({"html": "<h1>Big match</h1><p>".to_string() + &"The team scored a late goal and the coach praised the league. ".repeat(200) + "</p>"});
    let article_bytes = article.to_string().into_bytes();
    // news has a heavy init (see the snapshot rows below): run it as
    // intended, from a snapshot.
    h.register(FunctionConfig::from_file("news", guests::NEWS).snapshot(true))?;
    let news_rounds = rounds(
        R,
        || {
            measure(per / 20, || {
                let a: news::Article = serde_json::from_slice(&article_bytes).unwrap();
                let out = serde_json::to_vec(&news::analyse(&a)).unwrap();
                assert!(!out.is_empty());
            })
        },
        || {
            measure(per / 20, || {
                assert!(h.invoke("news", &article_bytes).unwrap().outcome.is_ok())
            })
        },
    );
    r.row(
        "news JSON event (13 KB), native (baseline)",
        news_rounds.a(),
        "1.00",
    );
    r.row(
        "news JSON event (13 KB), fnhost fresh (snapshot)",
        news_rounds.b(),
        format!("{} native", news_rounds.p50_ratio()),
    );

    eprintln!("cold start");
    let thumb_bytes = guests::bytes(guests::THUMBNAIL);
    let t = Instant::now();
    let hc = host(1, true)?;
    hc.register(FunctionConfig::from_bytes("thumbnail", thumb_bytes.clone()))?;
    let compile = t.elapsed();
    r.notes.push(format!(
        "cold start (a), empty cache: Host built + thumbnail ({} KB) compiled and registered in {} (compiles: {})",
        thumb_bytes.len() / 1024,
        fmt_dur(compile),
        hc.stats().compiles
    ));
    let cache = std::env::temp_dir().join(format!("fnhost-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let run_child = || child("--cold-start-child", &cache, &[]);
    let (first, first_line) = run_child()?; // fills the cache
    let mut warm_runs: Vec<(Duration, String)> = (0..if quick { 3 } else { 10 })
        .map(|_| run_child())
        .collect::<Result<_>>()?;
    warm_runs.sort_by_key(|(d, _)| *d);
    let (median, line) = warm_runs[warm_runs.len() / 2].clone();
    r.notes.push(format!(
        "cold start (b), new process, empty cache: {} wall ({first_line})",
        fmt_dur(first)
    ));
    r.notes.push(format!(
        "cold start (b), new process, warm cache: {} wall, median of {} ({line})",
        fmt_dur(median),
        warm_runs.len()
    ));
    if let Some([build, register, call]) = phases_of(&line) {
        let in_process = (build + register + call) / 1e3;
        r.charts.cold_start = vec![
            (
                "process spawn, start and exit".into(),
                (us(median) / 1e3 - in_process).max(0.0),
            ),
            ("Host::build".into(), build / 1e3),
            ("register (artifact cache hit)".into(), register / 1e3),
            ("first invocation".into(), call / 1e3),
        ];
    }
    let zero = line.contains("compiles=0");
    r.target(
        "new process, warm cache: thumbnail registered + first result ≤ 5 ms, 0 compiles",
        format!(
            "{} wall, {}",
            fmt_dur(median),
            if zero { "0 compiles" } else { "COMPILED" }
        ),
        median <= Duration::from_millis(5) && zero,
    );
    let _ = std::fs::remove_dir_all(&cache);

    eprintln!("snapshots");
    // Fresh-instance invocations of a guest with a heavy init (news builds
    // a >20,000-entry typo-tolerant index), with and without a snapshot,
    // beside a trivial guest (hello: typed JSON, no init work).
    let hs = host(1, false)?;
    let news = guests::bytes(guests::NEWS);
    hs.register(FunctionConfig::from_bytes(
        "hello",
        guests::bytes(guests::HELLO),
    ))?;
    hs.register(FunctionConfig::from_bytes("news-init", news.clone()))?;
    hs.register(FunctionConfig::from_bytes("news-snap", news).snapshot(true))?;
    let article = br#"{"html":"<p>The goverment won the vote in parliament.</p>"}"#;
    let m = if quick { 100 } else { 1_000 };
    let ok = |name: &str, payload: &[u8]| {
        let inv = hs.invoke(name, payload).unwrap();
        assert!(inv.output().is_ok(), "{name}: {:?}", inv.outcome);
        inv.report.init_duration
    };
    let init = ok("news-init", article).unwrap_or_default();
    let trivial_round = || {
        measure(m / R, || {
            ok("hello", br#"{"name":"Ada"}"#);
        })
    };
    let heavy = rounds(R, trivial_round, || {
        measure(m / R / 4, || {
            ok("news-init", article);
        })
    });
    r.row("trivial guest (hello), fresh instance", heavy.a(), "1.00");
    r.row(
        "heavy-init guest (news), fresh instance, no snapshot",
        heavy.b(),
        format!("{} trivial", heavy.p50_ratio()),
    );
    let snap = rounds(R, trivial_round, || {
        measure(m / R, || {
            ok("news-snap", article);
        })
    });
    let sr = snap.p50_ratio();
    r.row(
        "heavy-init guest (news), fresh instance, snapshot",
        snap.b(),
        format!("{sr} trivial"),
    );
    r.notes.push(format!(
        "snapshots: news's init alone takes {} per fresh instance without a snapshot",
        fmt_dur(init)
    ));
    r.target(
        "heavy-init guest with snapshot, fresh invoke ≤ 2× trivial guest's",
        format!("{sr}"),
        sr.median <= 2.0,
    );
    // A new process on a warm cache: the snapshot and its code are loaded,
    // init does not run, nothing compiles.
    let snap_cache = std::env::temp_dir().join(format!("fnhost-bench-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&snap_cache);
    let snap_child = || child("--snapshot-child", &snap_cache, &[]);
    let (first_wall, first_line) = snap_child()?;
    let (warm_wall, warm_line) = snap_child()?;
    let _ = std::fs::remove_dir_all(&snap_cache);
    r.notes.push(format!(
        "snapshots, new process, empty cache: news registered (init + snapshot + compile) and first result in {} wall ({first_line})",
        fmt_dur(first_wall)
    ));
    r.notes.push(format!(
        "snapshots, new process, warm cache: {} wall ({warm_line})",
        fmt_dur(warm_wall)
    ));
    r.target(
        "new process, warm cache: heavy-init guest's first result without running init",
        warm_line.clone(),
        warm_line.contains("init_runs=0") && warm_line.contains("compiles=0"),
    );

    eprintln!("memory");
    let base = rss_bytes();
    let hm = host(1, false)?;
    for i in 0..100 {
        hm.register(FunctionConfig::from_bytes(format!("f{i}"), echo.clone()))?;
    }
    let with_100 = rss_bytes();
    r.notes.push(format!(
        "memory: 100 functions registered and idle add {:.1} MiB RSS ({:.0} KiB each)",
        (with_100.saturating_sub(base)) as f64 / 1048576.0,
        (with_100.saturating_sub(base)) as f64 / 1024.0 / 100.0
    ));
    let before = rss_bytes();
    hm.register(
        FunctionConfig::from_bytes("warm", echo.clone())
            .reuse(u32::MAX, Duration::from_secs(3600))
            .provisioned_concurrency(1000),
    )?;
    let after = rss_bytes();
    let per = after.saturating_sub(before) as f64 / 1000.0;
    r.notes.push(format!(
        "memory: 1,000 provisioned (warm, idle) echo instances add {:.1} MiB RSS, {:.0} KiB per instance; echo's linear memory is {} KiB at rest",
        after.saturating_sub(before) as f64 / 1048576.0,
        per / 1024.0,
        hm.invoke("warm", b"x")?.report.max_memory_used / 1024
    ));

    drop(hm);

    eprintln!("components");
    report_components::report(&mut r, quick, R)?;
    eprintln!("HTTP components");
    report_http::report(&mut r, quick, R)?;
    eprintln!("gateway");
    report_gateway::report(&mut r, quick, R)?;

    print_report(&r, quick);
    // A full run's pictures are BENCHMARKS.md's; a quick run's go to
    // target/.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(if quick {
        "../target/bench-charts"
    } else {
        "../docs/bench"
    });
    for p in r.charts.write(&dir)? {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

/// Runs this program as a child with `flag dir extra...`: its wall time
/// and its one line of output.
fn child(
    flag: &str,
    dir: &std::path::Path,
    extra: &[&std::ffi::OsStr],
) -> Result<(Duration, String)> {
    let t = Instant::now();
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg(flag)
        .arg(dir)
        .args(extra)
        .output()?;
    let wall = t.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "{flag} child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((
        wall,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// The host a new-process child builds: one worker, the given cache.
fn child_host(cache: &std::path::Path) -> Result<Host> {
    Ok(Host::builder()
        .cache_dir(cache)
        .no_log_sink()
        .concurrency_limit(16)
        .workers(1)
        .build()?)
}

/// Child of the warm-cache cold-start case: time from `main` to the
/// first thumbnail of a 64×64 image, and how many compiles it took.
fn cold_start_child(cache: PathBuf) -> Result<()> {
    let t = Instant::now();
    let host = child_host(&cache)?;
    let built = t.elapsed();
    host.register(FunctionConfig::from_file("thumbnail", guests::THUMBNAIL))?;
    let registered = t.elapsed();
    let png = guests::sample_png(64, 64);
    let out = host
        .invoke("thumbnail", &png)?
        .outcome
        .context("thumbnail failed")?;
    anyhow::ensure!(out.starts_with(b"{\"source\""), "unexpected output");
    let done = t.elapsed();
    println!(
        "in-process {} , compiles={} ; phases_us build={} register={} first_call={}",
        fmt_dur(done),
        host.stats().compiles,
        built.as_micros(),
        (registered - built).as_micros(),
        (done - registered).as_micros()
    );
    Ok(())
}

/// The phases a cold-start child printed (µs), and its in-process total.
fn phases_of(line: &str) -> Option<[f64; 3]> {
    let rest = line.split_once("phases_us ")?.1;
    let mut out = [0.0; 3];
    for (slot, key) in out.iter_mut().zip(["build=", "register=", "first_call="]) {
        let v = rest.split(' ').find_map(|w| w.strip_prefix(key))?;
        *slot = v.parse().ok()?;
    }
    Some(out)
}

/// Child of the snapshot case: registers news with a snapshot on `cache`
/// and reports whether init ran and what was compiled.
fn snapshot_child(cache: PathBuf) -> Result<()> {
    let t = Instant::now();
    let host = child_host(&cache)?;
    host.register(FunctionConfig::from_file("news", guests::NEWS).snapshot(true))?;
    let out = host
        .invoke("news", br#"{"html":"<p>The goverment won the vote.</p>"}"#)?
        .outcome
        .context("news failed")?;
    anyhow::ensure!(
        out.windows(10).any(|w| w == b"\"politics\""),
        "unexpected output"
    );
    let s = host.stats();
    println!(
        "in-process {}, init_runs={}, snapshots_reused={}, compiles={}",
        fmt_dur(t.elapsed()),
        s.snapshots_created,
        s.snapshots_reused,
        s.compiles
    );
    Ok(())
}

fn print_report(r: &Report, quick: bool) {
    println!("| case | p50 | p99 | throughput | ratio |");
    println!("|---|---:|---:|---:|---|");
    for row in &r.rows {
        println!(
            "| {} | {} | {} | {:.0}/s | {} |",
            row.case,
            fmt_dur(row.stats.p50),
            fmt_dur(row.stats.p99),
            row.stats.throughput,
            row.ratio
        );
    }
    println!();
    for n in &r.notes {
        println!("- {n}");
    }
    println!();
    println!("| target | measured | met |");
    println!("|---|---|---|");
    for (what, measured, ok) in &r.targets {
        println!(
            "| {what} | {measured} | {} |",
            if *ok { "yes" } else { "**no**" }
        );
    }
    if quick {
        println!("\n(quick run: fewer iterations, noisier figures)");
    }
}
