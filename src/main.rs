//! The `latent-he` command line.

/// Large polynomial buffers are allocated and freed constantly; glibc's malloc
/// returns each one to the kernel (mmap threshold), which then zeroes fresh
/// pages on every allocation. mimalloc keeps them. The benchmarks set the
/// same allocator, so that they measure what the binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    latent_he::keep_freed_memory();
    latent_he::cli::main()
}
