//! Captured guest output (stdout and stderr), bounded per invocation.

use std::fmt::Write as _;

/// Collects what a guest writes to stdout/stderr, up to a byte cap; the rest
/// is counted, not stored.
#[derive(Debug, Default)]
pub(crate) struct LogBuffer {
    buf: Vec<u8>,
    max: usize,
    dropped: u64,
}

impl LogBuffer {
    pub(crate) fn new(max: usize) -> LogBuffer {
        LogBuffer {
            buf: Vec::new(),
            max,
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let room = self.max - self.buf.len();
        let take = room.min(bytes.len());
        let need = self.buf.len() + take;
        if need > self.buf.capacity() {
            // Amortised growth, but the buffer never holds more than the
            // cap (host memory a guest causes is bounded by what it is
            // charged).
            let target = self.buf.capacity().saturating_mul(2).clamp(need, self.max);
            self.buf.reserve_exact(target - self.buf.len());
        }
        self.buf.extend_from_slice(&bytes[..take]);
        self.dropped += (bytes.len() - take) as u64;
    }

    pub(crate) fn finish(self) -> Logs {
        Logs {
            bytes: self.buf,
            dropped: self.dropped,
        }
    }
}

/// The guest's captured stdout and stderr, interleaved in write order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logs {
    bytes: Vec<u8>,
    dropped: u64,
}

impl Logs {
    /// Logs rebuilt from their parts (an invocation that ran on another
    /// node).
    pub(crate) fn from_parts(bytes: Vec<u8>, dropped: u64) -> Logs {
        Logs { bytes, dropped }
    }

    /// No bytes kept, `dropped` counted as dropped (logs that could not be
    /// carried, e.g. back from another node).
    pub fn dropped_all(dropped: u64) -> Logs {
        Logs {
            bytes: Vec::new(),
            dropped,
        }
    }

    /// The captured bytes, exactly as the guest wrote them (at most the
    /// function's `max_log_bytes`).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes the guest wrote past the cap, which were dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// True when output was dropped.
    pub fn is_truncated(&self) -> bool {
        self.dropped > 0
    }

    /// The logs for human eyes: invalid UTF-8 replaced, control characters
    /// (terminal escape sequences included) escaped, and a visible marker
    /// when output was dropped.
    pub fn to_display_string(&self) -> String {
        let mut out = escape_control(&String::from_utf8_lossy(&self.bytes));
        if self.dropped > 0 {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            let _ = writeln!(
                out,
                "[fnhost: log truncated, {} bytes dropped]",
                self.dropped
            );
        }
        out
    }
}

/// Escapes control characters except newline and tab, so guest text cannot
/// drive a terminal (HOSTILE row 27): ESC becomes `\x1b`, and so on.
pub fn escape_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_never_holds_more_than_the_cap() {
        let mut b = LogBuffer::new(1000);
        for _ in 0..100 {
            b.push(&[b'x'; 33]);
        }
        assert_eq!(b.buf.len(), 1000);
        assert_eq!(b.buf.capacity(), 1000);
        assert_eq!(b.dropped, 3300 - 1000);
    }

    #[test]
    fn capped_and_marked() {
        let mut b = LogBuffer::new(5);
        b.push(b"hello world");
        b.push(b"!");
        let logs = b.finish();
        assert_eq!(logs.bytes(), b"hello");
        assert_eq!(logs.dropped(), 7);
        assert_eq!(
            logs.to_display_string(),
            "hello\n[fnhost: log truncated, 7 bytes dropped]\n"
        );
    }

    #[test]
    fn escapes_terminal_sequences() {
        assert_eq!(escape_control("a\x1b[31mred\x07\n"), "a\\x1b[31mred\\x07\n");
        assert_eq!(escape_control("\u{9b}x"), "\\x9bx");
    }
}

/// Where the host sends each invocation's report and logs. Implement it to
/// ship them elsewhere (a log pipeline, a file, a test buffer); set it with
/// [`HostBuilder::log_sink`](crate::HostBuilder::log_sink).
pub trait LogSink: Send + Sync + 'static {
    /// Called once per invocation that ran, after it finished.
    fn record(&self, report: &crate::Report, logs: &Logs);
}

/// The default sink: `tracing` events at INFO, each carrying the request id
/// and function name: the START line, one event per guest log line
/// (target `fnhost::guest`, control characters escaped), then END and
/// REPORT (target `fnhost::invocation`). Nothing is formatted unless a
/// subscriber wants INFO events.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingLogSink;

impl LogSink for TracingLogSink {
    fn record(&self, r: &crate::Report, logs: &Logs) {
        if !tracing::enabled!(target: "fnhost::invocation", tracing::Level::INFO) {
            return;
        }
        let (id, f) = (&r.request_id, &r.function);
        tracing::info!(target: "fnhost::invocation", request_id = %id, function = %f, "{}", r.start_line());
        for line in logs.to_display_string().lines() {
            tracing::info!(target: "fnhost::guest", request_id = %id, function = %f, "{line}");
        }
        tracing::info!(target: "fnhost::invocation", request_id = %id, function = %f, "{}", r.end_line());
        tracing::info!(target: "fnhost::invocation", request_id = %id, function = %f, "{}", r.report_line());
    }
}

/// A shared sink is a sink (keep an `Arc` to read what it collected).
impl<T: LogSink> LogSink for std::sync::Arc<T> {
    fn record(&self, report: &crate::Report, logs: &Logs) {
        (**self).record(report, logs);
    }
}
