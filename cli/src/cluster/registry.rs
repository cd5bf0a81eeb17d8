//! The shared registry: the function table in a key-value bucket, module
//! bytes and compiled artifacts in object stores.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use fnhost::{Alias, FunctionConfig, FunctionInfo, Host};
use futures::StreamExt as _;
use serde_json::Value;

use super::{Cluster, nats_error};

/// Longest a refresh (a node catching up on one function before it
/// answers a call) waits for the registry.
const REFRESH_WAIT: Duration = Duration::from_millis(800);

/// The module hashes a table names (`versions.*.module`) and whether each
/// version is pre-initialised (its artifact is of the snapshot, not of
/// the module).
pub(super) fn table_modules(table: &Value) -> Vec<(String, bool)> {
    table
        .get("versions")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(_, v)| {
            let hash = v
                .get("module")?
                .as_str()
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))?
                .to_string();
            let snapshot = v.pointer("/config/snapshot").and_then(Value::as_bool) == Some(true);
            Some((hash, snapshot))
        })
        .collect()
}

impl Cluster {
    /// Applies every function in the bucket; returns the revision to watch
    /// from (changes after the snapshot this read started from).
    pub(super) async fn sync_all(&self) -> fnhost::Result<u64> {
        // Held throughout, so no change or refresh lands between the
        // listing and the removals below.
        let mut applied = self.registry_lock.lock().await;
        let mut stream = self
            .js
            .get_stream(format!("KV_{}", super::REGISTRY_BUCKET))
            .await
            .map_err(|e| nats_error("registry", e))?;
        let last = stream
            .info()
            .await
            .map_err(|e| nats_error("registry", e))?
            .state
            .last_sequence;
        let mut keys = self
            .kv
            .keys()
            .await
            .map_err(|e| nats_error("registry keys", e))?;
        let mut names = Vec::new();
        while let Some(k) = keys.next().await {
            names.push(k.map_err(|e| nats_error("registry keys", e))?);
        }
        for name in &names {
            // One bad entry does not keep the node from the others.
            let applied_one = match self.read_entry(name).await {
                Ok((value, revision)) => self
                    .apply_entry(name, value.as_ref())
                    .await
                    .map(|_| revision),
                Err(e) => Err(e),
            };
            match applied_one {
                Ok(revision) => {
                    applied.insert(name.clone(), revision);
                }
                Err(e) => {
                    applied.remove(name);
                    self.stats.registry_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(target: "fnhost::cluster", function = %name, error = %e, "could not apply the cluster's table");
                }
            }
        }
        // The bucket is the registry: what it lacks (deleted while this
        // node was away, or only in this node's data dir) goes — checked
        // key by key. An empty bucket beside a non-empty host is taken for
        // a lost store, not for "delete everything".
        let local = self.host.functions();
        if names.is_empty() && !local.is_empty() {
            tracing::warn!(target: "fnhost::cluster", functions = local.len(), "the cluster's registry is empty; keeping this node's functions");
            return Ok(last + 1);
        }
        for gone in local.into_iter().filter(|f| !names.contains(&f.name)) {
            if !matches!(self.read_entry(&gone.name).await, Ok((None, _))) {
                continue;
            }
            if let Err(e) = self.apply_entry(&gone.name, None).await {
                tracing::error!(target: "fnhost::cluster", function = %gone.name, error = %e, "could not remove a function the cluster no longer has");
            }
        }
        Ok(last + 1)
    }

    /// The bucket's value for `name` (`None`: absent or deleted) and the
    /// revision to compare-and-set against (0: never written).
    async fn read_entry(&self, name: &str) -> fnhost::Result<(Option<Value>, u64)> {
        let entry = self
            .kv
            .entry(name)
            .await
            .map_err(|e| nats_error("registry read", e))?;
        Ok(match entry {
            Some(e) if e.operation == async_nats::jetstream::kv::Operation::Put => {
                let v = serde_json::from_slice(&e.value).map_err(|err| {
                    nats_error("registry read", format!("`{name}` is not a table: {err}"))
                })?;
                (Some(v), e.revision)
            }
            Some(e) => (None, e.revision),
            None => (None, 0),
        })
    }

    /// Brings the local host's `name` in line with `table`, fetching the
    /// modules (and, with a cluster key, the compiled artifacts) it lacks.
    async fn apply_entry(&self, name: &str, table: Option<&Value>) -> fnhost::Result<bool> {
        let mut modules: HashMap<String, Bytes> = HashMap::new();
        if let Some(table) = table {
            let have: Vec<String> = self
                .host
                .export_function(name)
                .map(|t| table_modules(&t).into_iter().map(|(h, _)| h).collect())
                .unwrap_or_default();
            for (hash, snapshot) in table_modules(table) {
                if have.contains(&hash) || modules.contains_key(&hash) {
                    continue;
                }
                if !snapshot {
                    self.fetch_artifact(&hash).await;
                }
                let bytes = self
                    .read_object(&self.modules, &hash)
                    .await
                    .map_err(|e| nats_error("module store", format!("module {hash}: {e}")))?;
                modules.insert(hash, bytes);
            }
        }
        let host = self.host.clone();
        let name_owned = name.to_string();
        let table = table.cloned();
        let changed = tokio::task::spawn_blocking(move || {
            host.apply_function(&name_owned, table.as_ref(), &mut |h| {
                modules
                    .get(h)
                    .cloned()
                    .ok_or_else(|| format!("module {h} was not fetched"))
            })
        })
        .await
        .map_err(|e| nats_error("registry apply", e))??;
        if changed {
            self.stats.registry_applied.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: "fnhost::cluster", function = %name, "applied the cluster's table");
        }
        Ok(changed)
    }

    /// Makes a registry change through the cluster: brings the host in
    /// line with the bucket, runs `op` on it, and, if the function's table
    /// changed, uploads `module` and writes the table with a
    /// compare-and-set (retried when another node changed the function
    /// first). `op`'s typed error comes back unchanged.
    pub async fn change<T: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        module: Option<Bytes>,
        op: impl Fn(&Host) -> fnhost::Result<T> + Clone + Send + 'static,
    ) -> fnhost::Result<T> {
        // A write the client buffered through an outage could land after
        // this call answered: refuse while NATS is away.
        if !self.is_connected() {
            return Err(super::unavailable("the change"));
        }
        let mut applied = self.registry_lock.lock().await;
        for _ in 0..8 {
            let (current, revision) = self.read_entry(name).await?;
            self.apply_entry(name, current.as_ref()).await?;
            applied.insert(name.to_string(), revision);
            let before = self.host.export_function(name).ok();
            let host = self.host.clone();
            let run = op.clone();
            let out = tokio::task::spawn_blocking(move || run(&host))
                .await
                .map_err(|e| nats_error("registry change", e))??;
            let after = self.host.export_function(name).ok();
            if after == before {
                return Ok(out);
            }
            // The revision the write made (for a delete, a lower bound:
            // its marker's revision is at least this).
            let written = match &after {
                Some(table) => match self.upload(table, module.as_ref()).await {
                    Err(e) => Err(e.to_string()),
                    Ok(()) => {
                        let value = Bytes::from(table.to_string());
                        match revision {
                            0 => self.kv.create(name, value).await.map_err(|e| e.to_string()),
                            r => self
                                .kv
                                .update(name, value, r)
                                .await
                                .map_err(|e| e.to_string()),
                        }
                    }
                },
                None => self
                    .kv
                    .delete_expect_revision(name, Some(revision))
                    .await
                    .map(|()| revision + 1)
                    .map_err(|e| e.to_string()),
            };
            match written {
                Ok(now) => {
                    applied.insert(name.to_string(), now);
                    self.stats.registry_writes.fetch_add(1, Ordering::Relaxed);
                    return Ok(out);
                }
                Err(e) => {
                    let read = self.read_entry(name).await;
                    if let Ok((Some(table), r)) = &read
                        && Some(table) == after.as_ref()
                        && *r != revision
                    {
                        // The write landed; only its answer was lost.
                        applied.insert(name.to_string(), *r);
                        self.stats.registry_writes.fetch_add(1, Ordering::Relaxed);
                        return Ok(out);
                    }
                    let unreadable = read.is_err();
                    let now = read.map(|(_, r)| r);
                    if now.as_ref().is_ok_and(|r| *r != revision) {
                        // Another node changed `name` first: start again
                        // from its table.
                        tracing::info!(target: "fnhost::cluster", function = %name, "registry change raced another node; retrying");
                        continue;
                    }
                    // Put the host back as the cluster has it.
                    if let Err(back) = self.apply_entry(name, current.as_ref()).await {
                        applied.remove(name);
                        tracing::error!(target: "fnhost::cluster", function = %name, error = %back, "could not undo a change the cluster refused");
                    }
                    if unreadable {
                        // NATS went away under the write: it may still be
                        // sent from the client's buffer and land.
                        tokio::spawn(self.clone().undo_if_landed(
                            name.to_string(),
                            revision,
                            after,
                            current,
                        ));
                    }
                    return Err(nats_error("registry write", e));
                }
            }
        }
        Err(nats_error(
            "registry write",
            format!("`{name}` kept changing under this node; try again"),
        ))
    }

    /// Takes back a registry write whose caller was told it failed but
    /// whose outcome could not be read (NATS went away under it): the
    /// client may send it from its buffer once NATS is back. When the
    /// entry for `name` is that write (`ours`, at a revision past `base`),
    /// the table before it (`old`; none: the function did not exist) is
    /// written over it with a compare-and-set on that revision, so a change
    /// another node made since is never undone.
    async fn undo_if_landed(
        self: Arc<Self>,
        name: String,
        base: u64,
        ours: Option<Value>,
        old: Option<Value>,
    ) {
        let mut stop = self.stopping();
        loop {
            if self.is_connected() {
                // Whatever is still buffered goes out before the read.
                let _ = self.client.flush().await;
                if let Ok((now, r)) = self.read_entry(&name).await {
                    if r <= base || now != ours {
                        return; // never landed, or changed since
                    }
                    let undo = match &old {
                        Some(t) => self
                            .kv
                            .update(&name, Bytes::from(t.to_string()), r)
                            .await
                            .map(drop)
                            .map_err(|e| e.to_string()),
                        None => self
                            .kv
                            .delete_expect_revision(&name, Some(r))
                            .await
                            .map_err(|e| e.to_string()),
                    };
                    match undo {
                        Ok(()) => {
                            self.stats.registry_undone.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(target: "fnhost::cluster", function = %name, "took back a registry write that landed after it was reported failed");
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(target: "fnhost::cluster", function = %name, error = %e, "could not yet take back a late registry write")
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Brings `name` in line with the bucket now (a node that got an
    /// invocation or event for a function it does not have yet).
    pub async fn refresh(&self, name: &str) {
        // Names the host would refuse are not looked up at all.
        if !fnhost::valid_name(name) {
            return;
        }
        // Nothing to read while NATS is away: the caller answers from what
        // this node has, at once.
        if !self.is_connected() {
            return;
        }
        // Read without the lock: a miss (most refreshes of unknown names)
        // costs one round trip and never waits behind an apply. Bounded,
        // so a connection that dies mid-read does not hold the caller.
        let read = tokio::time::timeout(REFRESH_WAIT, self.read_entry(name)).await;
        let (table, revision) = match read {
            Ok(Ok((_, 0))) => return,
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                tracing::warn!(target: "fnhost::cluster", function = %name, error = %e, "registry read");
                return;
            }
            Err(_) => {
                tracing::warn!(target: "fnhost::cluster", function = %name, "registry read timed out");
                return;
            }
        };
        let mut applied = self.registry_lock.lock().await;
        if applied.get(name).is_some_and(|r| *r >= revision) {
            return;
        }
        match self.apply_entry(name, table.as_ref()).await {
            Ok(_) => {
                applied.insert(name.to_string(), revision);
            }
            Err(e) => {
                self.stats.registry_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(target: "fnhost::cluster", function = %name, error = %e, "could not apply the cluster's table");
            }
        }
    }

    /// Registers (publishes a version of) a function through the cluster.
    pub async fn register(self: &Arc<Self>, cfg: FunctionConfig) -> fnhost::Result<FunctionInfo> {
        let bytes = cfg.module_bytes()?;
        let name = cfg.name().to_string();
        self.change(&name, Some(bytes), move |h| h.register(cfg.clone()))
            .await
    }

    /// Removes a function (all versions and aliases) everywhere.
    pub async fn unregister(self: &Arc<Self>, name: &str) -> fnhost::Result<()> {
        let n = name.to_string();
        self.change(name, None, move |h| h.unregister(&n)).await
    }

    /// Creates or moves an alias everywhere.
    pub async fn set_alias(
        self: &Arc<Self>,
        name: &str,
        alias: &str,
        target: Alias,
    ) -> fnhost::Result<()> {
        let (n, a) = (name.to_string(), alias.to_string());
        self.change(name, None, move |h| h.set_alias(&n, &a, target))
            .await
    }

    /// Removes an alias everywhere.
    pub async fn remove_alias(self: &Arc<Self>, name: &str, alias: &str) -> fnhost::Result<()> {
        let (n, a) = (name.to_string(), alias.to_string());
        self.change(name, None, move |h| h.remove_alias(&n, &a))
            .await
    }

    /// Follows the bucket from revision `from`, applying each change; after
    /// a broken watch it reads the whole bucket again and resumes.
    pub(super) async fn watch_registry(self: Arc<Self>, mut from: u64) {
        let mut stop = self.stopping();
        loop {
            match self.kv.watch_all_from_revision(from).await {
                Ok(mut changes) => loop {
                    let next = tokio::select! {
                        n = changes.next() => n,
                        _ = stop.changed() => return,
                    };
                    let Some(change) = next else { break };
                    let entry = match change {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(target: "fnhost::cluster", error = %e, "registry watch");
                            break;
                        }
                    };
                    from = entry.revision + 1;
                    let mut applied = self.registry_lock.lock().await;
                    // This node already has this change or a newer one (it
                    // wrote it, or read it while making its own change).
                    if applied
                        .get(&entry.key)
                        .is_some_and(|r| *r >= entry.revision)
                    {
                        continue;
                    }
                    let table = match entry.operation {
                        async_nats::jetstream::kv::Operation::Put => {
                            match serde_json::from_slice::<Value>(&entry.value) {
                                Ok(t) => Some(t),
                                Err(e) => {
                                    self.stats.registry_errors.fetch_add(1, Ordering::Relaxed);
                                    tracing::error!(target: "fnhost::cluster", function = %entry.key, error = %e, "the cluster's table is not JSON; keeping the current one");
                                    continue;
                                }
                            }
                        }
                        _ => None,
                    };
                    match self.apply_entry(&entry.key, table.as_ref()).await {
                        Ok(_) => {
                            applied.insert(entry.key.clone(), entry.revision);
                        }
                        Err(e) => {
                            self.stats.registry_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(target: "fnhost::cluster", function = %entry.key, error = %e, "could not apply a registry change; reading the registry again");
                            // Retried by the full re-read below (or, if that
                            // fails too, by the watch resuming here).
                            applied.remove(&entry.key);
                            from = entry.revision;
                            break;
                        }
                    }
                },
                Err(e) => {
                    tracing::warn!(target: "fnhost::cluster", error = %e, "registry watch could not start")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            match self.sync_all().await {
                Ok(f) => from = f,
                Err(e) => {
                    tracing::warn!(target: "fnhost::cluster", error = %e, "registry resync")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_modules_lists_hashes_and_snapshots() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let t = serde_json::json!({"versions": {
            "1": {"module": a, "config": {"snapshot": false}},
            "2": {"module": b, "config": {"snapshot": true}},
            // Not a hash: never becomes a path or an object name.
            "3": {"module": "../../etc/passwd", "config": {}},
        }});
        assert_eq!(table_modules(&t), vec![(a, false), (b, true)]);
        assert!(table_modules(&serde_json::json!({})).is_empty());
    }
}
