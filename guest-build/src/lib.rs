//! Builds fnhost function projects into WebAssembly components: the
//! machinery behind `fnhost build` for JavaScript (componentize-js),
//! Python (componentize-py) and Rust (`wasm32-wasip2`), also used by
//! `cargo xtask` to build the test and example components once per run.
//!
//! - A project is a directory; its language is read from what is in it
//!   ([`Lang::detect`]).
//! - The toolchains are installed on first use, pinned
//!   ([`COMPONENTIZE_JS`], [`COMPONENTIZE_PY`]), into
//!   [`Toolchains::dir`] (`$FNHOST_TOOLCHAINS`, else
//!   `~/.cache/fnhost/toolchains`), never into the project.
//! - The language helper (`fnhost.js`, `fnhost.py`) and the WIT
//!   (`wit/function.wit`) are written into a staging directory beside the
//!   user's code, so a project holds only its own files.
//! - A build is skipped when nothing it reads changed: the output's
//!   `.b3` stamp holds a BLAKE3 hash of the inputs and the toolchain.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// The npm package and version of componentize-js fnhost builds with.
pub const COMPONENTIZE_JS: (&str, &str) = ("@bytecodealliance/componentize-js", "0.23.0");
/// The PyPI package and version of componentize-py fnhost builds with.
pub const COMPONENTIZE_PY: (&str, &str) = ("componentize-py", "0.25.1");

/// The WIT package every component function targets.
pub const WIT: &str = include_str!("../../wit/function.wit");
/// The JavaScript helper (`import { handler } from './fnhost.js'`).
pub const JS_HELPER: &str = include_str!("../../guest-sdk/js/fnhost.js");
/// The Python helper (`from fnhost import handler, WitWorld`).
pub const PY_HELPER: &str = include_str!("../../guest-sdk/python/fnhost.py");
/// The world a component built here targets.
pub const WORLD: &str = "handler";

/// A project's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// A JavaScript module (`handler.js`, or `package.json`'s `main`).
    Js,
    /// A Python app (`app.py`).
    Python,
    /// A Rust crate built for `wasm32-wasip2` (its `Cargo.toml` says
    /// `wit-bindgen`).
    RustComponent,
    /// A Rust crate using the fnhost-guest SDK (ABI v1, `wasm32-wasip1`).
    Rust,
}

impl Lang {
    /// Reads the language off the project's files.
    pub fn detect(dir: &Path) -> Result<Lang> {
        let cargo = dir.join("Cargo.toml");
        if cargo.is_file() {
            let text = std::fs::read_to_string(&cargo)
                .with_context(|| format!("reading {}", cargo.display()))?;
            return Ok(if text.contains("wit-bindgen") {
                Lang::RustComponent
            } else {
                Lang::Rust
            });
        }
        if js_entry(dir)?.is_some() {
            return Ok(Lang::Js);
        }
        if dir.join("app.py").is_file() {
            return Ok(Lang::Python);
        }
        bail!(
            "{}: not a function project (no Cargo.toml, handler.js, package.json or app.py)",
            dir.display()
        )
    }
}

/// The JavaScript entry module: `package.json`'s `main`, else
/// `handler.js`, else `index.js`.
fn js_entry(dir: &Path) -> Result<Option<PathBuf>> {
    let pkg = dir.join("package.json");
    if pkg.is_file() {
        let text = std::fs::read_to_string(&pkg)?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", pkg.display()))?;
        if let Some(main) = v.get("main").and_then(|m| m.as_str()) {
            return Ok(Some(dir.join(main)));
        }
    }
    Ok(["handler.js", "index.js"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file()))
}

/// Where the componentize toolchains are installed.
#[derive(Debug, Clone)]
pub struct Toolchains {
    dir: PathBuf,
}

impl Default for Toolchains {
    fn default() -> Self {
        let dir = std::env::var_os("FNHOST_TOOLCHAINS")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fnhost/toolchains"))
            })
            .unwrap_or_else(|| std::env::temp_dir().join("fnhost-toolchains"));
        Toolchains { dir }
    }
}

impl Toolchains {
    /// Toolchains under `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Toolchains {
        Toolchains { dir: dir.into() }
    }

    /// The directory they live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The componentize-js executable, installed with npm if missing.
    pub fn componentize_js(&self) -> Result<PathBuf> {
        let (pkg, version) = COMPONENTIZE_JS;
        let home = self.dir.join(format!("componentize-js-{version}"));
        let bin = home.join("node_modules/.bin/componentize-js");
        if home.join(".installed").is_file() && bin.is_file() {
            return Ok(bin);
        }
        std::fs::create_dir_all(&home)?;
        std::fs::write(
            home.join("package.json"),
            "{\"private\": true, \"name\": \"fnhost-toolchain-js\"}\n",
        )?;
        eprintln!(
            "fnhost: installing {pkg}@{version} (npm) into {}",
            home.display()
        );
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .arg(format!("{pkg}@{version}"))
            .current_dir(&home))
        .context("installing componentize-js needs Node.js and npm on PATH")?;
        std::fs::write(home.join(".installed"), version)?;
        Ok(bin)
    }

    /// The componentize-py executable, installed with pip into a venv if
    /// missing.
    pub fn componentize_py(&self) -> Result<PathBuf> {
        let (pkg, version) = COMPONENTIZE_PY;
        let home = self.dir.join(format!("componentize-py-{version}"));
        let bin = home.join("bin/componentize-py");
        if home.join(".installed").is_file() && bin.is_file() {
            return Ok(bin);
        }
        eprintln!(
            "fnhost: installing {pkg}=={version} (pip) into {}",
            home.display()
        );
        run(Command::new("python3").arg("-m").arg("venv").arg(&home))
            .context("installing componentize-py needs python3 with venv")?;
        run(Command::new(home.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("{pkg}=={version}")))?;
        std::fs::write(home.join(".installed"), version)?;
        Ok(bin)
    }
}

/// Runs `cmd`; a failure names the command.
fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The `.wasm` file.
    pub wasm: PathBuf,
    /// False when the inputs were unchanged and the last output was kept.
    pub rebuilt: bool,
}

/// Builds the component project in `dir` (JavaScript, Python or Rust
/// `wasm32-wasip2`) into `out` (a `.wasm` path). ABI v1 Rust crates are
/// built by the CLI's own `fnhost build`.
pub fn build_component(dir: &Path, out: &Path, tools: &Toolchains) -> Result<Built> {
    let lang = Lang::detect(dir)?;
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match lang {
        Lang::Js => build_js(dir, out, tools),
        Lang::Python => build_py(dir, out, tools),
        Lang::RustComponent => build_rust(dir, out),
        Lang::Rust => bail!(
            "{}: an ABI v1 crate (fnhost-guest), not a component",
            dir.display()
        ),
    }
}

/// The project's own files (not `target/`, `node_modules/`, hidden or
/// `__pycache__` directories), sorted.
fn project_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || ["target", "node_modules", "__pycache__"].contains(&&*name)
            {
                continue;
            }
            let ty = e.file_type()?;
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() {
                files.push(e.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A hash of everything a build reads: the tool, the helper, the WIT and
/// every project file (path and bytes).
fn inputs_hash(dir: &Path, tool: &str, helper: &str) -> Result<String> {
    let mut h = blake3::Hasher::new();
    for part in [tool, helper, WIT] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    for f in project_files(dir)? {
        let rel = f
            .strip_prefix(dir)
            .unwrap_or(&f)
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&f)?;
        h.update(&(rel.len() as u64).to_le_bytes());
        h.update(rel.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Runs `make` unless `out`'s stamp says the inputs are the same.
fn cached(out: &Path, key: &str, make: impl FnOnce() -> Result<()>) -> Result<Built> {
    let stamp = out.with_extension("wasm.b3");
    if out.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == key) {
        return Ok(Built {
            wasm: out.to_path_buf(),
            rebuilt: false,
        });
    }
    let _ = std::fs::remove_file(&stamp);
    make()?;
    if !out.is_file() {
        bail!("the build wrote no {}", out.display());
    }
    std::fs::write(&stamp, key)?;
    Ok(Built {
        wasm: out.to_path_buf(),
        rebuilt: true,
    })
}

/// A fresh staging directory for `out` holding the WIT.
fn staging(out: &Path) -> Result<PathBuf> {
    let stage = out.with_extension("stage");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    std::fs::create_dir_all(stage.join("wit"))?;
    std::fs::write(stage.join("wit/function.wit"), WIT)?;
    Ok(stage)
}

/// componentize-js flags for a function: no fetch-event handler (that is
/// an HTTP handler's export, see [`is_http_handler`]). `fetch` stays on: it is outbound `wasi:http`, held to the function's
/// `http.request` grant.
const JS_FLAGS: &[&str] = &["--disable", "fetch-event"];

/// The world of a JavaScript HTTP handler (`wit-http/`): `wasi:http/proxy`
/// at the version StarlingMonkey's engine exports its `fetch` event
/// handler at, with the WIT it depends on.
const JS_HTTP_WIT: &[(&str, &str)] = &[
    (
        "http-handler.wit",
        include_str!("../wit-http/http-handler.wit"),
    ),
    ("deps/cli.wit", include_str!("../wit-http/deps/cli.wit")),
    (
        "deps/clocks.wit",
        include_str!("../wit-http/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../wit-http/deps/filesystem.wit"),
    ),
    ("deps/http.wit", include_str!("../wit-http/deps/http.wit")),
    ("deps/io.wit", include_str!("../wit-http/deps/io.wit")),
    (
        "deps/random.wit",
        include_str!("../wit-http/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../wit-http/deps/sockets.wit"),
    ),
];

/// Whether a JavaScript entry module is an HTTP handler: it listens for
/// the `fetch` event (as a service worker, Spin or wasmCloud handler does).
fn is_http_handler(source: &str) -> bool {
    ["addEventListener('fetch'", "addEventListener(\"fetch\""]
        .iter()
        .any(|p| source.contains(p))
}

fn build_js(dir: &Path, out: &Path, tools: &Toolchains) -> Result<Built> {
    let entry = js_entry(dir)?.context("no JavaScript entry module")?;
    let http = is_http_handler(&std::fs::read_to_string(&entry).unwrap_or_default());
    let (world, flags): (&str, &[&str]) = if http {
        ("http-handler", &[])
    } else {
        (WORLD, JS_FLAGS)
    };
    let world_text: String = match http {
        true => JS_HTTP_WIT
            .iter()
            .map(|(n, t)| format!("{n}\n{t}"))
            .collect(),
        false => String::new(),
    };
    let tool = format!("{COMPONENTIZE_JS:?} {flags:?} {world_text}");
    let key = inputs_hash(dir, &tool, JS_HELPER)?;
    cached(out, &key, || {
        let bin = tools.componentize_js()?;
        let stage = staging(out)?;
        if http {
            std::fs::remove_file(stage.join("wit/function.wit"))?;
            std::fs::create_dir_all(stage.join("wit/deps"))?;
            for (name, text) in JS_HTTP_WIT {
                std::fs::write(stage.join("wit").join(name), text)?;
            }
        }
        // The user's files, then the helper beside them.
        for f in project_files(dir)? {
            let rel = f.strip_prefix(dir).unwrap_or(&f);
            let to = stage.join("src").join(rel);
            std::fs::create_dir_all(to.parent().unwrap_or(&stage))?;
            std::fs::copy(&f, &to)?;
        }
        std::fs::create_dir_all(stage.join("src"))?;
        std::fs::write(stage.join("src/fnhost.js"), JS_HELPER)?;
        if dir.join("node_modules").is_dir() {
            std::os::unix::fs::symlink(
                dir.join("node_modules").canonicalize()?,
                stage.join("src/node_modules"),
            )?;
        }
        let rel = entry.strip_prefix(dir).unwrap_or(&entry);
        run(Command::new(&bin)
            .arg(stage.join("src").join(rel))
            .arg("--wit")
            .arg(stage.join("wit"))
            .args(["--world-name", world])
            .args(flags)
            .arg("--out")
            .arg(out))
    })
}

fn build_py(dir: &Path, out: &Path, tools: &Toolchains) -> Result<Built> {
    let key = inputs_hash(dir, &format!("{COMPONENTIZE_PY:?}"), PY_HELPER)?;
    cached(out, &key, || {
        let bin = tools.componentize_py()?;
        let stage = staging(out)?;
        std::fs::create_dir_all(stage.join("lib"))?;
        std::fs::write(stage.join("lib/fnhost.py"), PY_HELPER)?;
        run(Command::new(&bin)
            .arg("--wit-path")
            .arg(stage.join("wit"))
            .args([
                "--world",
                WORLD,
                "--quiet",
                "componentize",
                "app",
                "--python-path",
            ])
            .arg(dir)
            .arg("--python-path")
            .arg(stage.join("lib"))
            .arg("--output")
            .arg(out))
    })
}

fn build_rust(dir: &Path, out: &Path) -> Result<Built> {
    // cargo decides what is stale; the copy is the only step here.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS"))?;
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))?;
    let lib = lib_name(&manifest).context("no [lib] name or package name in Cargo.toml")?;
    let wasm = target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{lib}.wasm"));
    if !wasm.is_file() {
        bail!(
            "the build wrote no {} (is crate-type cdylib?)",
            wasm.display()
        );
    }
    std::fs::copy(&wasm, out)?;
    Ok(Built {
        wasm: out.to_path_buf(),
        rebuilt: true,
    })
}

/// The crate's library name: `[lib] name`, else the package name, with
/// `-` as `_` (what cargo names the `.wasm`).
pub fn lib_name(manifest: &str) -> Option<String> {
    let v: toml::Value = toml::from_str(manifest).ok()?;
    let name = v
        .get("lib")
        .and_then(|l| l.get("name"))
        .or_else(|| v.get("package")?.get("name"))?;
    Some(name.as_str()?.replace('-', "_"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lib_name_is_libs_else_the_packages() {
        let m = "[package]\nname = \"my-fn\"\n\n[lib]\nname = \"other\"\n";
        assert_eq!(super::lib_name(m).as_deref(), Some("other"));
        let m = "[package]\nname = \"my-fn\"\n[dependencies]\nname = \"x\"\n";
        assert_eq!(super::lib_name(m).as_deref(), Some("my_fn"));
    }

    use super::*;

    #[test]
    fn languages_are_read_off_the_files() {
        let d = tempfile::tempdir().unwrap();
        assert!(Lang::detect(d.path()).is_err());
        std::fs::write(d.path().join("app.py"), "").unwrap();
        assert_eq!(Lang::detect(d.path()).unwrap(), Lang::Python);
        std::fs::write(d.path().join("handler.js"), "").unwrap();
        assert_eq!(Lang::detect(d.path()).unwrap(), Lang::Js);
        std::fs::write(
            d.path().join("Cargo.toml"),
            "[dependencies]\nwit-bindgen = \"0.51\"\n",
        )
        .unwrap();
        assert_eq!(Lang::detect(d.path()).unwrap(), Lang::RustComponent);
        std::fs::write(
            d.path().join("Cargo.toml"),
            "[dependencies]\nfnhost-guest = \"0\"\n",
        )
        .unwrap();
        assert_eq!(Lang::detect(d.path()).unwrap(), Lang::Rust);
    }

    #[test]
    fn the_js_entry_is_package_mains() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("package.json"),
            "{\n  \"name\": \"x\",\n  \"main\" : \"src/fn.js\"\n}\n",
        )
        .unwrap();
        assert_eq!(
            js_entry(d.path()).unwrap(),
            Some(d.path().join("src/fn.js"))
        );
    }

    #[test]
    fn the_inputs_hash_changes_with_any_file_and_ignores_target() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("app.py"), "a").unwrap();
        let h1 = inputs_hash(d.path(), "t", "h").unwrap();
        std::fs::create_dir(d.path().join("target")).unwrap();
        std::fs::write(d.path().join("target/x.wasm"), "junk").unwrap();
        assert_eq!(inputs_hash(d.path(), "t", "h").unwrap(), h1);
        std::fs::write(d.path().join("app.py"), "b").unwrap();
        assert_ne!(inputs_hash(d.path(), "t", "h").unwrap(), h1);
        assert_ne!(
            inputs_hash(d.path(), "t2", "h").unwrap(),
            inputs_hash(d.path(), "t", "h").unwrap()
        );
    }
}
