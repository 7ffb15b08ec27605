//! The `keyframe` command, built beside the tests so that a test can run it as a process of
//! its own (`env!("CARGO_BIN_EXE_keyframe-under-test")`) and kill it as an operator's machine
//! would: the crash tests of the embedded deployment.

/// The binary's allocator, so that the process under test is the one operators run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    keyframe::cli::main().await
}
