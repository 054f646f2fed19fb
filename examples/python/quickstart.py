"""An X-ray file to findings, encrypted: the client makes keys and encrypts the latent,
the server (public key only) classifies the ciphertext, the client decrypts."""
import pathlib, sys, tempfile
import latent_he as lh

root = pathlib.Path(__file__).resolve().parents[2]
xray = sys.argv[1] if len(sys.argv) > 1 else root / "examples/python/chest_xray.png"
vqgan = lh.Vqgan.load(root / "models/vqgan_f8.safetensors")
model = lh.Model.load(root / "models/resnet20_f8.safetensors")
client = lh.Client.keygen(model.client_bundle(), tempfile.mkdtemp())  # n16: 128-bit
server = lh.Server(model, client.public_keys_path)  # holds no secret key
findings = client.decrypt(server.infer(client.encrypt(vqgan.encode(xray))))
for name, p in sorted(zip(findings.classes, findings.probabilities[0]), key=lambda t: -t[1])[:5]:
    print(f"{name:<20} {p:.3f}")
