//! Streams over `/tmp` files (`read-via-stream`, `write-via-stream`,
//! `append-via-stream`): always ready, bounded chunks, errors as
//! filesystem codes.

use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

use super::super::super::wasi::errno::Errno;
use super::super::super::wasi::memfs::Ino;
use super::{SharedFs, code};

/// A stream over one `/tmp` file: reads from, or writes (or appends) to,
/// its position. It keeps the file open, as a descriptor does.
pub(super) struct FileStream {
    fs: SharedFs,
    ino: Ino,
    pos: u64,
    append: bool,
}

/// Most bytes one `read` or `check-write` covers.
const CHUNK: usize = 64 * 1024;

impl FileStream {
    pub(super) fn new(fs: SharedFs, ino: Ino, pos: u64, append: bool) -> FileStream {
        FileStream {
            fs,
            ino,
            pos,
            append,
        }
    }
}

impl Drop for FileStream {
    fn drop(&mut self) {
        self.fs.lock().close_file(self.ino);
    }
}

fn stream_error(e: Errno) -> StreamError {
    StreamError::LastOperationFailed(wasmtime::format_err!("{:?}", code(e)))
}

impl InputStream for FileStream {
    fn read(&mut self, size: usize) -> StreamResult<bytes::Bytes> {
        let fs = self.fs.lock();
        let data = fs.file(self.ino).map_err(stream_error)?;
        let start = usize::try_from(self.pos).unwrap_or(usize::MAX);
        if start >= data.len() {
            return Err(StreamError::Closed);
        }
        let end = start.saturating_add(size.min(CHUNK)).min(data.len());
        self.pos = end as u64;
        Ok(bytes::Bytes::copy_from_slice(&data[start..end]))
    }
}

impl OutputStream for FileStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        let mut fs = self.fs.lock();
        if self.append {
            self.pos = fs.file(self.ino).map_err(stream_error)?.len() as u64;
        }
        fs.write_at(self.ino, self.pos, &bytes)
            .map_err(stream_error)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(CHUNK)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for FileStream {
    async fn ready(&mut self) {}
}
