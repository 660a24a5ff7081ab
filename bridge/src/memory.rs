//! The bridge's memory allocator: the system's, except that blocks of [`LARGE`] bytes or more
//! are mapped from the kernel directly, so that their pages count in the bridge's memory only
//! once something is written to them.
//!
//! Why: every connection holds two 8 KiB buffers of hyper's — one it reads requests into and one
//! for the heads of its responses — for as long as it is open. A visitor's long-poll or event
//! stream keeps its connection open while it waits, so at 10,000 waiting visitors those buffers are
//! most of the bridge's memory (docs/performance-history.md). Taken from the system allocator's
//! heap, they land on pages earlier requests have already written to, and all 16 KiB are resident
//! from the start. Mapped on their own, a waiting connection's response buffer stays untouched, and
//! its read buffer holds one request of a few hundred bytes: about one page of the four.
//!
//! The cost: each large block is a `mmap` and a `munmap`, and its pages are faulted in one by one.
//! That would be once per connection if hyper kept its read buffer, but it takes a new one for most
//! requests (a request body's bytes are still in flight to the handler when it reads on, so its
//! buffer is shared and cannot be reused), which cost about a tenth of the bridge's throughput
//! (docs/performance-history.md, "Fifth round"). So freed mappings of two to four pages are kept,
//! 16 of each size, and handed out again before anything new is mapped (`mapped::Shelves`): a
//! recycled block is resident already, but at most 48 of them exist, however many connections are
//! open. Should the kernel refuse a mapping (too many mappings, say), the block comes from the
//! system allocator instead, as before.
//!
//! Only on Linux (which `mremap` is); elsewhere this is the system allocator.

#[cfg(target_os = "linux")]
use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks this large or larger are mapped on their own: two pages, the size of hyper's buffers.
pub const LARGE: usize = 8 * 1024;

/// The system allocator, with blocks of [`LARGE`] bytes or more mapped from the kernel.
#[cfg(target_os = "linux")]
#[derive(Debug, Default, Clone, Copy)]
pub struct Allocator;

/// Off Linux, the system allocator itself.
#[cfg(not(target_os = "linux"))]
pub use std::alloc::System as Allocator;

#[cfg(target_os = "linux")]
mod mapped {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::ptr;
    use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

    use super::LARGE;

    /// Larger alignments than this are left to the system allocator. A mapped block starts on a
    /// page; a block the system allocator holds in a mapping's stead never does (see
    /// [`fallback`]), which is how `dealloc` tells them apart.
    const MAX_ALIGN: usize = 16;

    /// The kernel's page size, looked up once.
    fn page() -> usize {
        static PAGE: AtomicUsize = AtomicUsize::new(0);
        match PAGE.load(Ordering::Relaxed) {
            0 => {
                // SAFETY: sysconf has no preconditions.
                let size = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
                    .ok()
                    .filter(|size| size.is_power_of_two())
                    .unwrap_or(4096);
                PAGE.store(size, Ordering::Relaxed);
                size
            }
            size => size,
        }
    }

    /// Whether a block of this layout is mapped on its own. On kernels with pages larger than
    /// 4 KiB only blocks of two pages or more are, so that no block wastes most of a page.
    pub fn is_large(size: usize, align: usize) -> bool {
        size >= LARGE.max(2 * page()) && align <= MAX_ALIGN
    }

    fn rounded(size: usize) -> usize {
        size.next_multiple_of(page())
    }

    /// How many pages a mapping of `size` bytes spans.
    fn pages(size: usize) -> usize {
        rounded(size) / page()
    }

    /// The freed mappings kept for reuse.
    static SHELVES: Shelves = Shelves::new();

    /// Freed mappings of two, three or four pages, [`SLOTS`] of each size, to hand out again
    /// instead of unmapping one and mapping the next. Lock-free: a slot holds a mapping or null,
    /// and whoever swaps a mapping out of it owns it. A full shelf (or a size not kept) leaves
    /// the block to be unmapped.
    pub struct Shelves {
        slots: [[AtomicPtr<u8>; SLOTS]; 3],
    }

    /// How many freed mappings of each kept size wait for reuse.
    pub const SLOTS: usize = 16;

    impl Shelves {
        pub const fn new() -> Shelves {
            Shelves {
                slots: [const { [const { AtomicPtr::new(ptr::null_mut()) }; SLOTS] }; 3],
            }
        }

        fn shelf(&self, pages: usize) -> Option<&[AtomicPtr<u8>; SLOTS]> {
            self.slots.get(pages.checked_sub(2)?)
        }

        /// A kept mapping of `pages` pages, now the caller's.
        pub fn take(&self, pages: usize) -> Option<*mut u8> {
            self.shelf(pages)?.iter().find_map(|slot| {
                if slot.load(Ordering::Relaxed).is_null() {
                    return None;
                }
                let block = slot.swap(ptr::null_mut(), Ordering::Acquire);
                (!block.is_null()).then_some(block)
            })
        }

        /// Keeps `block`, a mapping of `pages` pages the caller gives up, if there is room.
        pub fn put(&self, block: *mut u8, pages: usize) -> bool {
            let Some(shelf) = self.shelf(pages) else {
                return false;
            };
            shelf.iter().any(|slot| {
                slot.compare_exchange(ptr::null_mut(), block, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            })
        }
    }

    /// Whether a large block is a mapping (else it is a [`fallback`] block).
    pub fn is_mapped(ptr: *mut u8) -> bool {
        (ptr as usize).is_multiple_of(page())
    }

    /// A fresh mapping of `size` bytes (zeroed, untouched), or null.
    fn map(size: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                rounded(size),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            ptr.cast()
        }
    }

    /// The system allocator's stand-in for a mapping: the block starts 16 or 32 bytes into the
    /// system's block, never on a page, and the byte before it says which.
    pub(super) mod fallback {
        use super::*;

        fn outer(size: usize) -> Layout {
            // Cannot fail: `size` came from a valid layout, and the alignment is a power of two.
            Layout::from_size_align(size + 2 * MAX_ALIGN, MAX_ALIGN).unwrap()
        }

        pub unsafe fn alloc(size: usize, zeroed: bool) -> *mut u8 {
            // SAFETY: `outer` is not zero-sized.
            let base = unsafe {
                if zeroed {
                    System.alloc_zeroed(outer(size))
                } else {
                    System.alloc(outer(size))
                }
            };
            if base.is_null() {
                return base;
            }
            // `base` is 16-aligned, so at most one of these two starts a page.
            let offset = if is_mapped(base.wrapping_add(MAX_ALIGN)) {
                2 * MAX_ALIGN
            } else {
                MAX_ALIGN
            };
            // SAFETY: both offsets are inside the block, which has room for `size` after them.
            unsafe {
                let block = base.add(offset);
                *block.sub(1) = offset as u8;
                block
            }
        }

        /// SAFETY: `block` came from [`alloc`] with this `size`.
        pub unsafe fn dealloc(block: *mut u8, size: usize) {
            unsafe {
                let offset = usize::from(*block.sub(1));
                System.dealloc(block.sub(offset), outer(size));
            }
        }
    }

    pub unsafe fn alloc(size: usize, zeroed: bool) -> *mut u8 {
        if let Some(block) = SHELVES.take(pages(size)) {
            if zeroed {
                // SAFETY: a recycled mapping of at least `size` bytes, owned by the caller now.
                unsafe { ptr::write_bytes(block, 0, size) };
            }
            return block;
        }
        let block = map(size);
        if block.is_null() {
            // SAFETY: as the caller's.
            unsafe { fallback::alloc(size, zeroed) }
        } else {
            block
        }
    }

    /// SAFETY: `block` came from [`alloc`] (or [`remap`]) with this `size`.
    pub unsafe fn dealloc(block: *mut u8, size: usize) {
        if is_mapped(block) {
            if SHELVES.put(block, pages(size)) {
                return;
            }
            // SAFETY: the whole mapping, as mapped. It can only fail for a range that is not
            // mapped, which this one is.
            unsafe { libc::munmap(block.cast(), rounded(size)) };
        } else {
            // SAFETY: as the caller's.
            unsafe { fallback::dealloc(block, size) }
        }
    }

    /// A mapped block grown or shrunk in place or moved by the kernel without copying; null
    /// when it cannot be (the caller then moves it itself).
    ///
    /// SAFETY: `block` came from [`alloc`] with `old` bytes and is mapped.
    pub unsafe fn remap(block: *mut u8, old: usize, new: usize) -> *mut u8 {
        let (old, new) = (rounded(old), rounded(new));
        if old == new {
            return block;
        }
        // SAFETY: `block` is a whole mapping of `old` bytes; MREMAP_MAYMOVE lets the kernel put
        // it elsewhere, and the old address is not used again if it does.
        let moved = unsafe { libc::mremap(block.cast(), old, new, libc::MREMAP_MAYMOVE) };
        if moved == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            moved.cast()
        }
    }
}

#[cfg(target_os = "linux")]
// SAFETY: every block is either the system allocator's, handled by it with the caller's own
// layout, or one `mapped` hands out and takes back with the same size; a layout's size decides
// which, and it is the same at allocation and deallocation (and for a reallocation crossing
// [`LARGE`], the block is moved from one to the other).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if mapped::is_large(layout.size(), layout.align()) {
                mapped::alloc(layout.size(), false)
            } else {
                System.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if mapped::is_large(layout.size(), layout.align()) {
                // A fresh mapping is zeroed already; a fallback block is zeroed by the system.
                mapped::alloc(layout.size(), true)
            } else {
                System.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        unsafe {
            if mapped::is_large(layout.size(), layout.align()) {
                mapped::dealloc(block, layout.size());
            } else {
                System.dealloc(block, layout);
            }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let was_large = mapped::is_large(layout.size(), layout.align());
        let is_large = mapped::is_large(new_size, layout.align());
        unsafe {
            if !was_large && !is_large {
                return System.realloc(block, layout, new_size);
            }
            if was_large && is_large && mapped::is_mapped(block) {
                let moved = mapped::remap(block, layout.size(), new_size);
                if !moved.is_null() {
                    return moved;
                }
            }
            // Across the threshold, or the kernel would not: a new block, and a copy.
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            moved
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// This process's resident memory, in bytes.
    fn rss() -> usize {
        let kib = crate::testing::rss_kib(std::process::id()).expect("VmRSS");
        usize::try_from(kib).unwrap() * 1024
    }

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 1).unwrap()
    }

    /// Fills `size` bytes at `block` with a pattern that depends on the position.
    unsafe fn fill(block: *mut u8, size: usize) {
        for i in 0..size {
            unsafe { *block.add(i) = (i % 251) as u8 };
        }
    }

    unsafe fn holds_pattern(block: *mut u8, size: usize) -> bool {
        (0..size).all(|i| unsafe { *block.add(i) } == (i % 251) as u8)
    }

    /// A block keeps its bytes while it grows and shrinks across the threshold and within it,
    /// whichever allocator holds it at each step.
    #[test]
    fn a_block_keeps_its_contents_across_every_reallocation() {
        let sizes = [
            100,
            LARGE - 1,
            LARGE,
            LARGE + 1,
            20_000,
            300_000,
            9_000,
            5_000,
            17,
            LARGE,
        ];
        unsafe {
            let mut size = sizes[0];
            let block = Allocator.alloc(layout(size));
            fill(block, size);
            let mut block = block;
            for &next in &sizes[1..] {
                block = Allocator.realloc(block, layout(size), next);
                assert!(!block.is_null());
                assert!(
                    holds_pattern(block, size.min(next)),
                    "{size} → {next} bytes"
                );
                fill(block, next);
                size = next;
            }
            Allocator.dealloc(block, layout(size));
        }
    }

    /// Large blocks are zeroed when asked, and start on a page.
    #[test]
    fn large_zeroed_blocks_are_zero_and_page_aligned() {
        unsafe {
            let block = Allocator.alloc_zeroed(layout(3 * LARGE + 5));
            assert!((block as usize).is_multiple_of(4096));
            assert!((0..3 * LARGE + 5).all(|i| *block.add(i) == 0));
            Allocator.dealloc(block, layout(3 * LARGE + 5));
            let small = Allocator.alloc_zeroed(layout(LARGE - 1));
            assert!((0..LARGE - 1).all(|i| *small.add(i) == 0));
            Allocator.dealloc(small, layout(LARGE - 1));
        }
    }

    /// What this allocator is for: a large block nothing has written to costs no memory, and
    /// one that is written to costs the pages written.
    #[test]
    fn large_blocks_count_only_once_written_to() {
        const BLOCKS: usize = 4096;
        const SIZE: usize = 64 * 1024; // 256 MiB in all
        unsafe {
            let before = rss();
            let blocks: Vec<*mut u8> = (0..BLOCKS).map(|_| Allocator.alloc(layout(SIZE))).collect();
            let untouched = rss().saturating_sub(before);
            for &block in &blocks {
                for page in (0..SIZE).step_by(4096) {
                    *block.add(page) = 1;
                }
            }
            let written = rss().saturating_sub(before);
            for &block in &blocks {
                Allocator.dealloc(block, layout(SIZE));
            }
            assert!(
                untouched < 32 << 20,
                "256 MiB untouched took {untouched} bytes"
            );
            assert!(
                written > 192 << 20,
                "256 MiB written took only {written} bytes"
            );
        }
    }

    /// Freed mappings of two to four pages wait on their shelf, as many as it has slots, and
    /// each is handed out once; other sizes are not kept.
    #[test]
    fn shelves_keep_a_few_freed_mappings_of_each_small_size() {
        use mapped::{SLOTS, Shelves};
        let shelves = Shelves::new();
        assert_eq!(shelves.take(2), None);
        // Stand-ins: the shelves never touch what the pointers point to.
        let blocks: Vec<*mut u8> = (1..=SLOTS + 1).map(|i| (i * 8192) as *mut u8).collect();
        for &block in &blocks[..SLOTS] {
            assert!(shelves.put(block, 2));
        }
        assert!(!shelves.put(blocks[SLOTS], 2), "a full shelf takes no more");
        assert!(shelves.put(blocks[SLOTS], 3), "each size has its own shelf");
        assert!(!shelves.put(blocks[0], 1) && !shelves.put(blocks[0], 5));
        let mut taken: Vec<*mut u8> = std::iter::from_fn(|| shelves.take(2)).collect();
        taken.sort();
        assert_eq!(taken, blocks[..SLOTS]);
        assert_eq!(shelves.take(3), Some(blocks[SLOTS]));
        assert_eq!(shelves.take(4), None);
    }

    /// A recycled mapping is whole, on a page, and zeroed when asked, though it was written to.
    #[test]
    fn a_recycled_block_is_a_whole_mapping_and_zeroed_when_asked() {
        unsafe {
            for _ in 0..4 * mapped::SLOTS {
                let block = Allocator.alloc(layout(LARGE));
                fill(block, LARGE);
                Allocator.dealloc(block, layout(LARGE));
                let zeroed = Allocator.alloc_zeroed(layout(LARGE));
                assert!(mapped::is_mapped(zeroed));
                assert!((0..LARGE).all(|i| *zeroed.add(i) == 0));
                fill(zeroed, LARGE);
                let grown = Allocator.realloc(zeroed, layout(LARGE), 3 * LARGE);
                assert!(holds_pattern(grown, LARGE));
                Allocator.dealloc(grown, layout(3 * LARGE));
            }
        }
    }

    /// When the kernel refuses a mapping, the system allocator's stand-in is never on a page
    /// (which is how it is told from a mapping when freed), and round-trips.
    #[test]
    fn a_block_the_kernel_would_not_map_comes_from_the_system_allocator() {
        unsafe {
            let blocks: Vec<*mut u8> = (0..256)
                .map(|i| mapped::fallback::alloc(LARGE + i * 16, false))
                .collect();
            for (i, &block) in blocks.iter().enumerate() {
                assert!(!(block as usize).is_multiple_of(4096));
                assert!((block as usize).is_multiple_of(16));
                fill(block, LARGE + i * 16);
            }
            for (i, &block) in blocks.iter().enumerate() {
                assert!(holds_pattern(block, LARGE + i * 16));
                // Freed through the allocator, as any block is.
                Allocator.dealloc(block, layout(LARGE + i * 16));
            }
            let zeroed = mapped::fallback::alloc(LARGE, true);
            assert!((0..LARGE).all(|i| *zeroed.add(i) == 0));
            let grown = Allocator.realloc(zeroed, layout(LARGE), 4 * LARGE);
            assert!((0..LARGE).all(|i| *grown.add(i) == 0));
            Allocator.dealloc(grown, layout(4 * LARGE));
        }
    }
}
