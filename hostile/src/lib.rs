//! Hostile inputs for fnhost, shared by three users:
//!
//! - the cargo-fuzz targets in `fuzz/` (thin wrappers around [`oracles`]);
//! - this crate's tests, which run the oracles over the committed seed
//!   corpora (`fuzz/corpus/*`) on every CI run;
//! - the soak runner ([`soak`]): a CI-sized test and the long `soak`
//!   command whose figures are in RELIABILITY.md.
//!
//! Every oracle panics (which is what a fuzzer reports) when fnhost breaks
//! a rule of `shared/HOSTILE.md`: a host panic, an untyped or unexpected
//! error, a lost invocation, or a host that no longer serves a normal call.

#![deny(missing_docs)]

pub mod oracles;
pub mod soak;
pub mod wasi_diff;

/// An ABI v1 guest in WAT with its parameters spliced in: `imports` and
/// `items` at module level, `alloc` the body of `fnhost_alloc` (param
/// `$len`), `handle` the body of `fnhost_handle` (params `$ptr`, `$len`).
pub fn wat_guest(imports: &str, items: &str, alloc: &str, handle: &str) -> String {
    format!(
        r#"(module
  (import "fnhost_v1" "output" (func $output (param i32 i32)))
  (import "fnhost_v1" "error" (func $error (param i32 i32 i32 i32)))
  {imports}
  (memory (export "memory") 1)
  (func (export "fnhost_abi_v1"))
  (func (export "fnhost_alloc") (param $len i32) (result i32) {alloc})
  (func (export "fnhost_handle") (param $ptr i32) (param $len i32) (result i32) {handle})
  {items})"#
    )
}
