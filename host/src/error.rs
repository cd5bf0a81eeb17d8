//! Typed errors: one variant per thing a caller can act on.
//!
//! Callers match on [`Error`] (or on the flat, copyable [`ErrorKind`] when
//! they only count or route), never on message strings.

use std::path::PathBuf;
use std::time::Duration;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when configuring a host, registering a
/// function or invoking one.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- configuration -------------------------------------------------
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: `{field}`: {reason}")]
    InvalidConfig {
        /// The offending field, as named by the builder method.
        field: &'static str,
        /// Why the value was refused.
        reason: String,
    },

    // ---- registration ----------------------------------------------------
    /// A function with this name is already registered.
    #[error("function `{name}` is already registered")]
    AlreadyExists {
        /// The function name.
        name: String,
    },
    /// The thing cannot be removed while something refers to it (a version
    /// an alias points to, the newest version).
    #[error("`{what}` is in use by {by}")]
    InUse {
        /// What was to be removed.
        what: String,
        /// What refers to it.
        by: String,
    },
    /// The module is larger than the host's byte cap; it was not compiled.
    #[error("module is {size} bytes, over the cap of {max} bytes; it was not compiled")]
    ModuleTooLarge {
        /// Size of the module that was offered.
        size: usize,
        /// The host's `max_module_size`.
        max: usize,
    },
    /// The bytes are not a valid WebAssembly module for this host: bad magic,
    /// truncated, malformed, or using a disabled feature (the reason names it).
    #[error("invalid module: {reason}")]
    InvalidModule {
        /// Validator or compiler message.
        reason: String,
    },
    /// The module imports something the host does not provide, or with the
    /// wrong type.
    #[error("unsupported import `{module}::{name}`: {reason}")]
    UnsupportedImport {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A required ABI export is missing or has the wrong type.
    #[error("ABI export `{name}`: {reason}")]
    BadExport {
        /// Export name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The module declares an ABI version this host does not implement.
    #[error("module declares fnhost ABI version {found}; this host implements version {supported}")]
    UnsupportedAbiVersion {
        /// The version the module declared.
        found: u32,
        /// The version this host implements.
        supported: u32,
    },
    /// Reading a module file or the artifact cache failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    // ---- admission (no guest code ran) -------------------------------------
    /// The event store could not be read or written (disk full, a
    /// corrupt file, another process holding it).
    #[error("event store: {reason}")]
    Store {
        /// What failed.
        reason: String,
    },
    /// No function with this name is registered.
    #[error("function not found: `{name}`")]
    NotFound {
        /// The name that was asked for.
        name: String,
    },
    /// No queue, topic or dead letter of this name (events); its kind is
    /// [`ErrorKind::NotFound`] too.
    #[error("no such {what}: `{name}`")]
    NoSuch {
        /// `queue`, `topic` or `dead letter`.
        what: &'static str,
        /// The name or id asked for.
        name: String,
    },
    /// The payload is larger than the function's `max_input`.
    #[error("payload is {size} bytes, over the limit of {max} bytes")]
    PayloadTooLarge {
        /// Size of the payload.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A concurrency limit was reached.
    #[error("function `{function}` throttled: {limit} concurrent invocations allowed")]
    Throttled {
        /// The function that was throttled.
        function: String,
        /// The limit that was hit.
        limit: u32,
    },
    /// The host is shutting down and accepts no new work.
    #[error("the host is shutting down")]
    ShuttingDown,

    // ---- the invocation ran and failed -------------------------------------
    /// The deadline passed (instantiation, init and handler all count).
    #[error("invocation timed out after {timeout:?}")]
    Timeout {
        /// The function's configured timeout.
        timeout: Duration,
    },
    /// The invocation used up its fuel budget
    /// ([`FunctionConfig::max_fuel`](crate::FunctionConfig::max_fuel)).
    #[error("out of fuel: the invocation used its budget of {limit} units")]
    OutOfFuel {
        /// The function's fuel budget.
        limit: u64,
    },
    /// The guest tried to use more linear memory than its limit.
    #[error(
        "out of memory: the guest needed more than its limit of {limit} bytes \
         (wasm32 linear memory caps at 4 GiB)"
    )]
    OutOfMemory {
        /// The function's memory limit in bytes.
        limit: u64,
    },
    /// The guest trapped (stack overflow, unreachable, bad memory access...).
    #[error("guest trapped: {message}")]
    Trap {
        /// The trap, as wasmtime describes it.
        message: String,
        /// The trap code when wasmtime gave one.
        code: Option<wasmtime::Trap>,
    },
    /// The guest returned an error (or panicked: `kind` is then `"Panic"`).
    #[error("{kind}: {message}")]
    Guest {
        /// Error type as the guest named it (Lambda's `errorType`).
        kind: String,
        /// Error message (Lambda's `errorMessage`).
        message: String,
    },
    /// The guest produced more output than the function's `max_output`.
    #[error("output is {size} bytes, over the limit of {max} bytes")]
    OutputTooLarge {
        /// Size the guest tried to return.
        size: u64,
        /// The configured maximum.
        max: usize,
    },
    /// The guest broke the ABI contract (bad pointer, length or status).
    #[error("ABI violation: {reason}")]
    AbiViolation {
        /// What the guest did wrong.
        reason: String,
    },
    /// Wasmtime could not provide an instance (for example, the pooling
    /// allocator has no free slot).
    #[error("could not create an instance: {reason}")]
    Instantiate {
        /// Wasmtime's message.
        reason: String,
    },

    /// A bug in the host (a panic on the invoke path) ended this
    /// invocation. Only this invocation is affected: its slot is released,
    /// the worker goes on, an event is retried like after any failure.
    #[error("internal error in the host: {message}")]
    Internal {
        /// What panicked, as far as the panic said.
        message: String,
    },

    // ---- from another node -------------------------------------------------
    /// An error another node of a cluster reported whose variant does not
    /// cross the wire field by field (see [`wire`](crate::wire)); `kind()`
    /// is the original kind and the message its text.
    #[error("{message}")]
    Remote {
        /// The original error's kind.
        kind: ErrorKind,
        /// The original error's message.
        message: String,
    },
}

/// The flat kind of an [`Error`]: copyable, for counters and routing.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// [`Error::InvalidConfig`]
    InvalidConfig,
    /// [`Error::AlreadyExists`]
    AlreadyExists,
    /// [`Error::InUse`]
    InUse,
    /// [`Error::ModuleTooLarge`]
    ModuleTooLarge,
    /// [`Error::InvalidModule`]
    InvalidModule,
    /// [`Error::UnsupportedImport`]
    UnsupportedImport,
    /// [`Error::BadExport`]
    BadExport,
    /// [`Error::UnsupportedAbiVersion`]
    UnsupportedAbiVersion,
    /// [`Error::Io`]
    Io,
    /// [`Error::Store`].
    Store,
    /// [`Error::NotFound`]
    NotFound,
    /// [`Error::PayloadTooLarge`]
    PayloadTooLarge,
    /// [`Error::Throttled`]
    Throttled,
    /// [`Error::ShuttingDown`]
    ShuttingDown,
    /// [`Error::Timeout`]
    Timeout,
    /// [`Error::OutOfFuel`]
    OutOfFuel,
    /// [`Error::OutOfMemory`]
    OutOfMemory,
    /// [`Error::Trap`]
    Trap,
    /// [`Error::Guest`]
    Guest,
    /// [`Error::OutputTooLarge`]
    OutputTooLarge,
    /// [`Error::AbiViolation`]
    AbiViolation,
    /// [`Error::Instantiate`]
    Instantiate,
    /// [`Error::Internal`]
    Internal,
}

impl ErrorKind {
    /// Every kind, in declaration order (for metrics tables).
    pub const ALL: [ErrorKind; 23] = [
        ErrorKind::InvalidConfig,
        ErrorKind::AlreadyExists,
        ErrorKind::InUse,
        ErrorKind::ModuleTooLarge,
        ErrorKind::InvalidModule,
        ErrorKind::UnsupportedImport,
        ErrorKind::BadExport,
        ErrorKind::UnsupportedAbiVersion,
        ErrorKind::Io,
        ErrorKind::Store,
        ErrorKind::NotFound,
        ErrorKind::PayloadTooLarge,
        ErrorKind::Throttled,
        ErrorKind::ShuttingDown,
        ErrorKind::Timeout,
        ErrorKind::OutOfFuel,
        ErrorKind::OutOfMemory,
        ErrorKind::Trap,
        ErrorKind::Guest,
        ErrorKind::OutputTooLarge,
        ErrorKind::AbiViolation,
        ErrorKind::Instantiate,
        ErrorKind::Internal,
    ];

    /// The kind whose [`as_str`](ErrorKind::as_str) name is `name`.
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// A stable snake_case name (metrics labels, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InUse => "in_use",
            ErrorKind::ModuleTooLarge => "module_too_large",
            ErrorKind::InvalidModule => "invalid_module",
            ErrorKind::UnsupportedImport => "unsupported_import",
            ErrorKind::BadExport => "bad_export",
            ErrorKind::UnsupportedAbiVersion => "unsupported_abi_version",
            ErrorKind::Io => "io",
            ErrorKind::Store => "store",
            ErrorKind::NotFound => "not_found",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Throttled => "throttled",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Timeout => "timeout",
            ErrorKind::OutOfFuel => "out_of_fuel",
            ErrorKind::OutOfMemory => "out_of_memory",
            ErrorKind::Trap => "trap",
            ErrorKind::Guest => "guest_error",
            ErrorKind::OutputTooLarge => "output_too_large",
            ErrorKind::AbiViolation => "abi_violation",
            ErrorKind::Instantiate => "instantiate",
            ErrorKind::Internal => "internal",
        }
    }
}

impl Error {
    /// The flat kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidConfig { .. } => ErrorKind::InvalidConfig,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::InUse { .. } => ErrorKind::InUse,
            Error::ModuleTooLarge { .. } => ErrorKind::ModuleTooLarge,
            Error::InvalidModule { .. } => ErrorKind::InvalidModule,
            Error::UnsupportedImport { .. } => ErrorKind::UnsupportedImport,
            Error::BadExport { .. } => ErrorKind::BadExport,
            Error::UnsupportedAbiVersion { .. } => ErrorKind::UnsupportedAbiVersion,
            Error::Io { .. } => ErrorKind::Io,
            Error::Store { .. } => ErrorKind::Store,
            Error::NotFound { .. } | Error::NoSuch { .. } => ErrorKind::NotFound,
            Error::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            Error::Throttled { .. } => ErrorKind::Throttled,
            Error::ShuttingDown => ErrorKind::ShuttingDown,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::OutOfFuel { .. } => ErrorKind::OutOfFuel,
            Error::OutOfMemory { .. } => ErrorKind::OutOfMemory,
            Error::Trap { .. } => ErrorKind::Trap,
            Error::Guest { .. } => ErrorKind::Guest,
            Error::OutputTooLarge { .. } => ErrorKind::OutputTooLarge,
            Error::AbiViolation { .. } => ErrorKind::AbiViolation,
            Error::Instantiate { .. } => ErrorKind::Instantiate,
            Error::Internal { .. } => ErrorKind::Internal,
            Error::Remote { kind, .. } => *kind,
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn abi(reason: impl Into<String>) -> Error {
        Error::AbiViolation {
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_and_named() {
        let mut names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn messages_name_what_was_wrong() {
        let e = Error::PayloadTooLarge { size: 10, max: 4 };
        assert_eq!(
            e.to_string(),
            "payload is 10 bytes, over the limit of 4 bytes"
        );
        assert_eq!(e.kind(), ErrorKind::PayloadTooLarge);
        let e = Error::Guest {
            kind: "InvalidScore".into(),
            message: "score must be positive".into(),
        };
        assert_eq!(e.to_string(), "InvalidScore: score must be positive");
    }
}
