//! The cluster's object stores: module bytes (content-addressed by
//! BLAKE3) and compiled artifacts (sealed with the cluster key, so a node
//! installs native code only from a node that holds the same key).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

use super::registry::table_modules;
use super::{Cluster, nats_error};

/// Largest object fetched from the stores (a module or an artifact).
const MAX_OBJECT: usize = 512 << 20;

impl Cluster {
    /// Reads object `name` from `store`, through a hard size cap.
    pub(super) async fn read_object(
        &self,
        store: &async_nats::jetstream::object_store::ObjectStore,
        name: &str,
    ) -> Result<Bytes, String> {
        let mut object = store.get(name).await.map_err(|e| e.to_string())?;
        let size = object.info().size;
        if size > MAX_OBJECT {
            return Err(format!("{size} bytes, over the {MAX_OBJECT}-byte cap"));
        }
        // The declared size is the writer's word: read at most one byte
        // past the cap whatever the chunks add up to.
        let mut out = Vec::with_capacity(size);
        (&mut object)
            .take(MAX_OBJECT as u64 + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| e.to_string())?;
        if out.len() > MAX_OBJECT {
            return Err(format!("over the {MAX_OBJECT}-byte cap"));
        }
        Ok(Bytes::from(out))
    }

    /// Installs the cluster's compiled artifact for `module_hash` when this
    /// host lacks it and its seal verifies. Best effort: without it the
    /// host compiles.
    pub(super) async fn fetch_artifact(&self, module_hash: &str) {
        let Some(key) = self.opts.key else { return };
        let Some(name) = self.host.artifact_key(module_hash) else {
            return;
        };
        if self.host.artifact(module_hash).is_some() {
            return;
        }
        let Ok(sealed) = self.read_object(&self.artifacts, &name).await else {
            return;
        };
        if sealed.len() < 32 {
            return;
        }
        let (mac, bytes) = sealed.split_at(32);
        let mac: [u8; 32] = mac.try_into().unwrap_or([0; 32]);
        // `blake3::Hash` compares in constant time.
        if seal(&key, &name, bytes) != blake3::Hash::from(mac) {
            tracing::warn!(target: "fnhost::cluster", artifact = %name, "artifact seal does not verify (another cluster key?); compiling instead");
            return;
        }
        match self.host.install_artifact(module_hash, bytes) {
            Ok(()) => {
                self.stats.artifacts_fetched.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(target: "fnhost::cluster", artifact = %name, error = %e, "could not install artifact")
            }
        }
    }

    /// Uploads `module` (if the store lacks it) and, with a cluster key,
    /// the compiled artifacts of the table's modules.
    pub(super) async fn upload(&self, table: &Value, module: Option<&Bytes>) -> fnhost::Result<()> {
        if let Some(bytes) = module {
            let hash = blake3::hash(bytes).to_hex().to_string();
            if self.modules.info(&hash).await.is_err() {
                self.modules
                    .put(hash.as_str(), &mut &bytes[..])
                    .await
                    .map_err(|e| nats_error("module store", e))?;
            }
        }
        let Some(key) = self.opts.key else {
            return Ok(());
        };
        for (hash, snapshot) in table_modules(table) {
            let Some((name, bytes)) = (!snapshot).then(|| self.host.artifact(&hash)).flatten()
            else {
                continue;
            };
            if self.artifacts.info(&name).await.is_ok() {
                continue;
            }
            let mut sealed = seal(&key, &name, &bytes).as_bytes().to_vec();
            sealed.extend_from_slice(&bytes);
            match self.artifacts.put(name.as_str(), &mut &sealed[..]).await {
                Ok(_) => {
                    self.stats.artifacts_shared.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(target: "fnhost::cluster", artifact = %name, error = %e, "could not share artifact")
                }
            }
        }
        Ok(())
    }
}

/// The MAC that authenticates an artifact named `name`.
fn seal(key: &[u8; 32], name: &str, bytes: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(name.as_bytes());
    h.update(&[0]);
    h.update(bytes);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seal_binds_key_name_and_bytes() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        let s = seal(&k1, "a", b"code");
        assert_eq!(s, seal(&k1, "a", b"code"));
        assert_ne!(s, seal(&k2, "a", b"code"));
        assert_ne!(s, seal(&k1, "b", b"code"));
        assert_ne!(s, seal(&k1, "a", b"cods"));
    }
}
