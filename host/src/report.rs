//! Per-invocation usage reports, rendered as Lambda's START/END/REPORT lines.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::ErrorKind;

/// A request id: 128 bits, shown as a UUID (`8-4-4-4-12` hex digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u128);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What one invocation used, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The request id (also visible to the guest through its context).
    pub request_id: RequestId,
    /// Function name.
    pub function: Arc<str>,
    /// Function version that ran (`$LATEST` until versions exist).
    pub version: Arc<str>,
    /// Wall-clock time the invocation started.
    pub start: SystemTime,
    /// Handler time: input copy, handler, output copy.
    pub duration: Duration,
    /// Instance creation and guest init, when this invocation started a new
    /// (cold) instance; `None` when it ran on a warm one.
    pub init_duration: Option<Duration>,
    /// Configured memory limit in bytes.
    pub memory_limit: u64,
    /// Peak linear memory of the instance in bytes.
    pub max_memory_used: u64,
    /// `None` on success, else the kind of error.
    pub error: Option<ErrorKind>,
    /// Fuel used (about one unit per wasm instruction), when the host
    /// meters fuel: a deterministic CPU measure.
    pub fuel_used: Option<u64>,
}

impl Report {
    /// Billed duration in whole milliseconds: the duration rounded up to
    /// 1 ms (Lambda's granularity), at least 1 ms.
    pub fn billed_ms(&self) -> u64 {
        let ns = self.duration.as_nanos();
        (ns.div_ceil(1_000_000) as u64).max(1)
    }

    /// Was this a cold start (a new instance)?
    pub fn is_cold(&self) -> bool {
        self.init_duration.is_some()
    }

    /// `START RequestId: … Version: …`
    pub fn start_line(&self) -> String {
        format!(
            "START RequestId: {} Version: {}",
            self.request_id, self.version
        )
    }

    /// `END RequestId: …`
    pub fn end_line(&self) -> String {
        format!("END RequestId: {}", self.request_id)
    }

    /// `REPORT RequestId: … Duration: 1.23 ms Billed Duration: 2 ms Memory
    /// Size: 128 MB Max Memory Used: 18 MB [Init Duration: 0.41 ms]`
    pub fn report_line(&self) -> String {
        const MB: u64 = 1024 * 1024;
        let mut line = format!(
            "REPORT RequestId: {} Duration: {:.2} ms Billed Duration: {} ms Memory Size: {} MB Max Memory Used: {} MB",
            self.request_id,
            ms(self.duration),
            self.billed_ms(),
            self.memory_limit / MB,
            self.max_memory_used.div_ceil(MB),
        );
        if let Some(init) = self.init_duration {
            line.push_str(&format!(" Init Duration: {:.2} ms", ms(init)));
        }
        if let Some(fuel) = self.fuel_used {
            line.push_str(&format!(" Fuel Used: {fuel}"));
        }
        if let Some(kind) = self.error {
            line.push_str(&format!(" Status: error ({})", kind.as_str()));
        }
        line
    }
}

fn ms(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            request_id: RequestId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            function: "hello".into(),
            version: "$LATEST".into(),
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_micros(1234),
            init_duration: Some(Duration::from_micros(410)),
            memory_limit: 128 << 20,
            max_memory_used: (17 << 20) + 1,
            error: None,
            fuel_used: None,
        }
    }

    #[test]
    fn lambda_lines() {
        let r = report();
        assert_eq!(
            r.start_line(),
            "START RequestId: 01234567-89ab-cdef-0011-223344556677 Version: $LATEST"
        );
        assert_eq!(
            r.end_line(),
            "END RequestId: 01234567-89ab-cdef-0011-223344556677"
        );
        assert_eq!(
            r.report_line(),
            "REPORT RequestId: 01234567-89ab-cdef-0011-223344556677 Duration: 1.23 ms \
             Billed Duration: 2 ms Memory Size: 128 MB Max Memory Used: 18 MB Init Duration: 0.41 ms"
        );
        let metered = Report {
            fuel_used: Some(12_345),
            error: Some(ErrorKind::OutOfFuel),
            ..r
        };
        assert!(
            metered
                .report_line()
                .ends_with(" Init Duration: 0.41 ms Fuel Used: 12345 Status: error (out_of_fuel)")
        );
    }

    #[test]
    fn billing_rounds_up_to_whole_ms() {
        let mut r = report();
        for (us, billed) in [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (2500, 3)] {
            r.duration = Duration::from_micros(us);
            assert_eq!(r.billed_ms(), billed, "{us} µs");
        }
    }
}
