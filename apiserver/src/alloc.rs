//! The memory allocator of every binary that links the apiserver.
//!
//! glibc's malloc spent about a third of the apiserver's CPU under create load
//! (consolidating and unlinking chunks freed by JSON decoding); jemalloc takes the
//! apiserver's CPU per create from ~470 to ~340-370 us. Two arenas and prompt return of
//! freed pages (a background thread, 1 s decay) keep idle RSS under 30 MB.

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at startup.
#[used]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
static malloc_conf: &[u8] =
    b"narenas:2,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
