//! `fnhost new` and `fnhost build`: the `cargo lambda new/build` experience
//! for Rust guests (ABI v1, wasm32-wasip1) and for components in
//! JavaScript, Python and Rust (wasm32-wasip2), the latter built by
//! `fnhost-guest-build`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// Where the SDK lives: `FNHOST_SDK_PATH`, else the `guest-sdk` beside this
/// CLI's sources (fnhost is not on crates.io yet).
pub fn sdk_path() -> PathBuf {
    std::env::var_os("FNHOST_SDK_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk"))
}

/// The languages `fnhost new --lang` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NewLang {
    /// Rust with the fnhost-guest SDK (ABI v1 module, wasm32-wasip1).
    Rust,
    /// Rust as a component (wasm32-wasip2, wit-bindgen).
    RustWasip2,
    /// JavaScript (componentize-js).
    Js,
    /// Python (componentize-py).
    Python,
}

/// Creates a project named `name` in directory `dir`.
pub fn new_project(dir: &Path, name: &str, lang: NewLang) -> Result<()> {
    // The project's name is the function's name: the host's rule.
    if !fnhost::valid_name(name) {
        bail!("{name:?}: use 1 to 64 letters, digits, '-' and '_'");
    }
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    match lang {
        NewLang::Rust => new_guest(dir, name),
        NewLang::RustWasip2 => new_rust_component(dir, name),
        NewLang::Js => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(
                dir.join("package.json"),
                format!(
                    "{{\n  \"name\": {name:?},\n  \"private\": true,\n  \"type\": \"module\",\n  \"main\": \"handler.js\"\n}}\n"
                ),
            )?;
            std::fs::write(dir.join("handler.js"), HELLO_JS)?;
            std::fs::write(dir.join(".gitignore"), "/target\n/node_modules\n")?;
            Ok(())
        }
        NewLang::Python => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join("app.py"), HELLO_PY)?;
            std::fs::write(dir.join(".gitignore"), "/target\n__pycache__/\n")?;
            Ok(())
        }
    }
}

/// The example handlers new projects start from.
const HELLO_JS: &str = include_str!("../../examples/components/hello-js/handler.js");
const HELLO_PY: &str = include_str!("../../examples/components/hello-python/app.py");
const HELLO_RUST: &str = include_str!("../../examples/components/hello-rust/src/lib.rs");

/// A guest crate's manifest: a cdylib of its own (outside any enclosing
/// workspace) with `dep` and serde.
fn cargo_toml(name: &str, dep: &str) -> String {
    let lib = name.replace('-', "_");
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
name = "{lib}"
crate-type = ["cdylib"]

[dependencies]
{dep}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[profile.release]
strip = "debuginfo"

# A crate of its own, not part of any enclosing workspace.
[workspace]
"#
    )
}

/// A Rust component crate: wit-bindgen over the WIT, written into the
/// project (`wit/function.wit`).
fn new_rust_component(dir: &Path, name: &str) -> Result<()> {
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join("wit"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        cargo_toml(name, "wit-bindgen = \"0.51\""),
    )?;
    std::fs::write(dir.join("wit/function.wit"), fnhost_guest_build::WIT)?;
    // The example's bindings path points at the repository's wit/.
    let code = HELLO_RUST.replace("\"../../../wit\"", "\"wit\"");
    std::fs::write(dir.join("src/lib.rs"), code)?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    Ok(())
}

/// Builds the project in `dir` and returns the function file's path: an
/// ABI v1 crate with cargo for wasm32-wasip1, anything else as a component
/// into `<dir>/target/<name>.wasm`.
pub fn build(dir: &Path) -> Result<PathBuf> {
    use fnhost_guest_build::{Lang, Toolchains, build_component};
    if Lang::detect(dir)? == Lang::Rust {
        return build_guest(dir);
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{}", dir.display()))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "function".into());
    let out = dir.join("target").join(format!("{name}.wasm"));
    Ok(build_component(&dir, &out, &Toolchains::default())?.wasm)
}

/// Creates a guest crate named `name` in directory `dir`.
fn new_guest(dir: &Path, name: &str) -> Result<()> {
    let sdk = sdk_path()
        .canonicalize()
        .with_context(|| format!("guest SDK not found at {}", sdk_path().display()))?;
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join(".cargo"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        cargo_toml(name, &format!("fnhost-guest = {{ path = {sdk:?} }}")),
    )?;
    std::fs::write(
        dir.join(".cargo/config.toml"),
        "[build]\ntarget = \"wasm32-wasip1\"\n",
    )?;
    std::fs::write(
        dir.join("src/lib.rs"),
        r#"//! An fnhost function. Build with `fnhost build`, run with
//! `fnhost invoke target/wasm32-wasip1/release/<name>.wasm --payload '{"name":"you"}'`.

use fnhost_guest::{Context, Error};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Request {
    pub name: String,
}

#[derive(Serialize)]
pub struct Response {
    pub message: String,
}

#[fnhost_guest::handler]
pub fn handle(req: Request, ctx: &Context) -> Result<Response, Error> {
    if req.name.is_empty() {
        return Err(Error::new("InvalidRequest", "name must not be empty"));
    }
    println!("request {}", ctx.request_id());
    Ok(Response { message: format!("Hello, {}!", req.name) })
}
"#,
    )?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    Ok(())
}

/// Builds the guest crate in `dir` for wasm32-wasip1 (release) and returns
/// the module's path.
pub fn build_guest(dir: &Path) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!(
            "cargo build failed ({status}); is the target installed? `rustup target add wasm32-wasip1`"
        );
    }
    let lib = fnhost_guest_build::lib_name(&text)
        .with_context(|| format!("no [lib] name or package name in {}", manifest.display()))?;
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
    let wasm = target_dir
        .join("wasm32-wasip1/release")
        .join(format!("{lib}.wasm"));
    if !wasm.exists() {
        bail!(
            "build finished but {} is missing (is crate-type cdylib?)",
            wasm.display()
        );
    }
    Ok(wasm)
}
