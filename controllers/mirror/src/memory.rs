//! Handing memory back after a burst.
//!
//! A full sync holds every listed object, its inspect result and its request body at once; the
//! steady state afterwards needs a fraction of that. glibc's allocator keeps freed pages in its
//! arenas (one per thread that ever allocated), so without a trim the process's resident size
//! stays at the burst's peak for its whole life.

/// Return the allocator's free memory to the operating system. Cheap next to a full sync (one
/// pass over the arenas), so it runs after each one.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    /// Resident size in KiB from /proc (Linux).
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn a_burst_of_small_allocations_is_handed_back() {
        // Many small blocks (below the mmap threshold, so they come from the heap), freed in an
        // order that leaves the heap top in use: only a trim returns the pages in between.
        let mut blocks: Vec<Vec<u8>> = (0..200_000).map(|i| vec![i as u8; 512]).collect();
        let keep = blocks.pop();
        let before_free = rss_kib();
        drop(blocks);
        let after_free = rss_kib();
        super::release_free_memory();
        let after_trim = rss_kib();
        drop(keep);
        assert!(
            after_trim + 50 * 1024 < before_free && after_trim < after_free,
            "RSS before free {before_free} KiB, after free {after_free} KiB, after trim {after_trim} KiB"
        );
    }
}
