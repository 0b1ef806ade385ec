//! The memory pool against the real kernel: backings checked in /proc/self/smaps,
//! exhaustion, reuse, and concurrent use.
//!
//! `tools/test.sh` reserves huge pages when it runs as root and then sets
//! `FDW_REQUIRE_HUGETLB=1`, which turns "hugetlb if the kernel has it" into "hugetlb or
//! fail". Without a reservation the same tests check the fallbacks.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::collections::HashSet;

use fdw_engine::{Backing, HugePagePolicy, KernelView, Pool, PoolConfig, PoolError};

const CHUNK: usize = 64 * 1024;
const HUGE_PAGE: usize = 2 * 1024 * 1024;

fn config(size_bytes: usize, huge_pages: HugePagePolicy) -> PoolConfig {
    PoolConfig {
        size_bytes,
        chunk_size_bytes: CHUNK,
        huge_pages,
        populate: true,
        lock: false,
    }
}

fn meminfo(field: &str) -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)
                .map(|v| v.trim().trim_end_matches("kB").trim().parse().unwrap())
        })
        .unwrap_or(0)
}

fn thp_enabled() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|s| !s.contains("[never]"))
}

fn hugetlb_required() -> bool {
    std::env::var("FDW_REQUIRE_HUGETLB").is_ok_and(|v| v == "1")
}

/// The kernel's view agrees with the backing the pool reports.
fn assert_kernel_agrees(pool: &Pool) -> KernelView {
    let view = pool.kernel_view().unwrap();
    match pool.backing() {
        Backing::HugeTlb => {
            assert_eq!(view.kernel_page_size_kib, 2048, "{view:?}");
            assert!(
                view.has_flag("ht"),
                "hugetlb mapping without the ht flag: {view:?}"
            );
        }
        Backing::TransparentHugePages => {
            assert_eq!(view.kernel_page_size_kib, 4, "{view:?}");
            assert!(
                view.has_flag("hg"),
                "THP backing without MADV_HUGEPAGE (hg) in VmFlags: {view:?}"
            );
        }
        Backing::RegularPages => {
            assert_eq!(view.kernel_page_size_kib, 4, "{view:?}");
            assert!(!view.has_flag("hg") && !view.has_flag("ht"), "{view:?}");
        }
    }
    view
}

#[test]
fn auto_gets_the_best_backing_and_the_kernel_agrees() {
    let pool = Pool::new(&config(4 * HUGE_PAGE, HugePagePolicy::Auto)).unwrap();
    let view = assert_kernel_agrees(&pool);
    eprintln!("auto backing: {} ({view:?})", pool.backing());
    if hugetlb_required() {
        assert_eq!(
            pool.backing(),
            Backing::HugeTlb,
            "huge pages were reserved for this run"
        );
        assert_eq!(
            view.hugetlb_kib,
            4 * 2048,
            "populated: every huge page faulted in"
        );
    } else if pool.backing() != Backing::HugeTlb {
        let expected = if thp_enabled() {
            Backing::TransparentHugePages
        } else {
            Backing::RegularPages
        };
        assert_eq!(pool.backing(), expected);
    }
}

#[test]
fn without_enough_reserved_pages_auto_falls_back_and_require_fails_clearly() {
    // More than the whole reservation: hugetlb cannot be had, reserved or not.
    let size = (meminfo("HugePages_Total:") + 1) * HUGE_PAGE;
    let mut cfg = config(size, HugePagePolicy::Auto);
    cfg.populate = false;
    let pool = Pool::new(&cfg).unwrap();
    assert_ne!(pool.backing(), Backing::HugeTlb);
    assert_kernel_agrees(&pool);

    cfg.huge_pages = HugePagePolicy::Require;
    let err = Pool::new(&cfg).unwrap_err();
    assert!(
        matches!(err, PoolError::HugePagesUnavailable { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("vm.nr_hugepages"),
        "the error says what to change: {err}"
    );
}

#[test]
fn transparent_only_is_advised_for_huge_pages() {
    let pool = Pool::new(&config(4 * HUGE_PAGE, HugePagePolicy::TransparentOnly)).unwrap();
    let expected = if thp_enabled() {
        Backing::TransparentHugePages
    } else {
        Backing::RegularPages
    };
    assert_eq!(pool.backing(), expected);
    let view = assert_kernel_agrees(&pool);
    eprintln!(
        "THP pool: {} KiB of {} KiB backed by huge pages",
        view.anon_huge_pages_kib,
        4 * 2048
    );
}

#[test]
fn off_uses_plain_pages() {
    let pool = Pool::new(&config(16 * CHUNK, HugePagePolicy::Off)).unwrap();
    assert_eq!(pool.backing(), Backing::RegularPages);
    let view = assert_kernel_agrees(&pool);
    assert!(view.rss_kib >= 16 * 64, "populated at start-up: {view:?}");
}

#[test]
fn lock_pins_the_pool_in_memory() {
    let mut cfg = config(16 * CHUNK, HugePagePolicy::Off);
    cfg.lock = true;
    match Pool::new(&cfg) {
        Ok(pool) => {
            let view = pool.kernel_view().unwrap();
            assert!(view.has_flag("lo"), "{view:?}");
            assert_eq!(view.locked_kib, 16 * 64, "{view:?}");
        }
        // Only without CAP_IPC_LOCK and with a small `ulimit -l`; the error says so.
        Err(err @ PoolError::Lock { .. }) => assert!(err.to_string().contains("CAP_IPC_LOCK")),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn exhaustion_is_an_error_and_release_makes_chunks_reusable() {
    let pool = Pool::new(&config(8 * CHUNK, HugePagePolicy::Off)).unwrap();
    let chunks: Vec<_> = (0..8).map(|_| pool.try_alloc().unwrap()).collect();
    let indices: HashSet<u32> = chunks.iter().map(|c| c.index()).collect();
    assert_eq!(indices.len(), 8, "no chunk handed out twice");
    let err = pool.try_alloc().unwrap_err();
    assert!(
        matches!(err, PoolError::Exhausted { chunks: 8, .. }),
        "{err}"
    );
    assert_eq!(pool.stats().chunks_free, 0);

    let mut chunks = chunks;
    let released = chunks.pop().unwrap().index();
    assert_eq!(
        pool.try_alloc().unwrap().index(),
        released,
        "a released chunk is handed out again"
    );
    drop(chunks);
    assert_eq!(pool.stats().chunks_free, 8);
    let again: Vec<_> = (0..8).map(|_| pool.try_alloc().unwrap()).collect();
    assert_eq!(again.len(), 8);
}

#[test]
fn chunks_are_disjoint_memory() {
    let pool = Pool::new(&config(8 * CHUNK, HugePagePolicy::Off)).unwrap();
    let mut chunks: Vec<_> = (0..8).map(|_| pool.try_alloc().unwrap()).collect();
    for (i, chunk) in chunks.iter_mut().enumerate() {
        assert_eq!(chunk.capacity(), CHUNK);
        chunk.as_mut_slice().fill(i as u8);
    }
    for (i, chunk) in chunks.iter().enumerate() {
        assert!(
            chunk.as_slice().iter().all(|&b| b == i as u8),
            "chunk {i} was overwritten by another"
        );
    }
}

#[test]
fn concurrent_owners_never_share_a_chunk() {
    let pool = Pool::new(&config(32 * CHUNK, HugePagePolicy::Off)).unwrap();
    std::thread::scope(|s| {
        for thread in 0..4u8 {
            let pool = pool.clone();
            s.spawn(move || {
                for round in 0..2_000u32 {
                    let Ok(mut chunk) = pool.try_alloc() else {
                        continue;
                    };
                    let mark = thread.wrapping_mul(61).wrapping_add(round as u8);
                    chunk.as_mut_slice()[..256].fill(mark);
                    std::hint::spin_loop();
                    assert!(
                        chunk.as_slice()[..256].iter().all(|&b| b == mark),
                        "another owner wrote chunk {}",
                        chunk.index()
                    );
                }
            });
        }
    });
    assert_eq!(pool.stats().chunks_free, 32);
}

#[test]
fn bad_configs_are_refused_with_the_setting_named() {
    let err = Pool::new(&PoolConfig {
        chunk_size_bytes: 1000,
        ..config(CHUNK, HugePagePolicy::Off)
    })
    .unwrap_err();
    assert!(err.to_string().contains("chunk size 1000"), "{err}");
    let err = Pool::new(&config(CHUNK + 1, HugePagePolicy::Off)).unwrap_err();
    assert!(err.to_string().contains("pool size"), "{err}");
    let err = Pool::new(&config(0, HugePagePolicy::Off)).unwrap_err();
    assert!(matches!(err, PoolError::InvalidConfig(_)), "{err}");
}
