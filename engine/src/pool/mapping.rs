//! The pool's one memory mapping, made at start-up with the best page backing available.

use std::ffi::c_void;
use std::fmt;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mlock, mmap_anonymous, munmap};

use super::PoolError;

/// The base page size this code assumes (x86_64 and the common aarch64 kernels).
pub(crate) const BASE_PAGE_BYTES: usize = 4096;
/// The huge page size fdw asks the kernel for.
pub(crate) const HUGE_PAGE_BYTES: usize = 2 * 1024 * 1024;
const _: () = assert!(HUGE_PAGE_BYTES.is_multiple_of(BASE_PAGE_BYTES));

const THP_SETTING: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// Which pages back the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Reserved 2 MiB huge pages (`MAP_HUGETLB`): no TLB pressure, never swapped.
    HugeTlb,
    /// Anonymous memory advised with `MADV_HUGEPAGE`: the kernel backs it with
    /// transparent huge pages where it can.
    TransparentHugePages,
    /// Plain base pages.
    RegularPages,
}

impl fmt::Display for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backing::HugeTlb => "hugetlb 2 MiB pages",
            Backing::TransparentHugePages => "transparent huge pages (madvise)",
            Backing::RegularPages => "regular 4 KiB pages",
        })
    }
}

/// Which backings the pool may use, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugePagePolicy {
    /// Reserved huge pages if the kernel has enough, else transparent huge pages, else
    /// plain pages. The default: it always starts, and says what it got.
    #[default]
    Auto,
    /// Reserved huge pages or a start-up error: for deployments that sized
    /// `vm.nr_hugepages` and want to know when it is wrong.
    Require,
    /// Transparent huge pages if enabled, else plain pages; never reserved huge pages.
    TransparentOnly,
    /// Plain pages only.
    Off,
}

impl std::str::FromStr for HugePagePolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "require" => Ok(Self::Require),
            "transparent" => Ok(Self::TransparentOnly),
            "off" => Ok(Self::Off),
            _ => Err(format!(
                "unknown huge-page policy {s:?}: expected auto, require, transparent or off"
            )),
        }
    }
}

/// An anonymous, private, read-write mapping, unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    backing: Backing,
}

// SAFETY: the mapping is plain memory owned by this value; which thread may touch which
// bytes is decided by chunk ownership in the pool, not by the mapping.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out the base pointer.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps at least `len` bytes (rounded up to whole pages of the backing it gets).
    pub(crate) fn new(
        len: usize,
        policy: HugePagePolicy,
        populate: bool,
        lock: bool,
    ) -> Result<Self, PoolError> {
        let mapping = match policy {
            HugePagePolicy::Require => Self::huge_tlb(len, populate)?,
            HugePagePolicy::Auto => match Self::huge_tlb(len, populate) {
                Ok(mapping) => mapping,
                Err(err) => {
                    tracing::info!(
                        "reserved huge pages unavailable ({err}); trying transparent huge pages"
                    );
                    Self::anonymous(len, true, populate)?
                }
            },
            HugePagePolicy::TransparentOnly => Self::anonymous(len, true, populate)?,
            HugePagePolicy::Off => Self::anonymous(len, false, populate)?,
        };
        if lock {
            // SAFETY: the range is exactly the live mapping we own.
            unsafe { mlock(mapping.base(), mapping.len) }.map_err(|source| PoolError::Lock {
                bytes: mapping.len,
                source,
            })?;
        }
        Ok(mapping)
    }

    /// `MAP_HUGETLB` with 2 MiB pages. Without `MAP_NORESERVE` the kernel reserves the
    /// pages now or fails now, so a later page fault cannot SIGBUS.
    fn huge_tlb(len: usize, populate: bool) -> Result<Self, PoolError> {
        let len = len.next_multiple_of(HUGE_PAGE_BYTES);
        let mut flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_HUGETLB | MapFlags::MAP_HUGE_2MB;
        if populate {
            flags |= MapFlags::MAP_POPULATE;
        }
        let ptr = map(len, flags).map_err(|source| PoolError::HugePagesUnavailable {
            pages_needed: len / HUGE_PAGE_BYTES,
            pages_free: free_huge_pages(),
            source,
        })?;
        Ok(Self {
            ptr,
            len,
            backing: Backing::HugeTlb,
        })
    }

    /// Plain anonymous memory, 2 MiB-aligned and advised for transparent huge pages when
    /// `want_thp` and the kernel has them enabled.
    fn anonymous(len: usize, want_thp: bool, populate: bool) -> Result<Self, PoolError> {
        let thp = want_thp && transparent_huge_pages_enabled();
        let len = len.next_multiple_of(if thp {
            HUGE_PAGE_BYTES
        } else {
            BASE_PAGE_BYTES
        });
        let ptr = if thp {
            map_aligned(len, HUGE_PAGE_BYTES)?
        } else {
            map_or_err(len)?
        };
        let mapping = Self {
            ptr,
            len,
            backing: if thp {
                Backing::TransparentHugePages
            } else {
                Backing::RegularPages
            },
        };
        if thp {
            // SAFETY: the range is exactly the live mapping we own.
            unsafe { madvise(mapping.base(), len, MmapAdvise::MADV_HUGEPAGE) }
                .map_err(|source| PoolError::Map { bytes: len, source })?;
        }
        if populate {
            mapping.populate();
        }
        Ok(mapping)
    }

    /// Faults every page in now, after the huge-page advice, so the data path never does.
    fn populate(&self) {
        // SAFETY: the range is exactly the live mapping we own.
        let advised = unsafe { madvise(self.base(), self.len, MmapAdvise::MADV_POPULATE_WRITE) };
        if advised.is_err() {
            // Kernels before 5.14: touch one byte per page instead.
            for offset in (0..self.len).step_by(BASE_PAGE_BYTES) {
                // SAFETY: offset < len, inside the mapping; nobody else has the memory yet.
                unsafe { self.ptr.as_ptr().add(offset).write_volatile(0) };
            }
        }
    }

    fn base(&self) -> NonNull<c_void> {
        self.ptr.cast()
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn backing(&self) -> Backing {
        self.backing
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is exactly the mapping we made; every chunk borrowing it holds
        // the pool alive, so no reference into it outlives this drop.
        if let Err(err) = unsafe { munmap(self.base(), self.len) } {
            tracing::error!("munmap of the {}-byte pool failed: {err}", self.len);
        }
    }
}

fn map(len: usize, flags: MapFlags) -> Result<NonNull<u8>, Errno> {
    let len = NonZeroUsize::new(len).ok_or(Errno::EINVAL)?;
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing aliases
    // nothing.
    let ptr = unsafe {
        mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            flags,
        )
    }?;
    Ok(ptr.cast())
}

fn map_or_err(len: usize) -> Result<NonNull<u8>, PoolError> {
    map(len, MapFlags::MAP_PRIVATE).map_err(|source| PoolError::Map { bytes: len, source })
}

/// Maps `len` bytes starting on an `align` boundary: map `len + align`, then unmap the
/// unaligned head and the tail. Transparent huge pages only back aligned 2 MiB extents.
fn map_aligned(len: usize, align: usize) -> Result<NonNull<u8>, PoolError> {
    let raw = map_or_err(len + align)?;
    let start = raw.as_ptr() as usize;
    let head = start.next_multiple_of(align) - start;
    let tail = align - head;
    // SAFETY: both ranges lie inside the mapping just made and are unused.
    unsafe {
        if head > 0 {
            munmap(raw.cast(), head).map_err(|source| PoolError::Map {
                bytes: head,
                source,
            })?;
        }
        let end = NonNull::new_unchecked(raw.as_ptr().add(head + len));
        if tail > 0 {
            munmap(end.cast(), tail).map_err(|source| PoolError::Map {
                bytes: tail,
                source,
            })?;
        }
        Ok(NonNull::new_unchecked(raw.as_ptr().add(head)))
    }
}

fn transparent_huge_pages_enabled() -> bool {
    // The active setting is the bracketed word: "always [madvise] never".
    std::fs::read_to_string(THP_SETTING).is_ok_and(|s| !s.contains("[never]"))
}

/// `HugePages_Free` from /proc/meminfo, for the error that explains a refusal.
fn free_huge_pages() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
}
