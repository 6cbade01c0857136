//! Giving freed model memory back to the operating system.
//!
//! glibc keeps freed memory in its arenas, and after the first large free it raises its mmap
//! threshold, so later model weights live in arenas too: RSS climbed with every load/unload
//! cycle (measured: +54% after 20 cycles of a 5 MB MLP) although nothing leaked. Trimming after
//! loads and unloads brought that to 0-25% (arena fragmentation); a fixed mmap threshold, so
//! that large buffers (weights, batches) are mapped and unmapped on their own, to ~1%.

/// Large allocations go straight to mmap and back on free, at a fixed threshold (glibc raises
/// it on its own otherwise). Fixing it also fixes the trim threshold at its 128 KiB default, so
/// every batch's frees shrank the heap and the next batch faulted the pages in again (batch
/// scoring of the MLP: 42-46k -> 50-54k rows/s with 16 MiB); the explicit trims after loads and
/// unloads still return everything. Call once at start, before threads; MALLOC_MMAP_THRESHOLD_
/// or MALLOC_TRIM_THRESHOLD_ in the environment wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    const MMAP_THRESHOLD: libc::c_int = 1 << 20;
    const TRIM_THRESHOLD: libc::c_int = 16 << 20;
    for (variable, parameter, value) in [
        (
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        ),
        (
            "MALLOC_TRIM_THRESHOLD_",
            libc::M_TRIM_THRESHOLD,
            TRIM_THRESHOLD,
        ),
    ] {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only sets an allocator parameter; it is called before other threads.
            unsafe {
                libc::mallopt(parameter, value);
            }
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

/// Trims the allocator when dropped. The last field of a served model, so it runs after the
/// scheduler has joined its threads and freed the model.
pub struct ReleaseOnDrop;

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        release_free_memory();
    }
}

/// Returns free allocator memory to the OS: after a model is freed, and after a load (whose
/// transient parsing and optimisation buffers would otherwise stay resident). On a thread of
/// its own, as the trim walks every arena and the caller may be serving requests.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    let trim = || {
        // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
        unsafe {
            libc::malloc_trim(0);
        }
    };
    if std::thread::Builder::new()
        .name("inferd-trim".into())
        .spawn(trim)
        .is_err()
    {
        trim();
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}
