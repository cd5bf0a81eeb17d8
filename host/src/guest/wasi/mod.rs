//! fnhost's own WASI preview1 layer (`wasi_snapshot_preview1`).
//!
//! Why our own rather than `wasmtime-wasi`: its preview1 filesystem has no
//! byte quota and cannot be wrapped to count bytes (see
//! `shared/WASMTIME-NOTES.md`), and building its context costs 10–17 % of a
//! fresh invocation. This layer gives a guest exactly what a function may
//! have and nothing more:
//!
//! - fd 0: empty stdin; fds 1 and 2: captured into the invocation's bounded
//!   log buffer;
//! - fd 3: the preopened directory `/tmp`, a private in-memory scratch
//!   filesystem with a byte quota ([`memfs`]), created on first use and
//!   wiped when the instance ends;
//! - the function's own environment variables, `argv = [function name]`;
//! - clocks, `random_get` (BLAKE3 keyed per instance from a host secret),
//!   `sched_yield`, `poll_oneoff` clock sleeps that never outlive the
//!   deadline;
//! - no sockets, no symlinks, no hard links, nothing else on the host.
//!
//! Every guest pointer is bounds-checked ([`crate::guest_mem`]); a bad one
//! gets `EFAULT`, never a host panic.

// Preview1's signatures are fixed by the standard; several take more than
// clippy's seven arguments.
#![allow(clippy::too_many_arguments)]

pub(crate) mod errno;
mod fd;
pub(crate) mod memfs;
mod path;
mod proc;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker, Memory, ValType};

use super::abi::{Provided, valtype};

use self::errno::Errno;
use self::fd::*;
use self::memfs::{FILETYPE_DIRECTORY, FILETYPE_REGULAR_FILE, Ino, MemFs, ROOT};
use self::path::*;
use self::proc::*;
use crate::error::Error;
use crate::guest_mem as gm;
use crate::logs::LogBuffer;

const MODULE: &str = super::abi::WASI_MODULE;
const FILETYPE_CHARACTER_DEVICE: u8 = 2;
const PREOPEN_FD: u32 = 3;
const PREOPEN_NAME: &[u8] = b"/tmp";
/// Open file descriptors an instance may hold.
const MAX_FDS: usize = 1024;
/// Most iovecs accepted in one call (POSIX `IOV_MAX`).
const MAX_IOVS: u32 = 1024;
/// All rights bits of preview1.
const ALL_RIGHTS: u64 = (1 << 29) - 1;

const OFLAGS_CREAT: i32 = 1;
const OFLAGS_DIRECTORY: i32 = 2;
const OFLAGS_EXCL: i32 = 4;
const OFLAGS_TRUNC: i32 = 8;
const FDFLAGS_APPEND: i32 = 1;
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;

/// One open file descriptor.
#[derive(Debug, Clone, Copy)]
enum Fd {
    Stdin,
    Stdout,
    Stderr,
    Dir {
        ino: Ino,
        preopen: bool,
    },
    File {
        ino: Ino,
        pos: u64,
        append: bool,
        read: bool,
        write: bool,
    },
}

/// Per-instance WASI state. Empty (no allocation) until the guest touches
/// a file descriptor other than stdout/stderr.
#[derive(Debug, Default)]
pub(crate) struct Wasi {
    fds: Vec<Option<Fd>>,
    fs: Option<Box<MemFs>>,
    rng: Option<Box<blake3::OutputReader>>,
    /// Where the last `fd_readdir` stopped, so the next piece of the same
    /// listing starts there instead of walking from the first entry.
    readdir_at: Option<ReaddirAt>,
}

/// The last whole entry an `fd_readdir` wrote.
#[derive(Debug)]
struct ReaddirAt {
    fd: i32,
    dir: Ino,
    /// The entry's `d_next`: the cookie the guest asks for next.
    cookie: u64,
    name: Box<str>,
}

impl Wasi {
    fn table(&mut self) -> &mut Vec<Option<Fd>> {
        if self.fds.is_empty() {
            self.fds = vec![
                Some(Fd::Stdin),
                Some(Fd::Stdout),
                Some(Fd::Stderr),
                Some(Fd::Dir {
                    ino: ROOT,
                    preopen: true,
                }),
            ];
        }
        &mut self.fds
    }

    fn get(&mut self, fd: i32) -> Result<Fd, Errno> {
        let t = self.table();
        t.get(fd as u32 as usize)
            .copied()
            .flatten()
            .ok_or(errno::BADF)
    }

    fn set(&mut self, fd: i32, v: Fd) {
        if let Some(slot) = self.table().get_mut(fd as u32 as usize) {
            *slot = Some(v);
        }
    }

    fn alloc_fd(&mut self, v: Fd) -> Result<u32, Errno> {
        let t = self.table();
        if let Some(i) = t.iter().position(Option::is_none) {
            t[i] = Some(v);
            return Ok(i as u32);
        }
        if t.len() >= MAX_FDS {
            return Err(errno::MFILE);
        }
        t.push(Some(v));
        Ok((t.len() - 1) as u32)
    }

    fn fs(&mut self, quota: u64) -> &mut MemFs {
        self.fs.get_or_insert_with(|| Box::new(MemFs::new(quota)))
    }
}

/// What a WASI call sees of its store: the WASI state and the few facts
/// of the invocation it needs, and nothing else (the store type is the
/// embedder's, here the guest layer's `State`; as wasmtime-wasi's
/// `WasiView`, this keeps WASI from reading the rest of it).
pub(crate) struct View<'a> {
    pub wasi: &'a mut Wasi,
    /// Where stdout and stderr go.
    pub logs: &'a mut LogBuffer,
    /// `argv[0]`: the function's name.
    pub program: &'a str,
    /// `KEY=VALUE` strings.
    pub env: &'a [String],
    /// Byte quota of `/tmp`.
    pub tmp_quota: u64,
    pub timeout: Duration,
    pub started: Instant,
    pub deadline: Instant,
    /// This instance's random stream is keyed by `secret` and `nonce` (the
    /// request id it started with), so no two instances share a stream.
    pub secret: &'a [u8; 32],
    pub nonce: u128,
}

/// A store type WASI can run in.
pub(crate) trait WasiView: Sized + 'static {
    /// The WASI view of this store's data.
    fn wasi_view(&mut self) -> View<'_>;
    /// The guest's memory (during the start function it may not be known
    /// yet; `None` then).
    fn memory(&self) -> Option<Memory>;
    /// Records a host-raised error and returns the wasmtime error that
    /// unwinds the guest.
    fn fault(&mut self, e: Error) -> wasmtime::Error;
}

/// The guest's memory: known to the store, or looked up by name while the
/// start function runs.
pub(crate) fn memory_of<T: WasiView>(caller: &mut Caller<'_, T>) -> Option<Memory> {
    if let Some(m) = caller.data().memory() {
        return Some(m);
    }
    caller
        .get_export(super::abi::exports::MEMORY)
        .and_then(|e| e.into_memory())
}

/// Registers every preview1 function on `linker`.
pub(crate) fn add_to_linker<T: WasiView>(
    linker: &mut Linker<T>,
    provided: &mut Provided,
) -> wasmtime::Result<()> {
    // Each `$name` below is a function `fn(&mut [u8], &mut View, args..) ->
    // Result<(), Errno>`; the wrapper hands it the guest memory and the
    // store's WASI view as disjoint borrows and returns the errno, or ends
    // the invocation with a timeout when the call hit the deadline.
    macro_rules! wasi {
        ($($name:ident($($arg:ident: $ty:ident),*);)*) => {$(
            provided.add(linker.engine(), MODULE, stringify!($name), &[$(valtype!($ty)),*], &[ValType::I32]);
            linker.func_wrap(
                MODULE,
                stringify!($name),
                |mut caller: Caller<'_, T>, $($arg: $ty),*| -> wasmtime::Result<i32> {
                    let Some(memory) = memory_of(&mut caller) else {
                        return Ok(errno::FAULT as i32);
                    };
                    let (mem, data) = memory.data_and_store_mut(&mut caller);
                    let mut view = data.wasi_view();
                    match $name(mem, &mut view, $($arg),*) {
                        Ok(()) => Ok(errno::SUCCESS as i32),
                        Err(errno::DEADLINE) => {
                            let timeout = view.timeout;
                            Err(data.fault(Error::Timeout { timeout }))
                        }
                        Err(e) => Ok(e as i32),
                    }
                },
            )?;
        )*};
    }
    wasi! {
        args_get(argv: i32, argv_buf: i32);
        args_sizes_get(argc: i32, size: i32);
        environ_get(environ: i32, buf: i32);
        environ_sizes_get(count: i32, size: i32);
        clock_res_get(id: i32, out: i32);
        clock_time_get(id: i32, precision: i64, out: i32);
        fd_advise(fd: i32, offset: i64, len: i64, advice: i32);
        fd_allocate(fd: i32, offset: i64, len: i64);
        fd_close(fd: i32);
        fd_datasync(fd: i32);
        fd_fdstat_get(fd: i32, out: i32);
        fd_fdstat_set_flags(fd: i32, flags: i32);
        fd_fdstat_set_rights(fd: i32, base: i64, inheriting: i64);
        fd_filestat_get(fd: i32, out: i32);
        fd_filestat_set_size(fd: i32, size: i64);
        fd_filestat_set_times(fd: i32, atim: i64, mtim: i64, flags: i32);
        fd_pread(fd: i32, iovs: i32, iovs_len: i32, offset: i64, nread: i32);
        fd_prestat_get(fd: i32, out: i32);
        fd_prestat_dir_name(fd: i32, path: i32, path_len: i32);
        fd_pwrite(fd: i32, iovs: i32, iovs_len: i32, offset: i64, nwritten: i32);
        fd_read(fd: i32, iovs: i32, iovs_len: i32, nread: i32);
        fd_readdir(fd: i32, buf: i32, buf_len: i32, cookie: i64, used: i32);
        fd_renumber(fd: i32, to: i32);
        fd_seek(fd: i32, offset: i64, whence: i32, out: i32);
        fd_sync(fd: i32);
        fd_tell(fd: i32, out: i32);
        fd_write(fd: i32, iovs: i32, iovs_len: i32, nwritten: i32);
        path_create_directory(fd: i32, path: i32, path_len: i32);
        path_filestat_get(fd: i32, flags: i32, path: i32, path_len: i32, out: i32);
        path_filestat_set_times(fd: i32, flags: i32, path: i32, path_len: i32, atim: i64, mtim: i64, fst: i32);
        path_link(old_fd: i32, old_flags: i32, old_path: i32, old_len: i32, new_fd: i32, new_path: i32, new_len: i32);
        path_open(fd: i32, dirflags: i32, path: i32, path_len: i32, oflags: i32, base: i64, inheriting: i64, fdflags: i32, out: i32);
        path_readlink(fd: i32, path: i32, path_len: i32, buf: i32, buf_len: i32, used: i32);
        path_remove_directory(fd: i32, path: i32, path_len: i32);
        path_rename(fd: i32, old_path: i32, old_len: i32, new_fd: i32, new_path: i32, new_len: i32);
        path_symlink(old_path: i32, old_len: i32, fd: i32, new_path: i32, new_len: i32);
        path_unlink_file(fd: i32, path: i32, path_len: i32);
        poll_oneoff(input: i32, out: i32, n: i32, nevents: i32);
        random_get(buf: i32, len: i32);
        sched_yield();
        proc_raise(sig: i32);
        sock_accept(fd: i32, flags: i32, out: i32);
        sock_recv(fd: i32, ri: i32, ri_len: i32, ri_flags: i32, ro_len: i32, ro_flags: i32);
        sock_send(fd: i32, si: i32, si_len: i32, si_flags: i32, so_len: i32);
        sock_shutdown(fd: i32, how: i32);
    }
    // The one call that never returns.
    provided.add(linker.engine(), MODULE, "proc_exit", &[ValType::I32], &[]);
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |mut caller: Caller<'_, T>, code: i32| -> wasmtime::Result<()> {
            Err(caller.data_mut().fault(Error::Trap {
                message: format!("guest called proc_exit({code})"),
                code: None,
            }))
        },
    )?;
    Ok(())
}

// ---- helpers ---------------------------------------------------------------

fn guest_str(mem: &[u8], ptr: i32, len: i32) -> Result<&str, Errno> {
    let len = len as u32 as u64;
    if len as usize > memfs::MAX_PATH {
        return Err(errno::NAMETOOLONG);
    }
    let bytes = gm::slice(mem, ptr as u32, len)?;
    std::str::from_utf8(bytes).map_err(|_| errno::ILSEQ)
}

/// Most bytes one read or write call moves: past it the call returns a
/// short count (as POSIX allows), so the total always fits the guest's
/// 32-bit `size` and a libc's signed `ssize_t` and can never wrap.
pub(crate) const MAX_IO_BYTES: u64 = i32::MAX as u64;
/// Bytes a host call copies or fills between two deadline checks.
const CHUNK: usize = 1 << 20;
/// Directory entries a host call walks between two deadline checks.
const ENTRY_CHUNK: usize = 4096;

/// Validates an iovec array and returns its `(ptr, len)` pairs, cut so
/// that together they cover at most [`MAX_IO_BYTES`].
fn iovecs(mem: &[u8], iovs: i32, n: i32) -> Result<impl Iterator<Item = (u32, u32)> + '_, Errno> {
    let n = n as u32;
    if n > MAX_IOVS {
        return Err(errno::INVAL);
    }
    let table = gm::slice(mem, iovs as u32, n as u64 * 8)?;
    let mut left = MAX_IO_BYTES;
    Ok(table
        .chunks_exact(8)
        .map(|c| {
            let p = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let l = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            (p, l)
        })
        .map_while(move |(p, l)| {
            if left == 0 {
                return None;
            }
            let l = (l as u64).min(left);
            left -= l;
            Some((p, l as u32))
        }))
}

/// Linux's rule for a read or write of `len` bytes at `at` (reads and
/// writes past the end are fine): the offset must be a valid signed file
/// position and `at + len` must not overflow one, else `EINVAL`.
fn check_span(at: u64, iovs: impl Iterator<Item = (u32, u32)>) -> Result<(), Errno> {
    let len: u64 = iovs.map(|(_, l)| l as u64).sum();
    match at.checked_add(len) {
        Some(end) if end <= i64::MAX as u64 => Ok(()),
        _ => Err(errno::INVAL),
    }
}

/// `Err(DEADLINE)` once `deadline` (the invocation's) has passed: long
/// host work calls this between chunks so it never runs far past the
/// timeout.
fn check_deadline(deadline: Instant) -> Result<(), Errno> {
    if Instant::now() >= deadline {
        Err(errno::DEADLINE)
    } else {
        Ok(())
    }
}

/// Writes a `(count, total size)` pair of NUL-terminated strings.
fn write_strings<'a>(
    mem: &mut [u8],
    items: impl Iterator<Item = &'a [u8]>,
    ptrs: i32,
    buf: i32,
) -> Result<(), Errno> {
    let mut ptr_at = ptrs as u32;
    let mut buf_at = buf as u32;
    for item in items {
        gm::write_u32(mem, ptr_at, buf_at)?;
        gm::write(mem, buf_at, item)?;
        gm::write(mem, gm::offset(buf_at, item.len() as u64)?, &[0])?;
        ptr_at = gm::offset(ptr_at, 4)?;
        buf_at = gm::offset(buf_at, item.len() as u64 + 1)?;
    }
    Ok(())
}

fn filestat(
    mem: &mut [u8],
    out: i32,
    ino: u64,
    filetype: u8,
    size: u64,
    nlink: u64,
) -> Result<(), Errno> {
    let mut b = [0u8; 64];
    b[8..16].copy_from_slice(&ino.to_le_bytes());
    b[16] = filetype;
    b[24..32].copy_from_slice(&nlink.to_le_bytes());
    b[32..40].copy_from_slice(&size.to_le_bytes());
    gm::write(mem, out as u32, &b)?;
    Ok(())
}

/// The directory behind `fd`; any other descriptor is `EBADF` (as in
/// wasmtime-wasi, which keeps directories apart from files).
fn dir_ino(st: &mut View<'_>, fd: i32) -> Result<Ino, Errno> {
    match st.wasi.get(fd)? {
        Fd::Dir { ino, .. } => Ok(ino),
        _ => Err(errno::BADF),
    }
}

fn monotonic_origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn now_ns(st: &View<'_>, id: i32) -> Result<u64, Errno> {
    Ok(match id {
        0 => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
        1 => monotonic_origin().elapsed().as_nanos() as u64,
        // CPU-time clocks: time since this invocation started.
        2 | 3 => st.started.elapsed().as_nanos() as u64,
        _ => return Err(errno::INVAL),
    })
}
