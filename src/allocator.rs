//! The process's memory allocator settings: the one place with `unsafe`
//! code, a single call into glibc that `ssm-audit` makes first thing.
//!
//! glibc raises its mmap threshold each time a block above it is freed (up
//! to 32 MiB), so after the dedupe set has grown by doubling, the buffers of
//! a few MiB that publishing encodes come from the heap, not from mmap, and
//! stay in the process when freed: peak RSS ran 40 to 70 MB above the peak
//! heap. Fixing the threshold at glibc's own starting value keeps large
//! buffers returnable (BENCHMARKS.md, "A million sessions, one export", H).

/// glibc's default, held fixed: blocks this size and larger are mapped on
/// their own and returned to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Keeps freed large blocks returnable to the system (see the module doc).
/// Only the binary calls it, before it starts threads: a library must not
/// change its host's allocator. A no-op where the C library is not glibc.
pub fn return_large_blocks_when_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a parameter of the allocator; glibc
        // takes its lock to do so, and a refusal (0) leaves the default in
        // place, which is correct, only larger.
        #[allow(unsafe_code)]
        let accepted = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        debug_assert_eq!(accepted, 1, "glibc refused M_MMAP_THRESHOLD");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_setting_is_accepted() {
        // Called twice: idempotent, and a refusal fails the debug assertion.
        super::return_large_blocks_when_freed();
        super::return_large_blocks_when_freed();
    }
}
