//! The `latent-he` command line.

fn main() -> std::process::ExitCode {
    latent_he::keep_freed_memory();
    latent_he::cli::main()
}
