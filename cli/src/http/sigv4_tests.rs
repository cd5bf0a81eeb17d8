//! SigV4 verification against botocore-signed requests, and every way a
//! request can be wrong.

use super::*;

/// Both steps, as the control API runs them.
fn verify(
    req: &Signed<'_>,
    secret: impl Fn(&str) -> Option<String>,
    now: SystemTime,
) -> Result<String, Refusal> {
    check_headers(req.headers, secret, now)?.verify(req)
}

/// 2026-12-03T12:00:00Z, when the vectors below were signed.
const AT: u64 = 1_796_299_200;
const SECRET: &str = "fnhost-admin-token";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", "127.0.0.1:9000".parse().unwrap());
    for (k, v) in pairs {
        h.append(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

fn check(
    method: &str,
    path: &str,
    query: &str,
    h: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<String, String> {
    let req = Signed {
        method,
        path,
        query,
        headers: h,
        body,
    };
    verify(
        &req,
        |id| (id == "AKIDEXAMPLE").then(|| SECRET.to_string()),
        SystemTime::UNIX_EPOCH + Duration::from_secs(now),
    )
    .map_err(|r| r.message)
}

fn auth(headers: &str, sig: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/us-east-1/lambda/aws4_request, SignedHeaders={headers}, Signature={sig}"
    )
}

// Signed by botocore 1.43 (SigV4Auth, service lambda, us-east-1) with
// the clock fixed at AT: the reference these must agree with.
const CREATE_SIG: &str = "088cfa5d9d187d8537a448356032dd61057f2df980e3d8dd5fcd3f451db321cf";
const CREATE_BODY: &[u8] = br#"{"FunctionName":"hello"}"#;

fn create_headers() -> HeaderMap {
    headers(&[
        ("content-type", "application/json"),
        ("x-amz-date", "20261203T120000Z"),
        (
            "authorization",
            &auth("content-type;host;x-amz-date", CREATE_SIG),
        ),
    ])
}

#[test]
fn botocore_signatures_verify() {
    let h = create_headers();
    assert_eq!(
        check("POST", "/2015-03-31/functions", "", &h, CREATE_BODY, AT),
        Ok("AKIDEXAMPLE".into())
    );
    // The SDK's double-encoded path: `hello%3A1` on the wire.
    let h = headers(&[
        ("x-amz-date", "20261203T120000Z"),
        (
            "authorization",
            &auth(
                "host;x-amz-date",
                "6fc006738eb80a87e811f360c5bf368d29b98cf09518435869514673180687ea",
            ),
        ),
    ]);
    assert!(
        check(
            "GET",
            "/2015-03-31/functions/hello%3A1",
            "Qualifier=1",
            &h,
            b"",
            AT
        )
        .is_ok()
    );
    // A session token, and a query with encoded characters out of order.
    let h = headers(&[
        ("x-amz-date", "20261203T120000Z"),
        ("x-amz-security-token", "SESSIONTOKEN/xyz=="),
        (
            "authorization",
            &auth(
                "host;x-amz-date;x-amz-security-token",
                "95b5209b99703713772912b84240afa4931ee38b499b8f7ccb596e204ce6b717",
            ),
        ),
    ]);
    assert!(
        check(
            "GET",
            "/2015-03-31/functions/",
            "MaxItems=10&Marker=a%2Fb%20c",
            &h,
            b"",
            AT
        )
        .is_ok()
    );
    // An ARN in the path and `$LATEST` in the query.
    let h = headers(&[
        ("x-amz-date", "20261203T120000Z"),
        (
            "authorization",
            &auth(
                "host;x-amz-date",
                "f2dda1410555efc0c097debbeda31ef5da3d8dea0aa1f7b09c2bc15508dc2dc5",
            ),
        ),
    ]);
    assert!(
        check(
            "DELETE",
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello",
            "Qualifier=%24LATEST",
            &h,
            b"",
            AT
        )
        .is_ok()
    );
}

#[test]
fn any_change_to_a_signed_request_is_refused() {
    let h = create_headers();
    let mismatch = Err(
        "The request signature we calculated does not match the signature you provided".to_string(),
    );
    let path = "/2015-03-31/functions";
    assert_eq!(
        check("POST", path, "", &h, br#"{"FunctionName":"hellO"}"#, AT),
        mismatch
    );
    assert_eq!(check("PUT", path, "", &h, CREATE_BODY, AT), mismatch);
    assert_eq!(
        check("POST", "/2015-03-31/functionz", "", &h, CREATE_BODY, AT),
        mismatch
    );
    assert_eq!(check("POST", path, "a=1", &h, CREATE_BODY, AT), mismatch);
    let mut other_host = h.clone();
    other_host.insert("host", "127.0.0.1:9001".parse().unwrap());
    assert_eq!(
        check("POST", path, "", &other_host, CREATE_BODY, AT),
        mismatch
    );
    let mut other_type = h.clone();
    other_type.insert("content-type", "text/plain".parse().unwrap());
    assert_eq!(
        check("POST", path, "", &other_type, CREATE_BODY, AT),
        mismatch
    );
    // The wrong secret (another admin token) and an unknown key id.
    let req = Signed {
        method: "POST",
        path,
        query: "",
        headers: &h,
        body: CREATE_BODY,
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(AT);
    let wrong = verify(&req, |_| Some("other".into()), now);
    assert_eq!(wrong.clone().map_err(|r| r.message), mismatch);
    assert_eq!(wrong.unwrap_err().kind, "InvalidSignatureException");
    let unknown = verify(&req, |_| None, now).unwrap_err();
    assert!(unknown.message.contains("unknown access key"));
    assert_eq!(unknown.kind, "UnrecognizedClientException");
    // What needs no body is refused before the body is read.
    assert_eq!(
        check_headers(&HeaderMap::new(), |_| None, now)
            .err()
            .map(|r| r.kind),
        Some("IncompleteSignatureException")
    );
    // Outside the 15-minute window, either way; inside it, fine.
    assert!(
        check("POST", path, "", &h, CREATE_BODY, AT + 901)
            .unwrap_err()
            .contains("expired")
    );
    assert!(
        check("POST", path, "", &h, CREATE_BODY, AT - 901)
            .unwrap_err()
            .contains("expired")
    );
    assert!(check("POST", path, "", &h, CREATE_BODY, AT + 899).is_ok());
    // A payload hash that is not the body's, or none at all.
    let mut unsigned = h.clone();
    unsigned.insert("x-amz-content-sha256", "UNSIGNED-PAYLOAD".parse().unwrap());
    assert!(
        check("POST", path, "", &unsigned, CREATE_BODY, AT)
            .unwrap_err()
            .contains("unsigned")
    );
    let mut wrong = h.clone();
    wrong.insert("x-amz-content-sha256", sha256_hex(b"x").parse().unwrap());
    assert!(
        check("POST", path, "", &wrong, CREATE_BODY, AT)
            .unwrap_err()
            .contains("does not match the body")
    );
}

#[test]
fn malformed_authorization_is_refused_with_a_reason() {
    let bad = [
        ("Bearer x", "not AWS4-HMAC-SHA256"),
        ("AWS4-HMAC-SHA256X Credential=a", "not AWS4-HMAC-SHA256"),
        (
            "AWS4-HMAC-SHA256 Credential=a/20261203/r/s/aws4_request, SignedHeaders=host",
            "lacks Signature",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/2026/r/s/aws4_request, SignedHeaders=host, Signature=00",
            "malformed date",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20261203/r/s/x, SignedHeaders=host, Signature=00",
            "aws4_request",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20261203/r/s/aws4_request, SignedHeaders=x-amz-date, Signature=00",
            "include host",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20261203/r/s/aws4_request, SignedHeaders=Host, Signature=00",
            "lower-case",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20261203/r/s/aws4_request, SignedHeaders=host, Signature=zz",
            "64 hex",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20261203/r/s/aws4_request, Credential=b, SignedHeaders=host, Signature=00",
            "twice",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=a/20261203/r/s/aws4_request, Extra=1",
            "unknown",
        ),
    ];
    for (value, why) in bad {
        let err = parse_authorization(value).unwrap_err();
        assert!(err.contains(why), "{value}: {err}");
    }
    // A signed header the request lacks; a date that disagrees.
    let mut h = create_headers();
    h.remove("content-type");
    assert_eq!(
        check("POST", "/2015-03-31/functions", "", &h, CREATE_BODY, AT),
        Err("signed header content-type is not in the request".into())
    );
    let mut h = create_headers();
    h.insert("x-amz-date", "20261204T000000Z".parse().unwrap());
    assert!(
        check("POST", "/", "", &h, b"", AT)
            .unwrap_err()
            .contains("differ")
    );
}

#[test]
fn canonical_forms() {
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("/a/./b/../c/"), "/a/c/");
    assert_eq!(canonical_uri("/f/hello%3A1"), "/f/hello%253A1");
    assert_eq!(canonical_query("b=2&a=%20&a=1&c"), "a=%20&a=1&b=2&c=");
    assert_eq!(canonical_value(b"  a   b  c "), "a b c");
    assert_eq!(parse_amz_date("20261203T120000Z"), Some(AT));
    assert_eq!(parse_amz_date("20000229T235959Z"), Some(951_868_799));
    assert_eq!(parse_amz_date("20261303T120000Z"), None);
    assert_eq!(parse_amz_date("2026-12-03T12:00Z"), None);
}
