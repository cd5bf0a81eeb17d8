//! ABI v1: the contract between the host and a guest module.
//!
//! `docs/abi.md` is the normative description. The numbers and names are
//! the `fnhost-abi` crate's (re-exported here), which the guest SDK reads
//! too; this module adds the host side's register-time checks of a
//! module's exports and imports. The `fnhost_v1` functions themselves are
//! in the guest layer's `hostcalls`.

use std::collections::HashMap;

use wasmtime::{Engine, ExternType, FuncType, Module, ModuleExport, ValType};

use crate::error::{Error, Result};

pub use fnhost_abi::{
    ABI_VERSION, IMPORT_MODULE, MAX_ERROR_KIND, MAX_ERROR_MESSAGE, STATUS_ERROR, STATUS_OK,
    VERSION_EXPORT_PREFIX, WASI_MODULE, context_str, context_u64, exports, host_call, imports,
};

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

/// A required function export of the given type.
fn required_func(
    module: &Module,
    name: &str,
    params: &[ValType],
    results: &[ValType],
) -> Result<ModuleExport> {
    optional_func(module, name, params, results)?.ok_or_else(|| Error::BadExport {
        name: name.into(),
        reason: "missing: every fnhost ABI v1 guest must export it".into(),
    })
}

/// An optional function export: absent is fine, present must have the
/// given type.
fn optional_func(
    module: &Module,
    name: &str,
    params: &[ValType],
    results: &[ValType],
) -> Result<Option<ModuleExport>> {
    let Some(ext) = module.get_export(name) else {
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
            return Err(if m == IMPORT_MODULE || m == WASI_MODULE {
                unsupported(format!("`{m}` has no function `{n}`"))
            } else {
                unsupported(format!(
                    "unknown module `{m}`: a guest may import only from `{IMPORT_MODULE}` and `{}`",
                    WASI_MODULE
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
    let memory = match module.get_export(exports::MEMORY) {
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
        Some(ExternType::Memory(_)) => module.get_export_index(exports::MEMORY),
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
    let alloc = required_func(module, exports::ALLOC, &[I32], &[I32])?;
    let handle = required_func(module, exports::HANDLE, &[I32, I32], &[I32])?;
    let init = optional_func(module, exports::INIT, &[], &[I32])?;
    let initialize = optional_func(module, exports::INITIALIZE, &[], &[])?;
    let restore = optional_func(module, exports::RESTORE, &[], &[I32])?;

    Ok(Exports {
        memory,
        alloc,
        handle,
        init,
        initialize,
        restore,
    })
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
