//! The server binary's allocator: jemalloc, with its options compiled in.
//!
//! jemalloc serves the gateway's many small, short-lived allocations (per request and per stream
//! event) with less CPU than glibc's malloc. Two arenas and quick return of freed pages keep its
//! resident memory close to glibc's; `_RJEM_MALLOC_CONF` can still override them at run time.

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compiled-in options (its `malloc_conf` C string).
#[repr(transparent)]
pub struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a static, immutable, NUL-terminated string.
unsafe impl Sync for MallocConf {}

#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: MallocConf = MallocConf(c"narenas:2,dirty_decay_ms:2000,muzzy_decay_ms:0".as_ptr());
