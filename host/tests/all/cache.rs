//! The artifact cache: a second host on the same directory compiles
//! nothing; corrupt or stale entries are detected and recompiled.

use fnhost::{FunctionConfig, HostStats};

use super::*;

fn cached_host(dir: &std::path::Path) -> Host {
    Host::builder()
        .cache_dir(dir)
        .concurrency_limit(4)
        .build()
        .unwrap()
}

fn register_echo(host: &Host) {
    host.register(FunctionConfig::from_file("echo", guests::ECHO))
        .unwrap();
    assert_eq!(
        host.invoke("echo", b"ping").unwrap().into_output().unwrap(),
        "ping"
    );
}

fn entries(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect()
}

#[test]
fn second_host_on_the_same_cache_compiles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = cached_host(dir.path());
    register_echo(&first);
    assert_eq!(
        first.stats(),
        HostStats {
            compiles: 1,
            cache_hits: 0,
            cache_rejected: 0,
            ..HostStats::default()
        }
    );
    assert_eq!(entries(dir.path(), "cwasm").len(), 1);

    let second = cached_host(dir.path());
    register_echo(&second);
    assert_eq!(
        second.stats(),
        HostStats {
            compiles: 0,
            cache_hits: 1,
            cache_rejected: 0,
            ..HostStats::default()
        }
    );
}

#[test]
fn corrupt_entries_are_rejected_and_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    register_echo(&cached_host(dir.path()));
    let cwasm = entries(dir.path(), "cwasm").pop().unwrap();

    // A flipped byte in the middle of the artifact.
    let mut bytes = std::fs::read(&cwasm).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&cwasm, &bytes).unwrap();
    let host = cached_host(dir.path());
    register_echo(&host);
    assert_eq!(
        host.stats(),
        HostStats {
            compiles: 1,
            cache_hits: 0,
            cache_rejected: 1,
            ..HostStats::default()
        }
    );

    // A truncated artifact.
    let bytes = std::fs::read(&cwasm).unwrap();
    std::fs::write(&cwasm, &bytes[..100]).unwrap();
    let host = cached_host(dir.path());
    register_echo(&host);
    assert_eq!(
        host.stats(),
        HostStats {
            compiles: 1,
            cache_hits: 0,
            cache_rejected: 1,
            ..HostStats::default()
        }
    );

    // After the rewrite, the entry is good again.
    let host = cached_host(dir.path());
    register_echo(&host);
    assert_eq!(
        host.stats(),
        HostStats {
            compiles: 0,
            cache_hits: 1,
            cache_rejected: 0,
            ..HostStats::default()
        }
    );
}

#[test]
fn stale_entries_from_other_settings_are_rejected() {
    // An artifact whose checksum matches but which wasmtime refuses (here:
    // plain bytes that are not an artifact at all, as from another version).
    let dir = tempfile::tempdir().unwrap();
    register_echo(&cached_host(dir.path()));
    let cwasm = entries(dir.path(), "cwasm").pop().unwrap();
    let b3 = cwasm.with_extension("b3");
    let fake = b"not a wasmtime artifact";
    std::fs::write(&cwasm, fake).unwrap();
    std::fs::write(&b3, blake3_hex(fake)).unwrap();
    let host = cached_host(dir.path());
    register_echo(&host);
    assert_eq!(
        host.stats(),
        HostStats {
            compiles: 1,
            cache_hits: 0,
            cache_rejected: 1,
            ..HostStats::default()
        }
    );
}

fn blake3_hex(bytes: &[u8]) -> String {
    // The cache's own checksum format: BLAKE3, lowercase hex.
    blake3::hash(bytes).to_hex().to_string()
}

#[test]
fn cache_can_be_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let host = cached_host(dir.path());
    register_echo(&host);
    host.clear_artifact_cache().unwrap();
    assert!(entries(dir.path(), "cwasm").is_empty());
    assert!(entries(dir.path(), "b3").is_empty());
}
