//! # fnhost-abi: the numbers of fnhost's guest ABI v1
//!
//! `docs/abi.md` is the normative description of the ABI; this crate holds
//! every number and name in it, so the host (`fnhost`) and the guest SDK
//! (`fnhost-guest`) read the contract from one place. It has no
//! dependencies and builds for any target.
//!
//! ```
//! use fnhost_abi::{host_call, exports};
//!
//! // A guest declares ABI v1 by exporting `fnhost_abi_v1`.
//! assert_eq!(exports::version_marker(1), "fnhost_abi_v1");
//!
//! // `host_call` returns status and result length packed in one i64.
//! let r = host_call::pack(host_call::LIMIT, 42);
//! assert_eq!(host_call::unpack(r), (host_call::LIMIT, 42));
//! ```

#![no_std]
#![deny(missing_docs)]

extern crate alloc;

/// The ABI version this crate describes.
pub const ABI_VERSION: u32 = 1;
/// Module name of the host functions a guest may import.
pub const IMPORT_MODULE: &str = "fnhost_v1";
/// Module name of the WASI functions a guest may import (preview 1).
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";
/// Export whose presence declares ABI version N (`fnhost_abi_v<N>`).
pub const VERSION_EXPORT_PREFIX: &str = "fnhost_abi_v";

/// Handler (or init) finished; the output is what `fnhost_v1.output` last
/// set.
pub const STATUS_OK: i32 = 0;
/// Handler (or init) failed; the error is what `fnhost_v1.error` set.
pub const STATUS_ERROR: i32 = 1;

/// Longest error kind kept, in bytes; longer ones are cut.
pub const MAX_ERROR_KIND: usize = 256;
/// Longest error message kept, in bytes; longer ones are cut.
pub const MAX_ERROR_MESSAGE: usize = 64 * 1024;

/// Names of the guest's exports.
pub mod exports {
    use alloc::string::String;

    /// The guest's linear memory.
    pub const MEMORY: &str = "memory";
    /// `(len: i32) -> i32`: room for the payload.
    pub const ALLOC: &str = "fnhost_alloc";
    /// `(ptr: i32, len: i32) -> i32`: the handler; returns a status.
    pub const HANDLE: &str = "fnhost_handle";
    /// `() -> i32`, optional: init, once per instance (before a snapshot).
    pub const INIT: &str = "fnhost_init";
    /// `() -> i32`, optional: runs on every new instance once its state is
    /// ready (after init, or when started from a snapshot).
    pub const RESTORE: &str = "fnhost_restore";
    /// `() -> ()`, optional: the WASI reactor's constructor.
    pub const INITIALIZE: &str = "_initialize";

    /// The export that declares ABI version `n`: `fnhost_abi_v<n>`.
    pub fn version_marker(n: u32) -> String {
        alloc::format!("{}{n}", super::VERSION_EXPORT_PREFIX)
    }
}

/// Names of the `fnhost_v1` imports.
pub mod imports {
    /// `(ptr: i32, len: i32)`: sets the invocation's output.
    pub const OUTPUT: &str = "output";
    /// `(kind_ptr, kind_len, msg_ptr, msg_len: i32)`: records an error.
    pub const ERROR: &str = "error";
    /// `(key: i32, buf: i32, cap: i32) -> i32`: a context string.
    pub const CONTEXT_STR: &str = "context_str";
    /// `(key: i32) -> i64`: a context number.
    pub const CONTEXT_U64: &str = "context_u64";
    /// `(name_ptr, name_len, req_ptr, req_len: i32) -> i64`: a capability
    /// call; see [`host_call`](crate::host_call).
    pub const HOST_CALL: &str = "host_call";
    /// `(buf: i32, cap: i32) -> i32`: copies the last host call's result.
    pub const HOST_RESULT: &str = "host_result";
}

/// The version label of the newest version: what `context_str`'s
/// `FUNCTION_VERSION` gives when the caller did not name a version.
pub const LATEST: &str = "$LATEST";

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
    /// The caller's client context: the JSON text an AWS SDK sends
    /// base64-encoded in `X-Amz-Client-Context` (`-1` when none was sent).
    pub const CLIENT_CONTEXT: i32 = 4;
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

    /// `host_call`'s result: `status` in the high 32 bits, the result's
    /// length in the low 32.
    pub const fn pack(status: i64, len: u32) -> i64 {
        (status << 32) | len as i64
    }

    /// The `(status, length)` a `host_call` result carries.
    pub const fn unpack(r: i64) -> (i64, u32) {
        (r >> 32, (r & 0xFFFF_FFFF) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::host_call::{pack, unpack};

    #[test]
    fn packing_round_trips_every_status_and_extreme_length() {
        for status in [0, 1, 2, 3] {
            for len in [0, 1, 0x7FFF_FFFF, u32::MAX] {
                assert_eq!(unpack(pack(status, len)), (status, len));
            }
        }
    }
}
