"""A PyTorch ResNet20 (training/models.py) passed as a state dict gives PyTorch's
logits: within 1e-5 in plaintext, within 1e-3 encrypted."""

import numpy as np
import pytest

import latent_he
from conftest import NN, PRESET, ROOT, reference

NIH15 = "nih15"


@pytest.mark.parametrize("name, latent", [("resnet20_f8", (4, 32, 32)), ("resnet20_f16", (8, 16, 16))])
def test_state_dict_predicts_pytorchs_logits(name, latent):
    state, x, want = reference(name)
    model = latent_he.Model.from_state_dict(state, arch="resnet20", se=False, classes=NIH15, latent=latent)
    got = model.predict(x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-5
    assert model.latent == latent and len(model.classes) == 15


def test_state_dict_predicts_pytorchs_logits_encrypted(tmp_path):
    state, x, want = reference("resnet20_f16")
    model = latent_he.Model.from_state_dict(state, arch="resnet20", classes=NIH15, latent="8x16x16")
    client = latent_he.Client.keygen(model.client_bundle(PRESET), tmp_path)
    server = latent_he.Server(model, client.public_keys_path, backend="cpu")
    findings = client.decrypt(server.infer(client.encrypt(x[:1])))
    assert findings.classes == model.classes
    assert np.abs(findings.logits - want[:1]).max() < 1e-3
    assert np.allclose(findings.probabilities, 1 / (1 + np.exp(-findings.logits)))


def test_file_and_state_dict_agree_and_torch_tensors_are_taken():
    path = NN / "resnet20_f8.safetensors"
    from_file = latent_he.Model.load(path)
    state, x, want = reference("resnet20_f8")
    assert np.abs(from_file.predict(x) - want).max() < 1e-5
    assert from_file.fingerprint.startswith("blake3:")
    torch = pytest.importorskip("torch")
    import sys

    sys.path.insert(0, str(ROOT / "training"))
    import models

    net = models.build("resnet20", False, 15, (4, 32, 32))
    net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    with torch.no_grad():
        live = net.double().eval()(torch.from_numpy(x).double()).numpy()
    model = latent_he.Model.from_state_dict(net.state_dict(), classes=NIH15, latent=(4, 32, 32))
    assert np.abs(model.predict(torch.from_numpy(x)) - live).max() < 1e-5


def test_plan_and_bundle_describe_the_model(small_model):
    plan = small_model.plan(PRESET)
    assert plan["preset"] == PRESET
    assert 0 < plan["levels_needed"] <= plan["levels_available"]
    assert plan["galois_keys"] == len(plan["rotations"]) > 0
    bundle = small_model.client_bundle(PRESET)
    assert bundle.preset == PRESET and bundle.fingerprint == small_model.fingerprint
    assert bundle.classes == ["a", "b", "c"]
    again = latent_he.ClientBundle.from_json(bundle.to_json())
    assert again.to_json() == bundle.to_json()


def test_bad_models_and_latents_raise_engine_errors(small_model):
    state, _, _ = reference("resnet20_f8")
    del state["linear.weight"]
    with pytest.raises(latent_he.InputError, match="linear.weight"):
        latent_he.Model.from_state_dict(state, arch="resnet20", latent="f8")
    with pytest.raises(latent_he.InputError, match="arch"):
        latent_he.Model.from_state_dict(state, arch="resnet21")
    with pytest.raises(latent_he.FileError):
        latent_he.Model.load(ROOT / "no-such-model.safetensors")
    with pytest.raises(latent_he.InputError, match="latent"):
        small_model.predict(np.zeros((1, 3, 8, 8)))
    bad = np.zeros((1, 2, 8, 8))
    bad[0, 1, 2, 3] = np.nan
    with pytest.raises(latent_he.InputError, match="finite"):
        small_model.predict(bad)
    with pytest.raises(latent_he.InputError, match="batch"):
        small_model.plan(PRESET, batch=0)
    with pytest.raises(latent_he.InputError):
        small_model.plan("n99")
