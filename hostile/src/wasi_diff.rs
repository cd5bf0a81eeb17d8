//! Differential testing of fnhost's WASI preview1 layer against the
//! reference implementation, `wasmtime-wasi`'s preview1 with a fresh
//! temporary directory preopened as `/tmp`.
//!
//! The same program of WASI calls (open, read, pread, write, pwrite, seek,
//! tell, filestat get/set size and times, readdir, rename, unlink,
//! mkdir/rmdir, close/renumber, fdstat) runs in the `wasiseq` test guest on
//! both; each call's errno and results, and the final tree of `/tmp` with
//! every file's contents, must be the same. Differences that are intended
//! (docs/abi.md, "Differences from wasmtime-wasi") are never generated:
//! symlinks and hard links (refused by fnhost), the quota (programs stay far
//! below it), inode numbers and timestamps (not compared), a directory's
//! size (host-dependent).

use std::fmt::Write as _;

use arbitrary::{Arbitrary, Unstructured};
use fnhost::{FunctionConfig, Host};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// The name the `wasiseq` guest is registered under.
pub const FUNCTION: &str = "wasiseq";

/// One WASI call of a program (see the `wasiseq` guest for the encoding).
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// `path_open(slot dir, path, oflags, rights, fdflags)` into slot `to`.
    Open {
        /// Directory slot.
        dir: u8,
        /// Path.
        path: Vec<u8>,
        /// `oflags`: 1 creat, 2 directory, 4 excl, 8 trunc.
        oflags: u16,
        /// Bit 0 read, 1 write, 2 readdir.
        rights: u8,
        /// `fdflags`: 1 append.
        fdflags: u16,
        /// Slot to store the new fd in.
        to: u8,
    },
    /// `fd_read` of up to `len` bytes.
    Read {
        /// Slot.
        slot: u8,
        /// Bytes asked for.
        len: u32,
    },
    /// `fd_pread` of up to `len` bytes at `at`.
    Pread {
        /// Slot.
        slot: u8,
        /// Bytes asked for.
        len: u32,
        /// Offset.
        at: u64,
    },
    /// `fd_write` of `data` (as two iovecs).
    Write {
        /// Slot.
        slot: u8,
        /// Bytes.
        data: Vec<u8>,
    },
    /// `fd_pwrite` of `data` at `at`.
    Pwrite {
        /// Slot.
        slot: u8,
        /// Offset.
        at: u64,
        /// Bytes.
        data: Vec<u8>,
    },
    /// `fd_seek`.
    Seek {
        /// Slot.
        slot: u8,
        /// Offset (as the guest's i64).
        offset: u64,
        /// 0 set, 1 cur, 2 end.
        whence: u8,
    },
    /// `fd_tell`.
    Tell {
        /// Slot.
        slot: u8,
    },
    /// `fd_filestat_get`: file type and size.
    Fstat {
        /// Slot.
        slot: u8,
    },
    /// `fd_filestat_set_size`.
    SetSize {
        /// Slot.
        slot: u8,
        /// New size (as the guest's i64).
        size: u64,
    },
    /// `fd_filestat_set_times`.
    SetTimes {
        /// Slot.
        slot: u8,
        /// Access time.
        atim: u64,
        /// Modification time.
        mtim: u64,
        /// `fstflags`.
        flags: u16,
    },
    /// `fd_readdir`, followed through cookies with a buffer of `len` bytes.
    Readdir {
        /// Slot.
        slot: u8,
        /// Buffer size.
        len: u32,
    },
    /// `path_rename`.
    Rename {
        /// From directory slot.
        from_dir: u8,
        /// From path.
        from: Vec<u8>,
        /// To directory slot.
        to_dir: u8,
        /// To path.
        to: Vec<u8>,
    },
    /// `path_unlink_file`.
    Unlink {
        /// Directory slot.
        dir: u8,
        /// Path.
        path: Vec<u8>,
    },
    /// `path_create_directory`.
    Mkdir {
        /// Directory slot.
        dir: u8,
        /// Path.
        path: Vec<u8>,
    },
    /// `path_remove_directory`.
    Rmdir {
        /// Directory slot.
        dir: u8,
        /// Path.
        path: Vec<u8>,
    },
    /// `fd_close`.
    Close {
        /// Slot.
        slot: u8,
    },
    /// `fd_renumber(slot a, slot b)`.
    Renumber {
        /// From.
        from: u8,
        /// To.
        to: u8,
    },
    /// `fd_fdstat_get`: file type and flags.
    Fdstat {
        /// Slot.
        slot: u8,
    },
    /// `path_filestat_get`: file type and size.
    PathStat {
        /// Directory slot.
        dir: u8,
        /// Path.
        path: Vec<u8>,
    },
    /// A raw call with arbitrary numbers (wild pointers and lengths): for
    /// the fuzz target, never in differential programs.
    Raw {
        /// Which call (see the guest).
        which: u8,
        /// Arguments.
        a: u32,
        /// Arguments.
        b: u32,
        /// Arguments.
        c: u64,
        /// Arguments.
        d: u32,
    },
    /// The whole tree under a directory slot, with file contents.
    Dump {
        /// Slot.
        slot: u8,
    },
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

impl Op {
    fn encode(&self, out: &mut Vec<u8>) {
        let u16le = |out: &mut Vec<u8>, v: u16| out.extend_from_slice(&v.to_le_bytes());
        let u32le = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
        let u64le = |out: &mut Vec<u8>, v: u64| out.extend_from_slice(&v.to_le_bytes());
        match self {
            Op::Open {
                dir,
                path,
                oflags,
                rights,
                fdflags,
                to,
            } => {
                out.extend([0, *dir]);
                put_bytes(out, path);
                u16le(out, *oflags);
                out.push(*rights);
                u16le(out, *fdflags);
                out.push(*to);
            }
            Op::Read { slot, len } => {
                out.extend([1, *slot]);
                u32le(out, *len);
            }
            Op::Pread { slot, len, at } => {
                out.extend([2, *slot]);
                u32le(out, *len);
                u64le(out, *at);
            }
            Op::Write { slot, data } => {
                out.extend([3, *slot]);
                put_bytes(out, data);
            }
            Op::Pwrite { slot, at, data } => {
                out.extend([4, *slot]);
                u64le(out, *at);
                put_bytes(out, data);
            }
            Op::Seek {
                slot,
                offset,
                whence,
            } => {
                out.extend([5, *slot]);
                u64le(out, *offset);
                out.push(*whence);
            }
            Op::Tell { slot } => out.extend([6, *slot]),
            Op::Fstat { slot } => out.extend([7, *slot]),
            Op::SetSize { slot, size } => {
                out.extend([8, *slot]);
                u64le(out, *size);
            }
            Op::SetTimes {
                slot,
                atim,
                mtim,
                flags,
            } => {
                out.extend([9, *slot]);
                u64le(out, *atim);
                u64le(out, *mtim);
                u16le(out, *flags);
            }
            Op::Readdir { slot, len } => {
                out.extend([10, *slot]);
                u32le(out, *len);
            }
            Op::Rename {
                from_dir,
                from,
                to_dir,
                to,
            } => {
                out.extend([11, *from_dir]);
                put_bytes(out, from);
                out.push(*to_dir);
                put_bytes(out, to);
            }
            Op::Unlink { dir, path } | Op::Mkdir { dir, path } | Op::Rmdir { dir, path } => {
                let code = match self {
                    Op::Unlink { .. } => 12,
                    Op::Mkdir { .. } => 13,
                    _ => 14,
                };
                out.extend([code, *dir]);
                put_bytes(out, path);
            }
            Op::Close { slot } => out.extend([15, *slot]),
            Op::Renumber { from, to } => out.extend([16, *from, *to]),
            Op::Fdstat { slot } => out.extend([17, *slot]),
            Op::PathStat { dir, path } => {
                out.extend([18, *dir]);
                put_bytes(out, path);
            }
            Op::Raw { which, a, b, c, d } => {
                out.extend([19, *which]);
                u32le(out, *a);
                u32le(out, *b);
                u64le(out, *c);
                u32le(out, *d);
            }
            Op::Dump { slot } => out.extend([20, *slot]),
        }
    }
}

/// A program's bytes, as the guest reads them.
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// A small deterministic generator (xorshift64*): seeded sequences are the
/// same on every machine, so a CI failure names a seed anyone can rerun.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Paths programs use: names that collide often, nested ones, dots, a
/// trailing slash, and escapes (which both implementations must refuse).
const PATHS: &[&str] = &[
    "a",
    "b",
    "c",
    "d",
    "e",
    "d/a",
    "d/b",
    "d/e",
    "d/e/a",
    "e/a",
    "./a",
    "d/../b",
    "a/",
    "d/",
    "..",
    "../a",
    "/a",
    "d/../../a",
    ".",
];

fn path(r: &mut Rng) -> Vec<u8> {
    r.pick(PATHS).as_bytes().to_vec()
}

fn offset(r: &mut Rng) -> u64 {
    match r.below(8) {
        0 => 0,
        1 => r.below(16),
        2 => r.below(5000),
        3 => 1 << 20,
        4 => (-1i64) as u64,
        5 => (-(r.below(100) as i64)) as u64,
        _ => r.below(300),
    }
}

fn data(r: &mut Rng) -> Vec<u8> {
    let n = match r.below(6) {
        0 => 0,
        1 => r.below(4) as usize,
        5 => 5000 + r.below(3000) as usize,
        _ => r.below(200) as usize,
    };
    (0..n)
        .map(|i| b'a' + ((i as u64 + r.below(3)) % 26) as u8)
        .collect()
}

/// A random program of `len` calls (no `Raw` ops), ending with a dump of
/// `/tmp`.
pub fn program(r: &mut Rng, len: usize) -> Vec<Op> {
    let mut ops = Vec::with_capacity(len + 1);
    for _ in 0..len {
        // Slot 0 is `/tmp`; 1-7 hold what opens put there.
        let slot = r.below(5) as u8;
        let dir = if r.below(4) == 0 { r.below(5) as u8 } else { 0 };
        let op = match r.below(22) {
            0..=3 => Op::Open {
                dir,
                path: path(r),
                oflags: *r.pick(&[0, 1, 1, 1, 2, 5, 9, 8, 3]),
                rights: *r.pick(&[1, 2, 3, 3, 3, 4, 7]),
                fdflags: *r.pick(&[0, 0, 0, 1]),
                to: 1 + r.below(4) as u8,
            },
            4 => Op::Read {
                slot,
                len: r.below(300) as u32,
            },
            5 => Op::Pread {
                slot,
                len: r.below(300) as u32,
                at: offset(r),
            },
            6 | 7 => Op::Write {
                slot,
                data: data(r),
            },
            8 => Op::Pwrite {
                slot,
                at: offset(r),
                data: data(r),
            },
            // (A `whence` past 2 makes wasmtime-wasi trap the guest, where
            // fnhost answers EINVAL: never generated.)
            9 => Op::Seek {
                slot,
                offset: offset(r),
                whence: r.below(3) as u8,
            },
            10 => Op::Tell { slot },
            11 => Op::Fstat { slot },
            12 => Op::SetSize {
                slot,
                size: offset(r),
            },
            13 => Op::SetTimes {
                slot,
                atim: 1_000_000_000,
                mtim: 2_000_000_000,
                flags: *r.pick(&[0, 1, 4, 5, 3]),
            },
            14 => Op::Readdir {
                slot,
                len: *r.pick(&[24, 64, 200, 4096]),
            },
            15 => Op::Rename {
                from_dir: dir,
                from: path(r),
                to_dir: 0,
                to: path(r),
            },
            16 => Op::Unlink { dir, path: path(r) },
            17 => Op::Mkdir { dir, path: path(r) },
            18 => Op::Rmdir { dir, path: path(r) },
            19 => Op::Close { slot },
            20 => match r.below(3) {
                0 => Op::Renumber {
                    from: slot,
                    to: r.below(5) as u8,
                },
                1 => Op::Fdstat { slot },
                _ => Op::PathStat { dir, path: path(r) },
            },
            _ => Op::Tell { slot },
        };
        ops.push(op);
    }
    ops.push(Op::Dump { slot: 0 });
    ops
}

/// Decodes a run's output into one line per op, for comparing and for
/// readable failures. Directory sizes are left out (host-dependent).
pub fn describe(ops: &[Op], out: &[u8]) -> Vec<String> {
    let mut r = Answers(out);
    let mut lines = Vec::new();
    for op in ops {
        let mut line = String::new();
        if describe_one(op, &mut r, &mut line).is_none() {
            line.push_str(" <output ends>");
            lines.push(line);
            break;
        }
        lines.push(line);
        if matches!(op, Op::Dump { .. }) {
            // The rest of the output is the tree.
            lines.push(format!("{:?}", String::from_utf8_lossy(r.0)));
            break;
        }
    }
    lines
}

/// The guest's output, read front to back.
struct Answers<'a>(&'a [u8]);

impl Answers<'_> {
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
    fn bytes(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        self.take(n)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// One op's answer as a line; `None` when the output ends early.
fn describe_one(op: &Op, r: &mut Answers<'_>, line: &mut String) -> Option<()> {
    r.u8()?;
    if matches!(op, Op::Dump { .. }) {
        line.push_str("tree");
        return Some(());
    }
    let errno = r.u16()?;
    let _ = write!(line, "errno {errno}");
    if errno != 0 {
        return Some(());
    }
    match op {
        Op::Read { .. } | Op::Pread { .. } => {
            let b = r.bytes()?;
            let _ = write!(line, " read {b:?}");
        }
        Op::Write { .. } | Op::Pwrite { .. } => {
            let _ = write!(line, " wrote {}", r.u32()?);
        }
        Op::Seek { .. } | Op::Tell { .. } => {
            let _ = write!(line, " at {}", r.u64()? as i64);
        }
        Op::Fstat { .. } | Op::PathStat { .. } => {
            let ty = r.u8()?;
            let size = r.u64()?;
            if ty == 3 {
                let _ = write!(line, " dir");
            } else {
                let _ = write!(line, " type {ty} size {size}");
            }
        }
        Op::Fdstat { .. } => {
            let ty = r.u8()?;
            let flags = r.u16()?;
            let _ = write!(line, " type {ty} flags {flags}");
        }
        Op::Readdir { .. } => {
            let n = r.u32()?;
            for _ in 0..n {
                let name = r.bytes()?;
                let ty = r.u8()?;
                let _ = write!(line, " {name}:{ty}");
            }
        }
        _ => {}
    }
    Some(())
}

/// A host with the `wasiseq` guest registered (quota far above what a
/// program can write; short timeout so a hung call would show).
pub fn fnhost_side() -> Host {
    let host = Host::builder()
        .no_artifact_cache()
        .no_log_sink()
        .concurrency_limit(4)
        .workers(1)
        .build()
        .expect("host builds");
    host.register(
        FunctionConfig::from_file(FUNCTION, fnhost_test_guests::WASISEQ)
            .tmp_quota(64 << 20)
            .memory_limit(64 << 20)
            .timeout(std::time::Duration::from_secs(10)),
    )
    .expect("wasiseq registers");
    host
}

/// Runs a program on fnhost; the guest's output.
pub fn run_fnhost(host: &Host, program: &[u8]) -> Vec<u8> {
    let inv = host.invoke(FUNCTION, program).expect("admitted");
    inv.into_output().expect("wasiseq runs").to_vec()
}

/// The reference: wasmtime-wasi's preview1 over a fresh temporary
/// directory preopened as `/tmp`, running the same guest.
pub struct Reference {
    engine: Engine,
    module: Module,
    linker: Linker<Ctx>,
}

/// Store data of a reference run.
pub struct Ctx {
    wasi: WasiP1Ctx,
    output: Vec<u8>,
}

impl Reference {
    /// Compiles the guest for the reference run.
    pub fn new() -> Reference {
        let engine = Engine::default();
        let module = Module::from_file(&engine, fnhost_test_guests::WASISEQ).expect("compiles");
        let mut linker: Linker<Ctx> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c: &mut Ctx| &mut c.wasi)
            .expect("links WASI");
        linker
            .func_wrap(
                "fnhost_v1",
                "output",
                |mut caller: wasmtime::Caller<'_, Ctx>, ptr: i32, len: i32| {
                    let mem = caller
                        .get_export("memory")
                        .and_then(|e| e.into_memory())
                        .expect("memory");
                    let bytes =
                        mem.data(&caller)[ptr as u32 as usize..][..len as u32 as usize].to_vec();
                    caller.data_mut().output = bytes;
                },
            )
            .expect("defines output");
        linker
            .define_unknown_imports_as_traps(&module)
            .expect("stubs the rest");
        Reference {
            engine,
            module,
            linker,
        }
    }

    /// Runs a program; the guest's output.
    pub fn run(&self, program: &[u8]) -> Vec<u8> {
        self.try_run(program)
            .unwrap_or_else(|e| panic!("wasiseq trapped on the reference: {e}"))
    }

    /// Runs a program; the guest's output, or the reference's trap.
    pub fn try_run(&self, program: &[u8]) -> Result<Vec<u8>, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let wasi = WasiCtxBuilder::new()
            .preopened_dir(dir.path(), "/tmp", FsPerms::ReadWrite)
            .expect("preopen")
            .build_p1();
        let mut store = Store::new(
            &self.engine,
            Ctx {
                wasi,
                output: Vec::new(),
            },
        );
        let inst = self
            .linker
            .instantiate(&mut store, &self.module)
            .expect("instantiates");
        let alloc = inst
            .get_typed_func::<i32, i32>(&mut store, "fnhost_alloc")
            .expect("alloc");
        let handle = inst
            .get_typed_func::<(i32, i32), i32>(&mut store, "fnhost_handle")
            .expect("handle");
        let ptr = alloc
            .call(&mut store, program.len() as i32)
            .expect("alloc runs");
        let mem = inst.get_memory(&mut store, "memory").expect("memory");
        mem.write(&mut store, ptr as u32 as usize, program)
            .expect("payload fits");
        let status = handle
            .call(&mut store, (ptr, program.len() as i32))
            .map_err(|e| format!("{e:?}"))?;
        assert_eq!(status, 0, "wasiseq failed on the reference");
        Ok(std::mem::take(&mut store.data_mut().output))
    }
}

impl Default for Reference {
    fn default() -> Self {
        Reference::new()
    }
}

/// Runs `ops` on both sides: `Err` with a readable report when they differ.
pub fn compare(host: &Host, reference: &Reference, ops: &[Op]) -> Result<(), String> {
    let program = encode(ops);
    let ours = run_fnhost(host, &program);
    let theirs = match reference.try_run(&program) {
        Ok(out) => out,
        Err(trap) => {
            // Name the call that made the reference trap.
            let first = (1..=ops.len())
                .find(|&n| reference.try_run(&encode(&ops[..n])).is_err())
                .unwrap_or(ops.len());
            return Err(format!(
                "the reference trapped at call {} {:?}: {trap}",
                first - 1,
                ops[first - 1]
            ));
        }
    };
    if ours == theirs {
        return Ok(());
    }
    // Compared as decoded answers: the raw bytes differ in what is left
    // out on purpose (a directory's size).
    let a = describe(ops, &ours);
    let b = describe(ops, &theirs);
    if a == b {
        return Ok(());
    }
    let mut report = String::new();
    for (i, op) in ops.iter().enumerate() {
        let (x, y) = (a.get(i), b.get(i));
        let mut shown = format!("{op:?}");
        shown.truncate(90);
        if x == y {
            let _ = writeln!(report, "  {i:3} {shown} -> {x:?}");
        } else {
            let _ = writeln!(
                report,
                "! {i:3} {shown}\n        fnhost: {x:?}\n     reference: {y:?}"
            );
            break;
        }
    }
    if a == b {
        let _ = writeln!(
            report,
            "  (the per-op answers match; the final trees differ)"
        );
        let _ = writeln!(
            report,
            "  fnhost: {:?}\n  reference: {:?}",
            a.last(),
            b.last()
        );
    }
    Err(report)
}

/// Fuzz oracle: a program from the fuzzer's bytes (raw calls with wild
/// numbers included) runs on fnhost: no host panic, a typed outcome, and
/// the host then serves a normal call.
pub fn fuzz_program(host: &Host, data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(ops) = Vec::<Op>::arbitrary(&mut u) else {
        return;
    };
    let program = encode(&ops);
    let inv = host.invoke(FUNCTION, &program).expect("admitted");
    if let Err(e) = inv.output() {
        assert!(
            matches!(
                e.kind(),
                fnhost::ErrorKind::Timeout
                    | fnhost::ErrorKind::OutOfMemory
                    | fnhost::ErrorKind::Trap
                    | fnhost::ErrorKind::Guest
                    | fnhost::ErrorKind::OutputTooLarge
            ),
            "unexpected outcome {e:?}"
        );
    }
    // The host goes on: a plain program still gives the reference answer.
    let plain = encode(&[
        Op::Open {
            dir: 0,
            path: b"after".to_vec(),
            oflags: 1,
            rights: 3,
            fdflags: 0,
            to: 1,
        },
        Op::Write {
            slot: 1,
            data: b"fine".to_vec(),
        },
        Op::Pread {
            slot: 1,
            len: 10,
            at: 0,
        },
    ]);
    let out = run_fnhost(host, &plain);
    let want: &[u8] = b"\x00\x00\x00\x03\x00\x00\x04\x00\x00\x00\x02\x00\x00\x04\x00\x00\x00fine";
    assert_eq!(out, want, "the host no longer serves a plain program");
}
