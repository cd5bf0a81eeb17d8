//! The Lambda control plane against a real `fnhost serve`, driven by the
//! real AWS CLI (botocore signs every request with SigV4; the server checks
//! it with the admin token as the secret access key, or with a configured
//! key pair) and by plain HTTP for what the CLI cannot show.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use fnhost_test_guests as guests;
use serde_json::{Value, json};

#[allow(dead_code)]
#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/function_urls.rs"]
mod function_urls;
#[path = "support/listening.rs"]
mod listening;

const TOKEN: &str = "control-plane-test-token";
const KEY_ID: &str = "AKIDCONTROLPLANE";
const KEY_SECRET: &str = "a-configured-secret-for-the-test";

/// An `fnhost serve` process with the control API on, killed on drop.
struct Server {
    child: Child,
    endpoint: Endpoint,
    _dir: tempfile::TempDir,
}

/// Where the AWS CLI is pointed, and the admin token it signs with.
struct Endpoint {
    base: String,
    token: &'static str,
}

impl std::ops::Deref for Server {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
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
            endpoint: Endpoint { base, token: TOKEN },
            _dir: dir,
        }
    }
}

impl Endpoint {
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
        self.aws_as("any-key-id", self.token, args)
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
        "--publish",
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
    // Well-formed SigV4 headers pass without any secret, so bodies wait
    // for their check in bounded slots: one address holds at most two,
    // the next is refused at once (not queued behind the slow senders).
    let now = chrono::Utc::now();
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=k/{}/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
        now.format("%Y%m%d"),
        "0".repeat(64)
    );
    let addr = s.base.strip_prefix("http://").unwrap();
    let open = || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        write!(
            c,
            "POST /2015-03-31/functions HTTP/1.1\r\nhost: {addr}\r\nx-amz-date: {}\r\nauthorization: {authorization}\r\ncontent-length: 1000\r\n\r\n",
            now.format("%Y%m%dT%H%M%SZ")
        )
        .unwrap();
        c
    };
    let _slow = [open(), open()];
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut third = open();
    third
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = std::io::Read::read(&mut third, &mut buf).expect("an answer at once");
    let r = String::from_utf8_lossy(&buf[..n]);
    assert!(r.starts_with("HTTP/1.1 429"), "{r}");
    assert!(r.contains("TooManyRequestsException"), "{r}");
}

/// `POST path` with `body` and no credentials (an invocation); the body
/// of the answer.
fn unsigned_post(base: &str, path: &str, body: &str) -> String {
    use std::io::Read as _;
    let addr = base.strip_prefix("http://").unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{out}");
    body.to_string()
}

/// base64(SHA-256) of a file, Lambda's `CodeSha256`.
fn code_sha256(zip: &str) -> String {
    use base64::Engine as _;
    let bytes = std::fs::read(zip.strip_prefix("fileb://").unwrap()).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

impl Endpoint {
    /// `aws lambda invoke` of `target` with `payload`: the handler's answer.
    fn invoke(&self, dir: &Path, target: &str, payload: &str) -> Value {
        let out = dir.join("out.json");
        let meta = ok(&self.aws(&[
            "invoke",
            "--function-name",
            target,
            "--payload",
            payload,
            out.to_str().unwrap(),
        ]));
        assert_eq!(meta["StatusCode"], 200, "{meta}");
        assert!(meta.get("FunctionError").is_none(), "{meta}");
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
    }

    /// The `GEN` variable `target` runs with (the probe guest).
    fn generation(&self, target: &str) -> Value {
        let path = format!("/2015-03-31/functions/{target}/invocations");
        let answer: Value =
            serde_json::from_str(&unsigned_post(&self.base, &path, r#"{"op":"env"}"#)).unwrap();
        answer["GEN"].clone()
    }
}

/// `alias`'s version as `r` reads it (the read catches `r` up).
fn alias_version(r: &Endpoint, alias: &str) -> String {
    let a = ok(&r.aws(&["get-alias", "--function-name", "app", "--name", alias]));
    a["FunctionVersion"].as_str().unwrap().to_string()
}

fn versions(s: &Endpoint) -> Vec<String> {
    ok(&s.aws(&["list-versions-by-function", "--function-name", "app"]))["Versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Version"].as_str().unwrap().to_string())
        .collect()
}

/// The deploy cycle a Lambda user runs, with the real AWS CLI and its
/// waiters: create from a zip, update code and configuration (`$LATEST`
/// changes, nothing is published), publish, alias, weighted routing,
/// rollback, delete one version; then function URLs.
#[test]
fn the_aws_cli_runs_a_whole_deploy_cycle() {
    let s = Server::start();
    deploy_cycle(&s, &s);
    function_urls::url_cycle(&s, &s);
}

/// boto3 for what the CLI cannot do from a program: every botocore
/// Lambda waiter through the SDK's own waiter machinery (one attempt
/// each: the state must be there when the call that made it returns),
/// and a response stream.
#[test]
fn boto3_runs_every_waiter_and_reads_a_response_stream() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let hello = std::fs::read(guests::HELLO).unwrap();
    let probe = std::fs::read(guests::PROBE).unwrap();
    let first = zip_file(dir.path(), "1.zip", &[("b3.wasm", &hello)]);
    let second = zip_file(dir.path(), "2.zip", &[("b3.wasm", &probe)]);
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/boto3_cycle.py"
        ))
        .args([&s.base, s.token])
        .args([&first, &second].map(|z| z.strip_prefix("fileb://").unwrap()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let port = s.base.rsplit_once(':').unwrap().1;
    assert_eq!(
        got,
        json!({
            "created": "$LATEST",
            "waited": [
                "function_exists", "function_active", "function_active_v2",
                "function_updated", "function_updated_v2", "published_version_active"
            ],
            "updated": ["$LATEST", "Successful"],
            "published": "1",
            "stream": [200, "1", "\"streamed\"", "complete"],
            "url": format!("lambda-url.local.localhost:{port}/"),
            "urls": 1,
            "deleted": true
        })
    );
}

/// The same deploy cycle on a two-node cluster: every change through the
/// first node, every read and invocation through the second (a control
/// read catches its node up with the shared registry first).
#[test]
fn the_deploy_cycle_runs_across_a_two_node_cluster() {
    let nats = cluster::Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fnhost.toml");
    std::fs::write(&config, "").unwrap();
    let fnhost = Path::new(env!("CARGO_BIN_EXE_fnhost"));
    let nodes: Vec<cluster::Node> = ["n1", "n2"]
        .iter()
        .map(|n| cluster::Node::start_with(fnhost, &nats, n, &config, &dir.path().join(n)))
        .collect();
    let [a, b] = [&nodes[0], &nodes[1]].map(|n| Endpoint {
        base: n.base.clone(),
        token: cluster::TOKEN,
    });
    deploy_cycle(&a, &b);
    function_urls::url_cycle(&a, &b);
}

/// Changes through `w`, reads and invocations through `r`.
fn deploy_cycle(w: &Endpoint, r: &Endpoint) {
    let dir = tempfile::tempdir().unwrap();
    let hello = std::fs::read(guests::HELLO).unwrap();
    let probe = std::fs::read(guests::PROBE).unwrap();
    let v0 = zip_file(dir.path(), "v0.zip", &[("app.wasm", &hello)]);
    let v1 = zip_file(dir.path(), "v1.zip", &[("app.wasm", &probe)]);

    // Create: $LATEST only, with Lambda's digest of the package.
    let created = ok(&w.aws(&[
        "create-function",
        "--function-name",
        "app",
        "--runtime",
        "provided.al2023",
        "--role",
        "arn:aws:iam::000000000000:role/app",
        "--handler",
        "app.handler",
        "--description",
        "the app",
        "--timeout",
        "7",
        "--zip-file",
        &v0,
    ]));
    assert_eq!(created["Version"], "$LATEST");
    assert_eq!(created["CodeSha256"], code_sha256(&v0));
    assert_eq!(
        created["CodeSize"],
        std::fs::metadata(dir.path().join("v0.zip")).unwrap().len()
    );
    assert_eq!(
        (
            &created["Handler"],
            &created["Role"],
            &created["Description"],
            &created["Runtime"],
            &created["Timeout"]
        ),
        (
            &json!("app.handler"),
            &json!("arn:aws:iam::000000000000:role/app"),
            &json!("the app"),
            &json!("provided.al2023"),
            &json!(7)
        )
    );
    let modified = created["LastModified"].as_str().unwrap().to_string();
    assert!(
        modified.len() == 28 && modified.ends_with("+0000"),
        "{modified}"
    );
    ok(&r.aws(&["wait", "function-active-v2", "--function-name", "app"]));
    ok(&r.aws(&["wait", "function-exists", "--function-name", "app"]));
    ok(&r.aws(&["wait", "function-active", "--function-name", "app"]));
    assert_eq!(
        r.invoke(dir.path(), "app", r#"{"name":"v0"}"#),
        json!({"message": "Hello, v0!", "function": "app"})
    );
    assert_eq!(versions(r), ["$LATEST"]);

    // New code: $LATEST changes, no version yet. A stale RevisionId and
    // a dry run change nothing.
    let err = failed(&w.aws(&[
        "update-function-code",
        "--function-name",
        "app",
        "--zip-file",
        &v1,
        "--revision-id",
        "00000000-0000-0000-0000-000000000000",
    ]));
    assert!(err.contains("PreconditionFailedException"), "{err}");
    let dry = ok(&w.aws(&[
        "update-function-code",
        "--function-name",
        "app",
        "--zip-file",
        &v1,
        "--dry-run",
    ]));
    assert_eq!(dry["CodeSha256"], code_sha256(&v1));
    assert_eq!(
        r.invoke(dir.path(), "app", r#"{"name":"still v0"}"#)["message"],
        "Hello, still v0!"
    );
    let revision =
        ok(&r.aws(&["get-function", "--function-name", "app"]))["Configuration"]["RevisionId"]
            .as_str()
            .unwrap()
            .to_string();
    let updated = ok(&w.aws(&[
        "update-function-code",
        "--function-name",
        "app",
        "--zip-file",
        &v1,
        "--revision-id",
        &revision,
    ]));
    assert_eq!(updated["Version"], "$LATEST");
    assert_eq!(updated["CodeSha256"], code_sha256(&v1));
    assert_eq!(updated["Handler"], "app.handler", "settings are kept");
    assert_eq!(updated["Timeout"], 7);
    ok(&r.aws(&["wait", "function-updated-v2", "--function-name", "app"]));
    ok(&r.aws(&["wait", "function-updated", "--function-name", "app"]));
    assert_eq!(r.generation("app"), Value::Null);
    assert_eq!(versions(r), ["$LATEST"]);

    // Publish: version 1; again with nothing changed: still 1. A wrong
    // CodeSha256 publishes nothing.
    let err = failed(&w.aws(&[
        "publish-version",
        "--function-name",
        "app",
        "--code-sha256",
        &code_sha256(&v0),
    ]));
    assert!(err.contains("PreconditionFailedException"), "{err}");
    let one = ok(&w.aws(&[
        "publish-version",
        "--function-name",
        "app",
        "--code-sha256",
        &code_sha256(&v1),
    ]));
    assert_eq!(one["Version"], "1");
    assert_eq!(
        one["FunctionArn"],
        "arn:aws:lambda:local:000000000000:function:app:1"
    );
    assert_eq!(
        ok(&w.aws(&["publish-version", "--function-name", "app"]))["Version"],
        "1"
    );
    assert_eq!(versions(r), ["$LATEST", "1"]);

    // New configuration: $LATEST again (with its environment), then 2.
    let reconfigured = ok(&w.aws(&[
        "update-function-configuration",
        "--function-name",
        "app",
        "--environment",
        "Variables={GEN=two}",
        "--memory-size",
        "256",
    ]));
    assert_eq!(reconfigured["Version"], "$LATEST");
    assert_eq!(reconfigured["MemorySize"], 256);
    assert_eq!(
        reconfigured["Environment"],
        json!({"Variables": {"GEN": "two"}})
    );
    assert_eq!(reconfigured["CodeSha256"], code_sha256(&v1));
    ok(&r.aws(&["wait", "function-updated-v2", "--function-name", "app"]));
    assert_eq!(r.generation("app"), "two");
    assert_eq!(r.generation("app:1"), Value::Null);
    let err = failed(&w.aws(&[
        "update-function-configuration",
        "--function-name",
        "app",
        "--timeout",
        "901",
    ]));
    assert!(
        err.contains("InvalidParameterValueException") && err.contains("Timeout"),
        "{err}"
    );
    assert_eq!(
        ok(&w.aws(&["publish-version", "--function-name", "app"]))["Version"],
        "2"
    );
    ok(&r.aws(&[
        "wait",
        "published-version-active",
        "--function-name",
        "app",
        "--qualifier",
        "2",
    ]));

    // Alias on 1, then 2 with half the traffic still on 1.
    ok(&w.aws(&[
        "create-alias",
        "--function-name",
        "app",
        "--name",
        "live",
        "--function-version",
        "1",
    ]));
    assert_eq!(alias_version(r, "live"), "1");
    assert_eq!(r.generation("app:live"), Value::Null);
    let canary = ok(&w.aws(&[
        "update-alias",
        "--function-name",
        "app",
        "--name",
        "live",
        "--function-version",
        "2",
        "--routing-config",
        "AdditionalVersionWeights={1=0.5}",
    ]));
    assert_eq!(
        canary["RoutingConfig"],
        json!({"AdditionalVersionWeights": {"1": 0.5}})
    );
    assert_eq!(alias_version(r, "live"), "2");
    let seen: std::collections::BTreeSet<String> = (0..40)
        .map(|_| r.generation("app:live").to_string())
        .collect();
    assert_eq!(
        seen,
        ["\"two\"".to_string(), "null".to_string()].into(),
        "both versions serve (a 2^-39 chance of a false failure)"
    );
    assert_eq!(
        r.invoke(dir.path(), "app:live", r#"{"op":"echo","data":7}"#),
        json!(7)
    );

    // Rollback: everything to 1 again.
    let rolled = ok(&w.aws(&[
        "update-alias",
        "--function-name",
        "app",
        "--name",
        "live",
        "--function-version",
        "1",
        "--routing-config",
        "AdditionalVersionWeights={}",
    ]));
    assert_eq!(rolled["FunctionVersion"], "1");
    assert_eq!(alias_version(r, "live"), "1");
    for _ in 0..5 {
        assert_eq!(r.generation("app:live"), Value::Null);
    }

    // An alias may follow $LATEST.
    let edge = ok(&w.aws(&[
        "create-alias",
        "--function-name",
        "app",
        "--name",
        "edge",
        "--function-version",
        "$LATEST",
    ]));
    assert_eq!(edge["FunctionVersion"], "$LATEST");
    assert_eq!(alias_version(r, "edge"), "$LATEST");
    assert_eq!(r.generation("app:edge"), "two");

    // Delete version 2 (nothing points to it): $LATEST keeps its code.
    assert_eq!(
        ok(&w.aws(&[
            "delete-function",
            "--function-name",
            "app",
            "--qualifier",
            "2"
        ])),
        json!({"StatusCode": 204})
    );
    assert_eq!(versions(r), ["$LATEST", "1"]);
    assert_eq!(r.generation("app"), "two");
    let err = failed(&r.aws(&["get-function", "--function-name", "app", "--qualifier", "2"]));
    assert!(err.contains("ResourceNotFoundException"), "{err}");
    // The next publish takes a new number: numbers are never reused.
    assert_eq!(
        ok(&w.aws(&["publish-version", "--function-name", "app"]))["Version"],
        "3"
    );
    assert_eq!(versions(r), ["$LATEST", "1", "3"]);

    // Reserved concurrency is $LATEST's: 0 stops it, published versions
    // keep theirs; removing it makes $LATEST version 3 again.
    let put = |n: &str| {
        ok(&w.aws(&[
            "put-function-concurrency",
            "--function-name",
            "app",
            "--reserved-concurrent-executions",
            n,
        ]))
    };
    assert_eq!(put("3"), json!({"ReservedConcurrentExecutions": 3}));
    let get = || ok(&r.aws(&["get-function-concurrency", "--function-name", "app"]));
    assert_eq!(get(), json!({"ReservedConcurrentExecutions": 3}));
    assert_eq!(
        ok(&r.aws(&["get-function", "--function-name", "app"]))["Concurrency"],
        json!({"ReservedConcurrentExecutions": 3})
    );
    assert_eq!(r.generation("app"), "two");
    assert_eq!(put("0"), json!({"ReservedConcurrentExecutions": 0}));
    assert_eq!(get(), json!({"ReservedConcurrentExecutions": 0}));
    let out = dir.path().join("throttled.json");
    let err = failed(&r.aws(&["invoke", "--function-name", "app", out.to_str().unwrap()]));
    assert!(err.contains("TooManyRequestsException"), "{err}");
    assert_eq!(r.generation("app:3"), "two");
    ok(&w.aws(&["delete-function-concurrency", "--function-name", "app"]));
    // No reservation: `{}`, which the CLI prints as nothing.
    assert_eq!(get(), Value::Null);
    assert_eq!(
        ok(&w.aws(&["publish-version", "--function-name", "app"]))["Version"],
        "3",
        "nothing new to publish"
    );
    let err = failed(&w.aws(&[
        "put-function-concurrency",
        "--function-name",
        "app",
        "--reserved-concurrent-executions",
        "5000",
    ]));
    assert!(
        err.contains("InvalidParameterValueException") && err.contains("unreserved"),
        "{err}"
    );
    // A client context reaches the handler's context as sent; a bad one
    // is refused before anything runs.
    use base64::Engine as _;
    let sent = r#"{"client":{"app_title":"deploy test"},"custom":{"k":"v"}}"#;
    let encoded = base64::engine::general_purpose::STANDARD.encode(sent);
    let out = dir.path().join("context.json");
    ok(&r.aws(&[
        "invoke",
        "--function-name",
        "app:3",
        "--client-context",
        &encoded,
        "--payload",
        r#"{"op":"context"}"#,
        out.to_str().unwrap(),
    ]));
    let seen: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(seen["client_context"], sent);
    let err = failed(&r.aws(&[
        "invoke",
        "--function-name",
        "app:3",
        "--client-context",
        "not base64!",
        out.to_str().unwrap(),
    ]));
    assert!(err.contains("InvalidRequestContentException"), "{err}");

    // Event invoke config: put (replace), update (merge), read through
    // the other node, delete.
    let put = ok(&w.aws(&[
        "put-function-event-invoke-config",
        "--function-name",
        "app",
        "--maximum-retry-attempts",
        "1",
        "--maximum-event-age-in-seconds",
        "600",
        "--destination-config",
        r#"{"OnSuccess":{"Destination":"arn:aws:lambda:us-east-1:000000000000:function:app"}}"#,
    ]));
    assert_eq!(put["MaximumRetryAttempts"], 1);
    let got = ok(&r.aws(&["get-function-event-invoke-config", "--function-name", "app"]));
    assert_eq!(
        (
            &got["MaximumRetryAttempts"],
            &got["MaximumEventAgeInSeconds"],
            &got["DestinationConfig"]["OnSuccess"]["Destination"]
        ),
        (
            &json!(1),
            &json!(600),
            &json!("arn:aws:lambda:local:000000000000:function:app")
        )
    );
    let updated = ok(&w.aws(&[
        "update-function-event-invoke-config",
        "--function-name",
        "app",
        "--maximum-retry-attempts",
        "0",
    ]));
    assert_eq!(
        (
            &updated["MaximumRetryAttempts"],
            &updated["MaximumEventAgeInSeconds"]
        ),
        (&json!(0), &json!(600))
    );
    let err = failed(&w.aws(&[
        "put-function-event-invoke-config",
        "--function-name",
        "app",
        "--destination-config",
        r#"{"OnFailure":{"Destination":"arn:aws:s3:::bucket"}}"#,
    ]));
    assert!(
        err.contains("InvalidParameterValueException") && err.contains("SQS queue"),
        "{err}"
    );
    let err = failed(&w.aws(&[
        "put-function-event-invoke-config",
        "--function-name",
        "app",
        "--qualifier",
        "1",
        "--maximum-retry-attempts",
        "1",
    ]));
    assert!(err.contains("InvalidParameterValueException"), "{err}");
    ok(&w.aws(&[
        "delete-function-event-invoke-config",
        "--function-name",
        "app",
    ]));
    let err = failed(&r.aws(&["get-function-event-invoke-config", "--function-name", "app"]));
    assert!(err.contains("ResourceNotFoundException"), "{err}");
}
