//! On-disk cache of compiled modules, so a restart never recompiles.
//!
//! An entry is keyed by the BLAKE3 hash of the module bytes and a
//! fingerprint of every engine setting that affects compiled code
//! (wasmtime's `precompile_compatibility_hash`, which includes its
//! version). It is two files: `<key>.cwasm`, wasmtime's serialized module,
//! loaded with `Module::deserialize_file` (memory-mapped, so the
//! copy-on-write memory image comes straight from the file), and
//! `<key>.b3`, the BLAKE3 hash of the `.cwasm`. Both are written to a
//! temporary name and renamed into place, so a crash never leaves a
//! half-written entry under the real name.
//!
//! Loading never trusts an entry blindly: the `.cwasm` is hashed and
//! compared with `.b3`, and wasmtime itself rejects artifacts from another
//! version or configuration. A mismatch deletes the entry and the module is
//! compiled again. The cache directory must be writable only by the host's
//! user: compiled code in it runs natively.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::{Engine, Module};

/// The default cache directory: `$FNHOST_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/fnhost/artifacts`, else `$HOME/.cache/fnhost/artifacts`,
/// else `fnhost-cache/artifacts` under the system temp dir.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FNHOST_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| std::env::temp_dir().join("fnhost-cache"));
    base.join("fnhost").join("artifacts")
}

/// What a lookup found.
pub(crate) enum Lookup {
    Hit(Module),
    Miss,
    /// An entry existed but was corrupt or stale; it was removed.
    Rejected(String),
}

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> std::io::Result<ArtifactCache> {
        std::fs::create_dir_all(&dir)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(ArtifactCache {
            dir,
            engine_key: format!("{:016x}", h.finish()),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of `key`'s entry: the module hash and the engine
    /// fingerprint (what a compiled artifact is shared under).
    pub(crate) fn stem(&self, key: &str) -> String {
        format!("{key}-{}", self.engine_key)
    }

    /// The entry's serialized module, if present and matching its checksum.
    pub(crate) fn read(&self, key: &str) -> Option<Vec<u8>> {
        let (cwasm, sum) = self.paths(key);
        let expected = std::fs::read_to_string(&sum).ok()?;
        let bytes = std::fs::read(&cwasm).ok()?;
        (blake3::hash(&bytes).to_hex().as_str() == expected.trim()).then_some(bytes)
    }

    /// Stores serialized module bytes another host of the same build wrote
    /// (the caller vouches for where they came from; wasmtime still checks
    /// version and settings when they are loaded).
    pub(crate) fn install(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        let (cwasm, sum) = self.paths(key);
        write_atomic(&cwasm, bytes)?;
        write_atomic(&sum, blake3::hash(bytes).to_hex().as_bytes())
    }

    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        let stem = self.stem(key);
        (
            self.dir.join(format!("{stem}.cwasm")),
            self.dir.join(format!("{stem}.b3")),
        )
    }

    /// Looks up the compiled form of the module whose hash is `key`.
    pub(crate) fn load(&self, engine: &Engine, key: &str) -> Lookup {
        let (cwasm, sum) = self.paths(key);
        let Ok(expected) = std::fs::read_to_string(&sum) else {
            return Lookup::Miss;
        };
        let reject = |why: String| {
            let _ = std::fs::remove_file(&cwasm);
            let _ = std::fs::remove_file(&sum);
            Lookup::Rejected(why)
        };
        match hash_file(&cwasm) {
            Ok(actual) if actual == expected.trim() => {}
            Ok(_) => return reject(format!("{} does not match its checksum", cwasm.display())),
            Err(e) => return reject(format!("{}: {e}", cwasm.display())),
        }
        // SAFETY: the file is a wasmtime artifact this cache wrote (its
        // checksum matches what we recorded), in a directory only the host's
        // user may write; wasmtime checks version and settings itself.
        match unsafe { Module::deserialize_file(engine, &cwasm) } {
            Ok(m) => Lookup::Hit(m),
            Err(e) => reject(format!("{}: {e}", cwasm.display())),
        }
    }

    /// Stores `module` under `key`. Failures are reported, not fatal: the
    /// module is already compiled.
    pub(crate) fn store(&self, key: &str, module: &Module) -> std::io::Result<()> {
        let (cwasm, sum) = self.paths(key);
        let bytes = module.serialize().map_err(std::io::Error::other)?;
        let hash = blake3::hash(&bytes).to_hex();
        write_atomic(&cwasm, &bytes)?;
        write_atomic(&sum, hash.as_bytes())
    }

    /// Removes every entry (used by tests and `fnhost cache clear`).
    pub(crate) fn clear(&self) -> std::io::Result<()> {
        for e in std::fs::read_dir(&self.dir)? {
            let p = e?.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("cwasm" | "b3")) {
                std::fs::remove_file(p)?;
            }
        }
        Ok(())
    }
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(h.finalize().to_hex().to_string())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}
