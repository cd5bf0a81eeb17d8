//! Small shared pieces with no knowledge of functions: atomic and sealed
//! files, and the host's secret.

pub(crate) mod fs;

use std::time::SystemTime;

/// 32 bytes of OS randomness for request ids and guest random seeds.
pub(crate) fn host_secret() -> [u8; 32] {
    let mut out = [0u8; 32];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut out))
        .is_ok()
    {
        return out;
    }
    // Fallback: std's randomly keyed hasher, mixed with the time.
    use std::hash::{BuildHasher, Hasher};
    let mut h = blake3::Hasher::new();
    for _ in 0..4 {
        let mut s = std::collections::hash_map::RandomState::new().build_hasher();
        s.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.update(&s.finish().to_le_bytes());
    }
    *h.finalize().as_bytes()
}
