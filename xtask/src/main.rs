//! Project tasks that do their own set-up, so a fresh machine needs no
//! manual step:
//!
//! - `cargo xtask quickstart`: the main job: registers the example guests,
//!   invokes them and prints results and usage reports;
//! - `cargo xtask test`: the whole test suite (unit, integration, doc,
//!   trybuild), in release mode so wasmtime is built once;
//! - `cargo xtask bench`: the benchmark report (BENCHMARKS.md), with
//!   `-- --quick` for a short run;
//! - `cargo xtask soak [-- N]`: the long soak (1M mixed invocations by
//!   default; RELIABILITY.md);
//! - `cargo xtask components`: builds the JavaScript and Python components
//!   (tests and examples) into `target/components`, installing
//!   componentize-js and componentize-py first (test and quickstart do
//!   this themselves);
//! - `cargo xtask ci`: what `.ci/run` runs: test, fmt check, clippy.
//!
//! Set-up: `rustup toolchain install` in the repository installs the
//! toolchain, components and the `wasm32-wasip1` target that
//! `rust-toolchain.toml` names (a plain `cargo` call does not install
//! targets).

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprintln!("usage: cargo xtask <quickstart|test|components|bench|soak|ci> [extra args]");
        return ExitCode::from(2);
    };
    let extra = &args[1..];
    let result = setup().and_then(|()| match task.as_str() {
        "quickstart" => components().and_then(|()| run_built("quickstart", extra)),
        "test" => test(extra),
        "components" => components(),
        // The report has component rows: the JS/Python components first.
        "bench" => components().and_then(|()| run_built("report", extra)),
        "soak" => run_built("soak", extra),
        "ci" => test(extra)
            .and_then(|()| fuzz_build())
            .and_then(|()| cargo(&["fmt", "--all", "--check"], &[]))
            .and_then(|()| {
                cargo(
                    &[
                        "clippy",
                        "--workspace",
                        "--all-targets",
                        "--",
                        "-D",
                        "warnings",
                    ],
                    &[],
                )
            }),
        other => Err(format!(
            "unknown task `{other}`; expected quickstart, test, components, bench, soak or ci"
        )),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every test, bench (run once each as a test, so they never rot),
/// example and doctest, all in the release profile so wasmtime is built
/// once (`--all-targets` skips doctests, hence the second call); then the
/// loom model checks of the admission gate, which need `--cfg loom` and so
/// their own (small) target dir.
fn test(extra: &[String]) -> Result<(), String> {
    ensure_aws_cli();
    ensure_nats_server();
    components()?;
    cargo(
        &["test", "--release", "--workspace", "--all-targets"],
        extra,
    )?;
    cargo(&["test", "--release", "--workspace", "--doc"], extra)?;
    loom()
}

/// The JavaScript and Python component projects the tests and the
/// quickstart run: (project directory, output name).
const COMPONENT_PROJECTS: &[(&str, &str)] = &[
    ("test-guests/components/probe-js", "probe-js"),
    ("test-guests/components/probe-py", "probe-py"),
    ("test-guests/components/http-js", "http-js"),
    ("examples/components/hello-js", "hello-js"),
    ("examples/components/hello-python", "hello-python"),
    ("examples/components/slugs-js", "slugs-js"),
    ("examples/components/csv-python", "csv-python"),
];

/// The target directory (`CARGO_TARGET_DIR`, else `target`), as
/// test-guests' build script computes it.
fn target_dir() -> std::path::PathBuf {
    let root = root();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// Builds the JavaScript and Python components into
/// `<target>/components/` (installing componentize-js and componentize-py
/// into `<target>/toolchains` unless `FNHOST_TOOLCHAINS` says where), two
/// at a time; unchanged projects are not rebuilt.
fn components() -> Result<(), String> {
    use fnhost_guest_build::{Toolchains, build_component};
    let root = root();
    let out = target_dir().join("components");
    let tools = match std::env::var_os("FNHOST_TOOLCHAINS") {
        Some(d) => Toolchains::at(d),
        None => Toolchains::at(target_dir().join("toolchains")),
    };
    // Install both first (one npm, one pip), then build in two lanes.
    tools.componentize_js().map_err(|e| format!("{e:#}"))?;
    tools.componentize_py().map_err(|e| format!("{e:#}"))?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((dir, name)) = COMPONENT_PROJECTS.get(i) else {
                        break;
                    };
                    let wasm = out.join(format!("{name}.wasm"));
                    match build_component(&root.join(dir), &wasm, &tools) {
                        Ok(b) if b.rebuilt => eprintln!("xtask: built {}", b.wasm.display()),
                        Ok(_) => {}
                        Err(e) => failures.lock().unwrap().push(format!("{dir}: {e:#}")),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "building components failed:\n{}",
            failures.join("\n")
        ))
    }
}

/// `RUSTFLAGS="--cfg loom" cargo test -p fnhost-loom-tests` in
/// `target/loom`: the gate in host/src/limits.rs under every interleaving.
fn loom() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let args = [
        "test",
        "--release",
        "-p",
        "fnhost-loom-tests",
        "--target-dir",
        "target/loom",
    ];
    eprintln!("xtask: RUSTFLAGS=\"--cfg loom\" cargo {}", args.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .env("RUSTFLAGS", "--cfg loom")
        .current_dir(root())
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the loom model checks failed ({status})"))
    }
}

/// Builds the cargo-fuzz targets (on stable, without sanitizers: this
/// checks they compile; `fuzz/run.sh` fuzzes with nightly).
fn fuzz_build() -> Result<(), String> {
    cargo(
        &["build", "--release", "--manifest-path", "fuzz/Cargo.toml"],
        &[],
    )
}

/// Builds exactly what the tests build (`cargo test --no-run`: same
/// profile, feature set and crate types, so wasmtime is not compiled a
/// second time, and the guest crates are not linked as host cdylibs,
/// which `cargo build --workspace` would try and fail at), then runs the
/// built binary at `rel` (under `target/release`) with `extra` arguments.
fn run_built(rel: &str, extra: &[String]) -> Result<(), String> {
    cargo(
        &[
            "test",
            "--release",
            "--workspace",
            "--all-targets",
            "--no-run",
        ],
        &[],
    )?;
    let exe = target_dir().join("release").join(rel);
    eprintln!("xtask: {}", exe.display());
    let status = Command::new(&exe)
        .args(extra)
        .status()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{rel} failed ({status})"))
    }
}

/// The gateway tests drive the real AWS CLI (`awscli` from PyPI) and
/// boto3 (for what the CLI cannot do: response streams, waiters from a
/// program).
fn ensure_aws_cli() {
    let succeeds = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let present = succeeds("aws", &["--version"]) && succeeds("python3", &["-c", "import boto3"]);
    if !present {
        eprintln!(
            "xtask: installing the AWS CLI and boto3 for the gateway tests (pip install awscli boto3)"
        );
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "awscli", "boto3"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "xtask: could not install awscli and boto3; the AWS CLI gateway tests will fail"
            );
        }
    }
}

/// The cluster tests start a real NATS server (Debian's `nats-server`,
/// which includes JetStream).
fn ensure_nats_server() {
    let present = [
        "nats-server",
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
    ]
    .iter()
    .any(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if present {
        return;
    }
    eprintln!("xtask: installing nats-server for the cluster tests (apt-get install nats-server)");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let apt = |args: &[&str]| {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        c.args(args).status().is_ok_and(|s| s.success())
    };
    let ok = apt(&["install", "-y", "-q", "nats-server"])
        || (apt(&["update", "-q"]) && apt(&["install", "-y", "-q", "nats-server"]));
    if !ok {
        eprintln!("xtask: could not install nats-server; the cluster tests will fail");
    }
}

/// The guest targets `rust-toolchain.toml` lists: core modules and
/// components.
const WASM_TARGETS: &[&str] = &["wasm32-wasip1", "wasm32-wasip2"];

/// Installs what `rust-toolchain.toml` lists (toolchain, components and
/// the wasm targets). Idempotent and quick when all is there.
fn setup() -> Result<(), String> {
    let root = root();
    let installed = Command::new("rustup")
        .arg("toolchain")
        .arg("install")
        .current_dir(&root)
        .status();
    match installed {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("`rustup toolchain install` failed ({s})")),
        Err(e) => {
            eprintln!(
                "xtask: rustup not found ({e}); assuming the toolchain and wasm32-wasip1 target are installed"
            );
            return Ok(());
        }
    }
    // Older rustup versions install the toolchain without its targets.
    let targets = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(&root)
        .output()
        .map_err(|e| e.to_string())?;
    let installed = String::from_utf8_lossy(&targets.stdout).into_owned();
    for target in WASM_TARGETS {
        if !installed.lines().any(|l| l.trim() == *target) {
            let s = Command::new("rustup")
                .args(["target", "add", target])
                .current_dir(&root)
                .status()
                .map_err(|e| e.to_string())?;
            if !s.success() {
                return Err(format!("`rustup target add {target}` failed"));
            }
        }
    }
    Ok(())
}

fn cargo(args: &[&str], extra: &[String]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = root();
    eprintln!("xtask: cargo {} {}", args.join(" "), extra.join(" "));
    let status = Command::new(cargo)
        .args(args)
        .args(extra)
        .current_dir(root)
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}
