//! The worker pool's rows (issue #22 item 3): `invoke_batch` and
//! `invoke_async` through the queue with 1 and 2 workers, beside raw
//! wasmtime's fresh calls on as many threads, and async against batch
//! directly; interleaved rounds.

use anyhow::Result;
use fnhost::{FunctionConfig, Host};
use fnhost_benches::{Raw, Submit, measure_threads, queue_round, rounds};

use crate::{Report, host};

pub(crate) fn report(
    r: &mut Report,
    quick: bool,
    rounds_n: usize,
    echo: &[u8],
    raw: &Raw,
    p64: &[u8],
) -> Result<()> {
    eprintln!("queue path");
    let payloads: Vec<bytes::Bytes> = (0..256)
        .map(|_| bytes::Bytes::copy_from_slice(p64))
        .collect();
    let batches = if quick { 4 } else { 20 };
    let batch = |hq: &Host| queue_round(hq, "echo", &payloads, batches, Submit::Batch);
    let futures = |hq: &Host| queue_round(hq, "echo", &payloads, batches, Submit::Async);
    let raw_threads = |t: usize| {
        measure_threads(t, batches * 256 / t, || {
            assert_eq!(raw.fresh_call(p64).unwrap().len(), 64)
        })
    };
    let hq1 = host(1, true)?;
    hq1.register(FunctionConfig::from_bytes("echo", echo.to_vec()))?;
    let hq2 = host(2, true)?;
    hq2.register(FunctionConfig::from_bytes("echo", echo.to_vec()))?;
    let mut scaling: [(String, Vec<(u32, f64)>); 3] = [
        ("raw wasmtime, fresh, N threads".into(), Vec::new()),
        ("fnhost invoke_batch, N workers".into(), Vec::new()),
        ("fnhost invoke_async, N workers".into(), Vec::new()),
    ];
    for (workers, hq) in [(1usize, &hq1), (2, &hq2)] {
        let b = rounds(rounds_n, || raw_threads(workers), || batch(hq));
        scaling[0].1.push((workers as u32, b.a().throughput));
        scaling[1].1.push((workers as u32, b.b().throughput));
        if workers == 2 {
            r.row(
                "raw-fresh, 64 B, 2 threads (baseline)",
                b.a(),
                "throughput baseline",
            );
        }
        r.row(
            format!("fnhost invoke_batch via queue, {workers} worker(s), 256 in flight"),
            b.b(),
            format!(
                "{} raw-fresh {workers}-thread throughput",
                b.throughput_ratio()
            ),
        );
        if workers == 2 {
            r.target(
                "queue throughput, 2 workers ≥ 0.7× raw-fresh on 2 threads",
                format!("{}", b.throughput_ratio()),
                b.throughput_ratio().median >= 0.7,
            );
        }
        let f = rounds(rounds_n, || raw_threads(workers), || futures(hq));
        scaling[2].1.push((workers as u32, f.b().throughput));
        r.row(
            format!("fnhost invoke_async via queue, {workers} worker(s), 256 futures"),
            f.b(),
            format!(
                "{} raw-fresh {workers}-thread throughput",
                f.throughput_ratio()
            ),
        );
        let vs = rounds(rounds_n, || batch(hq), || futures(hq)).throughput_ratio();
        r.target(
            format!("invoke_async ≥ 0.9× invoke_batch throughput, {workers} worker(s)"),
            format!("{vs}"),
            vs.median >= 0.9,
        );
    }
    r.charts.scaling = scaling.to_vec();
    let scale = rounds(rounds_n, || batch(&hq1), || batch(&hq2)).throughput_ratio();
    let raw_scale = rounds(rounds_n, || raw_threads(1), || raw_threads(2)).throughput_ratio();
    r.target(
        "queue throughput, 2 workers ≥ 1.6× 1 worker",
        format!("{scale} (raw wasmtime itself: {raw_scale} from 1 to 2 threads)"),
        scale.median >= 1.6,
    );
    drop((hq1, hq2));

    Ok(())
}
