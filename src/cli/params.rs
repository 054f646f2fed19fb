//! `latent-he params`: resolve a preset or a literal and describe it.

use super::{print_json, CliError};
use crate::ckks::{Params, ParamsLiteral};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// Longest parameter literal file read (a real one is under 200 bytes).
const MAX_LITERAL_BYTES: u64 = 64 * 1024;

/// Where a parameter set comes from; shared by every command that takes one.
#[derive(Args, Debug, Clone)]
pub struct ParamsSource {
    /// A named preset: n14, n15, n16, n17 (128-bit) or insecure-n12 (tests).
    #[arg(long, conflicts_with = "literal")]
    pub preset: Option<String>,
    /// A JSON literal: {"log_n", "log_q": [..], "log_p": [..], "log_scale", "dnum"}.
    #[arg(long)]
    pub literal: Option<PathBuf>,
    /// Accept a literal over the 128-bit bound (security_bits becomes null).
    #[arg(long)]
    pub allow_insecure: bool,
}

impl ParamsSource {
    /// Resolves to validated parameters; `n14` when nothing is given.
    pub fn resolve(&self) -> Result<Arc<Params>, CliError> {
        match (&self.preset, &self.literal) {
            (_, Some(path)) => {
                let text =
                    crate::bounded::read_regular_text(path, MAX_LITERAL_BYTES).map_err(|source| CliError::Io {
                        path: path.display().to_string(),
                        source,
                    })?;
                let literal: ParamsLiteral = serde_json::from_str(&text).map_err(|e| CliError::Input {
                    path: path.display().to_string(),
                    reason: format!("not a parameter literal: {e}"),
                })?;
                Ok(Params::new(literal, self.allow_insecure)?)
            }
            (Some(name), None) => Ok(Params::preset(name)?),
            (None, None) => Ok(Params::preset("n14")?),
        }
    }
}

/// Arguments of `params`.
#[derive(Args, Debug)]
pub struct ParamsArgs {
    #[command(flatten)]
    source: ParamsSource,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// The JSON description of a parameter set.
pub fn describe(params: &Params) -> serde_json::Value {
    json!({
        "preset": params.name(),
        "log_n": params.literal().log_n,
        "slots": params.slots(),
        "primes_q": params.primes_q(),
        "primes_p": params.primes_p(),
        "log_qp": (params.log_qp() * 100.0).round() / 100.0,
        "max_level": params.max_level(),
        "log_scale": params.literal().log_scale,
        "dnum": params.dnum(),
        "security_bits": params.security_bits(),
        "fingerprint": params.fingerprint_hex(),
    })
}

/// Runs `params`.
pub fn run(args: &ParamsArgs) -> Result<(), CliError> {
    let params = args.source.resolve()?;
    if args.json {
        print_json(&describe(&params));
    } else {
        let security = params
            .security_bits()
            .map_or("INSECURE (over the 128-bit bound)".to_string(), |b| format!("{b}-bit"));
        println!(
            "{}: N = 2^{} ({} slots), {} ciphertext primes (max level {}), {} special primes, dnum {}, log2(QP) = {:.1}, scale 2^{}, {security}",
            params.name().unwrap_or("literal"),
            params.literal().log_n,
            params.slots(),
            params.max_level() + 1,
            params.max_level(),
            params.primes_p().len(),
            params.dnum(),
            params.log_qp(),
            params.literal().log_scale,
        );
    }
    Ok(())
}
