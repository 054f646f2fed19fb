"""The client / server protocol in bytes: the round trip, a server that cannot
reach the secret key, bad input refused with latent_he errors, and the GIL
released while the server evaluates."""

import gc
import pathlib
import threading
import time
import types

import numpy as np
import pytest

import latent_he
from conftest import PRESET


def test_round_trip_in_bytes_gives_the_plaintext_logits(small_model, keys, rng):
    client, public_key = keys
    server = latent_he.Server(small_model, public_key, backend="cpu")
    assert server.preset == PRESET and server.backend == "cpu"
    z = rng.uniform(-1, 1, (2, 2, 8, 8))
    request = client.encrypt(z)
    assert isinstance(request, bytes)
    answer = server.infer(request)
    assert isinstance(answer, bytes)
    findings = client.decrypt(answer)
    assert findings.classes == ["a", "b", "c"] and len(findings) == 2
    assert np.abs(findings.logits - small_model.predict(z)).max() < 1e-3
    # A C x H x W latent is one image; the same keys reopen from their folder.
    again = latent_he.Client.open(client.key_dir)
    assert again.decrypt(server.infer(again.encrypt(z[0]))).logits.shape == (1, 3)


def _reachable(root, limit=100_000):
    """Every object reachable from `root`'s own data through the garbage collector's
    references: classes, modules and functions (shared by every object) are not entered."""
    shared = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)
    seen, stack = {}, [root]
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) not in seen and not isinstance(obj, shared):
            seen[id(obj)] = obj
            stack.extend(gc.get_referents(obj))
    return seen.values()


def test_the_server_cannot_reach_the_secret_key(small_model, keys):
    client, public_key = keys
    folder = pathlib.Path(public_key).parent
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "public.key"]
    server = latent_he.Server(small_model, public_key, backend="cpu")
    secret = (pathlib.Path(client.key_dir) / "secret.key").read_bytes()
    reachable = list(_reachable(server))
    assert any(isinstance(obj, latent_he._native.Server) for obj in reachable)
    for obj in reachable:
        assert obj is not client and obj is not client._native
        if isinstance(obj, (bytes, bytearray)):
            assert secret not in obj
    assert not any(hasattr(server, name) for name in ("secret_key", "decrypt", "key_dir"))


def test_bad_input_raises_engine_errors(small_model, keys, tmp_path, rng):
    client, public_key = keys
    server = latent_he.Server(small_model, public_key, backend="cpu")
    z = rng.uniform(-1, 1, (1, 2, 8, 8))
    with pytest.raises(latent_he.InputError, match="3x8x8"):
        client.encrypt(np.zeros((1, 3, 8, 8)))
    with pytest.raises(latent_he.InputError, match="C x H x W"):
        client.encrypt(np.zeros((2, 8)))
    nan = z.copy()
    nan[0, 1, 4, 4] = np.nan
    with pytest.raises(latent_he.InputError, match="finite"):
        client.encrypt(nan)
    request = client.encrypt(z)
    with pytest.raises(latent_he.InputError, match="truncated"):
        server.infer(request[: len(request) // 2])
    with pytest.raises(latent_he.InputError):
        server.infer(b"")
    answer = server.infer(request)
    with pytest.raises(latent_he.InputError, match="truncated"):
        client.decrypt(answer[:-1])
    with pytest.raises(latent_he.InputError, match="not the logits"):
        client.decrypt(request)
    # Another client's keys for the same model: its ciphertexts are refused both ways.
    other = latent_he.Client.keygen(small_model.client_bundle(PRESET), tmp_path / "other")
    theirs = other.encrypt(z)
    with pytest.raises(latent_he.InputError, match="key"):
        server.infer(theirs)
    their_answer = latent_he.Server(small_model, other.public_keys_path, backend="cpu").infer(theirs)
    with pytest.raises(latent_he.InputError, match="key"):
        client.decrypt(their_answer)
    with pytest.raises(latent_he.InputError, match="backend"):
        latent_he.Server(small_model, public_key, backend="tpu")
    with pytest.raises(latent_he.FileError):
        latent_he.Client.open(tmp_path / "none")
    assert issubclass(latent_he.InputError, latent_he.Error)


def test_other_threads_run_while_infer_runs(small_model, keys, rng):
    client, public_key = keys
    events = []
    server = latent_he.Server(small_model, public_key, backend="cpu", progress=events.append)
    request = client.encrypt(rng.uniform(-1, 1, (1, 2, 8, 8)))
    done = threading.Event()
    result = {}

    def work():
        result["answer"] = server.infer(request)
        done.set()

    worker = threading.Thread(target=work)
    ticks, start = 0, time.monotonic()
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    seconds = time.monotonic() - start
    print(f"{ticks} ticks of the main thread in {seconds:.1f} s of infer")
    # With the GIL held for the whole call the main thread would not tick at all.
    assert ticks > 50 and ticks > seconds * 50
    assert client.decrypt(result["answer"]).logits.shape == (1, 3)
    assert [e["event"] for e in events] == ["sets_evaluated"] and events[0]["sets"] == 1


def test_a_sealed_secret_key_opens_with_its_passphrase_only(small_model, tmp_path, rng):
    bundle = small_model.client_bundle(PRESET)
    sealed = latent_he.Client.keygen(bundle, tmp_path / "sealed", passphrase="correct horse")
    assert b"correct horse" not in (tmp_path / "sealed" / "secret.key").read_bytes()
    with pytest.raises(latent_he.InputError, match="passphrase"):
        latent_he.Client.open(tmp_path / "sealed")
    with pytest.raises(latent_he.InputError, match="passphrase"):
        latent_he.Client.open(tmp_path / "sealed", passphrase="wrong horse")
    opened = latent_he.Client.open(tmp_path / "sealed", passphrase=b"correct horse")
    z = rng.uniform(-1, 1, (1, 2, 8, 8))
    server = latent_he.Server(small_model, sealed.public_keys_path, backend="cpu")
    assert np.abs(opened.decrypt(server.infer(sealed.encrypt(z))).logits - small_model.predict(z)).max() < 1e-3
