//! WASI 0.2 for a component, under its function's quotas: stdout and
//! stderr into the invocation's logs (the same cap as preview 1), the
//! function's environment only, real clocks, random seeded per instance
//! from the host secret, no stdin, no host directory (`/tmp` is fnhost's
//! own, see `fs`), and no sockets or name lookup (outbound HTTP only
//! through `wasi:http` held to the granted allow-list, see `http`).

use std::convert::Infallible;
use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder};

use super::super::spec::Spec;
use crate::logs::LogBuffer;

/// Most resources (descriptors, streams, pollables) one instance may hold
/// at once: each costs host memory no other quota charges.
const MAX_RESOURCES: usize = 4096;

/// Largest `get-random-bytes` answer (a guest asking for more traps; the
/// host never allocates what it asked for).
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// One component instance's WASI state.
pub(crate) struct P2 {
    pub ctx: WasiCtx,
    pub table: ResourceTable,
    /// `/tmp`, made on first use.
    pub fs: Option<super::fs::SharedFs>,
    /// Zero of the guest's monotonic clock.
    pub clock_base: std::time::Instant,
    /// Set when a clock subscription cut short at the deadline woke: the
    /// invocation has run out of time, whatever the guest does next.
    pub deadline_hit: Arc<std::sync::atomic::AtomicBool>,
    /// Where stdout and stderr go until the invocation takes them.
    logs: Arc<Mutex<LogBuffer>>,
    /// Outbound `wasi:http` (see `http`).
    pub http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    pub http: super::http::Hooks,
    /// Response bodies (an HTTP component's) and their shared cap.
    pub responses: super::proxy::Responses,
}

impl P2 {
    /// The WASI state of a new instance of `spec`, keyed by `nonce` (the
    /// request id it starts with) so no two instances share a random
    /// stream.
    pub(crate) fn new(spec: &Spec, nonce: u128) -> P2 {
        let logs = Arc::new(Mutex::new(LogBuffer::new(spec.max_log_bytes)));
        let mut b = WasiCtxBuilder::new();
        b.stdout(LogPipe(logs.clone()))
            .stderr(LogPipe(logs.clone()))
            .arg(&*spec.name)
            .secure_random(Seeded::new(&spec.secret, nonce, b"secure"))
            .insecure_random(Seeded::new(&spec.secret, nonce, b"insecure"))
            .insecure_random_seed(u128::from_le_bytes(
                Seeded::new(&spec.secret, nonce, b"seed").bytes::<16>(),
            ))
            .max_random_size(MAX_RANDOM_BYTES)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for kv in &spec.env {
            if let Some((k, v)) = kv.split_once('=') {
                b.env(k, v);
            }
        }
        let deadline_hit: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let allow = spec
            .grants
            .get(crate::capability::HTTP_CAPABILITY)
            .and_then(|c| c.http_allow().cloned());
        P2 {
            http_ctx: super::http::ctx(),
            http: super::http::Hooks::new(allow, deadline_hit.clone()),
            ctx: b.build(),
            table: {
                let mut t = ResourceTable::new();
                t.set_max_capacity(MAX_RESOURCES);
                t
            },
            fs: None,
            clock_base: std::time::Instant::now(),
            deadline_hit,
            logs,
            responses: super::proxy::Responses::new(spec.max_output),
        }
    }

    /// The logs written so far, leaving an empty buffer of `max` bytes.
    pub(crate) fn take_logs(&self, max: usize) -> LogBuffer {
        std::mem::replace(&mut *self.logs.lock(), LogBuffer::new(max))
    }
}

/// stdout or stderr: every write goes into the shared, capped buffer.
struct LogPipe(Arc<Mutex<LogBuffer>>);

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LogWriter(self.0.clone()))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LogWriter(self.0.clone()))
    }
}

/// A stream that is always ready and never fails: what does not fit in
/// the cap is counted as dropped, as for preview 1.
struct LogWriter(Arc<Mutex<LogBuffer>>);

/// What one `check-write` allows (a write is bounded by what the guest
/// already has in its own memory; this only sets its chunk size).
const WRITE_BUDGET: usize = 64 * 1024;

impl OutputStream for LogWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.0.lock().push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogWriter {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.lock().push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A random stream keyed by the host secret, the instance's nonce and a
/// purpose label (BLAKE3 in XOF mode, as preview 1's `random_get`), read a
/// block at a time (wasmtime-wasi asks for 4 bytes at a time).
struct Seeded {
    xof: blake3::OutputReader,
    block: [u8; 64],
    at: usize,
}

impl Seeded {
    fn new(secret: &[u8; 32], nonce: u128, purpose: &[u8]) -> Seeded {
        let mut h = blake3::Hasher::new_keyed(secret);
        h.update(b"fnhost component random ");
        h.update(purpose);
        h.update(&nonce.to_le_bytes());
        Seeded {
            xof: h.finalize_xof(),
            block: [0; 64],
            at: 64,
        }
    }

    fn fill(&mut self, mut dst: &mut [u8]) {
        while !dst.is_empty() {
            if self.at == self.block.len() {
                self.xof.fill(&mut self.block);
                self.at = 0;
            }
            let n = dst.len().min(self.block.len() - self.at);
            dst[..n].copy_from_slice(&self.block[self.at..self.at + n]);
            self.at += n;
            dst = &mut dst[n..];
        }
    }

    fn bytes<const N: usize>(mut self) -> [u8; N] {
        let mut b = [0; N];
        self.fill(&mut b);
        b
    }
}

impl rand_core::TryRng for Seeded {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dst);
        Ok(())
    }
}
