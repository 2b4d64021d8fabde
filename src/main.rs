//! The `relay` binary: everything is in the library; see `qss_relay::cli`.

fn main() -> std::process::ExitCode {
    tune_allocator();
    qss_relay::cli::main()
}

/// Makes glibc return large buffers to the system when they are freed, and keeps it to
/// one heap arena.
///
/// By default glibc raises its mmap threshold each time a large block is freed, after
/// which multi-megabyte batch buffers come from the heap arenas, where they fragment: the
/// relay's RSS reached 400 MB while draining a 5-million-event backlog, against 140 MB
/// with the threshold fixed at 2 MiB (docs/performance.md). Other allocators
/// (mimalloc) kept even more. glibc's own `MALLOC_MMAP_THRESHOLD_`, when set, is left to
/// rule: a larger threshold trades memory for throughput.
///
/// One arena: spool blocks are allocated on the writer's blocking threads and freed on
/// others, and with an arena per thread each arena kept its own free memory. With Zoom
/// sending faster than the relay ships, the peak RSS was 216–236 MiB with glibc's default
/// arenas and 191 MiB with one, at the same rates (docs/performance.md, "Memory"). `MALLOC_ARENA_MAX`,
/// when set, is left to rule.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (param, value, env) in [
        (libc::M_MMAP_THRESHOLD, 2 << 20, "MALLOC_MMAP_THRESHOLD_"),
        (libc::M_ARENA_MAX, 1, "MALLOC_ARENA_MAX"),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: mallopt only sets allocator parameters; called before any thread
            // starts.
            unsafe {
                libc::mallopt(param, value);
            }
        }
    }
}
