//! Misuse of `#[handler]` and `#[init]` is a compile error pointing at the
//! offending tokens; the diagnostics are locked in `tests/ui/*.stderr`.
//! Regenerate with `TRYBUILD=overwrite cargo test -p fnhost-guest --test ui`.

#[test]
fn macro_misuse_is_diagnosed() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
}
