//! File events: a watched directory produces S3-style object
//! notifications (bucket = the directory's name, key = the path under it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use notify::event::{AccessKind, AccessMode, ModifyKind, RemoveKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::clock::ms;
use super::shapes::{self, S3Change};
use super::{EventSource, Events, SourceContext};
use crate::error::{Error, Result};

/// Watches a directory (recursively, with inotify on Linux) and sends one
/// event per change to its target:
///
/// - `ObjectCreated:Put` when a file is closed after writing or is moved
///   in (so a handler never sees a half-written file), with its size and
///   a content hash as `eTag`;
/// - `ObjectRemoved:Delete` when a file is deleted or moved out.
///
/// The payload is an S3 event (`{"Records": [{"s3": {...}}]}`), bucket =
/// the directory's file name, key = the path below it with `/`
/// separators, URL-encoded as S3 does. Changes made while the host is not
/// running are not seen (the operating system does not keep them).
#[derive(Debug, Clone)]
pub struct FileEvents {
    dir: PathBuf,
    target: String,
    bucket: String,
}

impl FileEvents {
    /// Watches `dir` (which must exist) for `target`.
    pub fn new(dir: impl Into<PathBuf>, target: &str) -> Result<FileEvents> {
        let dir: PathBuf = dir.into();
        let dir = dir.canonicalize().map_err(|e| Error::io(&dir, e))?;
        if !dir.is_dir() {
            return Err(Error::config(
                "dir",
                format!("{} is not a directory", dir.display()),
            ));
        }
        let bucket = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into());
        Ok(FileEvents {
            dir,
            target: target.to_string(),
            bucket,
        })
    }
}

impl EventSource for FileEvents {
    fn run(&mut self, ctx: &SourceContext) -> Result<()> {
        let events = ctx.events().clone();
        let me = Arc::new(self.clone());
        let seq = Arc::new(AtomicU64::new(0));
        let configuration = ctx.name().to_string();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(ev) => me.handle(&events, &ev, &seq, &configuration),
                Err(e) => tracing::warn!(target: "fnhost::events", error = %e, "file watcher"),
            })
            .map_err(|e| Error::config("dir", format!("cannot watch: {e}")))?;
        watcher
            .watch(&self.dir, RecursiveMode::Recursive)
            .map_err(|e| {
                Error::config("dir", format!("cannot watch {}: {e}", self.dir.display()))
            })?;
        ctx.wait_for_stop();
        drop(watcher);
        Ok(())
    }
}

impl FileEvents {
    fn handle(&self, events: &Events, ev: &notify::Event, seq: &AtomicU64, configuration: &str) {
        let created = match ev.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To)) => true,
            EventKind::Remove(RemoveKind::File | RemoveKind::Any)
            | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => false,
            _ => return,
        };
        for path in &ev.paths {
            if created && !path.is_file() {
                continue;
            }
            let Some(key) = self.key(path) else {
                continue;
            };
            let (size, etag) = if created {
                match hash_file(path) {
                    Ok((size, etag)) => (Some(size), Some(etag)),
                    // Gone again already: the removal event follows.
                    Err(_) => continue,
                }
            } else {
                (None, None)
            };
            let change = S3Change {
                bucket: &self.bucket,
                key: &key,
                event_name: if created {
                    "ObjectCreated:Put"
                } else {
                    "ObjectRemoved:Delete"
                },
                size,
                etag,
                sequencer: seq.fetch_add(1, Ordering::Relaxed),
                at_ms: ms(events.clock().now()),
                configuration,
            };
            let payload = shapes::s3_event(&change).to_string();
            if let Err(e) = events.send(&self.target, payload.into_bytes()) {
                tracing::warn!(target: "fnhost::events", key = %key, error = %e, "file event refused");
            }
        }
    }

    /// The S3 key of `path`: relative to the watched dir, `/`-separated.
    fn key(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.dir).ok()?;
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }
}

/// Size and content hash of a file, read in chunks.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = blake3::Hasher::new();
    let size = std::io::copy(&mut f, &mut h)?;
    Ok((size, h.finalize().to_hex()[..32].to_string()))
}
