//! The guest layer: one instance of a guest and everything it imports.
//!
//! It knows nothing of functions, registries, versions, threads or the
//! host: it is given a [`Linked`] module, the instance's [`Spec`] and a
//! [`Call`] (the invocation's context), and gives back an [`Instance`]
//! or a typed error. This is the seam a second kind of guest plugs into.
//!
//! Inside, dependencies point one way:
//! `abi` (numbers, register-time checks) ← `wasi` (preview 1 over its own
//! [`View`](wasi::View)) ← `state` (the store's data) ← `hostcalls` (the
//! `fnhost_v1` functions) ← `instance` (start, invoke, classify).

pub mod abi;
pub(crate) mod component;
mod hostcalls;
mod instance;
mod spec;
mod state;
pub(crate) mod wasi;

use wasmtime::{Engine, Linker};

pub(crate) use abi::Provided;
pub(crate) use instance::{
    Failure, Input, Instance, Linked, check_status, classify, fuel_used, new_store, start,
};
pub(crate) use spec::Spec;
pub(crate) use state::{Call, EventCtx, State};

/// A linker with every import a guest may use (WASI preview 1 and
/// `fnhost_v1`), and the table of their types that
/// [`abi::check`] checks a module's imports against.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<(Linker<State>, Provided)> {
    let mut linker = Linker::new(engine);
    let mut provided = Provided::default();
    wasi::add_to_linker(&mut linker, &mut provided)?;
    hostcalls::add_to_linker(&mut linker, &mut provided)?;
    Ok((linker, provided))
}
