//! Per-function and host-wide counters, and a lock-free duration
//! histogram. Everything on the invoke path is a relaxed atomic add.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ErrorKind;

/// Sub-buckets per power of two: values are kept to within 1/16 (6.25 %).
const SUB: usize = 16;
const SUB_BITS: u32 = 4;
const BUCKETS: usize = 64 * SUB;

/// A log-linear histogram of nanosecond values with atomic buckets:
/// recording is one relaxed add, reading walks the buckets.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Histogram")
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let sub = (v >> (exp - SUB_BITS)) as usize & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB + sub
}

/// The largest value that falls in bucket `b` (reported for percentiles,
/// so they never understate).
fn bucket_upper(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let exp = (b / SUB) as u32 + SUB_BITS - 1;
    let sub = (b % SUB) as u64;
    let base = (1u64 << exp) | (sub << (exp - SUB_BITS));
    base + (1u64 << (exp - SUB_BITS)) - 1
}

impl Histogram {
    pub(crate) fn new() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub(crate) fn record(&self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
    }

    fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }
}

/// Percentiles from bucket counts.
fn percentiles(counts: &[u64]) -> Percentiles {
    let total: u64 = counts.iter().sum();
    let at = |q: f64| -> Duration {
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (b, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_nanos(bucket_upper(b));
            }
        }
        Duration::ZERO
    };
    Percentiles {
        count: total,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
    }
}

/// Duration percentiles (each within 6.25 % above the true value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
}

/// Live counters of one function.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub submitted: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub throttled: AtomicU64,
    pub rejected: AtomicU64,
    pub cold_starts: AtomicU64,
    pub in_flight: AtomicU32,
    pub max_in_flight: AtomicU32,
    pub errors: [AtomicU64; ErrorKind::ALL.len()],
    pub duration: Histogram,
    /// Sum of billed milliseconds.
    pub billed_ms: AtomicU64,
    /// Sum of (configured memory in MiB × billed ms): exact GB-second input.
    pub mib_ms: AtomicU64,
    pub host_calls: AtomicU64,
    pub host_calls_denied: AtomicU64,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics {
            submitted: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            cold_starts: AtomicU64::new(0),
            in_flight: AtomicU32::new(0),
            max_in_flight: AtomicU32::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            duration: Histogram::new(),
            billed_ms: AtomicU64::new(0),
            mib_ms: AtomicU64::new(0),
            host_calls: AtomicU64::new(0),
            host_calls_denied: AtomicU64::new(0),
        }
    }

    pub(crate) fn enter(&self) {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(n, Ordering::Relaxed);
    }

    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn error(&self, kind: ErrorKind) {
        let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            submitted: l(&self.submitted),
            succeeded: l(&self.succeeded),
            failed: l(&self.failed),
            throttled: l(&self.throttled),
            rejected: l(&self.rejected),
            cold_starts: l(&self.cold_starts),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
            errors: ErrorKind::ALL
                .iter()
                .zip(&self.errors)
                .filter_map(|(k, n)| Some((*k, l(n))).filter(|(_, n)| *n > 0))
                .collect(),
            duration_buckets: self.duration.counts(),
            billed_ms: l(&self.billed_ms),
            mib_ms: l(&self.mib_ms),
            host_calls: l(&self.host_calls),
            host_calls_denied: l(&self.host_calls_denied),
        }
    }
}

/// A point-in-time copy of a function's (or the host's) counters.
///
/// Invariant, once nothing is in flight:
/// `submitted == succeeded + failed + throttled + rejected`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Invocations asked for (found the function).
    pub submitted: u64,
    /// Ran and returned output.
    pub succeeded: u64,
    /// Ran (or started to) and ended in an error.
    pub failed: u64,
    /// Refused by a concurrency limit.
    pub throttled: u64,
    /// Refused before running for another reason (payload too large,
    /// shutting down).
    pub rejected: u64,
    /// Invocations that created their instance.
    pub cold_starts: u64,
    /// Running or queued right now.
    pub in_flight: u32,
    /// The most ever in flight at once.
    pub max_in_flight: u32,
    /// Failures and refusals by kind (kinds with a zero count omitted).
    pub errors: Vec<(ErrorKind, u64)>,
    duration_buckets: Vec<u64>,
    /// Sum of billed milliseconds.
    pub billed_ms: u64,
    /// Sum of memory (MiB) × billed milliseconds.
    pub mib_ms: u64,
    /// Host calls made (capabilities), refused ones included.
    pub host_calls: u64,
    /// Host calls refused: not granted, unknown, over a limit.
    pub host_calls_denied: u64,
}

impl MetricsSnapshot {
    /// Handler-duration percentiles.
    pub fn duration(&self) -> Percentiles {
        percentiles(&self.duration_buckets)
    }

    /// Count of errors of `kind`.
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }

    /// Adds `other` into `self` (host-wide totals). `max_in_flight` of a
    /// sum is not the sum of maxima; the host tracks its own.
    pub(crate) fn absorb(&mut self, other: &MetricsSnapshot) {
        self.submitted += other.submitted;
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        self.throttled += other.throttled;
        self.rejected += other.rejected;
        self.cold_starts += other.cold_starts;
        self.in_flight += other.in_flight;
        self.billed_ms += other.billed_ms;
        self.mib_ms += other.mib_ms;
        self.host_calls += other.host_calls;
        self.host_calls_denied += other.host_calls_denied;
        for (k, n) in &other.errors {
            match self.errors.iter_mut().find(|(kk, _)| kk == k) {
                Some((_, m)) => *m += n,
                None => self.errors.push((*k, *n)),
            }
        }
        self.errors.sort();
        if self.duration_buckets.is_empty() {
            self.duration_buckets = vec![0; BUCKETS];
        }
        for (a, b) in self
            .duration_buckets
            .iter_mut()
            .zip(&other.duration_buckets)
        {
            *a += b;
        }
    }
}

/// Renders counters in the Prometheus text exposition format (0.0.4):
/// per-function series plus host-wide concurrency.
pub(crate) fn render_prometheus(
    functions: &[(String, MetricsSnapshot)],
    host: &MetricsSnapshot,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut family =
        |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, String)>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
    let per = |get: &dyn Fn(&MetricsSnapshot) -> String| {
        functions
            .iter()
            .map(|(n, m)| (format!("{{function=\"{}\"}}", esc(n)), get(m)))
            .collect::<Vec<_>>()
    };
    family(
        "fnhost_invocations_total",
        "counter",
        "Invocations by outcome.",
        &mut functions.iter().flat_map(|(n, m)| {
            [
                ("success", m.succeeded),
                ("error", m.failed),
                ("throttled", m.throttled),
                ("rejected", m.rejected),
            ]
            .into_iter()
            .map(move |(o, v)| {
                (
                    format!("{{function=\"{}\",outcome=\"{o}\"}}", esc(n)),
                    v.to_string(),
                )
            })
        }),
    );
    family(
        "fnhost_errors_total",
        "counter",
        "Failed or refused invocations by error kind.",
        &mut functions.iter().flat_map(|(n, m)| {
            m.errors.iter().map(move |(k, v)| {
                (
                    format!("{{function=\"{}\",kind=\"{}\"}}", esc(n), k.as_str()),
                    v.to_string(),
                )
            })
        }),
    );
    family(
        "fnhost_cold_starts_total",
        "counter",
        "Invocations that created their instance.",
        &mut per(&|m| m.cold_starts.to_string()).into_iter(),
    );
    family(
        "fnhost_host_calls_total",
        "counter",
        "Capability (host function) calls, refused ones included.",
        &mut per(&|m| m.host_calls.to_string()).into_iter(),
    );
    family(
        "fnhost_host_calls_denied_total",
        "counter",
        "Capability calls refused: not granted, unknown, over a limit.",
        &mut per(&|m| m.host_calls_denied.to_string()).into_iter(),
    );
    family(
        "fnhost_billed_milliseconds_total",
        "counter",
        "Billed duration (each invocation rounded up to 1 ms).",
        &mut per(&|m| m.billed_ms.to_string()).into_iter(),
    );
    family(
        "fnhost_concurrent_executions",
        "gauge",
        "Invocations in flight.",
        &mut per(&|m| m.in_flight.to_string()).into_iter(),
    );
    family(
        "fnhost_max_concurrent_executions",
        "gauge",
        "Most invocations in flight at once.",
        &mut per(&|m| m.max_in_flight.to_string()).into_iter(),
    );
    family(
        "fnhost_duration_seconds",
        "summary",
        "Handler duration.",
        &mut functions.iter().flat_map(|(n, m)| {
            let p = m.duration();
            [("0.5", p.p50), ("0.9", p.p90), ("0.99", p.p99)]
                .into_iter()
                .map(move |(q, d)| {
                    (
                        format!("{{function=\"{}\",quantile=\"{q}\"}}", esc(n)),
                        format!("{:.9}", d.as_secs_f64()),
                    )
                })
                .chain(std::iter::once((
                    format!("_count{{function=\"{}\"}}", esc(n)),
                    p.count.to_string(),
                )))
        }),
    );
    family(
        "fnhost_host_concurrent_executions",
        "gauge",
        "Invocations in flight across the host.",
        &mut std::iter::once((String::new(), host.in_flight.to_string())),
    );
    family(
        "fnhost_host_max_concurrent_executions",
        "gauge",
        "Most invocations in flight at once across the host.",
        &mut std::iter::once((String::new(), host.max_in_flight.to_string())),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for v in [
            0u64,
            1,
            15,
            16,
            17,
            100,
            1000,
            123_456,
            1 << 40,
            u64::MAX / 3,
        ] {
            let b = bucket_of(v);
            assert!(bucket_upper(b) >= v, "{v}");
            assert!(
                bucket_upper(b) as f64 <= v as f64 * 1.0625 + 1.0,
                "{v}: {}",
                bucket_upper(b)
            );
            if b > 0 {
                assert!(bucket_upper(b - 1) < v, "{v}");
            }
        }
        assert!(bucket_of(u64::MAX) < BUCKETS);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let h = Histogram::new();
        for i in 1..=100u64 {
            h.record(Duration::from_micros(i));
        }
        let p = percentiles(&h.counts());
        assert_eq!(p.count, 100);
        let within = |d: Duration, us: u64| {
            let ns = d.as_nanos() as f64;
            ns >= (us * 1000) as f64 && ns <= us as f64 * 1000.0 * 1.0625
        };
        assert!(within(p.p50, 50), "{:?}", p.p50);
        assert!(within(p.p90, 90), "{:?}", p.p90);
        assert!(within(p.p99, 99), "{:?}", p.p99);
    }
}
