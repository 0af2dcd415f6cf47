//! The heap cap as an allocator: QuickJS's own `set_memory_limit` refuses allocations too,
//! but gives the host no way to learn that it did. Refusing here records the fact, so the
//! interrupt handler can end a program that catches its out-of-memory errors and goes on.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use rquickjs::allocator::{Allocator, RustAllocator};

/// What the host reads from the allocator while and after a program runs.
#[derive(Debug, Clone, Default)]
pub(super) struct HeapGauge {
    /// Set once an allocation was refused for the cap.
    pub(super) cap_hit: Arc<AtomicBool>,
    /// Most bytes the isolate had allocated at once.
    pub(super) peak: Arc<AtomicUsize>,
}

pub(super) struct CappedAllocator {
    inner: RustAllocator,
    cap: usize,
    used: usize,
    gauge: HeapGauge,
}

impl CappedAllocator {
    pub(super) fn new(cap: usize, gauge: HeapGauge) -> Self {
        Self {
            inner: RustAllocator,
            cap,
            used: 0,
            gauge,
        }
    }

    fn admit(&mut self, release: usize, request: usize) -> bool {
        if self.used.saturating_sub(release).saturating_add(request) > self.cap {
            self.gauge.cap_hit.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn account(&mut self, released: usize, taken: usize) {
        self.used = self.used.saturating_sub(released).saturating_add(taken);
        self.gauge.peak.fetch_max(self.used, Ordering::Relaxed);
    }
}

// SAFETY: every pointer comes from and goes back to `RustAllocator`, unchanged; this type
// only counts and refuses.
unsafe impl Allocator for CappedAllocator {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        if !self.admit(0, size) {
            return std::ptr::null_mut();
        }
        let ptr = self.inner.alloc(size);
        if !ptr.is_null() {
            // SAFETY: `ptr` was just returned by the inner allocator.
            self.account(0, unsafe { RustAllocator::usable_size(ptr) });
        }
        ptr
    }

    fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        if !self.admit(0, count.saturating_mul(size)) {
            return std::ptr::null_mut();
        }
        let ptr = self.inner.calloc(count, size);
        if !ptr.is_null() {
            // SAFETY: `ptr` was just returned by the inner allocator.
            self.account(0, unsafe { RustAllocator::usable_size(ptr) });
        }
        ptr
    }

    unsafe fn dealloc(&mut self, ptr: *mut u8) {
        if ptr.is_null() {
            return;
        }
        // SAFETY: the caller passes a pointer from this allocator.
        let size = unsafe { RustAllocator::usable_size(ptr) };
        // SAFETY: as above.
        unsafe { self.inner.dealloc(ptr) };
        self.account(size, 0);
    }

    unsafe fn realloc(&mut self, ptr: *mut u8, new_size: usize) -> *mut u8 {
        let old = if ptr.is_null() {
            0
        } else {
            // SAFETY: the caller passes a pointer from this allocator.
            unsafe { RustAllocator::usable_size(ptr) }
        };
        if !self.admit(old, new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: as above.
        let new = unsafe { self.inner.realloc(ptr, new_size) };
        if !new.is_null() {
            // SAFETY: `new` was just returned by the inner allocator.
            self.account(old, unsafe { RustAllocator::usable_size(new) });
        }
        new
    }

    unsafe fn usable_size(ptr: *mut u8) -> usize {
        // SAFETY: the caller passes a pointer from this allocator.
        unsafe { RustAllocator::usable_size(ptr) }
    }
}
