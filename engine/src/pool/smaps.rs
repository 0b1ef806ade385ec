//! What the kernel says backs a mapping, read from `/proc/self/smaps`.
//!
//! The pool reports the backing it asked for and got from `mmap`; this is the independent
//! check of what the kernel actually did, for the start-up log, tests and status.

use std::io;

/// One mapping's entry in `/proc/self/smaps`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelView {
    /// `KernelPageSize`: 2048 KiB for a hugetlb mapping, 4 KiB otherwise.
    pub kernel_page_size_kib: u64,
    /// `AnonHugePages`: bytes currently backed by transparent huge pages, in KiB.
    pub anon_huge_pages_kib: u64,
    /// `Rss` in KiB (hugetlb pages are not counted here; see `hugetlb_kib`).
    pub rss_kib: u64,
    /// `Private_Hugetlb` + `Shared_Hugetlb` in KiB.
    pub hugetlb_kib: u64,
    /// `Locked` in KiB: what `mlock` pinned.
    pub locked_kib: u64,
    /// `VmFlags`: `ht` marks hugetlb, `hg` the `MADV_HUGEPAGE` advice, `lo` locked.
    pub vm_flags: Vec<String>,
}

impl KernelView {
    /// Whether `VmFlags` carries `flag`.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.vm_flags.iter().any(|f| f == flag)
    }
}

/// Reads the smaps entry of the mapping that contains `addr`.
pub(crate) fn kernel_view(addr: usize) -> io::Result<KernelView> {
    parse(&std::fs::read_to_string("/proc/self/smaps")?, addr).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no mapping contains {addr:#x} in /proc/self/smaps"),
        )
    })
}

fn parse(smaps: &str, addr: usize) -> Option<KernelView> {
    let mut lines = smaps.lines();
    // Skip to the header line "start-end perms offset dev inode [path]" of our mapping.
    lines
        .by_ref()
        .find(|line| header_range(line).is_some_and(|(start, end)| (start..end).contains(&addr)))?;
    let mut view = KernelView::default();
    for line in lines {
        if header_range(line).is_some() {
            break;
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let kib = || {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        };
        match field {
            "KernelPageSize" => view.kernel_page_size_kib = kib(),
            "AnonHugePages" => view.anon_huge_pages_kib = kib(),
            "Rss" => view.rss_kib = kib(),
            "Private_Hugetlb" | "Shared_Hugetlb" => view.hugetlb_kib += kib(),
            "Locked" => view.locked_kib = kib(),
            "VmFlags" => view.vm_flags = value.split_whitespace().map(str::to_owned).collect(),
            _ => {}
        }
    }
    Some(view)
}

/// The address range of a header line, or `None` for a field line.
fn header_range(line: &str) -> Option<(usize, usize)> {
    let range = line.split_whitespace().next()?;
    let (start, end) = range.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
7f0000000000-7f0000200000 rw-p 00000000 00:00 0
Size:               2048 kB
KernelPageSize:        4 kB
Rss:                2048 kB
AnonHugePages:      2048 kB
Locked:                0 kB
VmFlags: rd wr mr mw me ac hg
7f0000400000-7f0000800000 rw-p 00000000 00:0f 1234   /anon_hugepage (deleted)
KernelPageSize:     2048 kB
Rss:                   0 kB
Private_Hugetlb:    4096 kB
VmFlags: rd wr mr mw me de ht
";

    #[test]
    fn finds_the_entry_containing_an_address() {
        let thp = parse(SAMPLE, 0x7f00_0000_1000).unwrap();
        assert_eq!(
            (thp.kernel_page_size_kib, thp.anon_huge_pages_kib),
            (4, 2048)
        );
        assert!(thp.has_flag("hg") && !thp.has_flag("ht"));
        let huge = parse(SAMPLE, 0x7f00_0040_0000).unwrap();
        assert_eq!((huge.kernel_page_size_kib, huge.hugetlb_kib), (2048, 4096));
        assert!(huge.has_flag("ht"));
        assert_eq!(parse(SAMPLE, 0x7f00_0030_0000), None);
    }
}
