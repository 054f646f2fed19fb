//! The `latent-he` command line.

fn main() -> std::process::ExitCode {
    latent_he::cli::main()
}
