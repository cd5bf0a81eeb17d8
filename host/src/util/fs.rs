//! Files that are never seen half-written: [`write_atomic`] (temporary
//! name, fsync, rename), and sealed files, whose `.b3` companion holds the
//! BLAKE3 hash of a context string and the contents, written last, so a
//! file without a matching seal (torn, foreign, or made for another
//! context) is never used.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically, creating its directory: readers
/// see the old file or the new one, never part of it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Unique per writer, so two hosts in one process never share a temp file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The seal file of `path`: the same name with the extension `b3`.
pub(crate) fn seal_path(path: &Path) -> PathBuf {
    path.with_extension("b3")
}

/// The seal of `bytes` under `context`: hex BLAKE3 of both (with an empty
/// context, the plain hash of the bytes).
pub(crate) fn seal(context: &[u8], bytes: &[u8]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(context);
    h.update(bytes);
    h.finalize().to_hex().to_string()
}

/// Writes `bytes` to `path` and then its seal, both atomically.
pub(crate) fn write_sealed(path: &Path, context: &[u8], bytes: &[u8]) -> std::io::Result<()> {
    write_atomic(path, bytes)?;
    write_atomic(&seal_path(path), seal(context, bytes).as_bytes())
}

/// What checking a sealed file found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// No seal: the file was never completely written.
    Missing,
    /// The contents match the seal.
    Sealed,
    /// The seal does not match (the reason, for a log line).
    Broken(String),
}

/// Checks `path` against its seal by streaming it (it is not read into
/// memory, so a large artifact can then be memory-mapped).
pub(crate) fn check_sealed(path: &Path, context: &[u8]) -> Check {
    let Ok(expected) = std::fs::read_to_string(seal_path(path)) else {
        return Check::Missing;
    };
    let mut h = blake3::Hasher::new();
    h.update(context);
    let actual = std::fs::File::open(path).and_then(|f| h.update_reader(f).map(|h| h.finalize()));
    match actual {
        Ok(a) if a.to_hex().as_str() == expected.trim() => Check::Sealed,
        Ok(_) => Check::Broken(format!("{} does not match its seal", path.display())),
        Err(e) => Check::Broken(format!("{}: {e}", path.display())),
    }
}

/// The contents of a sealed file, if present and matching its seal.
pub(crate) fn read_sealed(path: &Path, context: &[u8]) -> Option<Vec<u8>> {
    let expected = std::fs::read_to_string(seal_path(path)).ok()?;
    let bytes = std::fs::read(path).ok()?;
    (seal(context, &bytes) == expected.trim()).then_some(bytes)
}

/// Removes a sealed file and its seal (either may be missing).
pub(crate) fn remove_sealed(path: &Path) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(seal_path(path));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_file_is_read_only_whole_and_under_its_context() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("a.bin");
        assert_eq!(check_sealed(&p, b"k"), Check::Missing);
        write_sealed(&p, b"k", b"contents").unwrap();
        assert_eq!(check_sealed(&p, b"k"), Check::Sealed);
        assert_eq!(read_sealed(&p, b"k").as_deref(), Some(&b"contents"[..]));
        // Another context, or changed contents: never used.
        assert!(read_sealed(&p, b"other").is_none());
        assert!(matches!(check_sealed(&p, b"other"), Check::Broken(_)));
        std::fs::write(&p, b"contentz").unwrap();
        assert!(read_sealed(&p, b"k").is_none());
        remove_sealed(&p);
        assert_eq!(check_sealed(&p, b"k"), Check::Missing);
        // No temporary files are left behind.
        let left: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
