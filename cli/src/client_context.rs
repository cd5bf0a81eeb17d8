//! Lambda's client context (`X-Amz-Client-Context`): checked where a
//! request brings it, and passed to the invocation wherever it runs (here
//! or on the node a cluster forwards it to).

use bytes::Bytes;
use fnhost::{Host, InvokeFuture};

/// The longest `X-Amz-Client-Context` header Lambda accepts (base64).
pub const MAX_ENCODED: usize = 3583;

/// The JSON text a `X-Amz-Client-Context` header carries, or what is
/// wrong with it.
pub fn decode(header: &[u8]) -> Result<String, String> {
    use base64::Engine as _;
    if header.len() > MAX_ENCODED {
        return Err(format!(
            "X-Amz-Client-Context is {} bytes; at most {MAX_ENCODED} (base64) allowed",
            header.len()
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(header)
        .map_err(|e| format!("X-Amz-Client-Context is not base64: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| "X-Amz-Client-Context is not UTF-8 once decoded".to_string())?;
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| format!("X-Amz-Client-Context is not JSON once decoded: {e}"))?;
    Ok(text)
}

/// Starts `target` on `host`, with the caller's client context if any.
pub fn start(host: &Host, target: &str, payload: Bytes, client: Option<&str>) -> InvokeFuture {
    match client {
        Some(c) => host.invoke_async_with_client_context(target, payload, c),
        None => host.invoke_async(target, payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        assert_eq!(decode(b"eyJhIjoxfQ==").unwrap(), r#"{"a":1}"#);
        assert!(decode(b"%%%").unwrap_err().contains("not base64"));
        // "not json" in base64.
        assert!(decode(b"bm90IGpzb24=").unwrap_err().contains("not JSON"));
        // 0xff in base64.
        assert!(decode(b"/w==").unwrap_err().contains("UTF-8"));
        let long = vec![b'A'; MAX_ENCODED + 1];
        assert!(decode(&long).unwrap_err().contains("at most 3583"));
    }
}
