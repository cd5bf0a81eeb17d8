#![no_main]
//! Fuzz target: WASI call sequences with fuzzer-chosen arguments (wild
//! pointers, huge lengths and offsets included) run by the `wasiseq` guest;
//! see `fnhost_hostile::wasi_diff::fuzz_program`.

use std::sync::OnceLock;

use fnhost_hostile::wasi_diff;
use libfuzzer_sys::fuzz_target;

static HOST: OnceLock<fnhost::Host> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let host = HOST.get_or_init(wasi_diff::fnhost_side);
    wasi_diff::fuzz_program(host, data);
});
