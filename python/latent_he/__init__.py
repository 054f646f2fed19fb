"""Encrypted chest X-ray classification in latent space (RNS-CKKS), from Python.

The engine is latent-he (Rust); this package is a thin layer over its
library: every computation runs there, with the GIL released.

- :class:`Model`: a classifier (safetensors file or PyTorch state dict),
  plaintext prediction, its CKKS plan, its client bundle.
- :class:`Client`: keys from a client bundle, ``encrypt`` to bytes,
  ``decrypt`` bytes to :class:`Findings`.
- :class:`Server`: a model with one client's public keys; ``infer`` bytes
  to bytes. It never reads or holds a secret key. :class:`RemoteServer`
  does the same through a running ``latent-he serve``.
- :class:`Vqgan`: X-ray images to latents and back.

Failures raise :class:`Error` or one of its subclasses, with the engine's
message.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from . import _native
from ._native import (
    DEFAULT_DECRYPT_NOISE,
    ClientBundle,
    ConfigError,
    Error,
    FileError,
    Findings,
    InputError,
    ResourceError,
)

__all__ = [
    "Client",
    "ClientBundle",
    "ConfigError",
    "DEFAULT_DECRYPT_NOISE",
    "Error",
    "FileError",
    "Findings",
    "InputError",
    "Model",
    "RemoteServer",
    "ResourceError",
    "Server",
    "Vqgan",
]

PathLike = Union[str, "os.PathLike[str]"]
Progress = Optional[Callable[[dict], Any]]


def _numpy(x: Any) -> np.ndarray:
    """``x`` as a NumPy array; a PyTorch tensor is detached, moved to the CPU and widened to
    float64 first (NumPy has no bfloat16)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x)


def _latents(z: Any) -> np.ndarray:
    """Latents as a C-contiguous float64 ``B x C x H x W`` array (a ``C x H x W`` one gains ``B = 1``)."""
    a = _numpy(z)
    if a.ndim == 3:
        a = a[np.newaxis]
    if a.ndim != 4 or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"latents must be a real C x H x W or B x C x H x W array; got {a.dtype} of shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float64)


def _names(value: Union[None, str, Sequence[str]]) -> Optional[str]:
    """Class names as the engine reads them: ``nih15``, ``chexpert14`` or comma-separated."""
    if value is None or isinstance(value, str):
        return value
    return ",".join(value)


def _shape(value: Union[None, str, Sequence[int]]) -> Optional[str]:
    """A latent shape as the engine reads it: ``CxHxW`` or ``f2``..``f16``."""
    if value is None or isinstance(value, str):
        return value
    return "x".join(str(int(d)) for d in value)


def _clip(value: Union[None, float, str]) -> Optional[str]:
    return None if value is None else str(value)


class Model:
    """A classifier of the paper's zoo (LeNet5, VGG5, HefNet, ResNet20/32/44/56, each
    optionally with squeeze-and-excitation) with its weights.

    Build one with :meth:`load` or :meth:`from_state_dict`. The keyword arguments
    are those of the CLI's ``--arch``, ``--se``, ``--classes``, ``--latent`` and
    ``--input-clip``, for weights whose metadata lacks them.
    """

    def __init__(self, native: _native.Model):
        self._native = native

    @classmethod
    def load(
        cls,
        path: PathLike,
        arch: Optional[str] = None,
        se: Optional[bool] = None,
        classes: Union[None, str, Sequence[str]] = None,
        latent: Union[None, str, Sequence[int]] = None,
        input_clip: Union[None, float, str] = None,
    ) -> "Model":
        """Loads a safetensors state dict, every tensor checked against the architecture."""
        return cls(_native.Model.load(os.fspath(path), arch, se, _names(classes), _shape(latent), _clip(input_clip)))

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, Any],
        arch: Optional[str] = None,
        se: Optional[bool] = None,
        classes: Union[None, str, Sequence[str]] = None,
        latent: Union[None, str, Sequence[int]] = None,
        input_clip: Union[None, float, str] = None,
    ) -> "Model":
        """Builds a model from a PyTorch state dict (``model.state_dict()``: tensors, or
        NumPy arrays under the same names). Its fingerprint hashes the tensors and the
        model's spec, so keys made from its client bundle serve this model only."""
        tensors = [(str(k), np.ascontiguousarray(_numpy(v), dtype=np.float64)) for k, v in state_dict.items()]
        return cls(
            _native.Model.from_arrays(tensors, arch, se, _names(classes), _shape(latent), _clip(input_clip))
        )

    def predict(self, z: Any) -> np.ndarray:
        """Plaintext logits (float64, ``B x classes``) of latents (``C x H x W`` or ``B x C x H x W``)."""
        return self._native.predict(_latents(z))

    def plan(self, preset: str = "auto", batch: int = 1) -> dict:
        """The CKKS plan under ``preset`` (``auto``: the smallest 128-bit preset that fits)
        for ``batch`` images per set, as ``latent-he plan --json`` reports it."""
        return json.loads(self._native.plan_json(preset, int(batch)))

    def client_bundle(self, preset: str = "auto", batch: int = 1) -> ClientBundle:
        """What a client needs to make keys, encrypt and decrypt for this model planned
        under ``preset`` for ``batch`` images per set; it holds none of the weights."""
        return self._native.client_bundle(preset, int(batch))

    @property
    def classes(self) -> list:
        """Class names, one per logit."""
        return self._native.classes

    @property
    def latent(self) -> tuple:
        """The latent shape ``(C, H, W)`` the model reads."""
        return self._native.latent

    @property
    def fingerprint(self) -> str:
        """``blake3:`` and the hash of the weights (file bytes, or the state dict as safetensors)."""
        return self._native.fingerprint

    def __repr__(self) -> str:
        return f"Model({self._native.spec})"


def _bundle(bundle: Union[ClientBundle, PathLike]) -> ClientBundle:
    return bundle if isinstance(bundle, ClientBundle) else ClientBundle.load(os.fspath(bundle))


def _passphrase(passphrase: Union[None, str, bytes]) -> Optional[bytes]:
    return passphrase.encode() if isinstance(passphrase, str) else passphrase


class Client:
    """A client's key folder made for one model: ``secret.key`` (stays here),
    ``public.key`` (for the server) and ``model.json`` (the model's layout)."""

    def __init__(self, native: _native.Client):
        self._native = native

    @classmethod
    def keygen(
        cls, bundle: Union[ClientBundle, PathLike], out_dir: PathLike, passphrase: Union[None, str, bytes] = None
    ) -> "Client":
        """Makes keys for the bundle's model (a :class:`ClientBundle` or a ``client.json``
        path) into ``out_dir``; ``passphrase`` seals the secret key."""
        return cls(_native.Client.keygen(_bundle(bundle), os.fspath(out_dir), _passphrase(passphrase)))

    @classmethod
    def open(cls, key_dir: PathLike, passphrase: Union[None, str, bytes] = None) -> "Client":
        """Opens a key folder made for a model."""
        return cls(_native.Client.open(os.fspath(key_dir), _passphrase(passphrase)))

    def encrypt(self, z: Any) -> bytes:
        """Latents (``C x H x W`` or ``B x C x H x W``) encrypted in the model's layout:
        the bytes of a ciphertext file, for :meth:`Server.infer`."""
        return self._native.encrypt(_latents(z))

    def decrypt(self, data: bytes, noise: float = DEFAULT_DECRYPT_NOISE) -> Findings:
        """The findings in the server's answer. ``noise`` is the standard deviation of
        the Gaussian noise added to each value so that its low bits do not reveal the
        secret key (0: exact, which must not leave this machine)."""
        return self._native.decrypt(bytes(data), float(noise))

    @property
    def public_keys_path(self) -> str:
        """The public key file: what the server gets."""
        return os.fspath(self._native.public_keys_path)

    @property
    def key_dir(self) -> str:
        """The key folder."""
        return os.fspath(self._native.key_dir)

    @property
    def classes(self) -> list:
        """Class names, one per logit."""
        return self._native.classes

    @property
    def latent(self) -> tuple:
        """The latent shape ``(C, H, W)`` the model reads."""
        return self._native.latent

    def __repr__(self) -> str:
        return f"Client({self._native.model}, keys in {self.key_dir!r})"


class Server:
    """A model holding one client's public keys (``public.key``, with the
    ``model.json`` beside it when there is one) on a backend: ``"auto"`` (a
    hardware GPU when there is one, else the CPU), ``"cpu"`` or ``"gpu"``.
    It reads no secret key. ``progress`` receives a dict per event."""

    def __init__(
        self,
        model: Model,
        public_keys_path: PathLike,
        backend: str = "auto",
        adapter: Optional[str] = None,
        progress: Progress = None,
    ):
        self._native = _native.Server(model._native, os.fspath(public_keys_path), backend, adapter, progress)

    def infer(self, data: bytes) -> bytes:
        """Encrypted logits (ciphertext file bytes) of encrypted latents from :meth:`Client.encrypt`."""
        return self._native.infer(bytes(data))

    @property
    def backend(self) -> str:
        """``"cpu"`` or ``"gpu"``."""
        return self._native.backend

    @property
    def preset(self) -> str:
        """The parameter preset of the client's keys."""
        return self._native.preset

    def __repr__(self) -> str:
        return f"Server(preset={self.preset!r}, backend={self.backend!r})"


class RemoteServer:
    """One client's public keys registered on a running ``latent-he serve`` for the
    model it serves as ``model``; ``infer`` sends the ciphertexts as one job there.
    Only ``public.key`` (and the folder's ``model.json``) are read and sent. The
    model name counts when the keys are registered: keys the server already holds
    keep the model they were registered for."""

    def __init__(
        self,
        url: str,
        public_keys_path: PathLike,
        model: str,
        token: Optional[str] = None,
        ca_cert: Optional[PathLike] = None,
    ):
        ca = None if ca_cert is None else os.fspath(ca_cert)
        self._native = _native.RemoteServer(url, os.fspath(public_keys_path), model, token, ca)

    def infer(self, data: bytes) -> bytes:
        """Encrypted logits (ciphertext file bytes) of encrypted latents from :meth:`Client.encrypt`."""
        return self._native.infer(bytes(data))

    @property
    def key_id(self) -> str:
        """The registered key's id on the server."""
        return self._native.key_id


def _image(image: Any) -> Any:
    """One image for the engine: a path, ``H x W x C`` uint8 samples, or float64 intensities in [0, 1]."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image
        image = image.convert("RGB" if image.mode in ("RGB", "RGBA", "P", "CMYK") else "L")
    a = _numpy(image)
    if a.ndim == 2:
        a = a[:, :, np.newaxis]
    if a.ndim != 3:
        raise InputError(f"an image must be H x W or H x W x C; got shape {a.shape}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if np.issubdtype(a.dtype, np.floating):
        return np.ascontiguousarray(a, dtype=np.float64)
    raise InputError(f"image samples must be uint8, or floats in [0, 1]; got {a.dtype}")


class Vqgan:
    """A VQGAN (taming-transformers' ``VQModel``) turning X-rays into latents and back."""

    def __init__(self, native: _native.Vqgan):
        self._native = native

    @classmethod
    def load(cls, path: PathLike, preset: Optional[str] = None, backend: str = "auto", progress: Progress = None) -> "Vqgan":
        """Loads VQGAN weights (``preset``: f2, f4, f8 or f16 for a file that records no configuration)."""
        return cls(_native.Vqgan.load(os.fspath(path), preset, backend, progress))

    def encode(self, images: Any, quantized: bool = False) -> np.ndarray:
        """Latents (float32, ``B x C x H x W``) of images: paths (PNG, JPEG, DICOM), NumPy
        arrays (``H x W`` or ``H x W x C``; uint8, or floats in [0, 1]) or PIL images, one
        or a list. Each goes through the paper's preprocessing first (shorter side to 256,
        centre crop, three channels, [-1, 1])."""
        single = isinstance(images, (str, os.PathLike, np.ndarray)) or hasattr(images, "convert")
        items: Iterable[Any] = [images] if single else images
        return self._native.encode([_image(i) for i in items], bool(quantized))

    def decode(self, z: Any, quantized: bool = False) -> np.ndarray:
        """Images (float32, ``B x 3 x H x W``) reconstructed from latents, on the encoder
        input's scale: -1 is black and 1 white (the decoder's output, not clipped)."""
        a = _latents(z).astype(np.float32)
        return self._native.decode(a, bool(quantized))

    def __repr__(self) -> str:
        return f"Vqgan({self._native.summary})"
