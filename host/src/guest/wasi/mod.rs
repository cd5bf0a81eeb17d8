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
pub(crate) mod memfs;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker, Memory, ValType};

use super::abi::{Provided, valtype};

use self::errno::Errno;
use self::memfs::{FILETYPE_DIRECTORY, FILETYPE_REGULAR_FILE, Ino, MemFs, ROOT};
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

// ---- args, environment, clocks, random ----------------------------------

fn args_sizes_get(mem: &mut [u8], st: &mut View<'_>, argc: i32, size: i32) -> Result<(), Errno> {
    gm::write_u32(mem, argc as u32, 1)?;
    gm::write_u32(mem, size as u32, st.program.len() as u32 + 1)?;
    Ok(())
}

fn args_get(mem: &mut [u8], st: &mut View<'_>, argv: i32, buf: i32) -> Result<(), Errno> {
    write_strings(mem, std::iter::once(st.program.as_bytes()), argv, buf)
}

fn environ_sizes_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    count: i32,
    size: i32,
) -> Result<(), Errno> {
    let env = st.env;
    gm::write_u32(mem, count as u32, env.len() as u32)?;
    let total: usize = env.iter().map(|e| e.len() + 1).sum();
    gm::write_u32(mem, size as u32, total as u32)?;
    Ok(())
}

fn environ_get(mem: &mut [u8], st: &mut View<'_>, environ: i32, buf: i32) -> Result<(), Errno> {
    write_strings(mem, st.env.iter().map(|e| e.as_bytes()), environ, buf)
}

fn clock_res_get(mem: &mut [u8], st: &mut View<'_>, id: i32, out: i32) -> Result<(), Errno> {
    now_ns(st, id)?;
    gm::write_u64(mem, out as u32, 1)?;
    Ok(())
}

fn clock_time_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    id: i32,
    _precision: i64,
    out: i32,
) -> Result<(), Errno> {
    let t = now_ns(st, id)?;
    gm::write_u64(mem, out as u32, t)?;
    Ok(())
}

fn random_get(mem: &mut [u8], st: &mut View<'_>, buf: i32, len: i32) -> Result<(), Errno> {
    let dst = gm::slice_mut(mem, buf as u32, len as u32 as u64)?;
    let seed = *blake3::keyed_hash(st.secret, &st.nonce.to_le_bytes()).as_bytes();
    let rng = st
        .wasi
        .rng
        .get_or_insert_with(|| Box::new(blake3::Hasher::new_keyed(&seed).finalize_xof()));
    // Up to 4 GiB in one call: filled a chunk at a time, under the deadline.
    for chunk in dst.chunks_mut(CHUNK) {
        check_deadline(st.deadline)?;
        rng.fill(chunk);
    }
    Ok(())
}

fn sched_yield(_: &mut [u8], _: &mut View<'_>) -> Result<(), Errno> {
    std::thread::yield_now();
    Ok(())
}

fn proc_raise(_: &mut [u8], _: &mut View<'_>, _sig: i32) -> Result<(), Errno> {
    Err(errno::NOSYS)
}

/// Clock subscriptions sleep, but never past the invocation's deadline;
/// fd subscriptions are always ready (stdio and memory files never block).
fn poll_oneoff(
    mem: &mut [u8],
    st: &mut View<'_>,
    input: i32,
    out: i32,
    n: i32,
    nevents: i32,
) -> Result<(), Errno> {
    let run = |mem: &mut [u8], st: &mut View<'_>| -> Result<Option<Duration>, Errno> {
        let n = n as u32;
        if n == 0 || n > MAX_IOVS {
            return Err(errno::INVAL);
        }
        let subs = gm::slice(mem, input as u32, n as u64 * 48)?.to_vec();
        let mut events = Vec::new();
        let mut sleep: Option<(Duration, u64)> = None;
        for s in subs.chunks_exact(48) {
            let userdata = u64::from_le_bytes(s[0..8].try_into().unwrap_or_default());
            match s[8] {
                0 => {
                    let clock = i32::from_le_bytes(s[16..20].try_into().unwrap_or_default());
                    let timeout = u64::from_le_bytes(s[24..32].try_into().unwrap_or_default());
                    let abs = u16::from_le_bytes([s[40], s[41]]) & 1 == 1;
                    let now = now_ns(st, clock)?;
                    let wait = Duration::from_nanos(if abs {
                        timeout.saturating_sub(now)
                    } else {
                        timeout
                    });
                    if sleep.is_none_or(|(d, _)| wait < d) {
                        sleep = Some((wait, userdata));
                    }
                }
                ty @ (1 | 2) => events.push((userdata, ty, 0u16)),
                _ => return Err(errno::INVAL),
            }
        }
        let mut slept = None;
        if events.is_empty()
            && let Some((wait, userdata)) = sleep
        {
            slept = Some(wait);
            events.push((userdata, 0, 0));
        }
        for (i, (userdata, ty, err)) in events.iter().enumerate() {
            let mut e = [0u8; 32];
            e[0..8].copy_from_slice(&userdata.to_le_bytes());
            e[8..10].copy_from_slice(&err.to_le_bytes());
            e[10] = *ty;
            gm::write(mem, gm::offset(out as u32, i as u64 * 32)?, &e)?;
        }
        gm::write_u32(mem, nevents as u32, events.len() as u32)?;
        Ok(slept)
    };
    match run(mem, st)? {
        None => Ok(()),
        Some(wait) => {
            let remaining = st.deadline.saturating_duration_since(Instant::now());
            if wait >= remaining {
                // Sleeping past the deadline ends the invocation with a
                // timeout, as its end would have.
                std::thread::sleep(remaining);
                return Err(errno::DEADLINE);
            }
            std::thread::sleep(wait);
            Ok(())
        }
    }
}

// ---- file descriptors ------------------------------------------------------

fn fd_write(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    iovs: i32,
    n: i32,
    nwritten: i32,
) -> Result<(), Errno> {
    // Fast path: stdout/stderr before the fd table exists.
    let target = if st.wasi.fds.is_empty() && (fd == 1 || fd == 2) {
        Fd::Stdout
    } else {
        st.wasi.get(fd)?
    };
    let mut total: u64 = 0;
    match target {
        Fd::Stdout | Fd::Stderr => {
            // No deadline check needed: the log buffer copies at most its
            // cap, the rest is only counted.
            for (p, l) in iovecs(mem, iovs, n)? {
                st.logs.push(gm::slice(mem, p, l as u64)?);
                total += l as u64;
            }
        }
        Fd::File {
            ino,
            pos,
            append,
            write,
            ..
        } => {
            if !write {
                return Err(errno::BADF);
            }
            let start = if append {
                tmp(st).file(ino)?.len() as u64
            } else {
                pos
            };
            let at = write_iovs(st, ino, mem, iovs, n, start)?;
            total = at - start;
            if let Some(Some(Fd::File { pos, .. })) = st.wasi.fds.get_mut(fd as usize) {
                *pos = at;
            }
        }
        Fd::Stdin | Fd::Dir { .. } => return Err(errno::BADF),
    }
    gm::write_u32(mem, nwritten as u32, total as u32)?;
    Ok(())
}

/// A guest file offset (`filesize`, an unsigned 64-bit number in WASI).
fn file_offset(offset: i64) -> u64 {
    offset as u64
}

fn fd_pwrite(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    iovs: i32,
    n: i32,
    offset: i64,
    nwritten: i32,
) -> Result<(), Errno> {
    let (ino, append) = match st.wasi.get(fd)? {
        Fd::File {
            ino,
            write: true,
            append,
            ..
        } => (ino, append),
        Fd::File { .. } | Fd::Dir { .. } => return Err(errno::BADF),
        _ => return Err(errno::SPIPE),
    };
    // Linux: on a descriptor opened for appending, pwrite appends and
    // ignores the offset (wasmtime-wasi does the same).
    let start = if append {
        tmp(st).file(ino)?.len() as u64
    } else {
        file_offset(offset)
    };
    let end = write_iovs(st, ino, mem, iovs, n, start)?;
    gm::write_u32(mem, nwritten as u32, (end - start) as u32)?;
    Ok(())
}

/// The instance's `/tmp`, created on first use with the function's quota.
fn tmp<'a>(st: &'a mut View<'_>) -> &'a mut MemFs {
    let quota = st.tmp_quota;
    st.wasi.fs(quota)
}

/// Writes the iovecs' bytes into file `ino` from `at`, a chunk at a time
/// under the deadline; returns the end.
fn write_iovs(
    st: &mut View<'_>,
    ino: Ino,
    mem: &[u8],
    iovs: i32,
    n: i32,
    mut at: u64,
) -> Result<u64, Errno> {
    check_span(at, iovecs(mem, iovs, n)?)?;
    for (p, l) in iovecs(mem, iovs, n)? {
        for chunk in gm::slice(mem, p, l as u64)?.chunks(CHUNK) {
            check_deadline(st.deadline)?;
            tmp(st).write_at(ino, at, chunk)?;
            at += chunk.len() as u64;
        }
    }
    Ok(at)
}

/// Copies the bytes of file `ino` from `at` into the iovecs, a chunk at a
/// time under the deadline; returns bytes copied. Reading at or past the
/// end copies nothing (POSIX: 0 bytes, no error).
fn read_into(
    mem: &mut [u8],
    st: &mut View<'_>,
    ino: Ino,
    iovs: i32,
    n: i32,
    mut at: u64,
) -> Result<u64, Errno> {
    let list: Vec<(u32, u32)> = iovecs(mem, iovs, n)?.collect();
    check_span(at, list.iter().copied())?;
    let start = at;
    for (p, l) in list {
        let dst = gm::slice_mut(mem, p, l as u64)?;
        let mut filled = 0;
        while filled < dst.len() {
            check_deadline(st.deadline)?;
            let data = tmp(st).file(ino)?;
            let rest = usize::try_from(at)
                .ok()
                .and_then(|a| data.get(a..))
                .unwrap_or(&[]);
            let take = rest.len().min(dst.len() - filled).min(CHUNK);
            if take == 0 {
                return Ok(at - start);
            }
            dst[filled..filled + take].copy_from_slice(&rest[..take]);
            filled += take;
            at += take as u64;
        }
    }
    Ok(at - start)
}

fn fd_read(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    iovs: i32,
    n: i32,
    nread: i32,
) -> Result<(), Errno> {
    let got = match st.wasi.get(fd)? {
        Fd::Stdin => 0,
        Fd::File {
            ino,
            pos,
            read: true,
            ..
        } => {
            let got = read_into(mem, st, ino, iovs, n, pos)?;
            if let Some(Some(Fd::File { pos, .. })) = st.wasi.fds.get_mut(fd as usize) {
                *pos += got;
            }
            got
        }
        _ => return Err(errno::BADF),
    };
    gm::write_u32(mem, nread as u32, got as u32)?;
    Ok(())
}

fn fd_pread(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    iovs: i32,
    n: i32,
    offset: i64,
    nread: i32,
) -> Result<(), Errno> {
    let Fd::File { ino, read, .. } = st.wasi.get(fd)? else {
        return Err(errno::BADF);
    };
    // A negative offset on a file is EINVAL, whether or not it reads (the
    // order wasmtime-wasi checks in).
    if offset < 0 {
        return Err(errno::INVAL);
    }
    if !read {
        return Err(errno::BADF);
    }
    let got = read_into(mem, st, ino, iovs, n, file_offset(offset))?;
    gm::write_u32(mem, nread as u32, got as u32)?;
    Ok(())
}

fn fd_seek(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    offset: i64,
    whence: i32,
    out: i32,
) -> Result<(), Errno> {
    let (ino, pos) = match st.wasi.get(fd)? {
        Fd::File { ino, pos, .. } => (ino, pos),
        Fd::Dir { .. } => return Err(errno::BADF),
        _ => return Err(errno::SPIPE),
    };
    let len = tmp(st).file(ino)?.len() as i64;
    let base = match whence {
        0 => 0,
        1 => pos as i64,
        2 => len,
        _ => return Err(errno::INVAL),
    };
    let new = base
        .checked_add(offset)
        .filter(|p| *p >= 0)
        .ok_or(errno::INVAL)?;
    if let Some(Some(Fd::File { pos, .. })) = st.wasi.fds.get_mut(fd as usize) {
        *pos = new as u64;
    }
    gm::write_u64(mem, out as u32, new as u64)?;
    Ok(())
}

fn fd_tell(mem: &mut [u8], st: &mut View<'_>, fd: i32, out: i32) -> Result<(), Errno> {
    let pos = match st.wasi.get(fd)? {
        Fd::File { pos, .. } => pos,
        Fd::Dir { .. } => return Err(errno::BADF),
        _ => return Err(errno::SPIPE),
    };
    gm::write_u64(mem, out as u32, pos)?;
    Ok(())
}

fn fd_close(_: &mut [u8], st: &mut View<'_>, fd: i32) -> Result<(), Errno> {
    let f = st.wasi.get(fd)?;
    if let Fd::File { ino, .. } = f {
        tmp(st).close_file(ino);
    }
    st.wasi.fds[fd as usize] = None;
    Ok(())
}

fn fd_renumber(_: &mut [u8], st: &mut View<'_>, fd: i32, to: i32) -> Result<(), Errno> {
    let f = st.wasi.get(fd)?;
    st.wasi.get(to)?;
    if fd != to {
        fd_close(&mut [], st, to)?;
        st.wasi.set(to, f);
        st.wasi.fds[fd as usize] = None;
    }
    Ok(())
}

fn fd_fdstat_get(mem: &mut [u8], st: &mut View<'_>, fd: i32, out: i32) -> Result<(), Errno> {
    let (ty, flags) = match st.wasi.get(fd)? {
        Fd::Stdin | Fd::Stdout | Fd::Stderr => (FILETYPE_CHARACTER_DEVICE, 0u16),
        Fd::Dir { .. } => (FILETYPE_DIRECTORY, 0),
        Fd::File { append, .. } => (FILETYPE_REGULAR_FILE, append as u16),
    };
    let mut b = [0u8; 24];
    b[0] = ty;
    b[2..4].copy_from_slice(&flags.to_le_bytes());
    b[8..16].copy_from_slice(&ALL_RIGHTS.to_le_bytes());
    b[16..24].copy_from_slice(&ALL_RIGHTS.to_le_bytes());
    gm::write(mem, out as u32, &b)?;
    Ok(())
}

fn fd_fdstat_set_flags(_: &mut [u8], st: &mut View<'_>, fd: i32, flags: i32) -> Result<(), Errno> {
    match st.wasi.get(fd)? {
        Fd::File {
            ino,
            pos,
            read,
            write,
            ..
        } => {
            st.wasi.set(
                fd,
                Fd::File {
                    ino,
                    pos,
                    read,
                    write,
                    append: flags & FDFLAGS_APPEND != 0,
                },
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

fn fd_fdstat_set_rights(
    _: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    _b: i64,
    _i: i64,
) -> Result<(), Errno> {
    st.wasi.get(fd).map(|_| ())
}

fn fd_filestat_get(mem: &mut [u8], st: &mut View<'_>, fd: i32, out: i32) -> Result<(), Errno> {
    match st.wasi.get(fd)? {
        Fd::Stdin | Fd::Stdout | Fd::Stderr => {
            filestat(mem, out, fd as u64, FILETYPE_CHARACTER_DEVICE, 0, 1)
        }
        Fd::Dir { ino, .. } | Fd::File { ino, .. } => {
            let (ty, size, nlink) = tmp(st).stat(ino)?;
            filestat(mem, out, ino, ty, size, nlink)
        }
    }
}

fn fd_filestat_set_size(_: &mut [u8], st: &mut View<'_>, fd: i32, size: i64) -> Result<(), Errno> {
    let Fd::File {
        ino, write: true, ..
    } = st.wasi.get(fd)?
    else {
        return Err(errno::BADF);
    };
    if size < 0 {
        return Err(errno::INVAL);
    }
    tmp(st).set_len(ino, size as u64)
}

fn fd_allocate(
    _: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    offset: i64,
    len: i64,
) -> Result<(), Errno> {
    let Fd::File {
        ino, write: true, ..
    } = st.wasi.get(fd)?
    else {
        return Err(errno::BADF);
    };
    let end = (offset as u64).checked_add(len as u64).ok_or(errno::FBIG)?;
    let fs = tmp(st);
    if end > fs.file(ino)?.len() as u64 {
        fs.set_len(ino, end)?;
    }
    Ok(())
}

/// `fstflags`: a time and "now" for the same time is `EINVAL` (checked
/// before anything else, as wasmtime-wasi does).
fn check_fstflags(flags: i32) -> Result<(), Errno> {
    const ATIM: i32 = 1;
    const ATIM_NOW: i32 = 2;
    const MTIM: i32 = 4;
    const MTIM_NOW: i32 = 8;
    if (flags & ATIM != 0 && flags & ATIM_NOW != 0) || (flags & MTIM != 0 && flags & MTIM_NOW != 0)
    {
        return Err(errno::INVAL);
    }
    Ok(())
}

fn fd_filestat_set_times(
    _: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    _a: i64,
    _m: i64,
    flags: i32,
) -> Result<(), Errno> {
    check_fstflags(flags)?;
    match st.wasi.get(fd)? {
        // wasmtime-wasi cannot set the preopen's own times.
        Fd::Dir { preopen: true, .. } if flags != 0 => Err(errno::BADF),
        _ => Ok(()),
    }
}

fn fd_advise(
    _: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    _o: i64,
    _l: i64,
    _a: i32,
) -> Result<(), Errno> {
    st.wasi.get(fd).map(|_| ())
}

fn fd_datasync(_: &mut [u8], st: &mut View<'_>, fd: i32) -> Result<(), Errno> {
    st.wasi.get(fd).map(|_| ())
}

fn fd_sync(_: &mut [u8], st: &mut View<'_>, fd: i32) -> Result<(), Errno> {
    st.wasi.get(fd).map(|_| ())
}

fn fd_prestat_get(mem: &mut [u8], st: &mut View<'_>, fd: i32, out: i32) -> Result<(), Errno> {
    match st.wasi.get(fd)? {
        Fd::Dir { preopen: true, .. } if fd as u32 == PREOPEN_FD => {
            let mut b = [0u8; 8];
            b[4..8].copy_from_slice(&(PREOPEN_NAME.len() as u32).to_le_bytes());
            gm::write(mem, out as u32, &b)?;
            Ok(())
        }
        _ => Err(errno::BADF),
    }
}

fn fd_prestat_dir_name(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    path: i32,
    len: i32,
) -> Result<(), Errno> {
    match st.wasi.get(fd)? {
        Fd::Dir { preopen: true, .. } if fd as u32 == PREOPEN_FD => {
            if (len as u32 as usize) < PREOPEN_NAME.len() {
                return Err(errno::NAMETOOLONG);
            }
            gm::write(mem, path as u32, PREOPEN_NAME)?;
            Ok(())
        }
        _ => Err(errno::BADF),
    }
}

fn fd_readdir(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    buf: i32,
    buf_len: i32,
    cookie: i64,
    used: i32,
) -> Result<(), Errno> {
    let dir = dir_ino(st, fd)?;
    let deadline = st.deadline;
    let out = gm::slice_mut(mem, buf as u32, buf_len as u32 as u64)?;
    let skip = cookie as u64;
    // The next piece of the listing the last call wrote: start after its
    // last name. Any other cookie walks from the first entry.
    let resume = st
        .wasi
        .readdir_at
        .take()
        .filter(|r| (r.fd, r.dir, r.cookie) == (fd, dir, skip));
    let (first, after) = match &resume {
        Some(r) => (r.cookie, Some(&*r.name)),
        None => (0, None),
    };
    let mut n = 0;
    let mut last_whole = None;
    // Entries are written straight into the guest's buffer (the last one
    // cut where the buffer ends, as preview1 specifies); nothing is
    // allocated per entry, and the walk checks the deadline as it goes.
    for (k, (ino, ty, name)) in tmp(st).dir_iter(dir, after)?.enumerate() {
        if k.is_multiple_of(ENTRY_CHUNK) {
            check_deadline(deadline)?;
        }
        let i = first + k as u64;
        if i < skip {
            continue;
        }
        if n >= out.len() {
            break;
        }
        let mut d = [0u8; 24];
        d[0..8].copy_from_slice(&(i + 1).to_le_bytes());
        d[8..16].copy_from_slice(&ino.to_le_bytes());
        d[16..20].copy_from_slice(&(name.len() as u32).to_le_bytes());
        d[20] = ty;
        if out.len() - n >= d.len() + name.len() {
            last_whole = Some((i + 1, name));
        }
        for part in [&d[..], name.as_bytes()] {
            let take = part.len().min(out.len() - n);
            out[n..n + take].copy_from_slice(&part[..take]);
            n += take;
        }
    }
    // Names only (the dots come first whatever the cookie).
    let at = last_whole
        .filter(|(next, _)| *next > 2)
        .map(|(cookie, name)| ReaddirAt {
            fd,
            dir,
            cookie,
            name: name.into(),
        });
    st.wasi.readdir_at = at;
    gm::write_u32(mem, used as u32, n as u32)?;
    Ok(())
}

// ---- paths -------------------------------------------------------------------

fn path_open(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    _dirflags: i32,
    path: i32,
    path_len: i32,
    oflags: i32,
    base: i64,
    _inheriting: i64,
    fdflags: i32,
    out: i32,
) -> Result<(), Errno> {
    let dir = match st.wasi.get(fd)? {
        Fd::Dir { ino, .. } => ino,
        // wasmtime-wasi's path_open answers ENOTDIR here (other path calls
        // EBADF).
        Fd::File { .. } => return Err(errno::NOTDIR),
        _ => return Err(errno::BADF),
    };
    let path = guest_str(mem, path, path_len)?;
    let creat = oflags & OFLAGS_CREAT != 0;
    if creat && oflags & OFLAGS_DIRECTORY != 0 {
        // Linux: O_CREAT with O_DIRECTORY is EINVAL.
        return Err(errno::INVAL);
    }
    if creat && path.ends_with('/') {
        // Linux: O_CREAT on a name ending in `/` is EISDIR.
        return Err(errno::ISDIR);
    }
    let fs = tmp(st);
    let ino = match fs.lookup(dir, path) {
        Ok(_) if creat && oflags & OFLAGS_EXCL != 0 => {
            return Err(errno::EXIST);
        }
        Ok(ino) if creat && fs.is_dir(ino) => return Err(errno::ISDIR),
        Ok(ino) => ino,
        Err(errno::NOENT) if creat => {
            let at = fs.parent_of(dir, path)?;
            fs.create_file(at.parent, at.name)?
        }
        Err(e) => return Err(e),
    };
    let base = base as u64;
    let entry = if fs.is_dir(ino) {
        if oflags & OFLAGS_TRUNC != 0 || base & RIGHT_FD_WRITE != 0 {
            // Linux: a directory cannot be opened for writing.
            return Err(errno::ISDIR);
        }
        Fd::Dir {
            ino,
            preopen: false,
        }
    } else {
        if oflags & OFLAGS_DIRECTORY != 0 {
            return Err(errno::NOTDIR);
        }
        // As wasmtime-wasi opens: writable when asked to write, create or
        // truncate; readable when asked to read or not asked to write.
        let write = base & RIGHT_FD_WRITE != 0 || creat || oflags & OFLAGS_TRUNC != 0;
        let read = base & RIGHT_FD_READ != 0 || base & RIGHT_FD_WRITE == 0;
        if oflags & OFLAGS_TRUNC != 0 {
            fs.set_len(ino, 0)?;
        }
        fs.open_file(ino);
        Fd::File {
            ino,
            pos: 0,
            append: fdflags & FDFLAGS_APPEND != 0,
            read,
            write,
        }
    };
    let new_fd = match st.wasi.alloc_fd(entry) {
        Ok(f) => f,
        Err(e) => {
            if let Fd::File { ino, .. } = entry {
                tmp(st).close_file(ino);
            }
            return Err(e);
        }
    };
    gm::write_u32(mem, out as u32, new_fd)?;
    Ok(())
}

fn path_create_directory(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    path: i32,
    len: i32,
) -> Result<(), Errno> {
    let dir = dir_ino(st, fd)?;
    let path = guest_str(mem, path, len)?;
    if MemFs::is_self(path) {
        return Err(errno::EXIST);
    }
    let fs = tmp(st);
    let at = fs.parent_of(dir, path)?;
    fs.create_dir(at.parent, at.name).map(|_| ())
}

fn path_filestat_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    _flags: i32,
    path: i32,
    len: i32,
    out: i32,
) -> Result<(), Errno> {
    let dir = dir_ino(st, fd)?;
    let path = guest_str(mem, path, len)?;
    let fs = tmp(st);
    let ino = fs.lookup(dir, path)?;
    let (ty, size, nlink) = fs.stat(ino)?;
    filestat(mem, out, ino, ty, size, nlink)
}

fn path_filestat_set_times(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    _flags: i32,
    path: i32,
    len: i32,
    _a: i64,
    _m: i64,
    flags: i32,
) -> Result<(), Errno> {
    check_fstflags(flags)?;
    let dir = dir_ino(st, fd)?;
    let path = guest_str(mem, path, len)?;
    tmp(st).lookup(dir, path).map(|_| ())
}

fn path_remove_directory(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    path: i32,
    len: i32,
) -> Result<(), Errno> {
    let dir = dir_ino(st, fd)?;
    let path = guest_str(mem, path, len)?;
    let fs = tmp(st);
    let at = fs.parent_of(dir, path)?;
    if at.dir && fs.child(&at).is_ok_and(|i| fs.is_dir(i)) {
        // wasmtime-wasi refuses `rmdir("name/")` of a directory: EINVAL.
        return Err(errno::INVAL);
    }
    fs.remove_dir(at.parent, at.name)
}

fn path_unlink_file(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    path: i32,
    len: i32,
) -> Result<(), Errno> {
    let dir = dir_ino(st, fd)?;
    let path = guest_str(mem, path, len)?;
    if MemFs::is_self(path) {
        return Err(errno::ISDIR);
    }
    let fs = tmp(st);
    let at = fs.parent_of(dir, path)?;
    if at.dir && !fs.is_dir(fs.child(&at)?) {
        // `name/` names a directory: a file there is ENOTDIR.
        return Err(errno::NOTDIR);
    }
    fs.unlink_file(at.parent, at.name)
}

fn path_rename(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    old: i32,
    old_len: i32,
    new_fd: i32,
    new: i32,
    new_len: i32,
) -> Result<(), Errno> {
    let from_dir = dir_ino(st, fd)?;
    let to_dir = dir_ino(st, new_fd)?;
    let old = guest_str(mem, old, old_len)?;
    let new = guest_str(mem, new, new_len)?;
    let fs = tmp(st);
    // Both paths resolve first (a missing parent is ENOENT); then renaming
    // a directory through `.`, or onto it, is Linux's EBUSY.
    let split = |dir, path| {
        (!MemFs::is_self(path))
            .then(|| fs.parent_of(dir, path))
            .transpose()
    };
    let (Some(from), Some(to)) = (split(from_dir, old)?, split(to_dir, new)?) else {
        return Err(errno::BUSY);
    };
    // A trailing `/` on either name says "directory".
    if (from.dir || to.dir) && !fs.is_dir(fs.child(&from)?) {
        return Err(errno::NOTDIR);
    }
    fs.rename(from.parent, from.name, to.parent, to.name)
}

fn path_readlink(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    path: i32,
    len: i32,
    _buf: i32,
    _buf_len: i32,
    _used: i32,
) -> Result<(), Errno> {
    // There are no symlinks: an existing path is simply not one.
    let dir = dir_ino(st, fd)?;
    let path = guest_str(mem, path, len)?;
    tmp(st).lookup(dir, path)?;
    Err(errno::INVAL)
}

fn path_link(
    _: &mut [u8],
    _: &mut View<'_>,
    _old_fd: i32,
    _old_flags: i32,
    _old: i32,
    _old_len: i32,
    _new_fd: i32,
    _new: i32,
    _new_len: i32,
) -> Result<(), Errno> {
    // Hard links are refused: they are a classic way out of a sandbox dir.
    Err(errno::PERM)
}

fn path_symlink(
    _: &mut [u8],
    _: &mut View<'_>,
    _old: i32,
    _ol: i32,
    _fd: i32,
    _new: i32,
    _nl: i32,
) -> Result<(), Errno> {
    // Symlinks are refused for the same reason.
    Err(errno::PERM)
}

// ---- sockets: none -------------------------------------------------------

fn sock_accept(
    _: &mut [u8],
    _: &mut View<'_>,
    _fd: i32,
    _flags: i32,
    _out: i32,
) -> Result<(), Errno> {
    Err(errno::NOTSUP)
}

fn sock_recv(
    _: &mut [u8],
    _: &mut View<'_>,
    _fd: i32,
    _a: i32,
    _b: i32,
    _c: i32,
    _d: i32,
    _e: i32,
) -> Result<(), Errno> {
    Err(errno::NOTSUP)
}

fn sock_send(
    _: &mut [u8],
    _: &mut View<'_>,
    _fd: i32,
    _a: i32,
    _b: i32,
    _c: i32,
    _d: i32,
) -> Result<(), Errno> {
    Err(errno::NOTSUP)
}

fn sock_shutdown(_: &mut [u8], _: &mut View<'_>, _fd: i32, _how: i32) -> Result<(), Errno> {
    Err(errno::NOTSUP)
}
