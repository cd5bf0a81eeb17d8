//! ABI v1: the contract between the host and a guest module.
//!
//! `docs/abi.md` is the normative description; this module implements the
//! host side: the register-time checks of a module's exports and imports,
//! and the `fnhost_v1` import functions.

use std::collections::HashMap;

use wasmtime::{Caller, Engine, ExternType, FuncType, Linker, Module, ModuleExport, ValType};

use crate::error::{Error, Result};
use crate::guest_mem as gm;
use crate::sandbox::State;

/// The ABI version this host implements.
pub const ABI_VERSION: u32 = 1;
/// Module name of the host functions a guest may import.
pub const IMPORT_MODULE: &str = "fnhost_v1";
/// Export whose presence declares ABI version 1 (`fnhost_abi_v<N>` for N).
pub const VERSION_EXPORT_PREFIX: &str = "fnhost_abi_v";

/// Handler finished; the output is what `fnhost_v1.output` last set.
pub const STATUS_OK: i32 = 0;
/// Handler failed; the error is what `fnhost_v1.error` set.
pub const STATUS_ERROR: i32 = 1;

/// `fnhost_v1.context_str` keys.
pub mod context_str {
    /// The invocation's request id (a UUID).
    pub const REQUEST_ID: i32 = 0;
    /// The function's name.
    pub const FUNCTION_NAME: i32 = 1;
    /// The version invoked: `"3"`, or `$LATEST`.
    pub const FUNCTION_VERSION: i32 = 2;
    /// The event's stable id, the same on every delivery of one event
    /// (event invocations only; `-1` otherwise).
    pub const EVENT_ID: i32 = 3;
}

/// `fnhost_v1.context_u64` keys.
pub mod context_u64 {
    /// The function's linear-memory limit in bytes.
    pub const MEMORY_LIMIT: i32 = 0;
    /// Nanoseconds left before the deadline (0 once it passed).
    pub const REMAINING_NS: i32 = 1;
    /// The function's timeout in nanoseconds.
    pub const TIMEOUT_NS: i32 = 2;
    /// Which delivery attempt of the event this is, from 1 (event
    /// invocations only; `-1` otherwise).
    pub const EVENT_ATTEMPT: i32 = 3;
}

/// `fnhost_v1.host_call` statuses: the high 32 bits of its `i64` result
/// (the low 32 bits are the length of the result `host_result` copies).
pub mod host_call {
    /// The capability answered; the result is its response.
    pub const OK: i64 = 0;
    /// The capability returned an error; the result is
    /// `{"kind": "...", "message": "..."}`.
    pub const ERROR: i64 = 1;
    /// Not granted to this function, or no such capability; the result is
    /// a message.
    pub const DENIED: i64 = 2;
    /// Over a limit (calls per invocation, request or response size); the
    /// result is a message.
    pub const LIMIT: i64 = 3;
    /// Longest capability name.
    pub const MAX_NAME: u32 = 256;
}

/// Longest error kind kept, in bytes; longer ones are cut.
pub const MAX_ERROR_KIND: usize = 256;
/// Longest error message kept, in bytes; longer ones are cut.
pub const MAX_ERROR_MESSAGE: usize = 64 * 1024;

/// Maps `i32`/`i64` tokens to wasm value types.
macro_rules! valtype {
    (i32) => {
        wasmtime::ValType::I32
    };
    (i64) => {
        wasmtime::ValType::I64
    };
}
pub(crate) use valtype;

/// Every host function a guest may import, with its type: the table that
/// register-time import checks run against.
#[derive(Default)]
pub(crate) struct Provided(HashMap<(&'static str, &'static str), FuncType>);

impl Provided {
    pub(crate) fn add(
        &mut self,
        engine: &Engine,
        module: &'static str,
        name: &'static str,
        params: &[ValType],
        results: &[ValType],
    ) {
        let ty = FuncType::new(engine, params.iter().cloned(), results.iter().cloned());
        self.0.insert((module, name), ty);
    }
}

/// Where the ABI exports of a checked module live (resolved once at
/// register time, so the invoke path never looks up a name).
#[derive(Clone)]
pub(crate) struct Exports {
    pub memory: ModuleExport,
    pub alloc: ModuleExport,
    pub handle: ModuleExport,
    pub init: Option<ModuleExport>,
    pub initialize: Option<ModuleExport>,
    /// Runs on every new instance once its state is ready: after init, or
    /// after starting from a snapshot (where init does not run).
    pub restore: Option<ModuleExport>,
}

fn sig(ty: &FuncType) -> String {
    let list = |it: &mut dyn Iterator<Item = ValType>| {
        it.map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
    };
    format!(
        "({}) -> ({})",
        list(&mut ty.params()),
        list(&mut ty.results())
    )
}

fn expect_func(
    module: &Module,
    name: &str,
    params: &[ValType],
    results: &[ValType],
    required: bool,
) -> Result<Option<ModuleExport>> {
    let Some(ext) = module.get_export(name) else {
        if required {
            return Err(Error::BadExport {
                name: name.into(),
                reason: "missing: every fnhost ABI v1 guest must export it".into(),
            });
        }
        return Ok(None);
    };
    let ExternType::Func(ft) = ext else {
        return Err(Error::BadExport {
            name: name.into(),
            reason: "must be a function".into(),
        });
    };
    let want = FuncType::new(
        module.engine(),
        params.iter().cloned(),
        results.iter().cloned(),
    );
    if !FuncType::eq(&ft, &want) {
        return Err(Error::BadExport {
            name: name.into(),
            reason: format!("has type {}, expected {}", sig(&ft), sig(&want)),
        });
    }
    Ok(module.get_export_index(name))
}

/// Checks a compiled module against ABI v1: version, exports, imports.
pub(crate) fn check(module: &Module, provided: &Provided) -> Result<Exports> {
    use ValType::I32;
    // Version first: a module for another ABI gets a message about that,
    // not about whatever export it happens to lack. A marker is exactly
    // `fnhost_abi_v<N>`, N in plain decimal (no sign, no leading zero),
    // and a `func () -> ()`; anything else with the prefix is refused by
    // name rather than read loosely (HOSTILE 35).
    let mut versions = Vec::new();
    for e in module.exports() {
        let Some(digits) = e.name().strip_prefix(VERSION_EXPORT_PREFIX) else {
            continue;
        };
        let bad = |reason: &str| Error::BadExport {
            name: e.name().into(),
            reason: reason.into(),
        };
        // Plain decimal is what prints back the same.
        let Some(n) = digits
            .parse::<u32>()
            .ok()
            .filter(|n| n.to_string() == digits)
        else {
            return Err(bad(
                "not an ABI marker: the name must be fnhost_abi_v followed by a version in plain decimal (fnhost_abi_v1)",
            ));
        };
        match e.ty() {
            ExternType::Func(ft) if ft.params().len() == 0 && ft.results().len() == 0 => {}
            ExternType::Func(ft) => {
                return Err(bad(&format!(
                    "has type {}, expected () -> () (an ABI marker takes and returns nothing)",
                    sig(&ft)
                )));
            }
            _ => {
                return Err(bad(
                    "must be a function () -> (), not another kind of export",
                ));
            }
        }
        versions.push(n);
    }
    if !versions.contains(&ABI_VERSION) {
        return match versions.first() {
            Some(&found) => Err(Error::UnsupportedAbiVersion {
                found,
                supported: ABI_VERSION,
            }),
            None => Err(Error::BadExport {
                name: format!("{VERSION_EXPORT_PREFIX}{ABI_VERSION}"),
                reason: "missing: the module does not declare an fnhost ABI version".into(),
            }),
        };
    }
    for import in module.imports() {
        let (m, n) = (import.module(), import.name());
        let unsupported = |reason: String| Error::UnsupportedImport {
            module: m.into(),
            name: n.into(),
            reason,
        };
        let ExternType::Func(ft) = import.ty() else {
            return Err(unsupported(
                "only function imports are provided (a guest defines its own memory and tables)"
                    .into(),
            ));
        };
        let Some(want) = provided.0.get(&(m, n)) else {
            return Err(if m == IMPORT_MODULE || m == crate::wasi::IMPORT_MODULE {
                unsupported(format!("`{m}` has no function `{n}`"))
            } else {
                unsupported(format!(
                    "unknown module `{m}`: a guest may import only from `{IMPORT_MODULE}` and `{}`",
                    crate::wasi::IMPORT_MODULE
                ))
            });
        };
        if !FuncType::eq(&ft, want) {
            return Err(unsupported(format!(
                "has type {}, expected {}",
                sig(&ft),
                sig(want)
            )));
        }
    }
    let memory = match module.get_export("memory") {
        Some(ExternType::Memory(m)) if m.is_64() => {
            return Err(Error::BadExport {
                name: "memory".into(),
                reason: "must be a 32-bit memory (memory64 is not supported)".into(),
            });
        }
        Some(ExternType::Memory(m)) if m.is_shared() => {
            return Err(Error::BadExport {
                name: "memory".into(),
                reason: "must not be shared".into(),
            });
        }
        Some(ExternType::Memory(_)) => module.get_export_index("memory"),
        Some(_) => {
            return Err(Error::BadExport {
                name: "memory".into(),
                reason: "must be a memory".into(),
            });
        }
        None => None,
    }
    .ok_or_else(|| Error::BadExport {
        name: "memory".into(),
        reason: "missing: the guest must export its linear memory".into(),
    })?;
    let alloc = expect_func(module, "fnhost_alloc", &[I32], &[I32], true)?;
    let handle = expect_func(module, "fnhost_handle", &[I32, I32], &[I32], true)?;
    let init = expect_func(module, "fnhost_init", &[], &[I32], false)?;
    let initialize = expect_func(module, "_initialize", &[], &[], false)?;
    let restore = expect_func(module, "fnhost_restore", &[], &[I32], false)?;

    Ok(Exports {
        memory,
        alloc: alloc.expect("required export"),
        handle: handle.expect("required export"),
        init,
        initialize,
        restore,
    })
}

/// Registers the `fnhost_v1` functions.
pub(crate) fn add_to_linker(
    linker: &mut Linker<State>,
    provided: &mut Provided,
) -> wasmtime::Result<()> {
    use ValType::{I32, I64};
    let engine = linker.engine().clone();
    provided.add(&engine, IMPORT_MODULE, "output", &[I32, I32], &[]);
    linker.func_wrap(
        IMPORT_MODULE,
        "output",
        |mut caller: Caller<'_, State>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let (mem, st) = crate::sandbox::memory_and_state(&mut caller, "fnhost_v1.output")?;
            let (ptr, len) = (ptr as u32, len as u32 as u64);
            // Bounds first (a wild pointer is an ABI violation), then the
            // cap; only then is anything allocated, sized by the checked len.
            let bytes = match gm::slice(mem, ptr, len) {
                Ok(bytes) => bytes,
                Err(oob) => return Err(st.fault(Error::abi(format!("fnhost_v1.output: {oob}")))),
            };
            let max = st.func.max_output;
            if len > max as u64 {
                return Err(st.fault(Error::OutputTooLarge { size: len, max }));
            }
            st.call.output = Some(bytes.to_vec());
            Ok(())
        },
    )?;

    provided.add(&engine, IMPORT_MODULE, "error", &[I32, I32, I32, I32], &[]);
    linker.func_wrap(
        IMPORT_MODULE,
        "error",
        |mut caller: Caller<'_, State>,
         kp: i32,
         kl: i32,
         mp: i32,
         ml: i32|
         -> wasmtime::Result<()> {
            let (mem, st) = crate::sandbox::memory_and_state(&mut caller, "fnhost_v1.error")?;
            let text = |p: i32, l: i32, max: usize| -> Result<String, gm::OutOfBounds> {
                Ok(capped_text(gm::slice(mem, p as u32, l as u32 as u64)?, max))
            };
            match (
                text(kp, kl, MAX_ERROR_KIND),
                text(mp, ml, MAX_ERROR_MESSAGE),
            ) {
                (Ok(kind), Ok(message)) => {
                    st.call.error = Some((kind, message));
                    Ok(())
                }
                (Err(oob), _) | (_, Err(oob)) => {
                    Err(st.fault(Error::abi(format!("fnhost_v1.error: {oob}"))))
                }
            }
        },
    )?;

    provided.add(
        &engine,
        IMPORT_MODULE,
        "context_str",
        &[I32, I32, I32],
        &[I32],
    );
    linker.func_wrap(
        IMPORT_MODULE,
        "context_str",
        |mut caller: Caller<'_, State>, key: i32, buf: i32, cap: i32| -> wasmtime::Result<i32> {
            let (mem, st) = crate::sandbox::memory_and_state(&mut caller, "fnhost_v1.context_str")?;
            let id;
            let value: &str = match key {
                context_str::REQUEST_ID => {
                    id = st.call.request_id.to_string();
                    &id
                }
                context_str::FUNCTION_NAME => &st.func.name,
                context_str::FUNCTION_VERSION => st.call.version.as_deref().unwrap_or("$LATEST"),
                context_str::EVENT_ID => match &st.call.event {
                    Some(e) => &e.id,
                    None => return Ok(-1),
                },
                _ => return Ok(-1),
            };
            let n = value.len().min(cap as u32 as usize);
            match gm::write(mem, buf as u32, &value.as_bytes()[..n]) {
                Ok(()) => Ok(value.len() as i32),
                Err(oob) => Err(st.fault(Error::abi(format!("fnhost_v1.context_str: {oob}")))),
            }
        },
    )?;

    provided.add(
        &engine,
        IMPORT_MODULE,
        "host_call",
        &[I32, I32, I32, I32],
        &[I64],
    );
    linker.func_wrap(
        IMPORT_MODULE,
        "host_call",
        |mut caller: Caller<'_, State>,
         name_ptr: i32,
         name_len: i32,
         req_ptr: i32,
         req_len: i32|
         -> wasmtime::Result<i64> {
            let (mem, st) = crate::sandbox::memory_and_state(&mut caller, "fnhost_v1.host_call")?;
            let (name_len, req_len) = (name_len as u32, req_len as u32);
            // Bounds first: a wild pointer is an ABI violation whatever
            // the lengths say.
            let (name, req) = match (
                gm::slice(mem, name_ptr as u32, name_len.into()),
                gm::slice(mem, req_ptr as u32, req_len.into()),
            ) {
                (Ok(n), Ok(r)) => (n, r),
                (Err(oob), _) | (_, Err(oob)) => {
                    return Err(st.fault(Error::abi(format!("fnhost_v1.host_call: {oob}"))));
                }
            };
            let call = &mut st.call;
            call.host_calls = call.host_calls.saturating_add(1);
            let name = capped_text(name, host_call::MAX_NAME as usize);
            let refuse = |call: &mut crate::sandbox::Call, status: i64, msg: String| {
                call.host_calls_denied = call.host_calls_denied.saturating_add(1);
                call.host_result = msg.into_bytes();
                Ok((status << 32) | call.host_result.len() as i64)
            };
            if name_len > host_call::MAX_NAME {
                return refuse(
                    call,
                    host_call::DENIED,
                    format!("capability names are at most {} bytes", host_call::MAX_NAME),
                );
            }
            if call.host_calls > st.func.max_host_calls {
                return refuse(
                    call,
                    host_call::LIMIT,
                    format!(
                        "more than {} host calls in one invocation",
                        st.func.max_host_calls
                    ),
                );
            }
            let max = st.func.max_host_call_bytes;
            if req_len as usize > max {
                return refuse(
                    call,
                    host_call::LIMIT,
                    format!("request of {req_len} bytes is over the limit of {max}"),
                );
            }
            let Some(cap) = st.func.grants.get(&*name) else {
                return refuse(
                    call,
                    host_call::DENIED,
                    format!("capability `{name}` is not granted to this function"),
                );
            };
            let version = call.version.as_deref().unwrap_or("$LATEST");
            let ctx = crate::capability::CallContext {
                function: &st.func.name,
                version,
                request_id: call.request_id,
                tenant: st.func.tenant.as_deref(),
                deadline: call.deadline,
                call_index: call.host_calls.saturating_sub(1),
            };
            // A panicking host function (embedder code) must not take the
            // worker down: the guest gets an error value.
            let result = crate::fault::catch("a capability", || cap.call(&ctx, req))
                .unwrap_or_else(|_| {
                    tracing::error!(target: "fnhost::capability", capability = %name, "host function panicked");
                    Err(crate::capability::HostError::new("HostPanic", format!("capability `{name}` failed")))
                });
            // Time in the host function counts: past the deadline, the
            // invocation ends here.
            if std::time::Instant::now() >= call.deadline {
                let timeout = st.func.timeout;
                return Err(st.fault(Error::Timeout { timeout }));
            }
            let call = &mut st.call;
            let status = match result {
                Ok(resp) if resp.len() > max => {
                    return refuse(
                        call,
                        host_call::LIMIT,
                        format!(
                            "response of {} bytes is over the limit of {max}",
                            resp.len()
                        ),
                    );
                }
                Ok(resp) => {
                    call.host_result = resp;
                    host_call::OK
                }
                Err(e) => {
                    // Bounded like a guest's own error record.
                    call.host_result = serde_json::to_vec(&serde_json::json!({
                        "kind": capped_text(e.kind.as_bytes(), MAX_ERROR_KIND),
                        "message": capped_text(e.message.as_bytes(), MAX_ERROR_MESSAGE.min(max / 2)),
                    }))
                    .unwrap_or_default();
                    host_call::ERROR
                }
            };
            Ok((status << 32) | call.host_result.len() as i64)
        },
    )?;

    provided.add(&engine, IMPORT_MODULE, "host_result", &[I32, I32], &[I32]);
    linker.func_wrap(
        IMPORT_MODULE,
        "host_result",
        |mut caller: Caller<'_, State>, buf: i32, cap: i32| -> wasmtime::Result<i32> {
            let (mem, st) = crate::sandbox::memory_and_state(&mut caller, "fnhost_v1.host_result")?;
            let result = &st.call.host_result;
            let n = result.len().min(cap as u32 as usize);
            match gm::write(mem, buf as u32, &result[..n]) {
                Ok(()) => Ok(result.len() as i32),
                Err(oob) => Err(st.fault(Error::abi(format!("fnhost_v1.host_result: {oob}")))),
            }
        },
    )?;

    provided.add(&engine, IMPORT_MODULE, "context_u64", &[I32], &[I64]);
    linker.func_wrap(
        IMPORT_MODULE,
        "context_u64",
        |caller: Caller<'_, State>, key: i32| -> i64 {
            let st = caller.data();
            match key {
                context_u64::MEMORY_LIMIT => st.func.memory_limit as i64,
                context_u64::REMAINING_NS => st
                    .call
                    .deadline
                    .saturating_duration_since(std::time::Instant::now())
                    .as_nanos() as i64,
                context_u64::TIMEOUT_NS => st.func.timeout.as_nanos() as i64,
                context_u64::EVENT_ATTEMPT => {
                    st.call.event.as_ref().map_or(-1, |e| e.attempt as i64)
                }
                _ => -1,
            }
        },
    )?;
    Ok(())
}

/// Guest bytes as text of at most `max` bytes *after* invalid UTF-8 is
/// replaced (each bad byte becomes the 3-byte U+FFFD, so cutting first
/// would let text grow to 3x the cap: HOSTILE 36). Only the first `max`
/// bytes are ever looked at, so a huge guest length allocates nothing big.
pub(crate) fn capped_text(bytes: &[u8], max: usize) -> String {
    let mut s = String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned();
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::capped_text;

    #[test]
    fn text_is_capped_after_replacement() {
        // 'é' is two bytes: never cut in half.
        assert_eq!(capped_text("aé".as_bytes(), 2), "a");
        assert_eq!(capped_text("aé".as_bytes(), 3), "aé");
        // Invalid bytes each become U+FFFD (3 bytes): the cap holds after.
        let bad = vec![0xffu8; 1000];
        let t = capped_text(&bad, 256);
        assert!(t.len() <= 256, "{}", t.len());
        assert_eq!(t, "\u{fffd}".repeat(85));
        assert_eq!(capped_text(b"plain", 256), "plain");
    }
}
