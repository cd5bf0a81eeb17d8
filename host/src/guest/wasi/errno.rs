//! WASI preview1 error numbers (the subset the host returns).

/// A WASI `errno` value.
pub(crate) type Errno = u16;

pub(crate) const SUCCESS: Errno = 0;
pub(crate) const BADF: Errno = 8;
pub(crate) const BUSY: Errno = 10;
pub(crate) const EXIST: Errno = 20;
pub(crate) const FAULT: Errno = 21;
pub(crate) const FBIG: Errno = 22;
pub(crate) const ILSEQ: Errno = 25;
pub(crate) const INVAL: Errno = 28;
pub(crate) const ISDIR: Errno = 31;
pub(crate) const MFILE: Errno = 33;
pub(crate) const NAMETOOLONG: Errno = 37;
pub(crate) const NOENT: Errno = 44;
pub(crate) const NOSPC: Errno = 51;
pub(crate) const NOSYS: Errno = 52;
pub(crate) const NOTDIR: Errno = 54;
pub(crate) const NOTEMPTY: Errno = 55;
pub(crate) const NOTSUP: Errno = 58;
pub(crate) const PERM: Errno = 63;
pub(crate) const SPIPE: Errno = 70;
/// Not a WASI errno: a host function's way to say "the invocation's
/// deadline passed while I worked"; the import wrapper turns it into a
/// `Timeout` that ends the invocation, so the guest never sees it.
pub(crate) const DEADLINE: Errno = u16::MAX;

impl From<crate::guest_mem::OutOfBounds> for Errno {
    fn from(_: crate::guest_mem::OutOfBounds) -> Errno {
        FAULT
    }
}
