//! The Lambda control plane against a real `fnhost serve`, driven by the
//! real AWS CLI (botocore signs every request with SigV4; the server checks
//! it with the admin token as the secret access key, or with a configured
//! key pair) and by plain HTTP for what the CLI cannot show.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use fnhost_test_guests as guests;
use serde_json::{Value, json};

#[path = "support/listening.rs"]
mod listening;

const TOKEN: &str = "control-plane-test-token";
const KEY_ID: &str = "AKIDCONTROLPLANE";
const KEY_SECRET: &str = "a-configured-secret-for-the-test";

/// An `fnhost serve` process with the control API on, killed on drop.
struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fnhost"))
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-key"])
            .arg(format!("{KEY_ID}={KEY_SECRET}"))
            .env("FNHOST_ADMIN_TOKEN", TOKEN)
            .env("FNHOST_LOG", "warn")
            .env("FNHOST_CACHE_DIR", dir.path().join("cache"))
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let base = listening::listening_base(&mut child, "the server");
        Server {
            child,
            base,
            _dir: dir,
        }
    }

    /// Runs the AWS CLI's `lambda` command signed as `key_id`/`secret`.
    fn aws_as(&self, key_id: &str, secret: &str, args: &[&str]) -> Output {
        Command::new("aws")
            .args([
                "--endpoint-url",
                &self.base,
                "--region",
                "us-east-1",
                "--output",
                "json",
                "lambda",
            ])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_MAX_ATTEMPTS", "1")
            .env_remove("AWS_PROFILE")
            .output()
            .expect("the AWS CLI (`pip install awscli`; cargo xtask test installs it)")
    }

    /// The AWS CLI with the admin token as the secret (any key id).
    fn aws(&self, args: &[&str]) -> Output {
        self.aws_as("any-key-id", TOKEN, args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CLI's JSON output of a call that must succeed.
fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The error line of a call that must fail.
fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A zip archive holding `module` as `name` (deflated), written into `dir`.
fn zip_file(dir: &Path, file: &str, entries: &[(&str, &[u8])]) -> String {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(bytes).unwrap();
    }
    let path = dir.join(file);
    std::fs::write(&path, w.finish().unwrap().into_inner()).unwrap();
    format!("fileb://{}", path.display())
}

/// `GET path` with no credentials; the whole response, header names
/// lower-cased as hyper sends them.
fn unsigned_get(base: &str, path: &str) -> String {
    use std::io::Read as _;
    let addr = base.strip_prefix("http://").unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_aws_cli_signs_with_sigv4_and_deploys_a_zip() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let hello = std::fs::read(guests::HELLO).unwrap();
    let package = zip_file(
        dir.path(),
        "hello.zip",
        &[("README.md", b"hi"), ("hello.wasm", &hello)],
    );
    let created = ok(&s.aws(&[
        "create-function",
        "--function-name",
        "hi",
        "--runtime",
        "provided.al2023",
        "--role",
        "arn:aws:iam::000000000000:role/fnhost",
        "--handler",
        "hello.handler",
        "--zip-file",
        &package,
    ]));
    assert_eq!(created["FunctionName"], "hi");
    assert_eq!(created["State"], "Active");

    // Invoke it through the CLI, signed with the configured key pair.
    let out = dir.path().join("out.json");
    let meta = ok(&s.aws_as(
        KEY_ID,
        KEY_SECRET,
        &[
            "invoke",
            "--function-name",
            "hi",
            "--payload",
            r#"{"name":"Zip"}"#,
            out.to_str().unwrap(),
        ],
    ));
    assert_eq!(meta["StatusCode"], 200);
    let answer: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(answer, json!({"message": "Hello, Zip!", "function": "hi"}));
    let listed = ok(&s.aws_as(KEY_ID, KEY_SECRET, &["list-functions"]));
    let names: Vec<&str> = listed["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FunctionName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hi"]);

    // A wrong secret, a configured key id with the token as its secret,
    // and no signature at all: refused, nothing changed.
    let err = failed(&s.aws_as(
        "any-key-id",
        "not-the-token",
        &["delete-function", "--function-name", "hi"],
    ));
    assert!(err.contains("InvalidSignatureException"), "{err}");
    let err = failed(&s.aws_as(KEY_ID, TOKEN, &["delete-function", "--function-name", "hi"]));
    assert!(err.contains("InvalidSignatureException"), "{err}");
    let r = unsigned_get(&s.base, "/2015-03-31/functions/");
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains("x-amzn-errortype: AccessDeniedException"), "{r}");
    assert_eq!(
        ok(&s.aws(&["get-function", "--function-name", "hi"]))["Configuration"]["FunctionName"],
        "hi"
    );

    // A package that is not one: InvalidParameterValueException naming why.
    let notes = zip_file(dir.path(), "notes.zip", &[("notes.txt", b"no module here")]);
    let err = failed(&s.aws(&[
        "create-function",
        "--function-name",
        "empty",
        "--role",
        "arn:aws:iam::000000000000:role/fnhost",
        "--zip-file",
        &notes,
    ]));
    assert!(err.contains("InvalidParameterValueException"), "{err}");
    assert!(err.contains("the archive holds no .wasm entry"), "{err}");

    // (The CLI prints the HTTP status of an operation with no output.)
    assert_eq!(
        ok(&s.aws(&["delete-function", "--function-name", "hi"])),
        json!({"StatusCode": 204})
    );
    let err = failed(&s.aws(&["get-function", "--function-name", "hi"]));
    assert!(err.contains("ResourceNotFoundException"), "{err}");
}

#[test]
fn reads_answer_per_version_and_alias_and_a_qualified_delete_keeps_the_function() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let hello = std::fs::read(guests::HELLO).unwrap();
    let package = zip_file(dir.path(), "hello.zip", &[("hello.wasm", &hello)]);
    let created = ok(&s.aws(&[
        "create-function",
        "--function-name",
        "hi",
        "--role",
        "arn:aws:iam::000000000000:role/fnhost",
        "--zip-file",
        &package,
    ]));
    assert_eq!(created["Version"], "1");

    let latest = ok(&s.aws(&["get-function-configuration", "--function-name", "hi"]));
    assert_eq!(latest["Version"], "$LATEST");
    assert_eq!(latest["LastUpdateStatus"], "Successful");
    assert_eq!(
        latest["FunctionArn"],
        "arn:aws:lambda:local:000000000000:function:hi"
    );
    let revision = latest["RevisionId"].as_str().unwrap().to_string();
    assert_eq!(revision.len(), 36);
    let one = ok(&s.aws(&[
        "get-function-configuration",
        "--function-name",
        "hi",
        "--qualifier",
        "1",
    ]));
    assert_eq!(one["Version"], "1");
    assert_eq!(
        one["FunctionArn"],
        "arn:aws:lambda:local:000000000000:function:hi:1"
    );
    let versions = ok(&s.aws(&["list-versions-by-function", "--function-name", "hi"]));
    let listed: Vec<&str> = versions["Versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Version"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["$LATEST", "1"]);
    let err = failed(&s.aws(&[
        "get-function-configuration",
        "--function-name",
        "hi",
        "--qualifier",
        "7",
    ]));
    assert!(err.contains("ResourceNotFoundException"), "{err}");

    // Aliases: create, read, update without FunctionVersion (it stays).
    let alias = ok(&s.aws(&[
        "create-alias",
        "--function-name",
        "hi",
        "--name",
        "live",
        "--function-version",
        "1",
    ]));
    assert_eq!(
        alias["AliasArn"],
        "arn:aws:lambda:local:000000000000:function:hi:live"
    );
    let got = ok(&s.aws(&["get-alias", "--function-name", "hi", "--name", "live"]));
    assert_eq!(got["FunctionVersion"], "1");
    assert_ne!(
        got["RevisionId"],
        json!(revision),
        "the alias changed the function's revision"
    );
    let updated = ok(&s.aws(&[
        "update-alias",
        "--function-name",
        "hi",
        "--name",
        "live",
        "--description",
        "prod",
    ]));
    assert_eq!(updated["FunctionVersion"], "1");
    let aliases = ok(&s.aws(&["list-aliases", "--function-name", "hi"]));
    assert_eq!(aliases["Aliases"].as_array().unwrap().len(), 1);
    let via_alias = ok(&s.aws(&["get-function", "--function-name", "hi:live"]));
    assert_eq!(via_alias["Configuration"]["Version"], "1");
    assert_eq!(
        via_alias["Configuration"]["FunctionArn"],
        "arn:aws:lambda:local:000000000000:function:hi:live"
    );

    // A qualified delete deletes that version only: here refused (the
    // alias points to it) and the function is untouched.
    let err = failed(&s.aws(&[
        "delete-function",
        "--function-name",
        "hi",
        "--qualifier",
        "1",
    ]));
    assert!(err.contains("ResourceConflictException"), "{err}");
    let err = failed(&s.aws(&[
        "delete-function",
        "--function-name",
        "hi",
        "--qualifier",
        "live",
    ]));
    assert!(
        err.contains("InvalidParameterValueException") && err.contains("DeleteAlias"),
        "{err}"
    );
    let err = failed(&s.aws(&[
        "delete-function",
        "--function-name",
        "hi",
        "--qualifier",
        "$LATEST",
    ]));
    assert!(err.contains("InvalidParameterValueException"), "{err}");
    assert_eq!(
        ok(&s.aws(&["get-function", "--function-name", "hi"]))["Configuration"]["FunctionName"],
        "hi"
    );

    let settings = ok(&s.aws(&["get-account-settings"]));
    assert_eq!(settings["AccountUsage"]["FunctionCount"], 1);
    assert_eq!(settings["AccountLimit"]["ConcurrentExecutions"], 1000);
}

/// Sends headers promising a large body, sends none, and returns what the
/// server answers (within 10 s): a refusal that needs no body must come
/// without the body being read.
fn answer_without_body(base: &str, authorization: &str) -> String {
    use std::io::Read as _;
    let addr = base.strip_prefix("http://").unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        c,
        "POST /2015-03-31/functions HTTP/1.1\r\nhost: {addr}\r\nauthorization: {authorization}\r\ncontent-length: 60000000\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = c.read(&mut buf).expect("an answer before the body");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn credentials_are_checked_before_a_body_is_read() {
    let s = Server::start();
    let r = answer_without_body(&s.base, "Bearer wrong-token");
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains("AccessDeniedException"), "{r}");
    // SigV4 without X-Amz-Date: malformed, refused at once.
    let r = answer_without_body(
        &s.base,
        "AWS4-HMAC-SHA256 Credential=k/20261203/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
    );
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains("IncompleteSignatureException"), "{r}");
}
