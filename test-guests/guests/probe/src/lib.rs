//! `probe`: a test guest. Each command exercises one rule the host must
//! enforce (quotas, isolation, errors), and reports what the guest saw.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use fnhost_guest::{Context, Error};
use serde::Deserialize;
use serde_json::{Value, json};

/// One command.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Returns `data`.
    Echo { data: Value },
    /// Returns every environment variable the guest can see.
    Env,
    /// Writes `bytes` bytes (in chunks) to `path`; reports how far it got.
    Write { path: String, bytes: usize },
    /// Reads `path`; reports its length or the error.
    Read { path: String },
    /// Lists a directory.
    List { path: String },
    /// Tries a symlink `link` → `target` (`link` relative to `/tmp`).
    Symlink { target: String, link: String },
    /// Tries a hard link.
    HardLink { from: String, to: String },
    /// Tries a rename.
    Rename { from: String, to: String },
    /// Loops forever.
    Spin,
    /// Sleeps for `ms` milliseconds.
    Sleep { ms: u64 },
    /// Allocates and touches `bytes` bytes.
    Alloc { bytes: usize },
    /// Recurses `depth` levels (unbounded depth overflows the stack).
    Recurse { depth: u64 },
    /// Panics with `message`.
    Panic { message: String },
    /// Returns a handled error.
    Fail { kind: String, message: String },
    /// Bumps a counter in instance memory and a file in /tmp; returns both.
    State,
    /// Prints `text` to stdout, then `err_text` to stderr.
    Print {
        text: String,
        #[serde(default)]
        err_text: String,
    },
    /// Returns an output of `bytes` bytes.
    Output { bytes: usize },
    /// Returns what the context says.
    Context,
    /// Returns 16 random bytes, hex.
    Random,
    /// Returns what init recorded and how often it ran in this instance.
    InitInfo,
    /// Calls capability `name` with `request` `times` times (default 1,
    /// 0 = until something stops it); returns the last outcome.
    HostCall {
        name: String,
        #[serde(default)]
        request: Value,
        #[serde(default)]
        times: Option<u64>,
    },
}

/// A host call's outcome as JSON: `{"ok": response}` or `{"err": ...}`.
fn host_outcome(r: Result<Value, fnhost_guest::host::HostCallError>) -> Value {
    use fnhost_guest::host::HostCallError as E;
    match r {
        Ok(v) => json!({ "ok": v }),
        Err(E::Denied(m)) => json!({ "err": "denied", "message": m }),
        Err(E::Limit(m)) => json!({ "err": "limit", "message": m }),
        Err(E::Failed { kind, message }) => {
            json!({ "err": "failed", "kind": kind, "message": message })
        }
        Err(E::Codec(m)) => json!({ "err": "codec", "message": m }),
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);
static INIT_RUNS: AtomicU64 = AtomicU64::new(0);
static INIT_INFO: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
static RESTORE_NONCE: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// 16 hex digits from the instance's random source.
fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{a:016x}")
}

/// Restore: a per-instance nonce, fresh even when the instance started
/// from a snapshot.
#[fnhost_guest::restore]
pub fn restore() -> Result<(), Error> {
    *RESTORE_NONCE.lock().unwrap_or_else(|e| e.into_inner()) = format!("{:016x}", fresh_random());
    Ok(())
}

/// Eight bytes straight from WASI `random_get` (std's `RandomState` keys
/// are cached per thread, so a snapshot would freeze them).
#[cfg(target_os = "wasi")]
fn fresh_random() -> u64 {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn random_get(buf: *mut u8, len: usize) -> i32;
    }
    let mut buf = [0u8; 8];
    // SAFETY: the host writes exactly `len` bytes into `buf`.
    unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
    u64::from_le_bytes(buf)
}

#[cfg(not(target_os = "wasi"))]
fn fresh_random() -> u64 {
    0
}

/// Init: records `PROBE_INIT_VALUE` and a table it computes; fails when
/// `PROBE_INIT_FAIL` is set (snapshot tests).
#[fnhost_guest::init]
pub fn init() -> Result<(), Error> {
    INIT_RUNS.fetch_add(1, Ordering::Relaxed);
    if let Ok(why) = std::env::var("PROBE_INIT_FAIL") {
        println!("init is failing on purpose");
        return Err(Error::new("InitFailed", why));
    }
    let table: u64 = (1..=1000u64).map(|i| i * i).sum();
    let _ = INIT_INFO.set(json!({
        "value": std::env::var("PROBE_INIT_VALUE").ok(),
        "table": table,
        "random": random_hex(),
    }));
    Ok(())
}

fn io_result(r: std::io::Result<Value>) -> Value {
    match r {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "err": e.kind().to_string(), "raw": e.raw_os_error() }),
    }
}

fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    // Keep a frame alive so the optimiser cannot turn this into a loop.
    let frame = std::hint::black_box([depth; 16]);
    1 + recurse(depth - 1) + u64::from(frame[3] == 0)
}

/// Runs one command.
#[fnhost_guest::handler]
pub fn probe(op: Op, ctx: &Context) -> Result<Value, Error> {
    Ok(match op {
        Op::Echo { data } => data,
        Op::Env => {
            let vars: BTreeMap<String, String> = std::env::vars().collect();
            json!(vars)
        }
        Op::Write { path, bytes } => {
            use std::io::Write;
            let mut written = 0usize;
            let res = (|| {
                let mut f = std::fs::File::create(&path)?;
                let chunk = vec![7u8; 64 * 1024];
                while written < bytes {
                    let n = chunk.len().min(bytes - written);
                    f.write_all(&chunk[..n])?;
                    written += n;
                }
                Ok(json!(written))
            })();
            json!({ "written": written, "result": io_result(res) })
        }
        Op::Read { path } => io_result(std::fs::read(&path).map(|b| json!(b.len()))),
        Op::List { path } => io_result(std::fs::read_dir(&path).and_then(|d| {
            let mut names = d
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<Vec<_>, _>>()?;
            names.sort();
            Ok(json!(names))
        })),
        Op::Symlink { target, link } => json!({ "errno": symlink_errno(&target, &link) }),
        Op::HardLink { from, to } => io_result(std::fs::hard_link(&from, &to).map(|_| json!(true))),
        Op::Rename { from, to } => io_result(std::fs::rename(&from, &to).map(|_| json!(true))),
        Op::Spin => loop {
            std::hint::spin_loop();
        },
        Op::Sleep { ms } => {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            json!("slept")
        }
        Op::Alloc { bytes } => {
            let v = vec![1u8; bytes];
            json!(v.iter().map(|b| *b as u64).sum::<u64>())
        }
        Op::Recurse { depth } => json!(recurse(depth)),
        Op::Panic { message } => panic!("{message}"),
        Op::Fail { kind, message } => return Err(Error::new(kind, message)),
        Op::State => {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
            let before = std::fs::read_to_string("/tmp/state").ok();
            let _ = std::fs::write("/tmp/state", n.to_string());
            json!({ "counter": n, "tmp_before": before })
        }
        Op::Print { text, err_text } => {
            print!("{text}");
            std::io::Write::flush(&mut std::io::stdout()).ok();
            eprint!("{err_text}");
            json!("printed")
        }
        Op::Output { bytes } => json!("x".repeat(bytes)),
        Op::Context => json!({
            "request_id": ctx.request_id(),
            "function": ctx.function_name(),
            "version": ctx.function_version(),
            "memory_limit": ctx.memory_limit(),
            "remaining_ms": ctx.remaining_time().as_millis() as u64,
            "timeout_ms": ctx.timeout().as_millis() as u64,
            "client_context": ctx.client_context(),
        }),
        // std has no public random API on wasip1; `RandomState` keys come
        // from `random_get`, so read them through a hasher.
        Op::Random => json!(random_hex()),
        Op::InitInfo => json!({
            "init": INIT_INFO.get(),
            "init_runs": INIT_RUNS.load(Ordering::Relaxed),
            "restore_nonce": RESTORE_NONCE.lock().map(|n| n.clone()).unwrap_or_default(),
            "counter": COUNTER.load(Ordering::Relaxed),
        }),
        Op::HostCall {
            name,
            request,
            times,
        } => {
            let times = times.unwrap_or(1);
            let mut last = Value::Null;
            let mut n = 0u64;
            while times == 0 || n < times {
                last = host_outcome(fnhost_guest::host::call(&name, &request));
                n += 1;
            }
            last
        }
    })
}

/// Calls WASI `path_symlink` directly (std's wrapper is unstable):
/// `link` is relative to the `/tmp` preopen (fd 3). Returns the errno.
#[cfg(target_os = "wasi")]
fn symlink_errno(target: &str, link: &str) -> i32 {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn path_symlink(
            old: *const u8,
            old_len: usize,
            fd: i32,
            new: *const u8,
            new_len: usize,
        ) -> i32;
    }
    // SAFETY: both strings outlive the call; the host only reads them.
    unsafe { path_symlink(target.as_ptr(), target.len(), 3, link.as_ptr(), link.len()) }
}

#[cfg(not(target_os = "wasi"))]
fn symlink_errno(_target: &str, _link: &str) -> i32 {
    58 // ENOTSUP
}
