//! Ids the CLI makes (request, event and revision ids), shown as UUIDs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The first 128 bits of `hash`, shown as a UUID.
pub(crate) fn uuid_of(hash: &blake3::Hash) -> String {
    let v = u128::from_le_bytes(hash.as_bytes()[..16].try_into().unwrap_or_default());
    fnhost::RequestId(v).to_string()
}

/// A fresh id, unique across processes, restarts and (with a distinct
/// `salt`, such as a node name) machines: the salt, the process id, the
/// time and a counter, hashed.
pub(crate) fn fresh(salt: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(salt.as_bytes());
    h.update(&std::process::id().to_le_bytes());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(&now.as_nanos().to_le_bytes());
    h.update(&NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    uuid_of(&h.finalize())
}
