"""The VQGAN from Python: a file, 8-bit samples and [0, 1] intensities of one
picture give one latent; decoding gives images in [-1, 1]."""

import numpy as np
import pytest

import latent_he
from conftest import ROOT

XRAY = ROOT / "examples" / "python" / "chest_xray.png"


@pytest.fixture(scope="module")
def vqgan():
    return latent_he.Vqgan.load(ROOT / "models" / "vqgan_f8.safetensors", backend="cpu")


def test_files_arrays_and_pil_images_encode_alike(vqgan, rng, tmp_path):
    z = vqgan.encode(XRAY)
    assert z.shape == (1, 4, 32, 32) and z.dtype == np.float32 and np.isfinite(z).all()
    # The same picture as samples: a random grey image written as PNG and passed as an array.
    pixels = rng.integers(0, 256, (300, 260), dtype=np.uint8)
    from PIL import Image

    path = tmp_path / "grey.png"
    Image.fromarray(pixels).save(path)
    from_file = vqgan.encode([path])
    assert np.array_equal(vqgan.encode(pixels), from_file)
    assert np.array_equal(vqgan.encode(pixels / 255.0), from_file)
    assert np.array_equal(vqgan.encode(Image.open(path)), from_file)
    assert vqgan.encode([XRAY, pixels]).shape == (2, 4, 32, 32)


def test_decode_reconstructs_the_image(vqgan):
    from PIL import Image

    images = vqgan.decode(vqgan.encode(XRAY))
    assert images.shape == (1, 3, 256, 256)
    # The X-ray is 256x256 grey: preprocessing only scales it to [-1, 1].
    original = np.asarray(Image.open(XRAY).convert("L"), dtype=np.float64)
    decoded = np.clip(np.round((images[0].astype(np.float64) + 1) * 127.5), 0, 255)
    mse = ((decoded - original[np.newaxis]) ** 2).mean()
    psnr = 10 * np.log10(255**2 / mse)
    print(f"PSNR {psnr:.1f} dB")
    assert psnr > 15  # models/README.md: 19.9 dB on the test split


def test_bad_images_raise_engine_errors(vqgan, tmp_path):
    with pytest.raises(latent_he.InputError, match=r"\[0, 1\]"):
        vqgan.encode(np.full((8, 8), 2.0))
    with pytest.raises(latent_he.InputError):
        vqgan.encode(np.zeros((8, 8, 2), dtype=np.uint8))
    with pytest.raises(latent_he.InputError, match="uint8"):
        vqgan.encode(np.zeros((8, 8), dtype=np.int32))
    not_an_image = tmp_path / "x.png"
    not_an_image.write_bytes(b"not an image")
    with pytest.raises(latent_he.InputError):
        vqgan.encode(not_an_image)
