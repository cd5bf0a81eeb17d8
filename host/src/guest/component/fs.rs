//! `wasi:filesystem` for components over the same in-memory, quota-charged
//! scratch filesystem preview 1 uses ([`MemFs`]): one preopen, `/tmp`,
//! private to the instance; no host directory is ever reachable. Paths are
//! resolved by `MemFs` (no `..` above the root, no absolute paths), links
//! and symlinks are refused, and every byte held is charged to the
//! function's `tmp_quota` before it is allocated.
//!
//! The linker defines these two interfaces over wasmtime-wasi's own
//! (shadowing them), so everything else a component imports stays
//! wasmtime-wasi's.

use std::sync::Arc;

use parking_lot::Mutex;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};

use super::super::state::State;
use super::super::wasi::errno::{self, Errno};
use super::super::wasi::memfs::{self, Ino, MemFs, ROOT};

#[path = "fs_stream.rs"]
mod stream;
use stream::FileStream;

wasmtime::component::bindgen!({
    path: "wit",
    world: "fnhost:host-fs/fs",
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
        "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        "wasi:filesystem/types.descriptor": Descriptor,
        "wasi:filesystem/types.directory-entry-stream": DirStream,
    },
});

use wasi::filesystem::types::{
    self as t, DescriptorFlags, DescriptorStat, DescriptorType, DirectoryEntry, ErrorCode,
    NewTimestamp, OpenFlags, PathFlags,
};

/// The instance's `/tmp`, shared by its descriptors and streams.
pub(crate) type SharedFs = Arc<Mutex<MemFs>>;

/// An open file or directory.
pub struct Descriptor {
    ino: Ino,
    dir: bool,
    read: bool,
    write: bool,
}

/// A directory listing being read: where it stopped, so a huge directory
/// is walked in place, never copied.
pub struct DirStream {
    dir: Ino,
    after: Option<Box<str>>,
}

/// Adds `wasi:filesystem/{types,preopens}` (shadowing wasmtime-wasi's).
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    t::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    wasi::filesystem::preopens::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    linker.allow_shadowing(false);
    Ok(())
}

fn code(e: Errno) -> ErrorCode {
    match e {
        errno::NOENT => ErrorCode::NoEntry,
        errno::EXIST => ErrorCode::Exist,
        errno::NOTDIR => ErrorCode::NotDirectory,
        errno::ISDIR => ErrorCode::IsDirectory,
        errno::NOTEMPTY => ErrorCode::NotEmpty,
        errno::NOSPC => ErrorCode::InsufficientSpace,
        errno::PERM => ErrorCode::NotPermitted,
        errno::INVAL => ErrorCode::Invalid,
        errno::NAMETOOLONG => ErrorCode::NameTooLong,
        errno::BADF => ErrorCode::BadDescriptor,
        errno::FBIG => ErrorCode::FileTooLarge,
        errno::NOTSUP | errno::NOSYS => ErrorCode::Unsupported,
        _ => ErrorCode::Io,
    }
}

type R<T> = Result<T, ErrorCode>;

impl State {
    /// This instance's `/tmp`.
    fn tmp(&mut self) -> SharedFs {
        let quota = self.spec.tmp_quota;
        self.p2()
            .fs
            .get_or_insert_with(|| Arc::new(Mutex::new(MemFs::new(quota))))
            .clone()
    }

    fn table(&mut self) -> &mut ResourceTable {
        &mut self.p2().table
    }

    fn desc(&mut self, d: &Resource<Descriptor>) -> R<(Ino, bool, bool, bool)> {
        let d = self.table().get(d).map_err(|_| ErrorCode::BadDescriptor)?;
        Ok((d.ino, d.dir, d.read, d.write))
    }

    /// The directory `d` names, for an `*-at` call.
    fn dir_of(&mut self, d: &Resource<Descriptor>) -> R<Ino> {
        match self.desc(d)? {
            (ino, true, _, _) => Ok(ino),
            _ => Err(ErrorCode::NotDirectory),
        }
    }

    fn file_of(&mut self, d: &Resource<Descriptor>) -> R<Ino> {
        match self.desc(d)? {
            (_, true, _, _) => Err(ErrorCode::IsDirectory),
            (ino, false, _, _) => Ok(ino),
        }
    }

    /// The file `d` names, if it was opened for reading.
    fn readable(&mut self, d: &Resource<Descriptor>) -> R<Ino> {
        let ino = self.file_of(d)?;
        if !self.desc(d)?.2 {
            return Err(ErrorCode::BadDescriptor);
        }
        Ok(ino)
    }

    /// The file `d` names, if it was opened for writing.
    fn writable(&mut self, d: &Resource<Descriptor>) -> R<Ino> {
        let ino = self.file_of(d)?;
        if !self.desc(d)?.3 {
            return Err(ErrorCode::BadDescriptor);
        }
        Ok(ino)
    }

    /// A stream over `ino` that keeps the file open.
    fn file_stream(&mut self, ino: Ino, offset: u64, append: bool) -> FileStream {
        let fs = self.tmp();
        fs.lock().open_file(ino);
        FileStream::new(fs, ino, offset, append)
    }

    fn new_descriptor(&mut self, d: Descriptor) -> R<Resource<Descriptor>> {
        self.table()
            .push(d)
            .map_err(|_| ErrorCode::InsufficientMemory)
    }
}

fn stat_of(fs: &MemFs, ino: Ino) -> R<DescriptorStat> {
    let (ty, size, nlink) = fs.stat(ino).map_err(code)?;
    Ok(DescriptorStat {
        type_: if ty == memfs::FILETYPE_DIRECTORY {
            DescriptorType::Directory
        } else {
            DescriptorType::RegularFile
        },
        link_count: nlink,
        size,
        data_access_timestamp: None,
        data_modification_timestamp: None,
        status_change_timestamp: None,
    })
}

impl t::Host for State {
    fn filesystem_error_code(
        &mut self,
        _err: Resource<wasmtime_wasi::p2::bindings::sync::io::error::Error>,
    ) -> Option<ErrorCode> {
        // Stream errors of `/tmp` files carry no filesystem code.
        None
    }
}

impl t::HostDescriptor for State {
    fn read_via_stream(
        &mut self,
        d: Resource<Descriptor>,
        offset: u64,
    ) -> R<Resource<wasmtime_wasi::p2::DynInputStream>> {
        let ino = self.readable(&d)?;
        let stream: wasmtime_wasi::p2::DynInputStream =
            Box::new(self.file_stream(ino, offset, false));
        self.table()
            .push(stream)
            .map_err(|_| ErrorCode::InsufficientMemory)
    }

    fn write_via_stream(
        &mut self,
        d: Resource<Descriptor>,
        offset: u64,
    ) -> R<Resource<wasmtime_wasi::p2::DynOutputStream>> {
        self.writer(d, offset, false)
    }

    fn append_via_stream(
        &mut self,
        d: Resource<Descriptor>,
    ) -> R<Resource<wasmtime_wasi::p2::DynOutputStream>> {
        self.writer(d, 0, true)
    }

    fn advise(&mut self, d: Resource<Descriptor>, _o: u64, _l: u64, _a: t::Advice) -> R<()> {
        self.desc(&d).map(|_| ())
    }

    fn sync_data(&mut self, d: Resource<Descriptor>) -> R<()> {
        self.desc(&d).map(|_| ())
    }

    fn get_flags(&mut self, d: Resource<Descriptor>) -> R<DescriptorFlags> {
        let (_, _, read, write) = self.desc(&d)?;
        let mut f = DescriptorFlags::empty();
        if read {
            f |= DescriptorFlags::READ;
        }
        if write {
            f |= DescriptorFlags::WRITE | DescriptorFlags::MUTATE_DIRECTORY;
        }
        Ok(f)
    }

    fn get_type(&mut self, d: Resource<Descriptor>) -> R<DescriptorType> {
        Ok(if self.desc(&d)?.1 {
            DescriptorType::Directory
        } else {
            DescriptorType::RegularFile
        })
    }

    fn set_size(&mut self, d: Resource<Descriptor>, size: u64) -> R<()> {
        let ino = self.writable(&d)?;
        self.tmp().lock().set_len(ino, size).map_err(code)
    }

    fn set_times(&mut self, d: Resource<Descriptor>, _a: NewTimestamp, _m: NewTimestamp) -> R<()> {
        // `/tmp` keeps no times (as preview 1 here): accepted, not stored.
        self.desc(&d).map(|_| ())
    }

    fn read(&mut self, d: Resource<Descriptor>, len: u64, offset: u64) -> R<(Vec<u8>, bool)> {
        let ino = self.readable(&d)?;
        let fs = self.tmp();
        let fs = fs.lock();
        let data = fs.file(ino).map_err(code)?;
        // POSIX: reading at or past the end gives nothing (HOSTILE 29).
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(data.len());
        Ok((data[start..end].to_vec(), end == data.len()))
    }

    fn write(&mut self, d: Resource<Descriptor>, buf: Vec<u8>, offset: u64) -> R<u64> {
        let ino = self.writable(&d)?;
        self.tmp()
            .lock()
            .write_at(ino, offset, &buf)
            .map_err(code)?;
        Ok(buf.len() as u64)
    }

    fn read_directory(&mut self, d: Resource<Descriptor>) -> R<Resource<DirStream>> {
        let dir = self.dir_of(&d)?;
        self.table()
            .push(DirStream { dir, after: None })
            .map_err(|_| ErrorCode::InsufficientMemory)
    }

    fn sync(&mut self, d: Resource<Descriptor>) -> R<()> {
        self.desc(&d).map(|_| ())
    }

    fn create_directory_at(&mut self, d: Resource<Descriptor>, path: String) -> R<()> {
        let dir = self.dir_of(&d)?;
        if MemFs::is_self(&path) {
            return Err(ErrorCode::Exist);
        }
        let fs = self.tmp();
        let mut fs = fs.lock();
        let at = fs.parent_of(dir, &path).map_err(code)?;
        fs.create_dir(at.parent, at.name).map(|_| ()).map_err(code)
    }

    fn stat(&mut self, d: Resource<Descriptor>) -> R<DescriptorStat> {
        let (ino, ..) = self.desc(&d)?;
        stat_of(&self.tmp().lock(), ino)
    }

    fn stat_at(
        &mut self,
        d: Resource<Descriptor>,
        _f: PathFlags,
        path: String,
    ) -> R<DescriptorStat> {
        let dir = self.dir_of(&d)?;
        let fs = self.tmp();
        let fs = fs.lock();
        let ino = fs.lookup(dir, &path).map_err(code)?;
        stat_of(&fs, ino)
    }

    fn set_times_at(
        &mut self,
        d: Resource<Descriptor>,
        _f: PathFlags,
        path: String,
        _a: NewTimestamp,
        _m: NewTimestamp,
    ) -> R<()> {
        let dir = self.dir_of(&d)?;
        self.tmp()
            .lock()
            .lookup(dir, &path)
            .map(|_| ())
            .map_err(code)
    }

    fn link_at(
        &mut self,
        d: Resource<Descriptor>,
        _f: PathFlags,
        _old: String,
        _to: Resource<Descriptor>,
        _new: String,
    ) -> R<()> {
        self.dir_of(&d)?;
        Err(ErrorCode::NotPermitted)
    }

    fn open_at(
        &mut self,
        d: Resource<Descriptor>,
        _f: PathFlags,
        path: String,
        oflags: OpenFlags,
        flags: DescriptorFlags,
    ) -> R<Resource<Descriptor>> {
        let dir = self.dir_of(&d)?;
        let creat = oflags.contains(OpenFlags::CREATE);
        let want_dir = oflags.contains(OpenFlags::DIRECTORY);
        let trunc = oflags.contains(OpenFlags::TRUNCATE);
        let write = flags.contains(DescriptorFlags::WRITE);
        if creat && want_dir {
            return Err(ErrorCode::Invalid);
        }
        if creat && path.ends_with('/') {
            return Err(ErrorCode::IsDirectory);
        }
        let fs = self.tmp();
        let mut fs = fs.lock();
        let ino = match fs.lookup(dir, &path) {
            Ok(_) if creat && oflags.contains(OpenFlags::EXCLUSIVE) => {
                return Err(ErrorCode::Exist);
            }
            Ok(ino) => ino,
            Err(errno::NOENT) if creat => {
                let at = fs.parent_of(dir, &path).map_err(code)?;
                fs.create_file(at.parent, at.name).map_err(code)?
            }
            Err(e) => return Err(code(e)),
        };
        let desc = if fs.is_dir(ino) {
            if trunc || write {
                return Err(ErrorCode::IsDirectory);
            }
            Descriptor {
                ino,
                dir: true,
                read: true,
                write: false,
            }
        } else {
            if want_dir {
                return Err(ErrorCode::NotDirectory);
            }
            if trunc {
                if !write {
                    return Err(ErrorCode::BadDescriptor);
                }
                fs.set_len(ino, 0).map_err(code)?;
            }
            fs.open_file(ino);
            Descriptor {
                ino,
                dir: false,
                read: flags.contains(DescriptorFlags::READ) || !write,
                write,
            }
        };
        drop(fs);
        let file = (!desc.dir).then_some(desc.ino);
        self.new_descriptor(desc).inspect_err(|_| {
            if let Some(ino) = file {
                self.tmp().lock().close_file(ino);
            }
        })
    }

    fn readlink_at(&mut self, d: Resource<Descriptor>, path: String) -> R<String> {
        let dir = self.dir_of(&d)?;
        // There are no symlinks: an existing name is not one.
        self.tmp().lock().lookup(dir, &path).map_err(code)?;
        Err(ErrorCode::Invalid)
    }

    fn remove_directory_at(&mut self, d: Resource<Descriptor>, path: String) -> R<()> {
        let dir = self.dir_of(&d)?;
        let fs = self.tmp();
        let mut fs = fs.lock();
        let at = fs.parent_of(dir, &path).map_err(code)?;
        fs.remove_dir(at.parent, at.name).map_err(code)
    }

    fn rename_at(
        &mut self,
        d: Resource<Descriptor>,
        old: String,
        to: Resource<Descriptor>,
        new: String,
    ) -> R<()> {
        let (from_dir, to_dir) = (self.dir_of(&d)?, self.dir_of(&to)?);
        let fs = self.tmp();
        let mut fs = fs.lock();
        let a = fs.parent_of(from_dir, &old).map_err(code)?;
        let b = fs.parent_of(to_dir, &new).map_err(code)?;
        fs.rename(a.parent, a.name, b.parent, b.name).map_err(code)
    }

    fn symlink_at(&mut self, d: Resource<Descriptor>, _old: String, _new: String) -> R<()> {
        self.dir_of(&d)?;
        Err(ErrorCode::NotPermitted)
    }

    fn unlink_file_at(&mut self, d: Resource<Descriptor>, path: String) -> R<()> {
        let dir = self.dir_of(&d)?;
        let fs = self.tmp();
        let mut fs = fs.lock();
        let at = fs.parent_of(dir, &path).map_err(code)?;
        if at.dir {
            return Err(ErrorCode::NotDirectory);
        }
        fs.unlink_file(at.parent, at.name).map_err(code)
    }

    fn is_same_object(&mut self, a: Resource<Descriptor>, b: Resource<Descriptor>) -> bool {
        matches!((self.desc(&a), self.desc(&b)), (Ok(x), Ok(y)) if x.0 == y.0)
    }

    fn metadata_hash(&mut self, d: Resource<Descriptor>) -> R<t::MetadataHashValue> {
        let (ino, ..) = self.desc(&d)?;
        Ok(t::MetadataHashValue {
            lower: ino,
            upper: 0,
        })
    }

    fn metadata_hash_at(
        &mut self,
        d: Resource<Descriptor>,
        _f: PathFlags,
        path: String,
    ) -> R<t::MetadataHashValue> {
        let dir = self.dir_of(&d)?;
        let ino = self.tmp().lock().lookup(dir, &path).map_err(code)?;
        Ok(t::MetadataHashValue {
            lower: ino,
            upper: 0,
        })
    }

    fn drop(&mut self, d: Resource<Descriptor>) -> wasmtime::Result<()> {
        let d = self.table().delete(d)?;
        if !d.dir {
            self.tmp().lock().close_file(d.ino);
        }
        Ok(())
    }
}

impl State {
    fn writer(
        &mut self,
        d: Resource<Descriptor>,
        offset: u64,
        append: bool,
    ) -> R<Resource<wasmtime_wasi::p2::DynOutputStream>> {
        let ino = self.writable(&d)?;
        let stream: wasmtime_wasi::p2::DynOutputStream =
            Box::new(self.file_stream(ino, offset, append));
        self.table()
            .push(stream)
            .map_err(|_| ErrorCode::InsufficientMemory)
    }
}

impl t::HostDirectoryEntryStream for State {
    fn read_directory_entry(&mut self, s: Resource<DirStream>) -> R<Option<DirectoryEntry>> {
        let fs = self.tmp();
        let stream = self
            .table()
            .get_mut(&s)
            .map_err(|_| ErrorCode::BadDescriptor)?;
        let fs = fs.lock();
        let next = fs
            .dir_iter(stream.dir, stream.after.as_deref())
            .map_err(code)?
            // WASI 0.2 lists neither `.` nor `..`.
            .find(|(_, _, name)| *name != "." && *name != "..")
            .map(|(_, ty, name)| (ty, Box::<str>::from(name)));
        Ok(next.map(|(ty, name)| {
            stream.after = Some(name.clone());
            DirectoryEntry {
                type_: if ty == memfs::FILETYPE_DIRECTORY {
                    DescriptorType::Directory
                } else {
                    DescriptorType::RegularFile
                },
                name: name.into(),
            }
        }))
    }

    fn drop(&mut self, s: Resource<DirStream>) -> wasmtime::Result<()> {
        self.table().delete(s)?;
        Ok(())
    }
}

impl wasi::filesystem::preopens::Host for State {
    fn get_directories(&mut self) -> Vec<(Resource<Descriptor>, String)> {
        let root = Descriptor {
            ino: ROOT,
            dir: true,
            read: true,
            write: true,
        };
        match self.new_descriptor(root) {
            Ok(d) => vec![(d, "/tmp".to_string())],
            Err(_) => Vec::new(),
        }
    }
}
