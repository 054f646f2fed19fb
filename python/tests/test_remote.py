"""RemoteServer: the same bytes-in, bytes-out inference through a running
`latent-he serve` on a loopback port (the binary `cargo test --release` builds)."""

import json
import subprocess

import numpy as np
import pytest
from safetensors.numpy import save_file

import latent_he
from conftest import PRESET, ROOT, reference

BINARY = ROOT / "target" / "release" / "latent-he"


@pytest.fixture
def serve(tmp_path):
    """A `serve` of one model, `small`, with one token; yields (url, token, model file); killed after."""
    if not BINARY.exists():
        pytest.skip(f"{BINARY} is not built (cargo build --release)")
    state, _, _ = reference("resnet20_f8")
    state["conv1.weight"] = state["conv1.weight"][:, :2]
    state["linear.weight"], state["linear.bias"] = state["linear.weight"][:3], state["linear.bias"][:3]
    models = tmp_path / "models"
    models.mkdir()
    meta = {"arch": "resnet20", "se": "false", "classes": "a,b,c", "latent": "2x8x8"}
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(models / "small.safetensors"), metadata=meta)
    tokens = tmp_path / "tokens.json"
    made = subprocess.run(
        [BINARY, "token", "new", "--tokens", tokens, "--name", "alice", "--json"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    token = json.loads(made.stdout)["token"]
    args = ["serve", "--models", models, "--state", tmp_path / "state", "--tokens", tokens,
            "--listen", "127.0.0.1:0", "--allow-insecure", "--backend", "cpu", "--idle-exit", "120", "--json"]
    server = subprocess.Popen([BINARY, *args], stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(server.stdout.readline())["url"]
        assert url.startswith("http://127.0.0.1:")
        yield url, token, models / "small.safetensors"
    finally:
        server.kill()
        server.wait(timeout=30)


def test_remote_round_trip_gives_the_plaintext_logits(serve, tmp_path, rng):
    url, token, model_file = serve
    model = latent_he.Model.load(model_file)
    client = latent_he.Client.keygen(model.client_bundle(PRESET), tmp_path / "keys")
    remote = latent_he.RemoteServer(url, client.public_keys_path, "small", token=token)
    z = rng.uniform(-1, 1, (2, 2, 8, 8))
    findings = client.decrypt(remote.infer(client.encrypt(z)))
    assert np.abs(findings.logits - model.predict(z)).max() < 1e-3
    request = client.encrypt(z[:1])
    with pytest.raises(latent_he.Error):
        remote.infer(request[: len(request) // 2])
    with pytest.raises(latent_he.Error, match="401|token"):
        latent_he.RemoteServer(url, client.public_keys_path, "small", token="not-a-token")
    other = latent_he.Client.keygen(model.client_bundle(PRESET), tmp_path / "other")
    with pytest.raises(latent_he.Error, match="absent"):
        latent_he.RemoteServer(url, other.public_keys_path, "absent", token=token)
