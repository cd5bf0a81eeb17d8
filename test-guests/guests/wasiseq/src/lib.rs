//! `wasiseq`: runs a program of raw WASI preview1 calls and reports what
//! each returned, so that the same program can run on fnhost's WASI layer
//! and on the reference implementation (wasmtime-wasi) and the two answers
//! be compared byte for byte (`fnhost_hostile::wasi_diff`).
//!
//! The program (the payload) is a sequence of ops; the guest keeps eight
//! fd *slots* (slot 0 starts as the preopened `/tmp`, fd 3; an empty slot
//! holds an fd number no one has), so programs never depend on which fd
//! number an implementation hands out. Each op appends `errno: u16` and its
//! results to the output. All numbers are little-endian; a string is a
//! `u16` length and its bytes. The encoding is `fnhost_hostile::wasi_diff::Op`'s.

use std::collections::BTreeMap;

#[allow(improper_ctypes)]
mod sys {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        pub fn path_open(
            fd: i32,
            dirflags: i32,
            path: i32,
            path_len: i32,
            oflags: i32,
            base: i64,
            inheriting: i64,
            fdflags: i32,
            out: i32,
        ) -> i32;
        pub fn fd_read(fd: i32, iovs: i32, n: i32, out: i32) -> i32;
        pub fn fd_pread(fd: i32, iovs: i32, n: i32, offset: i64, out: i32) -> i32;
        pub fn fd_write(fd: i32, iovs: i32, n: i32, out: i32) -> i32;
        pub fn fd_pwrite(fd: i32, iovs: i32, n: i32, offset: i64, out: i32) -> i32;
        pub fn fd_seek(fd: i32, offset: i64, whence: i32, out: i32) -> i32;
        pub fn fd_tell(fd: i32, out: i32) -> i32;
        pub fn fd_filestat_get(fd: i32, out: i32) -> i32;
        pub fn fd_filestat_set_size(fd: i32, size: i64) -> i32;
        pub fn fd_filestat_set_times(fd: i32, atim: i64, mtim: i64, flags: i32) -> i32;
        pub fn fd_readdir(fd: i32, buf: i32, len: i32, cookie: i64, used: i32) -> i32;
        pub fn path_rename(
            fd: i32,
            old: i32,
            old_len: i32,
            new_fd: i32,
            new: i32,
            new_len: i32,
        ) -> i32;
        pub fn path_unlink_file(fd: i32, path: i32, len: i32) -> i32;
        pub fn path_create_directory(fd: i32, path: i32, len: i32) -> i32;
        pub fn path_remove_directory(fd: i32, path: i32, len: i32) -> i32;
        pub fn fd_close(fd: i32) -> i32;
        pub fn fd_renumber(fd: i32, to: i32) -> i32;
        pub fn fd_fdstat_get(fd: i32, out: i32) -> i32;
        pub fn path_filestat_get(fd: i32, flags: i32, path: i32, len: i32, out: i32) -> i32;
        pub fn random_get(buf: i32, len: i32) -> i32;
    }
}

/// An fd number no implementation hands out (empty slots hold it).
const NO_FD: u32 = 0x7fff_0000;
/// Bytes a single read op may ask for.
const MAX_READ: u32 = 1 << 20;

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = self.u16()? as usize;
        self.take(n).map(<[u8]>::to_vec)
    }
}

struct Out(Vec<u8>);

impl Out {
    fn errno(&mut self, e: i32) -> bool {
        self.0.extend_from_slice(&(e as u16).to_le_bytes());
        e == 0
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
}

/// A guest address the host reads from.
fn ptr<T>(p: *const T) -> i32 {
    p as usize as i32
}

/// A guest address the host writes a result to.
fn out_ptr<T>(p: &mut T) -> i32 {
    p as *mut T as usize as i32
}

/// One iovec over `buf`.
fn iov(buf: &[u8]) -> [u32; 2] {
    [buf.as_ptr() as usize as u32, buf.len() as u32]
}

struct Machine {
    slots: [u32; 8],
}

impl Machine {
    fn slot(&self, s: u8) -> i32 {
        self.slots[(s & 7) as usize] as i32
    }

    fn read(&mut self, fd: i32, len: u32, at: Option<u64>, out: &mut Out) {
        let buf = vec![0u8; len.min(MAX_READ) as usize];
        let v = iov(&buf);
        let mut n = 0u32;
        let e = unsafe {
            match at {
                Some(off) => sys::fd_pread(fd, ptr(v.as_ptr()), 1, off as i64, out_ptr(&mut n)),
                None => sys::fd_read(fd, ptr(v.as_ptr()), 1, out_ptr(&mut n)),
            }
        };
        if out.errno(e) {
            out.bytes(&buf[..(n as usize).min(buf.len())]);
        }
    }

    fn write(&mut self, fd: i32, data: &[u8], at: Option<u64>, out: &mut Out) {
        // One iovec: wasmtime-wasi writes only the first non-empty iovec of
        // a list (a short write, valid POSIX), fnhost writes them all.
        let v = [iov(data)];
        let mut n = 0u32;
        let e = unsafe {
            match at {
                Some(off) => sys::fd_pwrite(fd, ptr(v.as_ptr()), 1, off as i64, out_ptr(&mut n)),
                None => sys::fd_write(fd, ptr(v.as_ptr()), 1, out_ptr(&mut n)),
            }
        };
        if out.errno(e) {
            out.u32(n);
        }
    }

    /// Directory entries (name → filetype) of `fd`, read with a buffer of
    /// `buf_len` bytes, following cookies; `.` and `..` left out.
    fn list(fd: i32, buf_len: u32) -> Result<BTreeMap<Vec<u8>, u8>, i32> {
        let buf = vec![0u8; buf_len.clamp(24, 1 << 16) as usize];
        let mut cookie = 0u64;
        let mut names = BTreeMap::new();
        for _ in 0..1 << 22 {
            let mut used = 0u32;
            let e = unsafe {
                sys::fd_readdir(
                    fd,
                    ptr(buf.as_ptr()),
                    buf.len() as i32,
                    cookie as i64,
                    out_ptr(&mut used),
                )
            };
            if e != 0 {
                return Err(e);
            }
            let used = (used as usize).min(buf.len());
            let mut at = 0;
            let mut progressed = false;
            while at + 24 <= used {
                let next = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
                let namlen = u32::from_le_bytes(buf[at + 16..at + 20].try_into().unwrap()) as usize;
                let ty = buf[at + 20];
                if at + 24 + namlen > used {
                    break;
                }
                let name = buf[at + 24..at + 24 + namlen].to_vec();
                if name != b"." && name != b".." {
                    names.insert(name, ty);
                }
                cookie = next;
                progressed = true;
                at += 24 + namlen;
            }
            if used < buf.len() || !progressed {
                return Ok(names);
            }
        }
        Ok(names)
    }

    /// The whole tree under directory `fd`: paths, types and contents, in
    /// name order.
    fn dump(fd: i32, prefix: &[u8], out: &mut Out, depth: u32) {
        let names = match Self::list(fd, 4096) {
            Ok(n) => n,
            Err(e) => {
                out.errno(e);
                return;
            }
        };
        for (name, ty) in names {
            let mut path = prefix.to_vec();
            path.extend_from_slice(&name);
            out.bytes(&path);
            out.u8(ty);
            let mut child = 0u32;
            let dir = ty == 3;
            let e = unsafe {
                sys::path_open(
                    fd,
                    0,
                    ptr(name.as_ptr()),
                    name.len() as i32,
                    if dir { 2 } else { 0 },
                    if dir { 0x4000 } else { 2 },
                    0,
                    0,
                    out_ptr(&mut child),
                )
            };
            if !out.errno(e) {
                continue;
            }
            if dir && depth < 16 {
                path.push(b'/');
                Self::dump(child as i32, &path, out, depth + 1);
            } else if !dir {
                let mut content = Vec::new();
                loop {
                    let buf = [0u8; 4096];
                    let v = iov(&buf);
                    let mut n = 0u32;
                    let e =
                        unsafe { sys::fd_read(child as i32, ptr(v.as_ptr()), 1, out_ptr(&mut n)) };
                    if e != 0 || n == 0 || content.len() > 1 << 22 {
                        break;
                    }
                    content.extend_from_slice(&buf[..n as usize]);
                }
                out.bytes(&content);
            }
            unsafe { sys::fd_close(child as i32) };
        }
    }

    fn step(&mut self, r: &mut Reader<'_>, out: &mut Out) -> Option<()> {
        let op = r.u8()?;
        out.u8(op);
        unsafe {
            match op {
                0 => {
                    let (dir, path) = (r.u8()?, r.bytes()?);
                    let (oflags, rights, fdflags, to) = (r.u16()?, r.u8()?, r.u16()?, r.u8()?);
                    let mut base = 0i64;
                    if rights & 1 != 0 {
                        base |= 1 << 1; // fd_read
                    }
                    if rights & 2 != 0 {
                        base |= 1 << 6; // fd_write
                    }
                    if rights & 4 != 0 {
                        base |= 1 << 14; // fd_readdir
                    }
                    let mut fd = 0u32;
                    let e = sys::path_open(
                        self.slot(dir),
                        0,
                        ptr(path.as_ptr()),
                        path.len() as i32,
                        oflags as i32,
                        base,
                        base,
                        fdflags as i32,
                        out_ptr(&mut fd),
                    );
                    if out.errno(e) {
                        self.slots[(to & 7) as usize] = fd;
                    }
                }
                1 => {
                    let (s, len) = (r.u8()?, r.u32()?);
                    self.read(self.slot(s), len, None, out)
                }
                2 => {
                    let (s, len, at) = (r.u8()?, r.u32()?, r.u64()?);
                    self.read(self.slot(s), len, Some(at), out)
                }
                3 => {
                    let (s, data) = (r.u8()?, r.bytes()?);
                    self.write(self.slot(s), &data, None, out)
                }
                4 => {
                    let (s, at, data) = (r.u8()?, r.u64()?, r.bytes()?);
                    self.write(self.slot(s), &data, Some(at), out)
                }
                5 => {
                    let (s, off, whence) = (r.u8()?, r.u64()?, r.u8()?);
                    let mut pos = 0u64;
                    if out.errno(sys::fd_seek(
                        self.slot(s),
                        off as i64,
                        whence as i32,
                        out_ptr(&mut pos),
                    )) {
                        out.u64(pos);
                    }
                }
                6 => {
                    let s = r.u8()?;
                    let mut pos = 0u64;
                    if out.errno(sys::fd_tell(self.slot(s), out_ptr(&mut pos))) {
                        out.u64(pos);
                    }
                }
                7 => {
                    let s = r.u8()?;
                    let mut st = [0u8; 64];
                    if out.errno(sys::fd_filestat_get(self.slot(s), ptr(st.as_mut_ptr()))) {
                        out.u8(st[16]);
                        out.0.extend_from_slice(&st[32..40]);
                    }
                }
                8 => {
                    let (s, size) = (r.u8()?, r.u64()?);
                    out.errno(sys::fd_filestat_set_size(self.slot(s), size as i64));
                }
                9 => {
                    let (s, a, m, flags) = (r.u8()?, r.u64()?, r.u64()?, r.u16()?);
                    out.errno(sys::fd_filestat_set_times(
                        self.slot(s),
                        a as i64,
                        m as i64,
                        flags as i32,
                    ));
                }
                10 => {
                    let (s, len) = (r.u8()?, r.u32()?);
                    match Self::list(self.slot(s), len) {
                        Ok(names) => {
                            out.errno(0);
                            out.u32(names.len() as u32);
                            for (n, ty) in names {
                                out.bytes(&n);
                                out.u8(ty);
                            }
                        }
                        Err(e) => {
                            out.errno(e);
                        }
                    }
                }
                11 => {
                    let (da, a, db, b) = (r.u8()?, r.bytes()?, r.u8()?, r.bytes()?);
                    out.errno(sys::path_rename(
                        self.slot(da),
                        ptr(a.as_ptr()),
                        a.len() as i32,
                        self.slot(db),
                        ptr(b.as_ptr()),
                        b.len() as i32,
                    ));
                }
                12..=14 => {
                    let (d, p) = (r.u8()?, r.bytes()?);
                    let f = match op {
                        12 => sys::path_unlink_file,
                        13 => sys::path_create_directory,
                        _ => sys::path_remove_directory,
                    };
                    out.errno(f(self.slot(d), ptr(p.as_ptr()), p.len() as i32));
                }
                15 => {
                    let s = r.u8()?;
                    if out.errno(sys::fd_close(self.slot(s))) {
                        self.slots[(s & 7) as usize] = NO_FD;
                    }
                }
                16 => {
                    let (a, b) = (r.u8()?, r.u8()?);
                    if out.errno(sys::fd_renumber(self.slot(a), self.slot(b))) {
                        self.slots[(b & 7) as usize] = self.slots[(a & 7) as usize];
                        self.slots[(a & 7) as usize] = NO_FD;
                    }
                }
                17 => {
                    let s = r.u8()?;
                    let mut st = [0u8; 24];
                    if out.errno(sys::fd_fdstat_get(self.slot(s), ptr(st.as_mut_ptr()))) {
                        out.u8(st[0]);
                        out.0.extend_from_slice(&st[2..4]);
                    }
                }
                18 => {
                    let (d, p) = (r.u8()?, r.bytes()?);
                    let mut st = [0u8; 64];
                    if out.errno(sys::path_filestat_get(
                        self.slot(d),
                        1,
                        ptr(p.as_ptr()),
                        p.len() as i32,
                        ptr(st.as_mut_ptr()),
                    )) {
                        out.u8(st[16]);
                        out.0.extend_from_slice(&st[32..40]);
                    }
                }
                19 => {
                    // Raw: a call with the fuzzer's own numbers, wild
                    // pointers and lengths included.
                    let (which, a, b, c, d) = (r.u8()?, r.u32()?, r.u32()?, r.u64()?, r.u32()?);
                    let (a, b, c, d) = (a as i32, b as i32, c as i64, d as i32);
                    let e = match which % 10 {
                        0 => sys::fd_read(a, b, d, c as i32),
                        1 => sys::fd_pread(a, b, d, c, b),
                        2 => sys::fd_write(a, b, d, c as i32),
                        3 => sys::fd_pwrite(a, b, d, c, b),
                        4 => sys::random_get(a, b),
                        5 => sys::fd_readdir(a, b, d, c, b),
                        6 => sys::fd_seek(a, c, d, b),
                        7 => sys::fd_filestat_set_size(a, c),
                        8 => sys::path_open(
                            a,
                            0,
                            b,
                            d,
                            (c & 0xf) as i32,
                            c,
                            c,
                            (c >> 8) as i32 & 0x1f,
                            b,
                        ),
                        _ => sys::fd_renumber(a, b),
                    };
                    out.errno(e);
                }
                20 => {
                    let s = r.u8()?;
                    Self::dump(self.slot(s), b"", out, 0);
                }
                _ => return None,
            }
        }
        Some(())
    }
}

/// Runs the program in `payload`; the output is each op's code, errno and
/// results, in order. A truncated or unknown op ends the program.
#[fnhost_guest::handler]
pub fn wasiseq(payload: &[u8]) -> Result<Vec<u8>, fnhost_guest::Error> {
    let mut m = Machine {
        slots: [3, NO_FD, NO_FD, NO_FD, NO_FD, NO_FD, NO_FD, NO_FD],
    };
    let mut r = Reader(payload);
    let mut out = Out(Vec::new());
    while m.step(&mut r, &mut out).is_some() {}
    Ok(out.0)
}
