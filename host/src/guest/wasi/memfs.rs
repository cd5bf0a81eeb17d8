//! The per-instance scratch filesystem behind the guest's `/tmp`.
//!
//! It lives in host memory and belongs to one instance: nothing outside it
//! exists for the guest, so no path can escape (`..` above the root and
//! absolute paths are refused, symlinks and hard links cannot be made), and
//! dropping the instance wipes it. Host memory it holds is charged to a
//! quota *before* it is allocated, as really allocated: a file's buffer by
//! its capacity (not its length: a file that shrinks gives its buffer
//! back), and each file or directory [`NODE_COST`] plus its name rounded
//! up to the allocator's granule (what the node, its map entries and the
//! allocator's headers take, measured by a test). A write that would cross
//! the quota fails whole with `ENOSPC`.

use std::collections::BTreeMap;

use super::errno::{self, Errno};

/// Bytes charged for each file or directory, on top of its name: the
/// node in the inode map (with the map's spare capacity), its entry in the
/// parent's B-tree and allocator headers. The test
/// `charges_cover_what_is_allocated` measures what these really take.
pub const NODE_COST: u64 = 256;
/// Bytes charged on top of [`NODE_COST`] for a directory: the first leaf
/// of its entries' B-tree, allocated whole when the first name goes in.
pub const DIR_EXTRA_COST: u64 = 320;
/// The allocator's granule: a name of `n` bytes is charged `n` rounded up.
const NAME_GRANULE: u64 = 16;
/// Longest path accepted, in bytes.
pub const MAX_PATH: usize = 4096;
/// Longest path component accepted, in bytes.
pub const MAX_NAME: usize = 255;

pub(crate) type Ino = u64;

/// A path cut before its last component ([`MemFs::parent_of`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split<'p> {
    /// The directory the last component is in.
    pub parent: Ino,
    /// The last component.
    pub name: &'p str,
    /// The path ended in `/`: it can only name a directory.
    pub dir: bool,
}
/// The inode of the preopened root (`/tmp`).
pub(crate) const ROOT: Ino = 1;

#[derive(Debug)]
pub(crate) enum Node {
    Dir {
        entries: BTreeMap<Box<str>, Ino>,
        parent: Ino,
    },
    File {
        data: Vec<u8>,
        /// Open file descriptors; an unlinked file lives until the last closes.
        open: u32,
        linked: bool,
    },
}

/// File type as WASI numbers it.
pub(crate) const FILETYPE_DIRECTORY: u8 = 3;
pub(crate) const FILETYPE_REGULAR_FILE: u8 = 4;

#[derive(Debug)]
pub(crate) struct MemFs {
    nodes: std::collections::HashMap<Ino, Node>,
    next_ino: Ino,
    used: u64,
    quota: u64,
}

impl MemFs {
    pub(crate) fn new(quota: u64) -> MemFs {
        let mut nodes = std::collections::HashMap::new();
        nodes.insert(
            ROOT,
            Node::Dir {
                entries: BTreeMap::new(),
                parent: ROOT,
            },
        );
        MemFs {
            nodes,
            next_ino: ROOT + 1,
            used: 0,
            quota,
        }
    }

    /// Bytes charged against the quota right now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used
    }

    pub(crate) fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(errno::BADF)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(errno::BADF)
    }

    fn charge(&mut self, bytes: u64) -> Result<(), Errno> {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.quota => {
                self.used = total;
                Ok(())
            }
            _ => Err(errno::NOSPC),
        }
    }

    fn refund(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// Splits a guest path into components, refusing escapes.
    fn components(path: &str) -> Result<Vec<&str>, Errno> {
        if path.is_empty() {
            return Err(errno::NOENT);
        }
        if path.len() > MAX_PATH {
            return Err(errno::NAMETOOLONG);
        }
        if path.starts_with('/') || path.contains('\0') {
            // What wasmtime-wasi answers for a path out of its preopen.
            return Err(errno::PERM);
        }
        let mut out = Vec::new();
        for c in path.split('/') {
            match c {
                "" | "." => {}
                c if c.len() > MAX_NAME => return Err(errno::NAMETOOLONG),
                c => out.push(c),
            }
        }
        Ok(out)
    }

    /// Does `path` name its starting directory itself (`.`, `./.`)?
    pub(crate) fn is_self(path: &str) -> bool {
        !path.is_empty() && Self::components(path).is_ok_and(|c| c.is_empty())
    }

    fn step(&self, at: Ino, name: &str) -> Result<Ino, Errno> {
        match self.node(at)? {
            Node::Dir { entries, parent } => {
                if name == ".." {
                    // `..` at the preopen root would leave the sandbox.
                    if at == ROOT {
                        return Err(errno::PERM);
                    }
                    Ok(*parent)
                } else {
                    entries.get(name).copied().ok_or(errno::NOENT)
                }
            }
            Node::File { .. } => Err(errno::NOTDIR),
        }
    }

    /// Resolves `path` relative to directory `dir`.
    pub(crate) fn lookup(&self, dir: Ino, path: &str) -> Result<Ino, Errno> {
        let comps = Self::components(path)?;
        let mut at = dir;
        for c in comps {
            at = self.step(at, c)?;
        }
        if path.ends_with('/') && !self.is_dir(at) {
            return Err(errno::NOTDIR);
        }
        Ok(at)
    }

    /// Resolves all but the last component, for a call that makes, removes
    /// or renames that component.
    pub(crate) fn parent_of<'p>(&self, dir: Ino, path: &'p str) -> Result<Split<'p>, Errno> {
        let mut comps = Self::components(path)?;
        let name = comps.pop().ok_or(errno::INVAL)?;
        let mut at = dir;
        for c in comps {
            at = self.step(at, c)?;
        }
        if name == ".." {
            // Out of the preopen at its root; elsewhere a directory that
            // cannot be made, removed or replaced by this name.
            return Err(if at == ROOT {
                errno::PERM
            } else {
                errno::INVAL
            });
        }
        if !self.is_dir(at) {
            return Err(errno::NOTDIR);
        }
        Ok(Split {
            parent: at,
            name,
            dir: path.ends_with('/'),
        })
    }

    /// The entry `split` names (`ENOENT` if there is none).
    pub(crate) fn child(&self, split: &Split<'_>) -> Result<Ino, Errno> {
        self.step(split.parent, split.name)
    }

    pub(crate) fn is_dir(&self, ino: Ino) -> bool {
        matches!(self.nodes.get(&ino), Some(Node::Dir { .. }))
    }

    fn entries_mut(&mut self, dir: Ino) -> Result<&mut BTreeMap<Box<str>, Ino>, Errno> {
        match self.node_mut(dir)? {
            Node::Dir { entries, .. } => Ok(entries),
            Node::File { .. } => Err(errno::NOTDIR),
        }
    }

    fn insert(&mut self, parent: Ino, name: &str, node: Node) -> Result<Ino, Errno> {
        if self.entries_mut(parent)?.contains_key(name) {
            return Err(errno::EXIST);
        }
        self.charge(NODE_COST + name_cost(name))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.entries_mut(parent)?.insert(name.into(), ino);
        Ok(ino)
    }

    pub(crate) fn create_file(&mut self, parent: Ino, name: &str) -> Result<Ino, Errno> {
        self.insert(
            parent,
            name,
            Node::File {
                data: Vec::new(),
                open: 0,
                linked: true,
            },
        )
    }

    pub(crate) fn create_dir(&mut self, parent: Ino, name: &str) -> Result<Ino, Errno> {
        self.charge(DIR_EXTRA_COST)?;
        self.insert(
            parent,
            name,
            Node::Dir {
                entries: BTreeMap::new(),
                parent,
            },
        )
        .inspect_err(|_| self.refund(DIR_EXTRA_COST))
    }

    /// Removes a file's directory entry.
    pub(crate) fn unlink_file(&mut self, parent: Ino, name: &str) -> Result<(), Errno> {
        let ino = *self.entries_mut(parent)?.get(name).ok_or(errno::NOENT)?;
        let open = match self.node_mut(ino)? {
            Node::Dir { .. } => return Err(errno::ISDIR),
            Node::File { open, linked, .. } => {
                *linked = false;
                *open
            }
        };
        self.entries_mut(parent)?.remove(name);
        // The name goes now; the node (and its buffer) when the last fd
        // closes.
        self.refund(name_cost(name));
        if open == 0 {
            self.free_file(ino);
        }
        Ok(())
    }

    fn free_file(&mut self, ino: Ino) {
        if let Some(Node::File { data, .. }) = self.nodes.remove(&ino) {
            self.refund(NODE_COST + data.capacity() as u64);
        }
    }

    pub(crate) fn remove_dir(&mut self, parent: Ino, name: &str) -> Result<(), Errno> {
        let ino = *self.entries_mut(parent)?.get(name).ok_or(errno::NOENT)?;
        match self.node(ino)? {
            Node::Dir { entries, .. } if !entries.is_empty() => return Err(errno::NOTEMPTY),
            Node::Dir { .. } => {}
            Node::File { .. } => return Err(errno::NOTDIR),
        }
        self.entries_mut(parent)?.remove(name);
        self.nodes.remove(&ino);
        self.refund(NODE_COST + DIR_EXTRA_COST + name_cost(name));
        Ok(())
    }

    /// Is `ino` the same as or inside directory `dir`?
    fn is_within(&self, mut ino: Ino, dir: Ino) -> bool {
        loop {
            if ino == dir {
                return true;
            }
            match self.nodes.get(&ino) {
                Some(Node::Dir { parent, .. }) if *parent != ino => ino = *parent,
                _ => return false,
            }
        }
    }

    pub(crate) fn rename(
        &mut self,
        from_dir: Ino,
        from: &str,
        to_dir: Ino,
        to: &str,
    ) -> Result<(), Errno> {
        let ino = *self.entries_mut(from_dir)?.get(from).ok_or(errno::NOENT)?;
        if self.is_dir(ino) && self.is_within(to_dir, ino) {
            return Err(errno::INVAL);
        }
        // What replacing the target takes, decided before anything changes.
        let mut replace = None;
        if let Some(&existing) = self.entries_mut(to_dir)?.get(to) {
            if existing == ino {
                return Ok(());
            }
            replace = Some(match (self.is_dir(ino), self.node(existing)?) {
                (true, Node::Dir { entries, .. }) if entries.is_empty() => true,
                (true, Node::Dir { .. }) => return Err(errno::NOTEMPTY),
                (true, Node::File { .. }) => return Err(errno::NOTDIR),
                (false, Node::Dir { .. }) => return Err(errno::ISDIR),
                (false, Node::File { .. }) => false,
            });
        }
        // The new name may be longer than the old one: charged first, so a
        // rename refused for space leaves the target in place.
        let (old_len, new_len) = (name_cost(from), name_cost(to));
        if new_len > old_len {
            self.charge(new_len - old_len)?;
        } else {
            self.refund(old_len - new_len);
        }
        match replace {
            Some(true) => self.remove_dir(to_dir, to)?,
            Some(false) => self.unlink_file(to_dir, to)?,
            None => {}
        }
        self.entries_mut(from_dir)?.remove(from);
        self.entries_mut(to_dir)?.insert(to.into(), ino);
        if let Node::Dir { parent, .. } = self.node_mut(ino)? {
            *parent = to_dir;
        }
        Ok(())
    }

    pub(crate) fn open_file(&mut self, ino: Ino) {
        if let Some(Node::File { open, .. }) = self.nodes.get_mut(&ino) {
            *open += 1;
        }
    }

    pub(crate) fn close_file(&mut self, ino: Ino) {
        let free = match self.nodes.get_mut(&ino) {
            Some(Node::File { open, linked, .. }) => {
                *open = open.saturating_sub(1);
                *open == 0 && !*linked
            }
            _ => false,
        };
        if free {
            self.free_file(ino);
        }
    }

    pub(crate) fn file(&self, ino: Ino) -> Result<&[u8], Errno> {
        match self.node(ino)? {
            Node::File { data, .. } => Ok(data),
            Node::Dir { .. } => Err(errno::ISDIR),
        }
    }

    /// Resizes a file, charging or refunding the change in its buffer's
    /// capacity. Growth is amortised (doubling) but never reserves past
    /// what the quota still allows; shrinking to half or less gives the
    /// buffer back.
    pub(crate) fn set_len(&mut self, ino: Ino, len: u64) -> Result<(), Errno> {
        let len = usize::try_from(len).map_err(|_| errno::FBIG)?;
        let quota_left = self.quota - self.used;
        let Node::File { data, .. } = self.node_mut(ino)? else {
            return Err(errno::ISDIR);
        };
        let cap = data.capacity();
        if len > cap {
            if (len - cap) as u64 > quota_left {
                return Err(errno::NOSPC);
            }
            let room = cap.saturating_add(quota_left as usize);
            let target = cap.saturating_mul(2).clamp(len, room.max(len));
            data.reserve_exact(target - data.len());
            data.resize(len, 0);
        } else {
            let shrinking = len < data.len();
            data.resize(len, 0);
            if shrinking && len <= cap / 2 {
                data.shrink_to_fit();
            }
        }
        let new_cap = data.capacity();
        if new_cap >= cap {
            self.used += (new_cap - cap) as u64;
        } else {
            self.refund((cap - new_cap) as u64);
        }
        Ok(())
    }

    /// Writes `bytes` at `offset`, extending the file (zero-filled) as needed.
    pub(crate) fn write_at(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        if bytes.is_empty() {
            // POSIX: writing nothing never extends a file.
            return self.file(ino).map(|_| ());
        }
        let end = offset.checked_add(bytes.len() as u64).ok_or(errno::FBIG)?;
        let cur = self.file(ino)?.len() as u64;
        if end > cur {
            self.set_len(ino, end)?;
        }
        if let Node::File { data, .. } = self.node_mut(ino)? {
            data[offset as usize..end as usize].copy_from_slice(bytes);
        }
        Ok(())
    }

    /// Directory listing for `fd_readdir`: `.`, `..`, then names in order,
    /// walked lazily (a huge directory costs no host allocation). With
    /// `after`, the walk starts at the name after it (dots left out), so a
    /// listing read in pieces never steps over what it already read.
    pub(crate) fn dir_iter<'a>(
        &'a self,
        dir: Ino,
        after: Option<&str>,
    ) -> Result<impl Iterator<Item = (Ino, u8, &'a str)> + 'a, Errno> {
        use std::ops::Bound;
        match self.node(dir)? {
            Node::Dir { entries, parent } => {
                let dots = [
                    (dir, FILETYPE_DIRECTORY, "."),
                    (*parent, FILETYPE_DIRECTORY, ".."),
                ];
                let (dots_left_out, from) = match after {
                    None => (0, Bound::Unbounded),
                    Some(name) => (2, Bound::Excluded(name)),
                };
                let names =
                    entries
                        .range::<str, _>((from, Bound::Unbounded))
                        .map(|(name, &ino)| {
                            let ty = if self.is_dir(ino) {
                                FILETYPE_DIRECTORY
                            } else {
                                FILETYPE_REGULAR_FILE
                            };
                            (ino, ty, &**name)
                        });
                Ok(dots.into_iter().skip(dots_left_out).chain(names))
            }
            Node::File { .. } => Err(errno::NOTDIR),
        }
    }

    /// `(filetype, size, nlink)` for `filestat`.
    pub(crate) fn stat(&self, ino: Ino) -> Result<(u8, u64, u64), Errno> {
        Ok(match self.node(ino)? {
            Node::Dir { .. } => (FILETYPE_DIRECTORY, 0, 1),
            Node::File { data, linked, .. } => {
                (FILETYPE_REGULAR_FILE, data.len() as u64, *linked as u64)
            }
        })
    }
}

/// What a name costs: its bytes rounded up to the allocator's granule.
fn name_cost(name: &str) -> u64 {
    (name.len() as u64).next_multiple_of(NAME_GRANULE)
}

#[cfg(test)]
#[path = "memfs_tests.rs"]
mod tests;
