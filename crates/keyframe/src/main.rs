//! `keyframe`: serve the API, relay and projectors; migrate; replay; export the log.

/// mimalloc instead of the C library's allocator. A request allocates and frees many small
/// buffers across threads (HTTP, JSON, Postgres and NATS messages), and glibc's malloc, free and
/// arena consolidation took 12 % of the process's CPU. Bench on 2 cores, 32 clients: create
/// project 7,670 -> 8,840 req/s with the whole pipeline, 12,000 -> 15,600 with the API alone;
/// list 9,880 -> 12,100 req/s; peak RSS 59 -> 70 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    keyframe::cli::main().await
}
