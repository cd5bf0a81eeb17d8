//! The `fnhost` binary as a user runs it: `invoke`, `serve` with a config
//! file (and its errors), graceful shutdown on SIGTERM, `new` + `build`.

use std::process::{Command, Stdio};
use std::time::Duration;

use fnhost_test_guests as guests;

#[path = "support/listening.rs"]
mod listening;

fn fnhost() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fnhost"));
    c.env("FNHOST_LOG", "warn").env(
        "FNHOST_CACHE_DIR",
        std::env::temp_dir().join("fnhost-cli-test-cache"),
    );
    c
}

#[test]
fn invoke_prints_output_and_report_and_fails_typed() {
    let out = fnhost()
        .args([
            "invoke",
            guests::HELLO,
            "--payload",
            r#"{"name":"Cli"}"#,
            "--memory",
            "64MB",
            "--env",
            "GREETING=Hey",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout,
        "{\"message\":\"Hey, Cli!\",\"function\":\"hello\"}\n"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("greeting Cli (request "), "{stderr}");
    assert!(
        stderr.contains("REPORT RequestId: ") && stderr.contains("Memory Size: 64 MB"),
        "{stderr}"
    );

    // A function error: exit code 1 and the typed error.
    let out = fnhost()
        .args(["invoke", guests::HELLO, "--payload", r#"{"name":""}"#])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("error (guest_error): InvalidName: name must not be empty"),
        "{stderr}"
    );

    // A timeout, from a file payload.
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("p.json");
    std::fs::write(&payload, r#"{"op":"spin"}"#).unwrap();
    let out = fnhost()
        .args([
            "invoke",
            guests::PROBE,
            "--timeout",
            "100ms",
            "--payload-file",
        ])
        .arg(&payload)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("error (timeout): invocation timed out after 100ms")
    );

    // Bad flags and bad modules: exit code 2 with the reason.
    let out = fnhost()
        .args(["invoke", guests::HELLO, "--memory", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--memory"));
    let out = fnhost().args(["invoke", "/no/such.wasm"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such.wasm"));
}

#[test]
fn config_errors_name_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fnhost.toml");
    for (text, want) in [
        (
            "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\ncolour = \"blue\"\n",
            "unknown field `colour`",
        ),
        (
            "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\ntimeout = \"soon\"\n",
            "key `function[0].timeout`",
        ),
        (
            "[[function]]\nname = \"a\"\nmodule = \"missing.wasm\"\n",
            "missing.wasm",
        ),
        ("listen = 7\n", "invalid type"),
    ] {
        std::fs::write(&cfg, text).unwrap();
        let out = fnhost()
            .args(["serve", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{want:?} missing from {stderr}");
        assert!(
            stderr.contains("fnhost.toml") || want == "missing.wasm",
            "file not named: {stderr}"
        );
    }
}

#[test]
fn serve_answers_then_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fnhost.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\n[[function]]\nname = \"hello\"\nmodule = {:?}\nmemory = \"64MB\"\nroutes = [\"POST /greet\"]\n",
            guests::HELLO
        ),
    )
    .unwrap();
    let mut child = fnhost()
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--function", &format!("probe={}", guests::PROBE)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let base = listening::listening_base(&mut child, "fnhost serve");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let r = c
            .post(format!("{base}/2015-03-31/functions/hello/invocations"))
            .body(r#"{"name":"Srv"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.text().await.unwrap(),
            r#"{"message":"Hello, Srv!","function":"hello"}"#
        );
        // A slow invocation in flight when SIGTERM arrives still finishes.
        let slow = tokio::spawn({
            let c = c.clone();
            let url = format!("{base}/2015-03-31/functions/probe/invocations");
            async move {
                c.post(url)
                    .body(r#"{"op":"sleep","ms":500}"#)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap()
            }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        assert_eq!(slow.await.unwrap(), "\"slept\"");
    });
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn new_then_build_then_invoke() {
    let dir = tempfile::tempdir().unwrap();
    let out = fnhost()
        .current_dir(dir.path())
        .args(["new", "my-fn"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Reuse one target dir across runs so the SDK's deps compile once.
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold-test");
    let out = fnhost()
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "my-fn"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(wasm.ends_with("wasm32-wasip1/release/my_fn.wasm"), "{wasm}");
    let out = fnhost()
        .args(["invoke", &wasm, "--payload", r#"{"name":"New"}"#])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "{\"message\":\"Hello, New!\"}\n"
    );
    // Scaffolding refuses to overwrite.
    let out = fnhost()
        .current_dir(dir.path())
        .args(["new", "my-fn"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `fnhost new --lang L && fnhost build && fnhost invoke` for each
/// component language: the toolchains `cargo xtask` installed under the
/// target dir are used (a fresh user's are installed on first build).
#[test]
fn new_then_build_then_invoke_components() {
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let dir = tempfile::tempdir().unwrap();
    for (lang, name, language) in [
        ("js", "hello-js-fn", "javascript"),
        ("python", "hello-py-fn", "python"),
        ("rust-wasip2", "hello-rs-fn", "rust"),
    ] {
        let out = fnhost()
            .current_dir(dir.path())
            .args(["new", name, "--lang", lang])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = fnhost()
            .current_dir(dir.path())
            .env("FNHOST_TOOLCHAINS", target.join("toolchains"))
            .env("CARGO_TARGET_DIR", target.join("scaffold-test"))
            .args(["build", name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{lang}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let wasm = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(
            wasm.ends_with(&format!("{name}/target/{name}.wasm")),
            "{wasm}"
        );
        let out = fnhost()
            .args(["invoke", &wasm, "--payload", r#"{"name":"x"}"#])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{lang}: {stderr}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{{\"message\":\"Hello, x!\",\"language\":\"{language}\"}}\n"),
            "{lang}"
        );
        assert!(
            stderr.contains("greeting x") && stderr.contains("REPORT RequestId: "),
            "{stderr}"
        );
        // A handled error: exit code 1, the typed error.
        let out = fnhost()
            .args(["invoke", &wasm, "--payload", r#"{"name":""}"#])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{lang}");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("error (guest_error): InvalidRequest: name must be a non-empty string"),
            "{lang}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
