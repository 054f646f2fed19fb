"""Type stubs of latent_he: encrypted chest X-ray classification in latent space (RNS-CKKS)."""

import os
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, os.PathLike[str]]
Progress = Optional[Callable[[dict], Any]]

DEFAULT_DECRYPT_NOISE: float
"""Default standard deviation of the noise added to decrypted values (2^-14)."""

class Error(Exception):
    """Every failure the engine reports; the message is the engine's."""

class InputError(Error):
    """An input that cannot be used: wrong shape, non-finite values, a damaged or truncated
    ciphertext, keys or ciphertexts of another key or model, weights that do not fit."""

class FileError(Error):
    """A file or folder that cannot be read or written."""

class ResourceError(Error):
    """Not enough memory, no usable GPU, or a server that cannot be reached."""

class ConfigError(Error):
    """Settings that cannot work together."""

class ClientBundle:
    """What a client needs of a model (parameters, layouts, rotations, classes), without weights."""

    @staticmethod
    def load(path: PathLike) -> ClientBundle:
        """Reads and checks a ``client.json``."""
    @staticmethod
    def from_json(text: str) -> ClientBundle:
        """Parses and checks a bundle's JSON text."""
    def to_json(self) -> str:
        """The bundle as JSON text."""
    def save(self, path: PathLike) -> None:
        """Writes the bundle to ``path``."""
    @property
    def preset(self) -> str:
        """The parameter preset."""
    @property
    def fingerprint(self) -> str:
        """The model's fingerprint."""
    @property
    def classes(self) -> list[str]:
        """Class names, one per logit."""

class Findings:
    """Decrypted findings: a logit and a probability per image and class."""

    @property
    def classes(self) -> list[str]:
        """Class names, one per column."""
    @property
    def logits(self) -> np.ndarray:
        """``B x classes`` logits (float64)."""
    @property
    def probabilities(self) -> np.ndarray:
        """``B x classes`` probabilities, the sigmoid of each logit (multi-label)."""
    def __len__(self) -> int:
        """Images."""

class Model:
    """A classifier of the paper's zoo with its weights."""

    @classmethod
    def load(
        cls,
        path: PathLike,
        arch: Optional[str] = None,
        se: Optional[bool] = None,
        classes: Union[None, str, Sequence[str]] = None,
        latent: Union[None, str, Sequence[int]] = None,
        input_clip: Union[None, float, str] = None,
    ) -> Model:
        """Loads a safetensors state dict; the options fill what its metadata lacks."""
    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, Any],
        arch: Optional[str] = None,
        se: Optional[bool] = None,
        classes: Union[None, str, Sequence[str]] = None,
        latent: Union[None, str, Sequence[int]] = None,
        input_clip: Union[None, float, str] = None,
    ) -> Model:
        """Builds a model from a PyTorch state dict (tensors or NumPy arrays)."""
    def predict(self, z: Any) -> np.ndarray:
        """Plaintext logits (``B x classes``) of latents (``C x H x W`` or ``B x C x H x W``)."""
    def plan(self, preset: str = "auto", batch: int = 1) -> dict[str, Any]:
        """The CKKS plan, as ``latent-he plan --json`` reports it."""
    def client_bundle(self, preset: str = "auto", batch: int = 1) -> ClientBundle:
        """The client bundle of the model planned under ``preset`` for ``batch`` images per set."""
    @property
    def classes(self) -> list[str]:
        """Class names, one per logit."""
    @property
    def latent(self) -> tuple[int, int, int]:
        """The latent shape ``(C, H, W)``."""
    @property
    def fingerprint(self) -> str:
        """``blake3:`` and the hash of the weights."""

class Client:
    """A client's key folder made for one model."""

    @classmethod
    def keygen(
        cls, bundle: Union[ClientBundle, PathLike], out_dir: PathLike, passphrase: Union[None, str, bytes] = None
    ) -> Client:
        """Makes keys for the bundle's model into ``out_dir``."""
    @classmethod
    def open(cls, key_dir: PathLike, passphrase: Union[None, str, bytes] = None) -> Client:
        """Opens a key folder made for a model."""
    def encrypt(self, z: Any) -> bytes:
        """Latents encrypted in the model's layout: ciphertext file bytes."""
    def decrypt(self, data: bytes, noise: float = ...) -> Findings:
        """The findings in the server's answer."""
    @property
    def public_keys_path(self) -> str:
        """The public key file, for the server."""
    @property
    def key_dir(self) -> str:
        """The key folder."""
    @property
    def classes(self) -> list[str]:
        """Class names, one per logit."""
    @property
    def latent(self) -> tuple[int, int, int]:
        """The latent shape ``(C, H, W)``."""

class Server:
    """A model with one client's public keys; it reads no secret key."""

    def __init__(
        self,
        model: Model,
        public_keys_path: PathLike,
        backend: str = "auto",
        adapter: Optional[str] = None,
        progress: Progress = None,
    ) -> None:
        """Plans ``model`` under the keys' parameters and loads the keys (``backend``: auto, cpu, gpu)."""
    def infer(self, data: bytes) -> bytes:
        """Encrypted logits of encrypted latents, as ciphertext file bytes."""
    @property
    def backend(self) -> str:
        """``"cpu"`` or ``"gpu"``."""
    @property
    def preset(self) -> str:
        """The parameter preset of the client's keys."""

class RemoteServer:
    """One client's public keys registered on a running ``latent-he serve``."""

    def __init__(
        self,
        url: str,
        public_keys_path: PathLike,
        model: str,
        token: Optional[str] = None,
        ca_cert: Optional[PathLike] = None,
    ) -> None:
        """Connects and registers the public keys for the served ``model``."""
    def infer(self, data: bytes) -> bytes:
        """Encrypted logits of encrypted latents, as one job on the server."""
    @property
    def key_id(self) -> str:
        """The registered key's id on the server."""

class Vqgan:
    """A VQGAN turning X-rays into latents and back."""

    @classmethod
    def load(
        cls, path: PathLike, preset: Optional[str] = None, backend: str = "auto", progress: Progress = None
    ) -> Vqgan:
        """Loads VQGAN weights."""
    def encode(self, images: Any, quantized: bool = False) -> np.ndarray:
        """Latents (``B x C x H x W``) of images: paths, arrays (uint8 or [0, 1] floats) or PIL images."""
    def decode(self, z: Any, quantized: bool = False) -> np.ndarray:
        """Images (``B x 3 x H x W``, -1 black, 1 white) reconstructed from latents."""
