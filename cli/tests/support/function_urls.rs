//! Function URLs through the real AWS CLI (create, get, update, list,
//! delete) and requests to them from botocore's SigV4 signer and a plain
//! HTTP client (`url_request.py`): both addressing forms, the payload 2.0
//! event, CORS, AWS_IAM, RESPONSE_STREAM, and a URL going with its alias.

use serde_json::{Value, json};

use super::{Endpoint, failed, ok, zip_file};

/// One request to `r`: `host` is the Host header (a URL's host name, or
/// `r`'s own address for the path-prefix form).
fn request(r: &Endpoint, method: &str, host: &str, path: &str, extra: Value) -> Value {
    let connect = r.base.strip_prefix("http://").unwrap();
    let mut req = json!({"method": method, "connect": connect, "host": host, "path": path});
    for (k, v) in extra.as_object().unwrap() {
        req[k] = v.clone();
    }
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/url_request.py"
        ))
        .arg(req.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The event the echo guest answered with.
fn event(answer: &Value) -> Value {
    assert_eq!(answer["status"], 200, "{answer}");
    serde_json::from_str(answer["body"].as_str().unwrap()).unwrap()
}

/// The URL id and host name of a `FunctionUrl`, checking its form and
/// that it names `r`'s port.
fn id_and_host(r: &Endpoint, url: &Value) -> (String, String) {
    let url = url.as_str().unwrap();
    let port = r.base.rsplit_once(':').unwrap().1;
    let host = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix('/'))
        .unwrap();
    let (id, rest) = host.split_once('.').unwrap();
    assert_eq!(rest, format!("lambda-url.local.localhost:{port}"), "{url}");
    assert!(
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{url}"
    );
    (id.to_string(), host.to_string())
}

/// Changes through `w`, reads and requests through `r`.
pub(super) fn url_cycle(w: &Endpoint, r: &Endpoint) {
    let dir = tempfile::tempdir().unwrap();
    let echo = std::fs::read(fnhost_test_guests::ECHO).unwrap();
    let package = zip_file(dir.path(), "web.zip", &[("web.wasm", &echo)]);
    ok(&w.aws(&[
        "create-function",
        "--function-name",
        "web",
        "--runtime",
        "provided.al2023",
        "--role",
        "arn:aws:iam::000000000000:role/web",
        "--handler",
        "web.handler",
        "--publish",
        "--zip-file",
        &package,
    ]));
    ok(&w.aws(&[
        "create-alias",
        "--function-name",
        "web",
        "--name",
        "live",
        "--function-version",
        "1",
    ]));

    // The function's own URL: public, with CORS.
    let cors = json!({
        "AllowOrigins": ["https://app.example"],
        "AllowMethods": ["GET", "POST"],
        "AllowHeaders": ["x-token"],
        "ExposeHeaders": ["x-amzn-requestid"],
        "MaxAge": 60
    });
    let made = ok(&w.aws(&[
        "create-function-url-config",
        "--function-name",
        "web",
        "--auth-type",
        "NONE",
        "--cors",
        &cors.to_string(),
    ]));
    assert_eq!(
        (
            &made["FunctionArn"],
            &made["AuthType"],
            &made["InvokeMode"],
            &made["Cors"]
        ),
        (
            &json!("arn:aws:lambda:local:000000000000:function:web"),
            &json!("NONE"),
            &json!("BUFFERED"),
            &cors
        )
    );
    assert!(made["CreationTime"].as_str().unwrap().ends_with("+0000"));
    let err = failed(&w.aws(&[
        "create-function-url-config",
        "--function-name",
        "web",
        "--auth-type",
        "NONE",
    ]));
    assert!(err.contains("ResourceConflictException"), "{err}");
    for (qualifier, want) in [
        ("1", "InvalidParameterValueException"),
        ("nope", "ResourceNotFoundException"),
    ] {
        let err = failed(&w.aws(&[
            "create-function-url-config",
            "--function-name",
            "web",
            "--qualifier",
            qualifier,
            "--auth-type",
            "NONE",
        ]));
        assert!(err.contains(want), "{qualifier}: {err}");
    }
    let err = failed(&w.aws(&[
        "create-function-url-config",
        "--function-name",
        "web",
        "--auth-type",
        "NONE",
        "--cors",
        r#"{"AllowMethods":["FETCH"]}"#,
    ]));
    assert!(
        err.contains("InvalidParameterValueException") && err.contains("AllowMethods"),
        "{err}"
    );

    // The alias' URL: signed requests only, streamed answers.
    let live = ok(&w.aws(&[
        "create-function-url-config",
        "--function-name",
        "web",
        "--qualifier",
        "live",
        "--auth-type",
        "AWS_IAM",
        "--invoke-mode",
        "RESPONSE_STREAM",
    ]));
    assert_eq!(
        live["FunctionArn"],
        "arn:aws:lambda:local:000000000000:function:web:live"
    );

    // Reads on `r` (caught up with every change) name `r`'s port.
    let got = ok(&r.aws(&["get-function-url-config", "--function-name", "web"]));
    let (id, host) = id_and_host(r, &got["FunctionUrl"]);
    assert_eq!(id_and_host(w, &made["FunctionUrl"]).0, id);
    assert_eq!((&got["Cors"], &got["AuthType"]), (&cors, &json!("NONE")));
    assert_eq!(got["LastModifiedTime"], got["CreationTime"]);
    // One item per page: the CLI follows NextMarker.
    let listed = ok(&r.aws(&[
        "list-function-url-configs",
        "--function-name",
        "web",
        "--page-size",
        "1",
    ]));
    let arns: Vec<&Value> = listed["FunctionUrlConfigs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["FunctionArn"])
        .collect();
    assert_eq!(arns, [&made["FunctionArn"], &live["FunctionArn"]]);
    let live_got = ok(&r.aws(&[
        "get-function-url-config",
        "--function-name",
        "web",
        "--qualifier",
        "live",
    ]));
    let (live_id, live_host) = id_and_host(r, &live_got["FunctionUrl"]);
    assert_ne!(live_id, id);

    // By host name: every path is the function's, the Lambda API's too.
    let origin = json!({"Origin": "https://app.example"});
    let answer = request(
        r,
        "POST",
        &host,
        "/some/path?x=1&x=2",
        json!({"headers": origin, "body": "hi"}),
    );
    let e = event(&answer);
    let ctx = &e["requestContext"];
    assert_eq!(
        (
            &e["version"],
            &e["routeKey"],
            &e["rawPath"],
            &e["rawQueryString"],
            &e["queryStringParameters"],
            &e["body"],
            &e["isBase64Encoded"]
        ),
        (
            &json!("2.0"),
            &json!("$default"),
            &json!("/some/path"),
            &json!("x=1&x=2"),
            &json!({"x": "1,2"}),
            &json!("hi"),
            &json!(false)
        )
    );
    assert_eq!(
        (
            &ctx["apiId"],
            &ctx["domainPrefix"],
            &ctx["domainName"],
            &ctx["routeKey"],
            &ctx["stage"],
            &ctx["http"]["method"],
            &ctx["http"]["path"]
        ),
        (
            &json!(id),
            &json!(id),
            &json!(host),
            &json!("$default"),
            &json!("$default"),
            &json!("POST"),
            &json!("/some/path")
        )
    );
    assert_eq!(ctx["requestId"], answer["headers"]["x-amzn-requestid"]);
    // Lambda's `time`: 04/Dec/2026:01:02:03 +0000.
    let time = ctx["time"].as_str().unwrap();
    assert_eq!(
        (
            time.len(),
            &time[2..3],
            &time[6..7],
            &time[11..12],
            &time[20..]
        ),
        (26, "/", "/", ":", " +0000"),
        "{time}"
    );
    assert!(ctx["timeEpoch"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(ctx.get("authorizer").is_none(), "{ctx}");
    assert_eq!(
        (
            &answer["headers"]["access-control-allow-origin"],
            &answer["headers"]["access-control-expose-headers"]
        ),
        (&json!("https://app.example"), &json!("x-amzn-requestid"))
    );
    let api = event(&request(
        r,
        "GET",
        &host,
        "/2015-03-31/functions",
        json!({}),
    ));
    assert_eq!(api["rawPath"], "/2015-03-31/functions");

    // By path prefix: the function sees the path without it.
    let own = r.base.strip_prefix("http://").unwrap();
    let e = event(&request(
        r,
        "GET",
        own,
        &format!("/lambda-url/{id}/p/q"),
        json!({}),
    ));
    assert_eq!(
        (&e["rawPath"], &e["requestContext"]["apiId"]),
        (&json!("/p/q"), &json!(id))
    );
    let e = event(&request(
        r,
        "GET",
        own,
        &format!("/lambda-url/{id}"),
        json!({}),
    ));
    assert_eq!(e["rawPath"], "/");

    // CORS: a preflight is answered without the function; an origin not
    // listed gets no Access-Control-Allow-Origin.
    let pre = request(
        r,
        "OPTIONS",
        &host,
        "/x",
        json!({"headers": {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}}),
    );
    assert_eq!((&pre["status"], &pre["body"]), (&json!(200), &json!("")));
    assert_eq!(
        (
            &pre["headers"]["access-control-allow-origin"],
            &pre["headers"]["access-control-allow-methods"],
            &pre["headers"]["access-control-allow-headers"],
            &pre["headers"]["access-control-max-age"]
        ),
        (
            &json!("https://app.example"),
            &json!("GET,POST"),
            &json!("x-token"),
            &json!("60")
        )
    );
    let other = request(
        r,
        "GET",
        &host,
        "/x",
        json!({"headers": {"Origin": "https://evil.example"}}),
    );
    assert_eq!(other["status"], 200);
    assert!(
        other["headers"]
            .get("access-control-allow-origin")
            .is_none(),
        "{other}"
    );

    // AWS_IAM: unsigned and wrongly signed requests are 403 and run
    // nothing; a request botocore signed with the admin credentials runs,
    // and the function sees who signed it.
    let unsigned = request(r, "GET", &live_host, "/", json!({}));
    assert_eq!(unsigned["status"], 403, "{unsigned}");
    let wrong = request(
        r,
        "GET",
        &live_host,
        "/",
        json!({"sign": ["any-key-id", "not-the-token"]}),
    );
    assert_eq!(wrong["status"], 403, "{wrong}");
    let signed = request(
        r,
        "POST",
        &live_host,
        "/s?a=b",
        json!({"sign": ["any-key-id", r.token], "body": "{\"n\":1}"}),
    );
    assert_eq!(signed["status"], 200, "{signed}");
    // RESPONSE_STREAM without a prelude: the output as it is.
    assert_eq!(
        signed["headers"]["content-type"],
        "application/octet-stream"
    );
    let e: Value = serde_json::from_str(signed["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            &e["rawPath"],
            &e["body"],
            &e["requestContext"]["authorizer"]["iam"]["accessKey"]
        ),
        (&json!("/s"), &json!("{\"n\":1}"), &json!("any-key-id"))
    );

    // Update: the alias' URL becomes public and buffered.
    let updated = ok(&w.aws(&[
        "update-function-url-config",
        "--function-name",
        "web",
        "--qualifier",
        "live",
        "--auth-type",
        "NONE",
        "--invoke-mode",
        "BUFFERED",
    ]));
    assert_eq!(
        (&updated["AuthType"], &updated["InvokeMode"]),
        (&json!("NONE"), &json!("BUFFERED"))
    );
    assert_eq!(id_and_host(w, &updated["FunctionUrl"]).0, live_id);
    let read = ok(&r.aws(&[
        "get-function-url-config",
        "--function-name",
        "web",
        "--qualifier",
        "live",
    ]));
    assert_eq!(read["AuthType"], "NONE");
    let public = request(r, "GET", &live_host, "/", json!({}));
    assert_eq!(event(&public)["requestContext"]["apiId"], json!(live_id));
    assert_eq!(public["headers"]["content-type"], "application/json");

    // The alias' URL goes with the alias; the function's with delete.
    ok(&w.aws(&["delete-alias", "--function-name", "web", "--name", "live"]));
    let listed = ok(&r.aws(&["list-function-url-configs", "--function-name", "web"]));
    assert_eq!(listed["FunctionUrlConfigs"].as_array().unwrap().len(), 1);
    assert_eq!(request(r, "GET", &live_host, "/", json!({}))["status"], 404);
    ok(&w.aws(&["delete-function-url-config", "--function-name", "web"]));
    let err = failed(&r.aws(&["get-function-url-config", "--function-name", "web"]));
    assert!(err.contains("ResourceNotFoundException"), "{err}");
    let err = failed(&w.aws(&["delete-function-url-config", "--function-name", "web"]));
    assert!(err.contains("ResourceNotFoundException"), "{err}");
    assert_eq!(request(r, "GET", &host, "/", json!({}))["status"], 404);
    ok(&w.aws(&["delete-function", "--function-name", "web"]));
}
