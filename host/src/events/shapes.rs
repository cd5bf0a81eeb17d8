//! Event payloads in the shapes AWS services send to Lambda, so handlers
//! written for those events work unchanged: destination invocation
//! records, EventBridge scheduled events, SQS batches, SNS notifications
//! and S3 object notifications.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Value, json};

use super::clock::{from_ms, rfc3339};
use super::store::{ErrorRecord, EventRecord};

/// The region written into ARNs and records.
pub const REGION: &str = "local";
/// The account id written into ARNs.
pub const ACCOUNT: &str = "000000000000";

/// A payload as JSON when it is JSON, else as a string (lossy UTF-8).
fn as_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

pub(crate) fn function_arn(target: &str, version: &str) -> String {
    let name = target.split(':').next().unwrap_or(target);
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}:{version}")
}

/// Lambda's destination invocation record.
pub(crate) fn invocation_record(
    rec: &EventRecord,
    payload: &Bytes,
    condition: &str,
    outcome: Result<&Bytes, Option<&ErrorRecord>>,
    version: &str,
    now_ms: u64,
) -> Value {
    let (response_context, response_payload) = match outcome {
        Ok(out) => (
            json!({"statusCode": 200, "executedVersion": version}),
            as_json(out),
        ),
        Err(Some(e)) => (
            json!({"statusCode": 200, "executedVersion": version, "functionError": "Unhandled"}),
            json!({"errorType": e.kind, "errorMessage": e.message}),
        ),
        Err(None) => (
            json!({"statusCode": 200, "executedVersion": version}),
            Value::Null,
        ),
    };
    json!({
        "version": "1.0",
        "timestamp": rfc3339(from_ms(now_ms)),
        "requestContext": {
            "requestId": rec.id,
            "functionArn": function_arn(&rec.target, version),
            "condition": condition,
            "approximateInvokeCount": rec.attempts,
        },
        "requestPayload": as_json(payload),
        "responseContext": response_context,
        "responsePayload": response_payload,
    })
}

/// An EventBridge "Scheduled Event".
pub(crate) fn scheduled_event(id: &str, rule: &str, at_ms: u64) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": rfc3339_seconds(at_ms),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{rule}")],
        "detail": {},
    })
}

/// EventBridge writes times without fractions.
fn rfc3339_seconds(at_ms: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from(from_ms(at_ms))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One SQS record of a batch.
pub(crate) struct SqsRecord<'a> {
    pub id: &'a str,
    pub receipt: u64,
    pub body: &'a str,
    pub attributes: &'a BTreeMap<String, String>,
    pub sent_ms: u64,
    pub receive_count: u32,
    pub first_receive_ms: u64,
}

/// An SQS event: `{"Records": [...]}`.
pub(crate) fn sqs_event(queue: &str, records: &[SqsRecord<'_>]) -> Value {
    let arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}");
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let attrs: serde_json::Map<String, Value> = r
                .attributes
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({"stringValue": v, "stringListValues": [], "binaryListValues": [], "dataType": "String"}),
                    )
                })
                .collect();
            json!({
                "messageId": r.id,
                "receiptHandle": format!("{queue}/{}", r.receipt),
                "body": r.body,
                "attributes": {
                    "ApproximateReceiveCount": r.receive_count.to_string(),
                    "SentTimestamp": r.sent_ms.to_string(),
                    "SenderId": ACCOUNT,
                    "ApproximateFirstReceiveTimestamp": r.first_receive_ms.to_string(),
                },
                "messageAttributes": attrs,
                "md5OfBody": md5_hex(r.body.as_bytes()),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// MD5 in hex, as SQS's `md5OfBody` and S3's `eTag` (handlers check it).
pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex(&md5::Md5::digest(bytes))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SNS notification object (the `Sns` field of a Lambda record, and
/// the body a queue subscriber receives).
pub(crate) fn sns_notification(
    topic: &str,
    message_id: &str,
    message: &str,
    attributes: &BTreeMap<String, String>,
    now_ms: u64,
) -> Value {
    let attrs: serde_json::Map<String, Value> = attributes
        .iter()
        .map(|(k, v)| (k.clone(), json!({"Type": "String", "Value": v})))
        .collect();
    json!({
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic_arn(topic),
        "Subject": null,
        "Message": message,
        "Timestamp": rfc3339(from_ms(now_ms)),
        "SignatureVersion": "1",
        "Signature": "",
        "SigningCertUrl": "",
        "UnsubscribeUrl": "",
        "MessageAttributes": attrs,
    })
}

/// The notification as an SQS subscriber's message body: SNS spells two
/// fields differently there than in the Lambda record.
pub(crate) fn sns_queue_body(mut notification: Value) -> Value {
    if let Value::Object(m) = &mut notification {
        for (lambda, sqs) in [
            ("SigningCertUrl", "SigningCertURL"),
            ("UnsubscribeUrl", "UnsubscribeURL"),
        ] {
            if let Some(v) = m.remove(lambda) {
                m.insert(sqs.to_string(), v);
            }
        }
    }
    notification
}

pub(crate) fn topic_arn(topic: &str) -> String {
    format!("arn:aws:sns:{REGION}:{ACCOUNT}:{topic}")
}

/// An SNS event for one subscriber: `{"Records": [{"Sns": ...}]}`.
pub(crate) fn sns_event(topic: &str, subscription: u64, notification: Value) -> Value {
    json!({
        "Records": [{
            "EventSource": "aws:sns",
            "EventVersion": "1.0",
            "EventSubscriptionArn": format!("{}:{subscription}", topic_arn(topic)),
            "Sns": notification,
        }]
    })
}

/// One S3 object notification.
pub(crate) struct S3Change<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// `ObjectCreated:Put` or `ObjectRemoved:Delete`.
    pub event_name: &'a str,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub sequencer: u64,
    pub at_ms: u64,
    pub configuration: &'a str,
}

/// An S3 event: `{"Records": [...]}` with one record.
pub(crate) fn s3_event(c: &S3Change<'_>) -> Value {
    let mut object = json!({
        "key": s3_key_encode(c.key),
        "sequencer": format!("{:016X}", c.sequencer),
    });
    if let Some(size) = c.size {
        object["size"] = json!(size);
    }
    if let Some(etag) = &c.etag {
        object["eTag"] = json!(etag);
    }
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": REGION,
            "eventTime": rfc3339(from_ms(c.at_ms)),
            "eventName": c.event_name,
            "userIdentity": {"principalId": "fnhost"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": c.configuration,
                "bucket": {
                    "name": c.bucket,
                    "ownerIdentity": {"principalId": "fnhost"},
                    "arn": format!("arn:aws:s3:::{}", c.bucket),
                },
                "object": object,
            },
        }]
    })
}

/// Keys in S3 notifications are URL-encoded with `+` for spaces.
fn s3_key_encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_a_real_md5() {
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn s3_keys_are_url_encoded_like_s3() {
        assert_eq!(s3_key_encode("a b/ü.txt"), "a+b/%C3%BC.txt");
    }

    #[test]
    fn scheduled_events_name_their_rule() {
        let v = scheduled_event("id-1", "nightly", 0);
        assert_eq!(v["time"], "1970-01-01T00:00:00Z");
        assert_eq!(
            v["resources"][0],
            "arn:aws:events:local:000000000000:rule/nightly"
        );
        assert_eq!(v["detail-type"], "Scheduled Event");
    }
}
