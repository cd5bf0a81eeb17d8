//! One sandboxed instance and the steps of an invocation: instantiate,
//! init, copy in, handle, copy out.
//!
//! Every failure is turned into a typed [`Error`] by [`classify`], which
//! looks at what the host recorded while the guest ran (a host-raised
//! fault, a denied memory grow, a guest error record) before falling back
//! to the wasmtime trap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{InstancePre, Memory, Store, TypedFunc};

use super::abi::{self, Exports};
use super::component;
use super::spec::Spec;
use super::state::{Call, Limiter, State};
use super::wasi::Wasi;
use crate::error::Error;
use crate::guest_mem as gm;
use crate::report::RequestId;

/// A checked, pre-linked guest: what instances are made from.
pub(crate) enum Linked {
    /// A core module speaking ABI v1.
    Core {
        pre: InstancePre<State>,
        /// Where its ABI exports live.
        exports: Exports,
    },
    /// A component of the world `fnhost:function/handler`.
    Component(component::Linked),
}

impl Linked {
    fn engine(&self) -> &wasmtime::Engine {
        match self {
            Linked::Core { pre, .. } => pre.module().engine(),
            Linked::Component(c) => c.engine(),
        }
    }

    /// Whether this is an HTTP component (`wasi:http/proxy`).
    pub(crate) fn is_http(&self) -> bool {
        matches!(self, Linked::Component(c) if c.is_http())
    }
}

/// What an invocation hands its instance.
pub(crate) enum Input<'a> {
    /// A payload, for `handle`.
    Bytes(&'a [u8]),
    /// An HTTP request, for an HTTP component (boxed: the payload path
    /// moves 16 bytes).
    Http(Box<crate::exchange::Exchange>),
}

/// How an invocation enters a live instance.
enum Entry {
    Core {
        alloc: TypedFunc<i32, i32>,
        handle: TypedFunc<(i32, i32), i32>,
        memory: Memory,
    },
    Component(component::Entry),
}

/// A live instance: its store and typed entry points.
pub(crate) struct Instance {
    pub store: Store<State>,
    entry: Entry,
    /// Instantiation and init time.
    pub init_duration: Duration,
    /// Set when an invocation trapped or broke the ABI: never reuse.
    pub poisoned: bool,
    /// Invocations served.
    pub uses: u32,
    /// When it last finished an invocation (or was created).
    pub last_used: Instant,
}

/// Epoch ticks that cover `timeout`: the deadline fires after the timeout
/// and at most one tick later.
pub(crate) fn deadline_ticks(timeout: Duration, tick: Duration) -> u64 {
    (timeout.as_nanos().div_ceil(tick.as_nanos().max(1)) as u64).saturating_add(1)
}

/// Creates a store for `func` and runs instantiation, `_initialize` and
/// `fnhost_init` under the deadline. On failure the store is returned with
/// the error so its logs can be reported.
pub(crate) fn start(
    linked: &Linked,
    spec: &Arc<Spec>,
    call: Call,
    tick: Duration,
) -> Result<Instance, (Error, Store<State>)> {
    let started = call.started;
    let mut store = new_store(linked.engine(), spec.clone(), call, tick);
    let entry = match linked {
        Linked::Core { pre, exports } => init(&mut store, pre, exports),
        Linked::Component(c) => component::start(&mut store, c).map(Entry::Component),
    };
    match entry {
        Ok(entry) => Ok(Instance {
            // The budget covers the handler alone, as on a warm instance
            // (init is bounded by the timeout): the same input stops at the
            // same point whatever the pool held.
            store: refuel(store),
            entry,
            // Set by the caller, which already reads the clock around this.
            init_duration: Duration::ZERO,
            poisoned: false,
            uses: 0,
            last_used: started,
        }),
        Err(e) => {
            let e = classify(&mut store, e);
            Err((e, store))
        }
    }
}

/// A store for one instance of `spec`: quotas, deadline and fuel armed.
pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    spec: Arc<Spec>,
    call: Call,
    tick: Duration,
) -> Store<State> {
    let mut store = Store::new(
        engine,
        State {
            limiter: Limiter {
                memory_limit: spec.memory_limit as usize,
                used: 0,
                peak: 0,
                hit: false,
            },
            spec: spec.clone(),
            memory: None,
            call,
            wasi: Wasi::default(),
            p2: None,
        },
    );
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(deadline_ticks(spec.timeout, tick));
    if let Some(fuel) = spec.fuel {
        // Only fails when the engine does not meter fuel (then `fuel` is None).
        let _ = store.set_fuel(fuel);
    }
    store
}

/// An ABI export as a typed function, without a per-instance type check.
fn typed<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    store: &mut Store<State>,
    instance: &wasmtime::Instance,
    e: &wasmtime::ModuleExport,
) -> Result<TypedFunc<P, R>, Failure> {
    let f = instance
        .get_module_export(&mut *store, e)
        .and_then(|e| e.into_func())
        .ok_or_else(|| Error::abi("export vanished"))?;
    // SAFETY: `abi::check` verified at register time that this export of
    // this module has exactly the parameter and result types `P -> R` (the
    // callers name them as checked), so the per-instance `Func::typed`
    // check is redundant; it showed up in profiles of the fresh path.
    Ok(unsafe { TypedFunc::new_unchecked(&*store, f) })
}

fn init(
    store: &mut Store<State>,
    pre: &InstancePre<State>,
    ex: &Exports,
) -> Result<Entry, Failure> {
    let instance = pre.instantiate(&mut *store)?;
    let memory = instance
        .get_module_export(&mut *store, &ex.memory)
        .and_then(|e| e.into_memory())
        .ok_or_else(|| Error::abi("memory export vanished"))?;
    store.data_mut().memory = Some(memory);
    if let Some(e) = &ex.initialize {
        typed::<(), ()>(store, &instance, e)?.call(&mut *store, ())?;
    }
    if let Some(e) = &ex.init {
        let status = typed::<(), i32>(store, &instance, e)?.call(&mut *store, ())?;
        check_status(store.data_mut(), status, abi::exports::INIT)?;
    }
    if let Some(e) = &ex.restore {
        let status = typed::<(), i32>(store, &instance, e)?.call(&mut *store, ())?;
        check_status(store.data_mut(), status, abi::exports::RESTORE)?;
    }
    let alloc = typed(store, &instance, &ex.alloc)?;
    let handle = typed(store, &instance, &ex.handle)?;
    Ok(Entry::Core {
        alloc,
        handle,
        memory,
    })
}

/// A step failed either inside wasm (a wasmtime error to classify) or in
/// the host's own checks (already typed).
pub(crate) enum Failure {
    Wasm(wasmtime::Error),
    Host(Error),
}

impl From<wasmtime::Error> for Failure {
    fn from(e: wasmtime::Error) -> Failure {
        Failure::Wasm(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Host(e)
    }
}

pub(crate) fn check_status(st: &mut State, status: i32, what: &str) -> Result<(), Error> {
    match status {
        abi::STATUS_OK => Ok(()),
        abi::STATUS_ERROR => match st.call.error.take() {
            Some((kind, message)) => Err(Error::Guest { kind, message }),
            None => Err(Error::abi(format!(
                "{what} returned status 1 (error) without calling fnhost_v1.error"
            ))),
        },
        n => Err(Error::abi(format!("{what} returned unknown status {n}"))),
    }
}

/// Turns a failure into the error a caller can act on.
pub(crate) fn classify(store: &mut Store<State>, f: Failure) -> Error {
    let st = store.data_mut();
    let e = match f {
        // A guest that ran into the memory limit and then reported an
        // error (JavaScript's "out of memory", Python's MemoryError) ran
        // out of memory, whatever it called it.
        Failure::Host(Error::Guest { .. }) if st.limiter.hit => {
            return Error::OutOfMemory {
                limit: st.spec.memory_limit,
            };
        }
        Failure::Host(e) => return e,
        Failure::Wasm(e) => e,
    };
    if let Some(fault) = st.call.fault.take() {
        return fault;
    }
    let trap = e.downcast_ref::<wasmtime::Trap>().copied();
    if trap == Some(wasmtime::Trap::Interrupt) {
        return Error::Timeout {
            timeout: st.spec.timeout,
        };
    }
    if trap == Some(wasmtime::Trap::OutOfFuel) {
        return Error::OutOfFuel {
            limit: st.spec.fuel.unwrap_or(0),
        };
    }
    if st.limiter.hit {
        return Error::OutOfMemory {
            limit: st.spec.memory_limit,
        };
    }
    // A guest that recorded an error and then trapped (a Rust panic) reports
    // its error, not the opaque trap.
    if let Some((kind, message)) = st.call.error.take() {
        return Error::Guest { kind, message };
    }
    match trap {
        Some(code) => Error::Trap {
            message: code.to_string(),
            code: Some(code),
        },
        None => Error::Instantiate {
            reason: format!("{e:#}"),
        },
    }
}

impl Instance {
    /// Prepares a warm instance for a new invocation: a fresh per-call
    /// context and a re-armed deadline.
    pub(crate) fn begin(&mut self, call: Call, tick: Duration) {
        let st = self.store.data_mut();
        let timeout = st.spec.timeout;
        st.call = call;
        // A refused grow the guest survived earlier must not turn a later,
        // unrelated trap into OutOfMemory.
        st.limiter.hit = false;
        let fuel = st.spec.fuel;
        self.store.set_epoch_deadline(deadline_ticks(timeout, tick));
        if let Some(fuel) = fuel {
            let _ = self.store.set_fuel(fuel);
        }
    }

    /// Takes the finished invocation's context (logs and all) out.
    pub(crate) fn take_call(&mut self) -> Call {
        let st = self.store.data_mut();
        st.settle();
        let idle = Call::new(&st.spec, RequestId(0), Instant::now());
        std::mem::replace(&mut st.call, idle)
    }

    /// Ends the instance, keeping the finished invocation's context.
    pub(crate) fn into_call(self) -> Call {
        self.store.into_data().into_call()
    }

    /// Peak linear memory of this instance so far.
    /// Fuel this invocation used (when the host meters fuel).
    pub(crate) fn fuel_used(&self) -> Option<u64> {
        fuel_used(&self.store)
    }

    pub(crate) fn peak_memory(&self) -> u64 {
        self.store.data().limiter.peak as u64
    }

    /// One invocation on this instance: copy `payload` in, run the
    /// handler, copy the output out. Anything but a handled guest error
    /// poisons the instance (it is never reused).
    pub(crate) fn invoke(&mut self, input: Input<'_>) -> Result<Vec<u8>, Error> {
        self.uses += 1;
        self.invoke_inner(input).map_err(|f| {
            // Only a handled error that stays one (not out of memory)
            // leaves the instance fit for reuse.
            let handled = matches!(f, Failure::Host(Error::Guest { .. }));
            let e = classify(&mut self.store, f);
            self.poisoned |= !(handled && matches!(e, Error::Guest { .. }));
            e
        })
    }

    fn invoke_inner(&mut self, input: Input<'_>) -> Result<Vec<u8>, Failure> {
        let (alloc, handle, memory) = match &self.entry {
            Entry::Core {
                alloc,
                handle,
                memory,
            } => (alloc, handle, memory),
            Entry::Component(c) => return c.invoke(&mut self.store, input),
        };
        let payload = match input {
            Input::Bytes(payload) => payload,
            Input::Http(_) => return Err(component::not_http().into()),
        };
        let len = payload.len();
        let ptr = if len == 0 {
            0
        } else {
            let ptr = alloc.call(&mut self.store, len as i32)?;
            if ptr == 0 {
                return Err(
                    Error::abi(format!("fnhost_alloc({len}) returned a null pointer")).into(),
                );
            }
            let mem = memory.data_mut(&mut self.store);
            gm::slice_mut(mem, ptr as u32, len as u64)
                .map_err(|oob| Error::abi(format!("fnhost_alloc({len}) returned {oob}")))?
                .copy_from_slice(payload);
            ptr
        };
        let status = handle.call(&mut self.store, (ptr, len as i32))?;
        let st = self.store.data_mut();
        check_status(st, status, abi::exports::HANDLE)?;
        Ok(st.call.output.take().unwrap_or_default())
    }
}

/// Budget minus what is left, when the host meters fuel.
pub(crate) fn fuel_used(store: &Store<State>) -> Option<u64> {
    let budget = store.data().spec.fuel?;
    Some(budget - store.get_fuel().unwrap_or(budget).min(budget))
}

/// Refills a store's fuel to its function's budget (when metered).
fn refuel(mut store: Store<State>) -> Store<State> {
    if let Some(fuel) = store.data().spec.fuel {
        let _ = store.set_fuel(fuel);
    }
    store
}
