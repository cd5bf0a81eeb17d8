//! The `fnhost_v1` host functions: output, error, context, host calls.
//!
//! Each reads or records only the invocation's [`State`]; the numbers and
//! names come from [`abi`](super::abi) (that is, from `fnhost-abi`).

use wasmtime::{Caller, Linker, ValType};

use super::abi::{
    IMPORT_MODULE, MAX_ERROR_KIND, MAX_ERROR_MESSAGE, Provided, capped_text, context_str,
    context_u64, host_call, imports,
};
use super::state::{Call, State, memory_and_state};
use crate::error::Error;
use crate::guest_mem as gm;

/// Registers the `fnhost_v1` functions.
pub(crate) fn add_to_linker(
    linker: &mut Linker<State>,
    provided: &mut Provided,
) -> wasmtime::Result<()> {
    use ValType::{I32, I64};
    let engine = linker.engine().clone();
    provided.add(&engine, IMPORT_MODULE, imports::OUTPUT, &[I32, I32], &[]);
    linker.func_wrap(
        IMPORT_MODULE,
        imports::OUTPUT,
        |mut caller: Caller<'_, State>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let (mem, st) = memory_and_state(&mut caller, "fnhost_v1.output")?;
            let (ptr, len) = (ptr as u32, len as u32 as u64);
            // Bounds first (a wild pointer is an ABI violation), then the
            // cap; only then is anything allocated, sized by the checked len.
            let bytes = match gm::slice(mem, ptr, len) {
                Ok(bytes) => bytes,
                Err(oob) => return Err(st.fault(Error::abi(format!("fnhost_v1.output: {oob}")))),
            };
            let max = st.spec.max_output;
            if len > max as u64 {
                return Err(st.fault(Error::OutputTooLarge { size: len, max }));
            }
            st.call.output = Some(bytes.to_vec());
            Ok(())
        },
    )?;

    provided.add(
        &engine,
        IMPORT_MODULE,
        imports::ERROR,
        &[I32, I32, I32, I32],
        &[],
    );
    linker.func_wrap(
        IMPORT_MODULE,
        imports::ERROR,
        |mut caller: Caller<'_, State>,
         kp: i32,
         kl: i32,
         mp: i32,
         ml: i32|
         -> wasmtime::Result<()> {
            let (mem, st) = memory_and_state(&mut caller, "fnhost_v1.error")?;
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
        imports::CONTEXT_STR,
        &[I32, I32, I32],
        &[I32],
    );
    linker.func_wrap(
        IMPORT_MODULE,
        imports::CONTEXT_STR,
        |mut caller: Caller<'_, State>, key: i32, buf: i32, cap: i32| -> wasmtime::Result<i32> {
            let (mem, st) = memory_and_state(&mut caller, "fnhost_v1.context_str")?;
            let id;
            let value: &str = match key {
                context_str::REQUEST_ID => {
                    id = st.call.request_id.to_string();
                    &id
                }
                context_str::FUNCTION_NAME => &st.spec.name,
                context_str::FUNCTION_VERSION => {
                    st.call.version.as_deref().unwrap_or(crate::target::LATEST)
                }
                context_str::EVENT_ID => match st.call.event.as_ref().and_then(|e| e.event()) {
                    Some((id, _)) => id,
                    None => return Ok(-1),
                },
                context_str::CLIENT_CONTEXT => {
                    match st
                        .call
                        .event
                        .as_ref()
                        .and_then(|e| e.client_context.as_deref())
                    {
                        Some(c) => c,
                        None => return Ok(-1),
                    }
                }
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
        imports::HOST_CALL,
        &[I32, I32, I32, I32],
        &[I64],
    );
    linker.func_wrap(
        IMPORT_MODULE,
        imports::HOST_CALL,
        |mut caller: Caller<'_, State>,
         name_ptr: i32,
         name_len: i32,
         req_ptr: i32,
         req_len: i32|
         -> wasmtime::Result<i64> {
            let (mem, st) = memory_and_state(&mut caller, "fnhost_v1.host_call")?;
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
            let (status, bytes) = call_capability(st, name, req)?.into_v1();
            st.call.host_result = bytes;
            Ok(host_call::pack(status, st.call.host_result.len() as u32))
        },
    )?;

    provided.add(
        &engine,
        IMPORT_MODULE,
        imports::HOST_RESULT,
        &[I32, I32],
        &[I32],
    );
    linker.func_wrap(
        IMPORT_MODULE,
        imports::HOST_RESULT,
        |mut caller: Caller<'_, State>, buf: i32, cap: i32| -> wasmtime::Result<i32> {
            let (mem, st) = memory_and_state(&mut caller, "fnhost_v1.host_result")?;
            let result = &st.call.host_result;
            let n = result.len().min(cap as u32 as usize);
            match gm::write(mem, buf as u32, &result[..n]) {
                Ok(()) => Ok(result.len() as i32),
                Err(oob) => Err(st.fault(Error::abi(format!("fnhost_v1.host_result: {oob}")))),
            }
        },
    )?;

    provided.add(&engine, IMPORT_MODULE, imports::CONTEXT_U64, &[I32], &[I64]);
    linker.func_wrap(
        IMPORT_MODULE,
        imports::CONTEXT_U64,
        |caller: Caller<'_, State>, key: i32| -> i64 {
            let st = caller.data();
            match key {
                context_u64::MEMORY_LIMIT => st.spec.memory_limit as i64,
                context_u64::REMAINING_NS => st
                    .call
                    .deadline
                    .saturating_duration_since(std::time::Instant::now())
                    .as_nanos() as i64,
                context_u64::TIMEOUT_NS => st.spec.timeout.as_nanos() as i64,
                context_u64::EVENT_ATTEMPT => st
                    .call
                    .event
                    .as_ref()
                    .and_then(|e| e.event())
                    .map_or(-1, |(_, attempt)| attempt as i64),
                _ => -1,
            }
        },
    )?;
    Ok(())
}

/// What a capability call answered, before either ABI encodes it.
pub(crate) enum Answer {
    /// The capability's response (status 0).
    Ok(Vec<u8>),
    /// The capability's error, capped like a guest's own error record
    /// (status 1).
    Failed { kind: String, message: String },
    /// Not granted, no such capability, or a name too long (status 2).
    Denied(String),
    /// Over a call-count or size limit (status 3).
    Limit(String),
}

impl Answer {
    /// ABI v1's status and result bytes.
    fn into_v1(self) -> (i64, Vec<u8>) {
        match self {
            Answer::Ok(bytes) => (host_call::OK, bytes),
            Answer::Failed { kind, message } => (
                host_call::ERROR,
                serde_json::to_vec(&serde_json::json!({"kind": kind, "message": message}))
                    .unwrap_or_default(),
            ),
            Answer::Denied(msg) => (host_call::DENIED, msg.into_bytes()),
            Answer::Limit(msg) => (host_call::LIMIT, msg.into_bytes()),
        }
    }
}

/// One capability call, as ABI v1's `host_call` and the component
/// `capabilities.call` both make it: counted (refusals too), checked
/// against the grants and limits, run behind an unwind boundary, bounded
/// by the deadline. The error is a host-raised fault (the deadline passed
/// during the call) that ends the invocation.
pub(crate) fn call_capability(st: &mut State, name: &[u8], req: &[u8]) -> wasmtime::Result<Answer> {
    let call = &mut st.call;
    call.host_calls = call.host_calls.saturating_add(1);
    let refuse = |call: &mut Call, answer: fn(String) -> Answer, msg: String| {
        call.host_calls_denied = call.host_calls_denied.saturating_add(1);
        Ok(answer(msg))
    };
    if name.len() > host_call::MAX_NAME as usize {
        let msg = format!("capability names are at most {} bytes", host_call::MAX_NAME);
        return refuse(call, Answer::Denied, msg);
    }
    let name = capped_text(name, host_call::MAX_NAME as usize);
    if call.host_calls > st.spec.max_host_calls {
        let msg = format!(
            "more than {} host calls in one invocation",
            st.spec.max_host_calls
        );
        return refuse(call, Answer::Limit, msg);
    }
    let max = st.spec.max_host_call_bytes;
    if req.len() > max {
        let msg = format!("request of {} bytes is over the limit of {max}", req.len());
        return refuse(call, Answer::Limit, msg);
    }
    let Some(cap) = st.spec.grants.get(&*name) else {
        let msg = format!("capability `{name}` is not granted to this function");
        return refuse(call, Answer::Denied, msg);
    };
    let version = call.version.as_deref().unwrap_or(crate::target::LATEST);
    let ctx = crate::capability::CallContext {
        function: &st.spec.name,
        version,
        request_id: call.request_id,
        tenant: st.spec.tenant.as_deref(),
        deadline: call.deadline,
        call_index: call.host_calls.saturating_sub(1),
    };
    // A panicking host function (embedder code) must not take the worker
    // down: the guest gets an error value.
    let result = crate::fault::catch("a capability", || cap.call(&ctx, req)).unwrap_or_else(|_| {
        tracing::error!(target: "fnhost::capability", capability = %name, "host function panicked");
        Err(crate::capability::HostError::new(
            "HostPanic",
            format!("capability `{name}` failed"),
        ))
    });
    // Time in the host function counts: past the deadline, the invocation
    // ends here.
    if std::time::Instant::now() >= call.deadline {
        let timeout = st.spec.timeout;
        return Err(st.fault(Error::Timeout { timeout }));
    }
    Ok(match result {
        Ok(resp) if resp.len() > max => {
            let msg = format!(
                "response of {} bytes is over the limit of {max}",
                resp.len()
            );
            return refuse(&mut st.call, Answer::Limit, msg);
        }
        Ok(resp) => Answer::Ok(resp),
        // Bounded like a guest's own error record.
        Err(e) => Answer::Failed {
            kind: capped_text(e.kind.as_bytes(), MAX_ERROR_KIND),
            message: capped_text(e.message.as_bytes(), MAX_ERROR_MESSAGE.min(max / 2)),
        },
    })
}
