//! `component-probe`: the component twin of the `probe` test guest. Each
//! command (a JSON object with `op`) exercises one rule the host must
//! enforce on a component, and reports what the guest saw.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::{Value, json};

wit_bindgen::generate!({
    path: "../../../wit",
    world: "fnhost:function/handler-with-init",
});

use fnhost::function::capabilities::{self, HostError};
use fnhost::function::context;

/// One command.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    /// Returns `data`.
    Echo { data: Value },
    /// Returns every environment variable the guest can see.
    Env,
    /// Loops forever.
    Spin,
    /// Sleeps for `ms` milliseconds (a clock subscription and a poll).
    Sleep { ms: u64 },
    /// Allocates and touches `bytes` bytes.
    Alloc { bytes: usize },
    /// Panics with `message` (a trap).
    Panic { message: String },
    /// Returns a handled error.
    Fail { kind: String, message: String },
    /// Bumps a counter in instance memory; returns it and how often init ran.
    State,
    /// Prints `text` to stdout and `err_text` to stderr, `times` times.
    Print {
        text: String,
        #[serde(default)]
        err_text: String,
        #[serde(default)]
        times: Option<u64>,
    },
    /// Returns an output of `bytes` bytes.
    Output { bytes: usize },
    /// Returns what the context says.
    Context,
    /// Returns 16 random bytes, hex.
    Random,
    /// Tries to read a host file and list the preopened directories.
    Files { path: String },
    /// Writes `bytes` bytes (in 64 KiB chunks) to `path`; reports how far it got.
    Write { path: String, bytes: usize },
    /// Reads `path`: its length, or the error.
    Read { path: String },
    /// Lists a directory (sorted names), or the error.
    List { path: String },
    /// Removes `remove`, makes a directory, renames `from` to `to`.
    Shuffle {
        mkdir: String,
        from: String,
        to: String,
        remove: String,
    },
    /// Tries to open a TCP connection.
    Connect { addr: String },
    /// Sends `method` `url` through `wasi:http` (after writing `body_first`
    /// bytes of body before the request is handed over, then `body`);
    /// returns the status, headers and body, or the error code.
    Http {
        url: String,
        #[serde(default)]
        method: Option<String>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        body_first: usize,
    },
    /// Calls capability `name` with `request` `times` times (default 1).
    HostCall {
        name: String,
        #[serde(default)]
        request: Value,
        #[serde(default)]
        times: Option<u64>,
    },
}

mod http;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static INIT_RUNS: AtomicU64 = AtomicU64::new(0);

struct Probe;

impl Guest for Probe {
    fn init() -> Result<(), Error> {
        INIT_RUNS.fetch_add(1, Ordering::Relaxed);
        if let Ok(why) = std::env::var("PROBE_INIT_FAIL") {
            println!("init is failing on purpose");
            return Err(Error {
                kind: "InitFailed".into(),
                message: why,
            });
        }
        Ok(())
    }

    fn handle(event: Vec<u8>) -> Result<Vec<u8>, Error> {
        let op: Op = serde_json::from_slice(&event).map_err(|e| Error {
            kind: "BadRequest".into(),
            message: e.to_string(),
        })?;
        let out = run(op)?;
        Ok(match out {
            Reply::Json(v) => serde_json::to_vec(&v).unwrap_or_default(),
            Reply::Raw(b) => b,
        })
    }
}

enum Reply {
    Json(Value),
    Raw(Vec<u8>),
}

fn run(op: Op) -> Result<Reply, Error> {
    Ok(Reply::Json(match op {
        Op::Echo { data } => data,
        Op::Env => {
            let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
            json!(env)
        }
        Op::Spin => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Op::Sleep { ms } => {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            json!("slept")
        }
        Op::Alloc { bytes } => {
            let mut v = vec![0u8; bytes];
            for i in (0..v.len()).step_by(4096) {
                v[i] = 1;
            }
            json!({ "touched": std::hint::black_box(&v).len() })
        }
        Op::Panic { message } => panic!("{message}"),
        Op::Fail { kind, message } => return Err(Error { kind, message }),
        Op::State => json!({
            "counter": COUNTER.fetch_add(1, Ordering::Relaxed) + 1,
            "init_runs": INIT_RUNS.load(Ordering::Relaxed),
        }),
        Op::Print {
            text,
            err_text,
            times,
        } => {
            for _ in 0..times.unwrap_or(1) {
                println!("{text}");
                if !err_text.is_empty() {
                    eprintln!("{err_text}");
                }
            }
            json!("printed")
        }
        Op::Output { bytes } => return Ok(Reply::Raw(vec![b'x'; bytes])),
        Op::Context => json!({
            "request_id": context::request_id(),
            "function_name": context::function_name(),
            "function_version": context::function_version(),
            "memory_limit": context::memory_limit(),
            "timeout_ns": context::timeout_ns(),
            "remaining_ns": context::remaining_ns(),
            "event": context::event().map(|e| json!({ "id": e.id, "attempt": e.attempt })),
        }),
        Op::Random => {
            let mut b = [0u8; 16];
            for chunk in b.chunks_mut(8) {
                let r = random_u64();
                chunk.copy_from_slice(&r.to_le_bytes()[..chunk.len()]);
            }
            json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>())
        }
        Op::Files { path } => {
            let read = std::fs::read(&path)
                .map(|b| b.len())
                .map_err(|e| e.to_string());
            let dirs = std::fs::read_dir("/")
                .map(|d| d.count())
                .map_err(|e| e.to_string());
            json!({ "read": format!("{read:?}"), "root": format!("{dirs:?}") })
        }
        Op::Write { path, bytes } => {
            use std::io::Write as _;
            let mut written = 0usize;
            let r = std::fs::File::create(&path).and_then(|mut f| {
                let chunk = vec![b'w'; 64 << 10];
                while written < bytes {
                    let n = chunk.len().min(bytes - written);
                    f.write_all(&chunk[..n])?;
                    written += n;
                }
                f.flush()
            });
            json!({ "written": written, "ok": r.is_ok(), "error": r.err().map(|e| e.to_string()) })
        }
        Op::Read { path } => match std::fs::read(&path) {
            Ok(b) => json!({ "len": b.len(), "all_w": b.iter().all(|&c| c == b'w') }),
            Err(e) => json!({ "error": e.kind().to_string() }),
        },
        Op::List { path } => match std::fs::read_dir(&path) {
            Ok(d) => {
                let mut names: Vec<String> = d
                    .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect();
                names.sort();
                json!({ "names": names })
            }
            Err(e) => json!({ "error": e.kind().to_string() }),
        },
        Op::Shuffle {
            mkdir,
            from,
            to,
            remove,
        } => {
            let show = |r: std::io::Result<()>| r.err().map(|e| e.kind().to_string());
            let remove = show(std::fs::remove_file(&remove));
            let mkdir = show(std::fs::create_dir(&mkdir));
            let rename = show(std::fs::rename(&from, &to));
            json!({ "mkdir": mkdir, "rename": rename, "remove": remove })
        }
        Op::Connect { addr } => {
            let r = std::net::TcpStream::connect(&addr)
                .map(|_| ())
                .map_err(|e| e.kind().to_string());
            json!({ "connect": format!("{r:?}") })
        }
        Op::Http {
            url,
            method,
            body,
            body_first,
        } => match http::send(&url, method.as_deref(), body.as_deref(), body_first) {
            Ok(v) => v,
            Err(e) => json!({ "error": e }),
        },
        Op::HostCall {
            name,
            request,
            times,
        } => {
            let req = serde_json::to_vec(&request).unwrap_or_default();
            let mut last = Value::Null;
            for _ in 0..times.unwrap_or(1) {
                last = match capabilities::call(&name, &req) {
                    Ok(resp) => {
                        json!({ "ok": serde_json::from_slice::<Value>(&resp).unwrap_or(Value::Null) })
                    }
                    Err(HostError::Denied(m)) => json!({ "err": "denied", "message": m }),
                    Err(HostError::Limit(m)) => json!({ "err": "limit", "message": m }),
                    Err(HostError::Failed(e)) => {
                        json!({ "err": "failed", "kind": e.kind, "message": e.message })
                    }
                };
            }
            last
        }
    }))
}

/// Eight bytes from the instance's random source (std's `RandomState`
/// reads WASI random once per thread).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

export!(Probe);
