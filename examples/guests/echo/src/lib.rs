//! `echo`: returns its payload unchanged. The smallest useful guest, used
//! by benchmarks to measure what the host adds around an invocation.

/// Returns the payload as is (raw bytes in, raw bytes out).
#[fnhost_guest::handler]
pub fn echo(payload: &[u8]) -> Result<Vec<u8>, fnhost_guest::Error> {
    Ok(payload.to_vec())
}
