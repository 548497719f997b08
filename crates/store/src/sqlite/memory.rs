//! SQLite's memory, set once before SQLite initializes: its allocations go to mimalloc (the
//! allocator the server runs on), and its memory statistics are off.
//!
//! Why: in a profile of the write connection's thread under credit orders, a fifth of its time
//! was the C library's `malloc` and `free` (SQLite's in-memory sub-journals, the bit vectors of its
//! savepoints, the rows and records of each statement), which SQLite calls from the writer, the
//! checkpointer and the readers alike. SQLite documents this hook (`SQLITE_CONFIG_MALLOC`) for an
//! application's own allocator; the statistics it keeps for `sqlite3_memory_used` take a
//! process-wide mutex on every allocation and free, and nothing here reads them (SQLite's
//! documentation recommends `SQLITE_DEFAULT_MEMSTATUS=0`).

use libmimalloc_sys::{mi_free, mi_good_size, mi_malloc, mi_realloc, mi_usable_size};
use libsqlite3_sys as ffi;
use std::os::raw::{c_int, c_void};

/// Sets SQLite's memory up, once. Only possible before SQLite initializes, so it is called
/// before this process opens any SQLite connection: they all open through `SqliteStore::open`,
/// after it, and a test that opens one otherwise calls this first (SQLite initializing on one
/// thread while another swaps its allocator would free memory with the wrong allocator). Had
/// SQLite initialized already, it would answer `SQLITE_MISUSE` and keep its own allocator and
/// statistics.
#[allow(unsafe_code)]
pub(super) fn configure() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(malloc),
            xFree: Some(free),
            xRealloc: Some(realloc),
            xSize: Some(size),
            xRoundup: Some(roundup),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: `Once` makes these the only calls, made before any SQLite connection of this
        // process opens (see above), so no other SQLite call runs meanwhile, as sqlite3_config
        // requires. SQLite copies `methods` before the call returns. Each argument has the type
        // its option documents: an int, and a pointer to an sqlite3_mem_methods.
        unsafe {
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int);
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_MALLOC,
                &methods as *const ffi::sqlite3_mem_methods,
            );
        }
    });
}

// The allocator's functions, as SQLite calls them: sizes are C ints (SQLite never asks for a
// negative one; one would get no memory), pointers are those these functions returned.

#[allow(unsafe_code)]
unsafe extern "C" fn malloc(bytes: c_int) -> *mut c_void {
    match usize::try_from(bytes) {
        // SAFETY: mi_malloc takes any size; it returns null when out of memory, as SQLite
        // expects of xMalloc.
        Ok(bytes) => unsafe { mi_malloc(bytes) },
        Err(_) => std::ptr::null_mut(),
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn free(memory: *mut c_void) {
    // SAFETY: SQLite frees only what xMalloc or xRealloc (mimalloc) returned, once.
    unsafe { mi_free(memory) }
}

#[allow(unsafe_code)]
unsafe extern "C" fn realloc(memory: *mut c_void, bytes: c_int) -> *mut c_void {
    match usize::try_from(bytes) {
        // SAFETY: `memory` came from xMalloc or xRealloc (mimalloc); on failure mi_realloc
        // returns null and leaves it as it was, as SQLite expects of xRealloc.
        Ok(bytes) => unsafe { mi_realloc(memory, bytes) },
        Err(_) => std::ptr::null_mut(),
    }
}

#[allow(unsafe_code)]
unsafe extern "C" fn size(memory: *mut c_void) -> c_int {
    if memory.is_null() {
        return 0;
    }
    // SAFETY: a live allocation of mimalloc's (see `free`).
    let usable = unsafe { mi_usable_size(memory) };
    c_int::try_from(usable).unwrap_or(c_int::MAX)
}

#[allow(unsafe_code)]
unsafe extern "C" fn roundup(bytes: c_int) -> c_int {
    usize::try_from(bytes)
        // SAFETY: mi_good_size only computes a size.
        .map(|bytes| unsafe { mi_good_size(bytes) })
        .ok()
        .and_then(|good| c_int::try_from(good).ok())
        .unwrap_or(bytes)
}

#[allow(unsafe_code)]
unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    ffi::SQLITE_OK
}

#[allow(unsafe_code)]
unsafe extern "C" fn shutdown(_: *mut c_void) {}

#[cfg(test)]
mod tests {
    /// Once a store is open, what SQLite allocates is mimalloc's.
    #[tokio::test]
    #[allow(unsafe_code)]
    async fn sqlites_memory_comes_from_mimalloc() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let _store = crate::sqlite::SqliteStore::open(&url).await.unwrap();
        // SAFETY: SQLite is initialized (the store's connections are open); the allocation is
        // only looked at, then freed once by SQLite's own free.
        unsafe {
            let memory = libsqlite3_sys::sqlite3_malloc(64);
            assert!(!memory.is_null());
            assert!(
                libmimalloc_sys::mi_is_in_heap_region(memory),
                "SQLite's allocation is in mimalloc's heap"
            );
            libsqlite3_sys::sqlite3_free(memory);
        }
    }
}
