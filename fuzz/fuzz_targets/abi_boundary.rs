#![no_main]
//! Fuzz target: see `fnhost_hostile::oracles::abi_boundary`.

use std::sync::OnceLock;

use fnhost_hostile::oracles::{self, AbiCase};
use libfuzzer_sys::fuzz_target;

static HOST: OnceLock<fnhost::Host> = OnceLock::new();

fuzz_target!(|case: AbiCase| {
    let host = HOST.get_or_init(oracles::fuzz_host);
    oracles::abi_boundary(host, &case);
});
