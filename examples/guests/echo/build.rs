//! Echo needs little stack: a 64 KiB shadow stack (Rust's default is
//! 1 MiB) shrinks the module's initial memory, so each fresh instance maps
//! and resets less.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo::rustc-link-arg-cdylib=-zstack-size=65536");
    }
}
