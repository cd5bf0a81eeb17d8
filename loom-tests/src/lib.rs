//! loom model checks of fnhost's hand-written concurrency: see
//! `tests/gate.rs`. Built without `--cfg loom` this crate is empty;
//! `cargo xtask test` runs it with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p fnhost-loom-tests`
//! (own target dir).
