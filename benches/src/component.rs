//! The raw-wasmtime component baseline: a component of the world
//! `fnhost:function/handler` run the way an embedder would with
//! wasmtime and wasmtime-wasi alone (bindgen, `InstancePre`, WASI 0.2 from
//! `add_to_linker_sync`, stdout and stderr discarded; `wasi:http` from
//! wasmtime-wasi-http, as fnhost links it for every component: a
//! componentize-js guest imports it), on an engine built with fnhost's
//! settings (`fnhost::wasmtime_config`).

use std::path::Path;

use anyhow::{Context as _, Result};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::SinkOutputStream;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

mod wit {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "fnhost:function/handler",
    });
}

use wit::fnhost::function::{capabilities, context, types};

/// Store data of the raw component baseline.
pub struct RawComponentState {
    ctx: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiHttpView for RawComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

impl WasiView for RawComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl types::Host for RawComponentState {}

impl context::Host for RawComponentState {
    fn request_id(&mut self) -> String {
        "00000000-0000-0000-0000-000000000000".into()
    }
    fn function_name(&mut self) -> String {
        "raw".into()
    }
    fn function_version(&mut self) -> String {
        "$LATEST".into()
    }
    fn memory_limit(&mut self) -> u64 {
        128 << 20
    }
    fn timeout_ns(&mut self) -> u64 {
        3_000_000_000
    }
    fn remaining_ns(&mut self) -> u64 {
        3_000_000_000
    }
    fn event(&mut self) -> Option<context::EventInfo> {
        None
    }
    fn client_context(&mut self) -> Option<String> {
        None
    }
}

impl capabilities::Host for RawComponentState {
    fn call(
        &mut self,
        _name: String,
        _request: Vec<u8>,
    ) -> Result<Vec<u8>, capabilities::HostError> {
        Err(capabilities::HostError::Denied("no capabilities".into()))
    }
}

/// Raw wasmtime running an `fnhost:function/handler` component.
pub struct RawComponent {
    engine: Engine,
    pre: wit::HandlerPre<RawComponentState>,
}

/// One raw component instance kept for repeated calls (raw-reuse).
pub struct RawComponentInstance {
    store: Store<RawComponentState>,
    handler: wit::Handler,
}

impl RawComponent {
    /// Loads the component at `path` on an engine with fnhost's settings
    /// for `slots` instances: compiled once, then deserialized from
    /// `cache_dir` (a component takes seconds to compile).
    pub fn new(path: &Path, slots: u32, cache_dir: &Path) -> Result<RawComponent> {
        let engine = Engine::new(&fnhost::wasmtime_config(slots, 4 << 30, 512 << 10))?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            engine.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        let cached = cache_dir.join(format!("raw-{key:016x}.cwasm"));
        // SAFETY: the file was written by `Engine::precompile_component`
        // of an engine with this compatibility hash (it is in the name) in
        // a directory only the benchmarks write.
        let component = match unsafe { Component::deserialize_file(&engine, &cached) } {
            Ok(c) => c,
            Err(_) => {
                let art = engine.precompile_component(&bytes)?;
                std::fs::create_dir_all(cache_dir)?;
                std::fs::write(&cached, &art)?;
                // SAFETY: `art` was just produced by this engine.
                unsafe { Component::deserialize(&engine, &art)? }
            }
        };
        let mut linker: Linker<RawComponentState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
        wit::Handler::add_to_linker::<RawComponentState, HasSelf<RawComponentState>>(
            &mut linker,
            |s| s,
        )?;
        let pre = wit::HandlerPre::new(linker.instantiate_pre(&component)?)?;
        Ok(RawComponent { engine, pre })
    }

    /// A new instance (new store, WASI context and resource table).
    pub fn instance(&self) -> Result<RawComponentInstance> {
        let ctx = WasiCtxBuilder::new()
            // Discarded (fnhost keeps and caps them: the baseline does
            // less).
            .stdout(SinkOutputStream)
            .stderr(SinkOutputStream)
            .build();
        let mut store = Store::new(
            &self.engine,
            RawComponentState {
                ctx,
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let handler = self.pre.instantiate(&mut store)?;
        Ok(RawComponentInstance { store, handler })
    }

    /// raw-fresh for components: new store and instance, call, drop.
    pub fn fresh_call(&self, payload: &[u8]) -> Result<Vec<u8>> {
        self.instance()?.call(payload)
    }
}

impl RawComponentInstance {
    /// One call of `handle` on this instance.
    pub fn call(&mut self, payload: &[u8]) -> Result<Vec<u8>> {
        self.handler
            .call_handle(&mut self.store, payload)?
            .map_err(|e| anyhow::anyhow!("guest error {}: {}", e.kind, e.message))
    }
}
