//! Runs every fuzz oracle over the committed seed corpora (`fuzz/corpus`),
//! plus hand-picked ABI cases, so the oracles and the seeds stay honest on
//! every CI run (the fuzzers themselves run with `fuzz/run.sh`).

use arbitrary::{Arbitrary, Unstructured};
use fnhost_hostile::oracles::{self, AbiCase};

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<_> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds for {target}");
    seeds
}

#[test]
fn register_bytes_seeds() {
    let host = oracles::fuzz_host();
    for s in seeds("register_bytes") {
        oracles::register_bytes(&host, &s);
    }
}

#[test]
fn register_smith_seeds() {
    let host = oracles::fuzz_host();
    for s in seeds("register_smith") {
        oracles::register_smith(&host, &s);
    }
}

#[test]
fn json_payload_seeds() {
    let host = oracles::fuzz_host();
    for s in seeds("json_payload") {
        oracles::json_payload(&host, &s);
    }
}

#[test]
fn abi_boundary_seeds_and_edge_cases() {
    let host = oracles::fuzz_host();
    for s in seeds("abi_boundary") {
        if let Ok(case) = AbiCase::arbitrary(&mut Unstructured::new(&s)) {
            oracles::abi_boundary(&host, &case);
        }
    }
    let edge = [i32::MIN, -1, 0, 1, 1023, 1024, 65535, 65536, i32::MAX];
    for &p in &edge {
        for &l in &edge {
            for status in [0, 1, 2, -1] {
                oracles::abi_boundary(
                    &host,
                    &AbiCase {
                        alloc: p,
                        output: Some((p, l)),
                        error: Some((l, p, p, l)),
                        status,
                        payload: (l as u16) % 300,
                        grow: 1,
                    },
                );
            }
        }
    }
}

#[test]
fn wasi_calls_seeds_and_random_programs() {
    // HOSTILE 29, 33, 37 through fuzzer-shaped programs: raw WASI calls with
    // wild numbers never panic the host; it serves a plain program after.
    let host = fnhost_hostile::wasi_diff::fnhost_side();
    for s in seeds("wasi_calls") {
        fnhost_hostile::wasi_diff::fuzz_program(&host, &s);
    }
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..300 {
        let bytes: Vec<u8> = (0..512)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        fnhost_hostile::wasi_diff::fuzz_program(&host, &bytes);
    }
}
