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
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::util::fs::{self, Check};

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

/// A compiled guest: a core module or a component.
pub(crate) enum Artifact {
    Module(Module),
    Component(Component),
}

impl Artifact {
    /// Compiles `bytes`, a component or a module by its header.
    pub(crate) fn compile(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Artifact> {
        Ok(if crate::guest::component::is_component(bytes) {
            Artifact::Component(Component::new(engine, bytes)?)
        } else {
            Artifact::Module(Module::new(engine, bytes)?)
        })
    }

    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Artifact::Module(m) => m.serialize(),
            Artifact::Component(c) => c.serialize(),
        }
    }
}

/// What a lookup found.
pub(crate) enum Lookup {
    Hit(Artifact),
    Miss,
    /// An entry existed but was corrupt or stale; it was removed.
    Rejected(String),
}

pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

/// A fingerprint of every engine setting that affects compiled code
/// (wasmtime's `precompile_compatibility_hash`, which includes its
/// version): what a compiled artifact or a snapshot is only valid under.
pub(crate) fn engine_fingerprint(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

impl ArtifactCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> std::io::Result<ArtifactCache> {
        std::fs::create_dir_all(&dir)?;
        Ok(ArtifactCache {
            dir,
            engine_key: engine_fingerprint(engine),
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
        fs::read_sealed(&self.path(key), b"")
    }

    /// Stores serialized module bytes another host of the same build wrote
    /// (the caller vouches for where they came from; wasmtime still checks
    /// version and settings when they are loaded).
    pub(crate) fn install(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        fs::write_sealed(&self.path(key), b"", bytes)
    }

    /// `<stem>.cwasm`; its seal (the plain BLAKE3 of the file) is
    /// `<stem>.b3`.
    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{}.cwasm", self.stem(key)))
    }

    /// Looks up the compiled form of the module (or, with `component`,
    /// the component) whose hash is `key`.
    pub(crate) fn load(&self, engine: &Engine, key: &str, component: bool) -> Lookup {
        let cwasm = self.path(key);
        let reject = |why: String| {
            fs::remove_sealed(&cwasm);
            Lookup::Rejected(why)
        };
        match fs::check_sealed(&cwasm, b"") {
            Check::Missing => return Lookup::Miss,
            Check::Broken(why) => return reject(why),
            Check::Sealed => {}
        }
        // SAFETY: the file is a wasmtime artifact this cache wrote (its
        // checksum matches what we recorded), in a directory only the host's
        // user may write; wasmtime checks version and settings itself.
        let loaded = unsafe {
            if component {
                Component::deserialize_file(engine, &cwasm).map(Artifact::Component)
            } else {
                Module::deserialize_file(engine, &cwasm).map(Artifact::Module)
            }
        };
        match loaded {
            Ok(m) => Lookup::Hit(m),
            Err(e) => reject(format!("{}: {e}", cwasm.display())),
        }
    }

    /// Stores `artifact` under `key`. Failures are reported, not fatal: it
    /// is already compiled.
    pub(crate) fn store(&self, key: &str, artifact: &Artifact) -> std::io::Result<()> {
        let bytes = artifact.serialize().map_err(std::io::Error::other)?;
        fs::write_sealed(&self.path(key), b"", &bytes)
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
