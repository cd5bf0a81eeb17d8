//! The second kind of guest: a WebAssembly component targeting the world
//! `fnhost:function/handler` (`wit/function.wit`), with WASI 0.2.
//!
//! The same [`State`] backs its store as a core module's, so quotas,
//! deadline, fuel, logs, context and capabilities are the same code; what
//! differs is how the guest is linked (a component [`Linker`], WASI 0.2
//! from wasmtime-wasi over fnhost's own stdio, random and network policy:
//! [`wasi`]) and how an invocation crosses the boundary (the canonical ABI
//! lifts and lowers `list<u8>`, so there is no `fnhost_alloc`).

mod clock;
mod fs;
mod http;
mod imports;
mod proxy;
mod wasi;

use wasmtime::component::{
    Component, ComponentExportIndex, HasSelf, InstancePre, Linker, types::ComponentItem,
};
use wasmtime::{Engine, Store};

use super::abi::{MAX_ERROR_KIND, MAX_ERROR_MESSAGE, capped_text};
use super::instance::{Failure, Input};
use super::state::State;
use crate::error::Error;
use imports::{GuestError, HandlerIndices};
pub(crate) use wasi::P2;

/// The handler export.
const HANDLE: &str = "handle";
/// The name of the optional init export (world `handler-with-init`).
const INIT: &str = "init";

/// Whether `bytes` is a component rather than a core module (the binary's
/// header: magic, then the version/layer word, `0x0d 0x00 0x01 0x00` for
/// a component, `0x01 0x00 0x00 0x00` for a module).
pub(crate) fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [0x01, 0x00]
}

/// A component linker with WASI 0.2 (wasmtime-wasi's interfaces, fnhost's
/// context for them) and the `fnhost:function` imports.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    fs::add_to_linker(&mut linker)?;
    clock::add_to_linker(&mut linker)?;
    http::add_to_linker(&mut linker)?;
    imports::Handler::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)?;
    Ok(linker)
}

/// A checked, pre-linked component.
pub(crate) struct Linked {
    pre: InstancePre<State>,
    kind: Kind,
}

/// What a component exports.
enum Kind {
    /// The world `fnhost:function/handler`: `handle`, maybe `init`.
    Function {
        handle: HandlerIndices,
        init: Option<ComponentExportIndex>,
    },
    /// The world `wasi:http/proxy`: `wasi:http/incoming-handler`'s
    /// `handle`.
    Http(ComponentExportIndex),
}

/// Checks `component`'s exports and links its imports; anything it
/// imports that fnhost does not provide is an error naming it.
pub(crate) fn link(linker: &Linker<State>, component: &Component) -> Result<Linked, Error> {
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| unsupported_import(component, &e))?;
    let mut not_http = None;
    if component.get_export_index(None, HANDLE).is_none() {
        match proxy::indices(component) {
            Ok(http) => {
                return Ok(Linked {
                    pre,
                    kind: Kind::Http(http),
                });
            }
            Err(why) => not_http = Some(why),
        }
    }
    let handle = HandlerIndices::new(&pre).map_err(|e| Error::BadExport {
        name: HANDLE.into(),
        reason: format!(
            "a component must export `handle: func(event: list<u8>) -> \
             result<list<u8>, error>` (world fnhost:function/handler): {e:#}; \
             or `wasi:http/incoming-handler` (world wasi:http/proxy): {}",
            not_http.unwrap_or_else(|| "it exports `handle`".to_string())
        ),
    })?;
    let init = component.get_export_index(None, INIT);
    if init.is_some() {
        let ty = component.component_type();
        let engine = component.engine();
        let ok = matches!(ty.get_export(engine, INIT).map(|e| e.ty), Some(ComponentItem::ComponentFunc(f))
            if f.params().len() == 0 && f.results().len() == 1);
        if !ok {
            return Err(Error::BadExport {
                name: INIT.into(),
                reason: "must be `func() -> result<_, error>` \
                         (world fnhost:function/handler-with-init)"
                    .into(),
            });
        }
    }
    Ok(Linked {
        pre,
        kind: Kind::Function { handle, init },
    })
}

/// The import wasmtime could not satisfy, named: the first of the
/// component's imports its message names (wasmtime names the instance
/// and, for a wrong type, the function).
fn unsupported_import(component: &Component, e: &wasmtime::Error) -> Error {
    let reason = format!("{e:#}");
    let ty = component.component_type();
    let named = ty
        .imports(component.engine())
        .map(|(name, _)| name)
        .find(|name| reason.contains(&format!("`{name}`")));
    match named {
        Some(module) => Error::UnsupportedImport {
            module: module.to_string(),
            // The whole instance (or item) is missing or mistyped.
            name: "*".into(),
            reason,
        },
        None => Error::InvalidModule { reason },
    }
}

impl Linked {
    pub(crate) fn engine(&self) -> &Engine {
        self.pre.engine()
    }

    /// Whether this is an HTTP component (`wasi:http/proxy`).
    pub(crate) fn is_http(&self) -> bool {
        matches!(self.kind, Kind::Http(_))
    }
}

/// A live component instance's entry point.
pub(crate) enum Entry {
    Function(imports::Handler),
    Http(proxy::Handle),
}

/// Runs `f` where wasmtime-wasi may block: its blocking calls `block_on`
/// the ambient tokio runtime, which panics inside a task (an embedder
/// calling `Host::invoke` from async code). Outside any runtime (fnhost's
/// workers) and in a multi-thread runtime (`block_in_place`) `f` runs in
/// place; in a current-thread runtime, on a thread of its own.
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => f(),
        // A multi-thread runtime's worker (its tasks move to another
        // worker meanwhile) or blocking thread: blocking is allowed here,
        // and costs no thread (a spawn per call showed up as most of an
        // HTTP component's request behind `fnhost serve`).
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

/// Instantiates `linked` in `store` and runs its `init`, if it has one.
pub(crate) fn start(store: &mut Store<State>, linked: &Linked) -> Result<Entry, Failure> {
    off_runtime(|| start_here(store, linked))
}

fn start_here(store: &mut Store<State>, linked: &Linked) -> Result<Entry, Failure> {
    let instance = linked.pre.instantiate(&mut *store)?;
    let entry = match &linked.kind {
        Kind::Function { handle, init } => {
            if let Some(idx) = init {
                let init =
                    instance.get_typed_func::<(), (Result<(), GuestError>,)>(&mut *store, idx)?;
                let called = init.call(&mut *store, ());
                timed_out(store)?;
                let (result,) = called?;
                result.map_err(guest_error)?;
            }
            Entry::Function(handle.load(&mut *store, &instance)?)
        }
        Kind::Http(at) => Entry::Http(proxy::load(store, &instance, at)?),
    };
    timed_out(store)?;
    Ok(entry)
}

/// `Timeout` if a sleep of the guest's was cut short at the deadline.
fn timed_out(store: &mut Store<State>) -> Result<(), Failure> {
    let st = store.data_mut();
    let hit = st.p2.as_ref().is_some_and(|p| {
        p.deadline_hit
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    });
    // A sleep cut at an earlier invocation's deadline (a pollable a warm
    // instance kept) wakes at once and says nothing about this one.
    if hit && std::time::Instant::now() >= st.call.deadline {
        return Err(Error::Timeout {
            timeout: st.spec.timeout,
        }
        .into());
    }
    Ok(())
}

impl Entry {
    /// One invocation: `handle` with the payload (the output, checked
    /// against the output cap), or an HTTP component's handler with the
    /// request (the output is empty: the response went to the exchange).
    pub(crate) fn invoke(
        &self,
        store: &mut Store<State>,
        input: Input<'_>,
    ) -> Result<Vec<u8>, Failure> {
        match (self, input) {
            (Entry::Function(handler), Input::Bytes(payload)) => {
                off_runtime(|| invoke_here(handler, store, payload))
            }
            (Entry::Http(http), Input::Http(exchange)) => {
                off_runtime(|| proxy::serve(store, http, *exchange)).map(|()| Vec::new())
            }
            (Entry::Function(_), Input::Http(_)) => Err(not_http().into()),
            (Entry::Http(_), Input::Bytes(_)) => Err(Error::BadExport {
                name: HANDLE.into(),
                reason: "this is an HTTP component (it exports wasi:http/incoming-handler): \
                         send it HTTP requests (Host::invoke_http, a route of fnhost serve)"
                    .into(),
            }
            .into()),
        }
    }
}

/// The error for an HTTP request to a function that is not an HTTP
/// component.
pub(crate) fn not_http() -> Error {
    Error::BadExport {
        name: "wasi:http/incoming-handler".into(),
        reason: "this function is not an HTTP component (world wasi:http/proxy); \
                 invoke it with a payload"
            .into(),
    }
}

fn invoke_here(
    handler: &imports::Handler,
    store: &mut Store<State>,
    payload: &[u8],
) -> Result<Vec<u8>, Failure> {
    let out = handler.call_handle(&mut *store, payload);
    timed_out(store)?;
    let out = out?.map_err(guest_error)?;
    let max = store.data().spec.max_output;
    if out.len() > max {
        return Err(Error::OutputTooLarge {
            size: out.len() as u64,
            max,
        }
        .into());
    }
    Ok(out)
}

/// A handled guest failure, capped as ABI v1 caps `fnhost_v1.error`.
fn guest_error(e: GuestError) -> Failure {
    Failure::Host(Error::Guest {
        kind: capped_text(e.kind.as_bytes(), MAX_ERROR_KIND),
        message: capped_text(e.message.as_bytes(), MAX_ERROR_MESSAGE),
    })
}
