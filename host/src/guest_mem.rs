//! Bounds-checked access to a guest's linear memory.
//!
//! Every pointer and length a guest hands the host goes through these
//! helpers before it is used, and nothing the host allocates is sized by a
//! guest number before the check passed. Arithmetic is done in `u64`/checked
//! `usize`, so wrapped or huge values are refused rather than overflowing.

/// A guest pointer or length was outside the guest's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfBounds {
    pub ptr: u32,
    pub len: u64,
    pub memory_size: usize,
}

impl std::fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "range {:#x}+{} is outside guest memory of {} bytes",
            self.ptr, self.len, self.memory_size
        )
    }
}

/// Checks that `ptr..ptr+len` lies inside `mem` and returns it as a range.
#[inline]
pub(crate) fn range(mem: &[u8], ptr: u32, len: u64) -> Result<std::ops::Range<usize>, OutOfBounds> {
    let start = ptr as u64;
    match start.checked_add(len) {
        Some(end) if end <= mem.len() as u64 => Ok(start as usize..end as usize),
        _ => Err(OutOfBounds {
            ptr,
            len,
            memory_size: mem.len(),
        }),
    }
}

/// The guest bytes at `ptr..ptr+len`.
#[inline]
pub(crate) fn slice(mem: &[u8], ptr: u32, len: u64) -> Result<&[u8], OutOfBounds> {
    let r = range(mem, ptr, len)?;
    Ok(&mem[r])
}

/// The guest bytes at `ptr..ptr+len`, writable.
#[inline]
pub(crate) fn slice_mut(mem: &mut [u8], ptr: u32, len: u64) -> Result<&mut [u8], OutOfBounds> {
    let r = range(mem, ptr, len)?;
    Ok(&mut mem[r])
}

#[inline]
pub(crate) fn write(mem: &mut [u8], ptr: u32, bytes: &[u8]) -> Result<(), OutOfBounds> {
    slice_mut(mem, ptr, bytes.len() as u64)?.copy_from_slice(bytes);
    Ok(())
}

#[inline]
pub(crate) fn write_u32(mem: &mut [u8], ptr: u32, v: u32) -> Result<(), OutOfBounds> {
    write(mem, ptr, &v.to_le_bytes())
}

#[inline]
pub(crate) fn write_u64(mem: &mut [u8], ptr: u32, v: u64) -> Result<(), OutOfBounds> {
    write(mem, ptr, &v.to_le_bytes())
}

/// Offset `ptr` by `off` bytes, refusing to wrap past 4 GiB.
#[inline]
pub(crate) fn offset(ptr: u32, off: u64) -> Result<u32, OutOfBounds> {
    u32::try_from(ptr as u64 + off).map_err(|_| OutOfBounds {
        ptr,
        len: off,
        memory_size: u32::MAX as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_without_overflow() {
        let mem = vec![0u8; 16];
        assert_eq!(range(&mem, 0, 16), Ok(0..16));
        assert_eq!(range(&mem, 16, 0), Ok(16..16));
        assert!(range(&mem, 17, 0).is_err());
        assert!(range(&mem, 1, 16).is_err());
        assert!(range(&mem, u32::MAX, u64::MAX).is_err());
        assert!(range(&mem, 8, u32::MAX as u64).is_err());
        assert!(slice(&mem, 9, 8).is_err());
        assert!(slice(&mem, 8, 8).is_ok());
        assert!(offset(u32::MAX, 1).is_err());
    }
}
