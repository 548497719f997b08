//! The SQLite writer's thread runs ahead of the request handlers.
//!
//! Every write of a SQLite store (an order, a quote, an audit record) goes through one
//! connection, and so through the one thread sqlx runs it on: under load that thread is the
//! path everyone waits on, while the request handlers that feed it mostly wait for it. On a
//! machine with few cores the scheduler still shares the cores evenly, so the writer kept
//! waiting for a core behind handlers parsing requests that would then wait for it: in a
//! scheduler trace of credit orders on 2 cores it was runnable but not running 18% of the time
//! (docs/benchmarks.md, "Issue 19, eleventh steps"). Its thread is therefore given a higher
//! priority than the process's others (a nice value [`AHEAD`] lower), which the scheduler honours
//! by letting it run first when it wakes; it uses at most one core whatever its priority.
//!
//! Raising a priority needs the privilege to (`CAP_SYS_NICE`, or `RLIMIT_NICE`); without it
//! the writer runs at the process's priority, as before, and the start-up log says so once.

/// How much lower the writer's nice value is than the process's: enough for the scheduler to
/// prefer it on waking (−5 is about three times the weight), not so much that it changes how
/// the process shares the machine with others, since it sleeps whenever nothing is queued.
/// In the eleventh steps −5 set by hand gave 13–17% more credit orders a second (−10 less), and
/// this code 10% in an A/B of release binaries.
pub(super) const AHEAD: i32 = 5;

/// The name sqlx gives the writer connection's thread (see `SqliteStore::open`); Linux keeps
/// the first 15 bytes of a thread's name, which this prefix fits.
pub(super) const WRITER_THREAD: &str = "sqlite-writer";

/// Raises every writer thread of this process (a replaced connection has a new thread) to
/// [`AHEAD`] above the process's priority; does nothing where threads cannot be found by name.
pub(super) fn raise_writer_threads() {
    #[cfg(target_os = "linux")]
    linux::raise();
}

#[cfg(target_os = "linux")]
mod linux {
    use rustix::process::{getpid, getpriority_process, setpriority_process, Pid};
    use std::sync::atomic::{AtomicBool, Ordering};

    pub(super) fn raise() {
        static REFUSAL_LOGGED: AtomicBool = AtomicBool::new(false);
        // The process's priority is its main thread's (the thread whose id is the process's).
        let Ok(process) = getpriority_process(Some(getpid())) else {
            return;
        };
        let wanted = (process - super::AHEAD).max(-20);
        for tid in threads_named(super::WRITER_THREAD) {
            let Some(pid) = Pid::from_raw(tid) else {
                continue;
            };
            if getpriority_process(Some(pid)).is_ok_and(|nice| nice <= wanted) {
                continue;
            }
            if let Err(e) = setpriority_process(Some(pid), wanted) {
                if !REFUSAL_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        error = %e,
                        "the SQLite writer runs at the process's priority: raising it needs CAP_SYS_NICE or RLIMIT_NICE"
                    );
                }
            }
        }
    }

    /// The ids of this process's threads whose name starts with `prefix`.
    pub(crate) fn threads_named(prefix: &str) -> Vec<i32> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        tasks
            .filter_map(|task| {
                let task = task.ok()?;
                let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
                if !name.starts_with(prefix) {
                    return None;
                }
                task.file_name().to_str()?.parse().ok()
            })
            .collect()
    }
}

#[cfg(all(test, target_os = "linux"))]
pub(super) use linux::threads_named;
