//! Calls on file descriptors: stdio, `/tmp` files and directories
//! (read, write, seek, stat, readdir...).

use super::*;

// ---- file descriptors ------------------------------------------------------

pub(super) fn fd_write(
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
pub(super) fn file_offset(offset: i64) -> u64 {
    offset as u64
}

pub(super) fn fd_pwrite(
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
pub(super) fn tmp<'a>(st: &'a mut View<'_>) -> &'a mut MemFs {
    let quota = st.tmp_quota;
    st.wasi.fs(quota)
}

/// Writes the iovecs' bytes into file `ino` from `at`, a chunk at a time
/// under the deadline; returns the end.
pub(super) fn write_iovs(
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
pub(super) fn read_into(
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

pub(super) fn fd_read(
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

pub(super) fn fd_pread(
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

pub(super) fn fd_seek(
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

pub(super) fn fd_tell(mem: &mut [u8], st: &mut View<'_>, fd: i32, out: i32) -> Result<(), Errno> {
    let pos = match st.wasi.get(fd)? {
        Fd::File { pos, .. } => pos,
        Fd::Dir { .. } => return Err(errno::BADF),
        _ => return Err(errno::SPIPE),
    };
    gm::write_u64(mem, out as u32, pos)?;
    Ok(())
}

pub(super) fn fd_close(_: &mut [u8], st: &mut View<'_>, fd: i32) -> Result<(), Errno> {
    let f = st.wasi.get(fd)?;
    if let Fd::File { ino, .. } = f {
        tmp(st).close_file(ino);
    }
    st.wasi.fds[fd as usize] = None;
    Ok(())
}

pub(super) fn fd_renumber(_: &mut [u8], st: &mut View<'_>, fd: i32, to: i32) -> Result<(), Errno> {
    let f = st.wasi.get(fd)?;
    st.wasi.get(to)?;
    if fd != to {
        fd_close(&mut [], st, to)?;
        st.wasi.set(to, f);
        st.wasi.fds[fd as usize] = None;
    }
    Ok(())
}

pub(super) fn fd_fdstat_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    out: i32,
) -> Result<(), Errno> {
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

pub(super) fn fd_fdstat_set_flags(
    _: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    flags: i32,
) -> Result<(), Errno> {
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

pub(super) fn fd_fdstat_set_rights(
    _: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    _b: i64,
    _i: i64,
) -> Result<(), Errno> {
    st.wasi.get(fd).map(|_| ())
}

pub(super) fn fd_filestat_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    out: i32,
) -> Result<(), Errno> {
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

pub(super) fn fd_filestat_set_size(
    _: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    size: i64,
) -> Result<(), Errno> {
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

pub(super) fn fd_allocate(
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
pub(super) fn check_fstflags(flags: i32) -> Result<(), Errno> {
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

pub(super) fn fd_filestat_set_times(
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

pub(super) fn fd_advise(
    _: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    _o: i64,
    _l: i64,
    _a: i32,
) -> Result<(), Errno> {
    st.wasi.get(fd).map(|_| ())
}

pub(super) fn fd_datasync(_: &mut [u8], st: &mut View<'_>, fd: i32) -> Result<(), Errno> {
    st.wasi.get(fd).map(|_| ())
}

pub(super) fn fd_sync(_: &mut [u8], st: &mut View<'_>, fd: i32) -> Result<(), Errno> {
    st.wasi.get(fd).map(|_| ())
}

pub(super) fn fd_prestat_get(
    mem: &mut [u8],
    st: &mut View<'_>,
    fd: i32,
    out: i32,
) -> Result<(), Errno> {
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

pub(super) fn fd_prestat_dir_name(
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

pub(super) fn fd_readdir(
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
