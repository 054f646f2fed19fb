"""Shared fixtures: the repository's PyTorch reference models, a small ResNet20
made from them, keys for it, and seeded random numbers (the seed printed)."""

import os
import pathlib
import secrets

import numpy as np
import pytest
from safetensors.numpy import load_file

import latent_he

ROOT = pathlib.Path(__file__).resolve().parents[2]
NN = ROOT / "tests" / "fixtures" / "nn"
PRESET = "insecure-n12-deep"


def reference(name):
    """A PyTorch state dict saved by tests/fixtures/nn/make_fixtures.py (float32 arrays under
    PyTorch's names), its metadata-free options, its float32 input and PyTorch's float64 logits."""
    state = load_file(str(NN / "resnet20_f8.safetensors"))
    if name != "resnet20_f8":
        state.update(load_file(str(NN / f"{name}.conv1.safetensors")))
    return state, np.load(NN / f"{name}.input.npy"), np.load(NN / f"{name}.logits.npy")


@pytest.fixture
def rng():
    seed = int(os.environ.get("LATENT_HE_TEST_SEED", secrets.randbits(63)))
    print(f"seed {seed}")
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def small_model():
    """ResNet20 on 2x8x8 latents with 3 classes: the reference ResNet20's tensors, conv1
    cut to two input channels and the last layer to three classes."""
    state, _, _ = reference("resnet20_f8")
    state["conv1.weight"] = state["conv1.weight"][:, :2]
    state["linear.weight"] = state["linear.weight"][:3]
    state["linear.bias"] = state["linear.bias"][:3]
    return latent_he.Model.from_state_dict(state, arch="resnet20", classes=["a", "b", "c"], latent=(2, 8, 8))


@pytest.fixture(scope="session")
def keys(small_model, tmp_path_factory):
    """A client with keys for the small model, and a server folder holding only its public half."""
    client = latent_he.Client.keygen(small_model.client_bundle(PRESET), tmp_path_factory.mktemp("client"))
    server_dir = tmp_path_factory.mktemp("server")
    for name in ("public.key", "model.json"):
        (server_dir / name).write_bytes((pathlib.Path(client.key_dir) / name).read_bytes())
    return client, server_dir / "public.key"
