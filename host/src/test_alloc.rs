//! A counting global allocator for unit tests that measure what host data
//! structures really hold (the `/tmp` quota charges those bytes). Counts are
//! per thread, so tests running in parallel do not disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static BYTES: Cell<i64> = const { Cell::new(0) };
    static COUNT: Cell<i64> = const { Cell::new(0) };
}

/// The system allocator, counting this thread's live bytes and allocations.
pub(crate) struct Counting;

fn note(bytes: i64, count: i64) {
    let _ = BYTES.try_with(|b| b.set(b.get() + bytes));
    let _ = COUNT.try_with(|c| c.set(c.get() + count));
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches
// only thread-local cells that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64, 1);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as i64, 1);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as i64), -1);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as i64 - layout.size() as i64, 0);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Live heap of this thread: bytes asked for, and allocations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Live {
    bytes: i64,
    count: i64,
}

impl Live {
    /// Bytes plus the allocator's per-allocation overhead (glibc: an
    /// 8-byte header, sizes rounded to 16, so at most 16 more each).
    pub(crate) fn bytes_with_headers(self) -> u64 {
        (self.bytes + 16 * self.count).max(0) as u64
    }
}

impl std::ops::Sub for Live {
    type Output = Live;
    fn sub(self, o: Live) -> Live {
        Live {
            bytes: self.bytes - o.bytes,
            count: self.count - o.count,
        }
    }
}

/// This thread's live heap now.
pub(crate) fn live() -> Live {
    Live {
        bytes: BYTES.with(Cell::get),
        count: COUNT.with(Cell::get),
    }
}
