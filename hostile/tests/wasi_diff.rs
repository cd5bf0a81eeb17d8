//! Differential test of fnhost's WASI preview1 layer against wasmtime-wasi
//! (the reference implementation): thousands of seeded random programs of
//! file-system calls must give the same errno, results and final `/tmp`
//! tree on both (see `fnhost_hostile::wasi_diff`). A failure prints the
//! seed and the first call whose answers differ.

use fnhost_hostile::wasi_diff::{Reference, Rng, compare, fnhost_side, program};

/// Programs per run, and calls per program.
const PROGRAMS: u64 = 3000;
const CALLS: usize = 24;

#[test]
fn wasi_layer_matches_wasmtime_wasi() {
    let host = fnhost_side();
    let reference = Reference::new();
    let mut failures = Vec::new();
    for seed in 0..PROGRAMS {
        let ops = program(&mut Rng::new(seed), CALLS);
        if let Err(report) = compare(&host, &reference, &ops) {
            failures.push(format!("seed {seed}:\n{report}"));
            if failures.len() >= 8 {
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} programs differ (first shown):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every program ran on fnhost: the counts add up.
    let m = host.metrics();
    assert_eq!((m.submitted, m.succeeded), (PROGRAMS, PROGRAMS));
}
