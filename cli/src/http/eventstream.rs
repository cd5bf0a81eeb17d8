//! The AWS event stream framing (`application/vnd.amazon.eventstream`)
//! that `InvokeWithResponseStream` answers in: each message is its total
//! and header lengths, a CRC32 of those 8 bytes, the headers, the payload,
//! and a CRC32 of all that came before (big-endian throughout).

use bytes::Bytes;
use serde_json::{Map, Value};

/// Header value type 7: a UTF-8 string with a 16-bit length.
const STRING: u8 = 7;

/// One message with string headers.
fn message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut h = Vec::new();
    for (name, value) in headers {
        // Names and values here are this module's constants.
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(STRING);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_be_bytes());
    m.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude = crc32fast::hash(&m);
    m.extend_from_slice(&prelude.to_be_bytes());
    m.extend_from_slice(&h);
    m.extend_from_slice(payload);
    let crc = crc32fast::hash(&m);
    m.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(m)
}

/// Largest payload of one `PayloadChunk` message (larger output is split).
pub const MAX_CHUNK: usize = 64 << 10;

/// A `PayloadChunk` event carrying `bytes` (at most [`MAX_CHUNK`]).
pub fn payload_chunk(bytes: &[u8]) -> Bytes {
    message(
        &[
            (":event-type", "PayloadChunk"),
            (":content-type", "application/octet-stream"),
            (":message-type", "event"),
        ],
        bytes,
    )
}

/// The closing `InvokeComplete` event: the error (Lambda's `ErrorCode`
/// and `ErrorDetails`) when the invocation failed, and the log tail.
pub fn invoke_complete(error: Option<(&str, &str)>, log_result: Option<&str>) -> Bytes {
    let mut body = Map::new();
    if let Some((code, details)) = error {
        body.insert("ErrorCode".into(), Value::String(code.into()));
        body.insert("ErrorDetails".into(), Value::String(details.into()));
    }
    if let Some(log) = log_result {
        body.insert("LogResult".into(), Value::String(log.into()));
    }
    message(
        &[
            (":event-type", "InvokeComplete"),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        Value::Object(body).to_string().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads one message back: (headers, payload), checking both CRCs.
    fn parse(m: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
        let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
        let total = be(&m[0..4]) as usize;
        let hlen = be(&m[4..8]) as usize;
        assert_eq!(total, m.len());
        assert_eq!(be(&m[8..12]), crc32fast::hash(&m[..8]));
        assert_eq!(be(&m[total - 4..]), crc32fast::hash(&m[..total - 4]));
        let mut headers = Vec::new();
        let mut i = 12;
        while i < 12 + hlen {
            let n = m[i] as usize;
            let name = String::from_utf8(m[i + 1..i + 1 + n].to_vec()).unwrap();
            i += 1 + n;
            assert_eq!(m[i], STRING);
            let vlen = u16::from_be_bytes([m[i + 1], m[i + 2]]) as usize;
            let value = String::from_utf8(m[i + 3..i + 3 + vlen].to_vec()).unwrap();
            i += 3 + vlen;
            headers.push((name, value));
        }
        (headers, m[12 + hlen..total - 4].to_vec())
    }

    #[test]
    fn messages_frame_with_both_crcs() {
        let m = payload_chunk(b"hello");
        let (headers, payload) = parse(&m);
        assert_eq!(payload, b"hello");
        assert_eq!(headers[0], (":event-type".into(), "PayloadChunk".into()));
        // The prelude of a 5-byte payload with these headers.
        assert_eq!(m.len(), 12 + 90 + 5 + 4);
        let m = invoke_complete(Some(("Sandbox.Timedout", "timed out")), None);
        let (headers, payload) = parse(&m);
        assert_eq!(headers[0].1, "InvokeComplete");
        assert_eq!(
            serde_json::from_slice::<Value>(&payload).unwrap(),
            serde_json::json!({"ErrorCode": "Sandbox.Timedout", "ErrorDetails": "timed out"})
        );
        let (_, payload) = parse(&invoke_complete(None, Some("bG9n")));
        assert_eq!(payload, br#"{"LogResult":"bG9n"}"#);
    }
}
