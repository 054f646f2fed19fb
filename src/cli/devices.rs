//! `latent-he devices`: the GPU adapters wgpu can see, best first.

use super::{print_json, CliError};
use crate::backend::gpu::device::adapters;
use clap::Args;
use serde_json::json;

/// Arguments of `devices`.
#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `devices`.
pub fn run(args: &DevicesArgs) -> Result<(), CliError> {
    let found = adapters();
    if args.json {
        print_json(&json!({ "adapters": found }));
    } else if found.is_empty() {
        println!(
            "no GPU adapter: the CPU backend will be used (on Linux without a GPU: apt-get install mesa-vulkan-drivers; \
             VK_LOADER_DEBUG=error shows why an installed Vulkan driver did not load, and README.md says what a \
             headless NVIDIA machine needed)"
        );
    } else {
        for a in &found {
            println!(
                "{} ({}, {}): max buffer {} MiB, max storage binding {} MiB",
                a.name,
                a.backend,
                a.device_type,
                a.max_buffer_size >> 20,
                a.max_storage_buffer_binding_size >> 20
            );
        }
    }
    Ok(())
}
