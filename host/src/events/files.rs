//! File events: a watched directory produces S3-style object
//! notifications (bucket = the directory's name, key = the path under it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use notify::event::{AccessKind, AccessMode, ModifyKind, RemoveKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::clock::ms;
use super::shapes::{self, S3Change};
use super::{EventSource, Events, SourceContext, SourceId};
use crate::error::{Error, Result};

/// Watches a directory (recursively, with inotify on Linux) and sends one
/// event per change to its target:
///
/// - `ObjectCreated:Put` when a file is closed after writing or is moved
///   in (so a handler never sees a half-written file), with its size and
///   its MD5 as `eTag`;
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

/// Keeps a watcher alive until the source is stopped.
struct Watching(#[allow(dead_code)] notify::RecommendedWatcher);

impl EventSource for Watching {
    fn run(&mut self, ctx: &SourceContext) -> Result<()> {
        ctx.wait_for_stop();
        Ok(())
    }
}

impl Events {
    /// Starts watching; changes made after this returns produce events.
    /// Stop it with [`remove_source`](Events::remove_source).
    pub fn watch_dir(&self, watch: FileEvents) -> Result<SourceId> {
        self.sh.core.registry.resolve(&watch.target)?;
        let events = self.clone();
        let name = format!("files:{}", watch.bucket);
        let configuration = name.clone();
        let dir = watch.dir.clone();
        let seq = AtomicU64::new(0);
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(ev) => watch.handle(&events, &ev, &seq, &configuration),
                Err(e) => tracing::warn!(target: "fnhost::events", error = %e, "file watcher"),
            })
            .map_err(|e| Error::config("dir", format!("cannot watch: {e}")))?;
        watcher
            .watch(&dir, RecursiveMode::Recursive)
            .map_err(|e| Error::config("dir", format!("cannot watch {}: {e}", dir.display())))?;
        self.add_source(&name, Watching(watcher))
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
            if path.is_dir() {
                continue;
            }
            let Some(key) = self.key(path) else {
                continue;
            };
            // A file removed before we read it still gets its created
            // event, without size and eTag; its removal event follows.
            let (size, etag) = match created.then(|| hash_file(path)) {
                Some(Ok((size, etag))) => (Some(size), Some(etag)),
                _ => (None, None),
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
                // Grows across watchers and restarts: time, then a count.
                sequencer: (ms(events.clock().now()) << 16)
                    | (seq.fetch_add(1, Ordering::Relaxed) & 0xFFFF),
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

/// Size and MD5 (S3's `eTag` for a single-part upload) of a file, read
/// in chunks.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    use md5::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = md5::Md5::new();
    let size = std::io::copy(&mut f, &mut h)?;
    Ok((size, shapes::hex(&h.finalize())))
}
