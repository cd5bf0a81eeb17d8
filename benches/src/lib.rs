//! Benchmark support shared by the criterion benches and the report
//! runner: the raw-wasmtime baselines (same engine settings as fnhost,
//! see `fnhost::wasmtime_config`), the process and thread baselines, and
//! simple latency/throughput measurement.

#![deny(missing_docs)]

pub mod charts;
mod component;

pub use component::{RawComponent, RawComponentInstance, RawComponentState};

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use wasmtime::{Engine, InstancePre, Linker, Memory, Module, ModuleExport, Store, TypedFunc};

/// Latency percentiles and throughput of one case.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Median time per operation.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Operations per second over the whole run.
    pub throughput: f64,
    /// Latency at each of [`charts::PERCENTILES`], when every operation
    /// was timed.
    pub percentiles: Option<[Duration; 7]>,
}

impl Stats {
    /// The stats of `sorted` latencies (at least one), `throughput`
    /// operations per second.
    pub fn of_sorted(sorted: &[Duration], throughput: f64) -> Stats {
        let n = sorted.len();
        let at = |pct: f64| sorted[((n as f64 * pct / 100.0) as usize).min(n - 1)];
        Stats {
            p50: sorted[n / 2],
            p99: sorted[(n * 99 / 100).min(n - 1)],
            throughput,
            percentiles: Some(charts::PERCENTILES.map(at)),
        }
    }
}

/// Runs `f` `n` times after `n / 10` warm-up runs, timing each call.
pub fn measure(n: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..n / 10 {
        f();
    }
    let mut samples = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    let total = start.elapsed();
    samples.sort_unstable();
    Stats::of_sorted(&samples, n as f64 / total.as_secs_f64())
}

/// A spread of per-round figures: median, min and max.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median round's figure.
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (at least one).
    pub fn of(mut values: Vec<f64>) -> Spread {
        values.sort_unstable_by(f64::total_cmp);
        Spread {
            median: values[values.len() / 2],
            min: values[0],
            max: values[values.len() - 1],
        }
    }
}

impl std::fmt::Display for Spread {
    /// `1.05× (0.98-1.12)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}× ({:.2}-{:.2})", self.median, self.min, self.max)
    }
}

/// Two cases, a (the baseline) and b, measured in interleaved rounds
/// (a, b, a, b, ...): every ratio is taken within a round, so drift on a
/// noisy machine cancels, and reported as the median of the per-round
/// ratios with their min-max.
#[derive(Debug, Clone)]
pub struct Rounds {
    /// Each round's (a, b).
    pub pairs: Vec<(Stats, Stats)>,
}

/// Measures `a` and `b` (each returning one round's [`Stats`]) in `rounds`
/// interleaved rounds.
pub fn rounds(rounds: usize, mut a: impl FnMut() -> Stats, mut b: impl FnMut() -> Stats) -> Rounds {
    let pairs = (0..rounds.max(1)).map(|_| (a(), b())).collect();
    Rounds { pairs }
}

impl Rounds {
    /// A per-round figure of the pair, spread over the rounds.
    pub fn spread(&self, f: impl Fn(&Stats, &Stats) -> f64) -> Spread {
        Spread::of(self.pairs.iter().map(|(a, b)| f(a, b)).collect())
    }

    /// b's p50 over a's, per round (below 1: b is faster).
    pub fn p50_ratio(&self) -> Spread {
        self.spread(|a, b| b.p50.as_nanos() as f64 / a.p50.as_nanos().max(1) as f64)
    }

    /// b's throughput over a's, per round (above 1: b does more).
    pub fn throughput_ratio(&self) -> Spread {
        self.spread(|a, b| b.throughput / a.throughput)
    }

    /// b's p50 minus a's in µs, per round.
    pub fn p50_diff_us(&self) -> Spread {
        self.spread(|a, b| (b.p50.as_nanos() as f64 - a.p50.as_nanos() as f64) / 1e3)
    }

    /// The stats of a's median round (by p50).
    pub fn a(&self) -> Stats {
        median_round(self.pairs.iter().map(|p| p.0).collect())
    }

    /// The stats of b's median round (by p50).
    pub fn b(&self) -> Stats {
        median_round(self.pairs.iter().map(|p| p.1).collect())
    }
}

fn median_round(mut v: Vec<Stats>) -> Stats {
    v.sort_unstable_by_key(|s| s.p50);
    v[v.len() / 2]
}

/// How [`queue_round`] submits to the worker pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submit {
    /// `invoke_batch`: one call, one wake-up of the caller per batch.
    Batch,
    /// `invoke_async`: one future per invocation, joined.
    Async,
}

/// `batches` rounds of `payloads` through `host`'s worker pool to `name`
/// (each output must echo its payload's length): p50/p99 from the host's
/// own duration histogram, throughput over the whole run.
pub fn queue_round(
    host: &fnhost::Host,
    name: &str,
    payloads: &[bytes::Bytes],
    batches: usize,
    how: Submit,
) -> Stats {
    let start = Instant::now();
    for _ in 0..batches {
        let results = match how {
            Submit::Batch => host
                .invoke_batch(name, payloads.to_vec())
                .expect("known function"),
            Submit::Async => {
                let futs: Vec<_> = payloads
                    .iter()
                    .map(|p| host.invoke_async(name, p.clone()))
                    .collect();
                futures::executor::block_on(futures::future::join_all(futs))
            }
        };
        for (res, p) in results.into_iter().zip(payloads) {
            assert_eq!(res.expect("admitted").outcome.expect("ran").len(), p.len());
        }
    }
    let m = host.metrics();
    Stats {
        p50: m.duration().p50,
        p99: m.duration().p99,
        throughput: (batches * payloads.len()) as f64 / start.elapsed().as_secs_f64(),
        percentiles: None,
    }
}

/// Runs `f` `n` times on each of `threads` threads at once; returns total
/// operations per second (p50/p99 are per-operation on thread 0).
pub fn measure_threads(threads: usize, n: usize, f: impl Fn() + Sync) -> Stats {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    let stats = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| measure(n, &f))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect::<Vec<_>>()
    });
    let total = start.elapsed();
    Stats {
        p50: stats[0].p50,
        p99: stats[0].p99,
        throughput: (threads * (n + n / 10)) as f64 / total.as_secs_f64(),
        percentiles: stats[0].percentiles,
    }
}

/// Store data of the raw baseline: where `fnhost_v1.output` puts bytes.
#[derive(Default)]
pub struct RawState {
    out: Vec<u8>,
}

/// Raw wasmtime running an ABI v1 guest, with fnhost's engine settings:
/// the baseline every fnhost figure is divided by.
pub struct Raw {
    engine: Engine,
    pre: InstancePre<RawState>,
    memory: ModuleExport,
    alloc: ModuleExport,
    handle: ModuleExport,
}

/// One raw instance kept for repeated calls (the raw-reuse baseline).
pub struct RawInstance {
    store: Store<RawState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    handle: TypedFunc<(i32, i32), i32>,
}

impl Raw {
    /// Compiles `wasm` on an engine configured like fnhost's, with
    /// `fnhost_v1.output` implemented and every other import a trap.
    pub fn new(wasm: &[u8], slots: u32) -> Result<Raw> {
        Raw::with_config(wasm, fnhost::wasmtime_config(slots, 4 << 30, 512 << 10))
    }

    /// [`Raw::new`] on an engine built from `cfg`.
    pub fn with_config(wasm: &[u8], cfg: wasmtime::Config) -> Result<Raw> {
        let engine = Engine::new(&cfg)?;
        let module = Module::new(&engine, wasm)?;
        let mut linker: Linker<RawState> = Linker::new(&engine);
        linker.func_wrap(
            "fnhost_v1",
            "output",
            |mut c: wasmtime::Caller<'_, RawState>, ptr: i32, len: i32| {
                let mem = c
                    .get_export("memory")
                    .and_then(|e| e.into_memory())
                    .expect("memory");
                let (data, st) = mem.data_and_store_mut(&mut c);
                st.out = data[ptr as usize..ptr as usize + len as usize].to_vec();
            },
        )?;
        linker.define_unknown_imports_as_traps(&module)?;
        let pre = linker.instantiate_pre(&module)?;
        let sig = |n: &str| match module.get_export(n) {
            Some(wasmtime::ExternType::Func(f)) => Ok(f
                .params()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
                + "->"
                + &f.results()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(",")),
            _ => anyhow::bail!("export {n} is not a function"),
        };
        anyhow::ensure!(sig("fnhost_alloc")? == "i32->i32", "fnhost_alloc signature");
        anyhow::ensure!(
            sig("fnhost_handle")? == "i32,i32->i32",
            "fnhost_handle signature"
        );
        let idx = |n: &str| {
            module
                .get_export_index(n)
                .with_context(|| format!("export {n}"))
        };
        Ok(Raw {
            memory: idx("memory")?,
            alloc: idx("fnhost_alloc")?,
            handle: idx("fnhost_handle")?,
            engine,
            pre,
        })
    }

    /// A new instance.
    pub fn instance(&self) -> Result<RawInstance> {
        let mut store = Store::new(&self.engine, RawState::default());
        store.set_epoch_deadline(u64::MAX / 2);
        let inst = self.pre.instantiate(&mut store)?;
        let memory = inst
            .get_module_export(&mut store, &self.memory)
            .and_then(|e| e.into_memory())
            .context("memory")?;
        let func = |store: &mut Store<RawState>, e: &ModuleExport| {
            inst.get_module_export(&mut *store, e)
                .and_then(|e| e.into_func())
                .context("func")
        };
        // The fastest way wasmtime offers, as fnhost does: the types were
        // checked once (`Raw::new`), so no per-instance type check.
        let alloc_f = func(&mut store, &self.alloc)?;
        let handle_f = func(&mut store, &self.handle)?;
        // SAFETY: `Raw::new` checked both signatures against this module.
        let (alloc, handle) = unsafe {
            (
                TypedFunc::new_unchecked(&store, alloc_f),
                TypedFunc::new_unchecked(&store, handle_f),
            )
        };
        Ok(RawInstance {
            store,
            memory,
            alloc,
            handle,
        })
    }

    /// raw-fresh: new store and instance, copy in, call, copy out, drop.
    pub fn fresh_call(&self, payload: &[u8]) -> Result<Vec<u8>> {
        self.instance()?.call(payload)
    }
}

impl RawInstance {
    /// One call on this instance (raw-reuse).
    pub fn call(&mut self, payload: &[u8]) -> Result<Vec<u8>> {
        let len = payload.len() as i32;
        let ptr = if len == 0 {
            0
        } else {
            self.alloc.call(&mut self.store, len)?
        };
        self.memory.data_mut(&mut self.store)[ptr as usize..ptr as usize + payload.len()]
            .copy_from_slice(payload);
        let status = self.handle.call(&mut self.store, (ptr, len))?;
        anyhow::ensure!(status == 0, "status {status}");
        Ok(std::mem::take(&mut self.store.data_mut().out))
    }
}

/// The process baseline: spawn `exe`, pipe `payload` in, read it back.
pub fn process_echo(exe: &std::path::Path, payload: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(payload)?;
    let out = child.wait_with_output()?;
    Ok(out.stdout)
}

/// The thread baseline: spawn a thread that echoes, join it.
pub fn thread_echo(payload: &[u8]) -> Vec<u8> {
    let p = payload.to_vec();
    std::thread::spawn(move || p).join().expect("thread")
}

/// Resident set size of this process, in bytes (Linux `/proc`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Formats a duration compactly (ns, µs or ms).
pub fn fmt_dur(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{:.2} µs", ns as f64 / 1e3)
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}
