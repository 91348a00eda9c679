//! A counting allocator for the tests and benches that measure heap allocations: it wraps the
//! system's and counts only while the current thread asks it to ([`allocations`]), so that
//! other threads (the plugin runtime's watchdog and preparing thread, other tests) do not blur
//! the count. A binary that measures installs it itself (a library installing a global
//! allocator would impose it on every test binary linking this crate):
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: wasm_vtep_testkit::counting::Counting = wasm_vtep_testkit::counting::Counting;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    /// Allocations by this thread while `COUNTING` is set.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, counting this thread's allocations while [`allocations`] runs.
#[derive(Debug)]
pub struct Counting;

impl Counting {
    fn note() {
        // `try_with`: a thread being torn down has no thread-locals left, and is not counted.
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            }
        });
    }
}

// SAFETY: every call is passed on unchanged to the system allocator, which upholds
// `GlobalAlloc`'s contract; counting touches only const-initialised thread-locals, which never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Counting::note();
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Counting::note();
        // SAFETY: the caller's contract for `realloc` is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Heap allocations this thread makes in `f` (always 0 unless [`Counting`] is the global
/// allocator).
pub fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(Cell::get) - before
}
