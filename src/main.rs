//! The `latent-he` command line.

/// Large polynomial buffers are allocated and freed constantly; glibc's malloc
/// returns each one to the kernel (mmap threshold), which then zeroes fresh
/// pages on every allocation. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    latent_he::cli::main()
}
