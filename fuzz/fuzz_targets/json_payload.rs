#![no_main]
//! Fuzz target: see `fnhost_hostile::oracles::json_payload`.

use std::sync::OnceLock;

use fnhost_hostile::oracles;
use libfuzzer_sys::fuzz_target;

static HOST: OnceLock<fnhost::Host> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let host = HOST.get_or_init(oracles::fuzz_host);
    oracles::json_payload(host, data);
});
