//! Calls on paths under a directory descriptor: open, create, stat,
//! remove, rename; links are refused.

use super::*;

// ---- paths -------------------------------------------------------------------

pub(super) fn path_open(
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

pub(super) fn path_create_directory(
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

pub(super) fn path_filestat_get(
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

pub(super) fn path_filestat_set_times(
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

pub(super) fn path_remove_directory(
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

pub(super) fn path_unlink_file(
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

pub(super) fn path_rename(
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

pub(super) fn path_readlink(
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

pub(super) fn path_link(
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

pub(super) fn path_symlink(
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
