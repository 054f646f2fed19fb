//! A plan described for people and programs: its level budget, keys,
//! sizes, memory and per-layer costs, as `plan --json` prints it and the
//! Python package's `Model.plan()` returns it.

use crate::ckks::serialize::{ciphertexts_file_bytes, public_keys_file_bytes};
use crate::ckks::{KeyLevels, KeyMemory, Params};
use crate::he_nn::{Plan, HEADROOM_LEVELS};
use serde_json::json;

/// An upper bound on the memory `infer` needs with keys held as `memory`:
/// the keys and the widest step. While the keys load, their file is mapped
/// beside them; those pages are page cache, which the kernel drops under
/// pressure, so they show in the resident size only where memory is free.
pub fn server_peak_bytes(params: &Params, plan: &Plan, levels: &KeyLevels, memory: KeyMemory) -> usize {
    levels.memory_bytes(params, memory) + plan.working_memory_bytes(params.n())
}

/// Key switches per image when `lockstep` sets are evaluated together
/// (merged layers run once per group of sets), to three decimals.
pub fn key_switches_per_image(plan: &Plan, lockstep: usize) -> f64 {
    let sets = lockstep.max(1);
    let per_image = plan.key_switches_for(sets) as f64 / (sets * plan.batch()) as f64;
    (per_image * 1000.0).round() / 1000.0
}

/// The JSON report of a plan: budget, keys, sizes, per-layer costs.
pub fn describe_plan(params: &Params, plan: &Plan) -> serde_json::Value {
    let levels = plan.key_levels();
    let rotations: Vec<i64> = levels.rotations.iter().map(|&(r, _)| r).collect();
    let layers = plan.layers(plan.start_level());
    let products: usize = layers.iter().map(|r| r.plaintext_products).sum();
    json!({
        "preset": params.name(),
        "slots": params.slots(),
        "levels_needed": plan.levels(),
        "network_gain": plan.network_gain(),
        "levels_available": params.max_level().saturating_sub(HEADROOM_LEVELS),
        "start_level": plan.start_level(),
        "rotations": rotations,
        "galois_keys": rotations.len(),
        "key_switches": plan.key_switches(),
        "batch": plan.batch(),
        "sets_per_output": plan.sets_per_output(),
        "key_switches_per_image": key_switches_per_image(plan, plan.sets_per_output()),
        "public_key_bytes": public_keys_file_bytes(params, &levels),
        "plaintext_products": products,
        "evaluation_key_memory_bytes": levels.memory_bytes(params, KeyMemory::Expanded),
        "evaluation_key_memory_compact_bytes": levels.memory_bytes(params, KeyMemory::Compact),
        "working_memory_bytes": plan.working_memory_bytes(params.n()),
        "peak_memory_estimate_bytes": server_peak_bytes(params, plan, &levels, KeyMemory::Expanded),
        "peak_memory_estimate_compact_bytes": server_peak_bytes(params, plan, &levels, KeyMemory::Compact),
        "ciphertext_bytes": ciphertexts_file_bytes(params, plan.start_level(), plan.input().cts(), 4),
        "input": {"ciphertexts": plan.input().cts(), "layout": plan.input()},
        "output": {"ciphertexts": plan.output().cts(), "layout": plan.output()},
        "layers": layers,
    })
}
