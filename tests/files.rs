//! The versioned file formats: round trips of every kind, the size of the
//! seeded public key set, and refusal of foreign, truncated, damaged and
//! mismatched files (with one-line errors and no panics).

mod common;

use latent_he::ckks::sealed::{
    load_secret_key_with, save_sealed_secret_key, sealed_secret_key_from_bytes, sealed_secret_key_to_bytes, Passphrase,
};
use latent_he::ckks::serialize::{CHECKSUM_LEN, HEADER_LEN};
use latent_he::ckks::{
    ciphertexts_from_bytes, ciphertexts_to_bytes, decrypt, encrypt_values, load_ciphertexts, load_public_keys,
    load_secret_key, peek_header, public_keys_from_bytes, public_keys_to_bytes, save_ciphertexts, save_public_keys,
    save_secret_key, secret_key_from_bytes, secret_key_to_bytes, CiphertextFile, CkksError, Evaluator, FileError,
    FileKind, KeyLevels, KeyMemory, Params, PublicKeySet, SecretKey,
};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use std::sync::Arc;

const PRESET: &str = "insecure-n12";
const ROTATIONS: [i64; 3] = [1, -3, 5];
/// Fresh encryption and one key switch at insecure-n12 (see tests/ckks_ops.rs).
const FRESH_BITS: f64 = 17.0;
const KEYSWITCH_BITS: f64 = 15.0;

struct Fixture {
    params: Arc<Params>,
    sk: SecretKey,
    keys: PublicKeySet,
    rng: ChaCha20Rng,
}

fn fixture(rotations: &[i64]) -> Fixture {
    let params = Params::preset(PRESET).unwrap();
    let sk = SecretKey::generate(&params);
    let keys = PublicKeySet::generate(&sk, rotations);
    Fixture {
        params,
        sk,
        keys,
        rng: common::rng(),
    }
}

impl Fixture {
    /// The bytes of a secret key, a public key set and a ciphertext file.
    fn all_file_bytes(&self, file: &CiphertextFile) -> [Vec<u8>; 3] {
        [
            secret_key_to_bytes(&self.sk),
            public_keys_to_bytes(&self.keys),
            ciphertexts_to_bytes(file, &self.params),
        ]
    }

    fn random(&mut self) -> Vec<f64> {
        (0..self.params.slots())
            .map(|_| self.rng.gen_range(-1.0..1.0))
            .collect()
    }

    /// Three ciphertexts (one rescaled to a lower level) of 5000 values.
    fn ciphertext_file(&mut self) -> (CiphertextFile, Vec<Vec<f64>>) {
        let eval = Evaluator::new(Arc::new(self.keys.clone()));
        let (x, y, z) = (self.random(), self.random(), self.random());
        let (cx, cy) = (
            encrypt_values(&self.keys, &x).unwrap(),
            encrypt_values(&self.keys, &y).unwrap(),
        );
        let mut prod = eval.mul_relin(&cx, &cy).unwrap();
        eval.rescale_assign(&mut prod).unwrap();
        let xy: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
        let cz = encrypt_values(&self.keys, &z).unwrap();
        let file = CiphertextFile {
            shape: vec![2, 2500],
            values: 5000,
            ciphertexts: vec![cx, prod, cz],
        };
        (file, vec![x, xy, z])
    }
}

fn precision_bits(got: &[f64], want: &[f64]) -> f64 {
    let err = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    -err.max(f64::MIN_POSITIVE).log2()
}

fn rotate_left(v: &[f64], steps: i64) -> Vec<f64> {
    let n = v.len() as i64;
    (0..n).map(|i| v[(i + steps).rem_euclid(n) as usize]).collect()
}

/// Asserts the message is one non-empty line and returns it.
fn one_line(e: &impl std::fmt::Display) -> String {
    let s = e.to_string();
    assert!(!s.is_empty() && !s.contains('\n'), "not one line: {s:?}");
    s
}

/// Rewrites the body length and the checksum after an edit of the body, so
/// that the edit reaches the body parser.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - CHECKSUM_LEN);
    let body_len = (bytes.len() - HEADER_LEN) as u64;
    bytes[44..52].copy_from_slice(&body_len.to_le_bytes());
    let hash = blake3::hash(&bytes);
    bytes.extend_from_slice(hash.as_bytes());
    bytes
}

/// Offset of the first polynomial (after the parameter block) of a key file.
fn after_params(bytes: &[u8]) -> usize {
    let json = u32::from_le_bytes(bytes[HEADER_LEN..HEADER_LEN + 4].try_into().unwrap()) as usize;
    let flag = HEADER_LEN + 4 + json;
    if bytes[flag] == 1 {
        let name = u16::from_le_bytes(bytes[flag + 1..flag + 3].try_into().unwrap()) as usize;
        flag + 3 + name
    } else {
        flag + 1
    }
}

#[test]
fn keys_round_trip_through_files() {
    let mut f = fixture(&ROTATIONS);
    let dir = tempfile::tempdir().unwrap();
    let (sk_path, pk_path) = (dir.path().join("secret.key"), dir.path().join("public.key"));
    save_secret_key(&sk_path, &f.sk).unwrap();
    save_public_keys(&pk_path, &f.keys).unwrap();
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sk_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "secret key readable by others: {mode:o}");
    }

    let sk = load_secret_key(&sk_path).unwrap();
    let keys = load_public_keys(&pk_path).unwrap();
    assert_eq!(sk.id(), f.sk.id());
    assert_eq!(keys.id(), f.keys.id());
    assert_eq!(sk.params().fingerprint(), f.params.fingerprint());
    assert_eq!(keys.params().fingerprint(), f.params.fingerprint());
    assert_eq!(keys.params().name(), Some(PRESET));
    assert_eq!(secret_key_to_bytes(&sk), secret_key_to_bytes(&f.sk));
    // Same b polynomials, seeds, Galois elements and rotations, and the same
    // re-expanded a polynomials.
    assert_eq!(public_keys_to_bytes(&keys), std::fs::read(&pk_path).unwrap());
    assert_eq!(keys.rotations(), f.keys.rotations());
    assert_eq!(keys.relin_key(), f.keys.relin_key());
    let n = f.params.n();
    for &s in &ROTATIONS {
        let g = latent_he::ring::automorphism::rotation_galois_element(s, n);
        assert!(keys.galois_key(g).is_some());
        assert_eq!(keys.galois_key(g), f.keys.galois_key(g), "rotation {s}");
    }

    // Encrypt with the loaded public keys, decrypt with the loaded secret key
    // and with the original one.
    let x = f.random();
    let ct = encrypt_values(&keys, &x).unwrap();
    assert!(precision_bits(&decrypt(&sk, &ct).unwrap(), &x) > FRESH_BITS);
    assert!(precision_bits(&decrypt(&f.sk, &ct).unwrap(), &x) > FRESH_BITS);
    let ct = encrypt_values(&f.keys, &x).unwrap();
    assert!(precision_bits(&decrypt(&sk, &ct).unwrap(), &x) > FRESH_BITS);

    // Saving over an existing file replaces it.
    save_public_keys(&pk_path, &keys).unwrap();
    assert_eq!(load_public_keys(&pk_path).unwrap().rotations(), f.keys.rotations());
}

#[test]
fn evaluation_works_on_loaded_keys() {
    let mut f = fixture(&ROTATIONS);
    let sk = secret_key_from_bytes(&secret_key_to_bytes(&f.sk)).unwrap();
    let keys = Arc::new(public_keys_from_bytes(&public_keys_to_bytes(&f.keys)).unwrap());
    let eval = Evaluator::new(keys.clone());
    let (x, y) = (f.random(), f.random());
    let (cx, cy) = (encrypt_values(&keys, &x).unwrap(), encrypt_values(&keys, &y).unwrap());
    for (s, r) in ROTATIONS.iter().zip(eval.rotate_hoisted(&cx, &ROTATIONS).unwrap()) {
        assert!(
            precision_bits(&decrypt(&sk, &r).unwrap(), &rotate_left(&x, *s)) > KEYSWITCH_BITS,
            "step {s}"
        );
    }
    let mut prod = eval.mul_relin(&cx, &cy).unwrap();
    eval.rescale_assign(&mut prod).unwrap();
    let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
    assert!(precision_bits(&decrypt(&sk, &prod).unwrap(), &want) > KEYSWITCH_BITS);
    assert!(matches!(
        eval.rotate(&cx, 2),
        Err(CkksError::MissingRotationKey { steps: 2 })
    ));
}

/// Keys made for lower levels: smaller, they round-trip through files,
/// switch ciphertexts at and below their level (also on the GPU, word for
/// word), and refuse a ciphertext above it.
#[test]
fn keys_at_lower_levels_are_smaller_and_refuse_higher_ciphertexts() {
    let mut f = fixture(&[]);
    let levels = KeyLevels {
        relin: Some(3),
        rotations: vec![(1, 4), (-3, 2)],
    };
    let keys = PublicKeySet::generate_at(&f.sk, &levels, KeyMemory::Expanded);
    assert_eq!(keys.levels(), levels);
    assert_eq!(
        keys.memory_bytes(),
        levels.memory_bytes(&f.params, KeyMemory::Expanded),
        "the size predicted before generation"
    );
    let top = PublicKeySet::generate_at(&f.sk, &KeyLevels::top(&f.params, &[1, -3]), KeyMemory::Expanded);
    assert!(
        keys.memory_bytes() * 2 < top.memory_bytes(),
        "{} vs {}",
        keys.memory_bytes(),
        top.memory_bytes()
    );
    let bytes = public_keys_to_bytes(&keys);
    assert!(bytes.len() < public_keys_to_bytes(&top).len());
    // The size reported before key generation is exact.
    let reported = latent_he::ckks::serialize::public_keys_file_bytes(&f.params, &levels);
    assert_eq!(reported, bytes.len());
    let loaded = Arc::new(public_keys_from_bytes(&bytes).unwrap());
    assert_eq!(loaded.levels(), levels);
    let eval = Evaluator::new(loaded.clone());
    let x = f.random();
    let at = |level: usize| {
        let mut ct = encrypt_values(&loaded, &x).unwrap();
        eval.drop_level_assign(&mut ct, level).unwrap();
        ct
    };
    for level in [4, 1] {
        let r = eval.rotate(&at(level), 1).unwrap();
        assert!(precision_bits(&decrypt(&f.sk, &r).unwrap(), &rotate_left(&x, 1)) > KEYSWITCH_BITS);
    }
    let sq = eval.rescale(&eval.mul_relin(&at(3), &at(3)).unwrap()).unwrap();
    let want: Vec<f64> = x.iter().map(|v| v * v).collect();
    assert!(precision_bits(&decrypt(&f.sk, &sq).unwrap(), &want) > KEYSWITCH_BITS);
    assert!(matches!(
        eval.rotate(&at(3), -3),
        Err(CkksError::KeyLevel {
            key_level: 2,
            level: 3,
            ..
        })
    ));
    assert!(matches!(
        eval.mul_relin(&at(4), &at(4)),
        Err(CkksError::KeyLevel {
            key_level: 3,
            level: 4,
            ..
        })
    ));
    let ctx = latent_he::backend::gpu::GpuContext::new(None)
        .unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (mesa-vulkan-drivers)"));
    let gpu = latent_he::ckks::gpu_eval::GpuEvaluator::new(&ctx, &loaded).unwrap();
    let ct = at(2);
    let on_gpu = gpu.rotate_hoisted(&gpu.upload(&ct).unwrap(), &[1, -3]).unwrap();
    let on_cpu = eval.rotate_hoisted(&ct, &[1, -3]).unwrap();
    for (g, c) in on_gpu.iter().zip(&on_cpu) {
        assert_eq!(&gpu.download(g).unwrap(), c, "GPU and CPU differ with truncated keys");
    }
    assert!(gpu.rotate_hoisted(&gpu.upload(&at(3)).unwrap(), &[-3]).is_err());
}

#[test]
fn ciphertexts_round_trip() {
    let mut f = fixture(&[]);
    let (file, plain) = f.ciphertext_file();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.ct");
    save_ciphertexts(&path, &file, &f.params).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes, ciphertexts_to_bytes(&file, &f.params));

    let header = peek_header(&bytes).unwrap();
    assert_eq!(header.kind, FileKind::Ciphertexts);
    assert_eq!(header.fingerprint, f.params.fingerprint());
    assert_eq!(header.key_id, f.sk.id());
    assert_eq!(header.file_len(), bytes.len() as u64);

    let loaded = load_ciphertexts(&path, &f.params).unwrap();
    assert_eq!(loaded, file);
    assert_eq!(loaded.key_id(), Some(f.sk.id()));
    assert_eq!(loaded.ciphertexts[1].level(), f.params.max_level() - 1);
    for (ct, want) in loaded.ciphertexts.iter().zip(&plain) {
        assert!(precision_bits(&decrypt(&f.sk, ct).unwrap(), want) > KEYSWITCH_BITS);
    }
    // Parameters rebuilt from the key file are as good as the preset.
    let keys = public_keys_from_bytes(&public_keys_to_bytes(&f.keys)).unwrap();
    assert_eq!(ciphertexts_from_bytes(&bytes, keys.params()).unwrap(), file);

    let empty = CiphertextFile {
        shape: vec![],
        values: 0,
        ciphertexts: vec![],
    };
    let loaded = ciphertexts_from_bytes(&ciphertexts_to_bytes(&empty, &f.params), &f.params).unwrap();
    assert_eq!(loaded, empty);
    assert_eq!(loaded.key_id(), None);
}

#[test]
fn public_key_file_holds_no_secret_and_only_half_of_each_key() {
    let f = fixture(&ROTATIONS);
    let sk_bytes = secret_key_to_bytes(&f.sk);
    let pk_bytes = public_keys_to_bytes(&f.keys);
    let n = f.params.n();
    let limbs = f.params.ring().full_layout().len();
    let digits = f.params.digits(f.params.max_level()).len();
    let pairs = 1 + digits + ROTATIONS.len() * digits;
    let b_bytes = pairs * limbs * n * 4;
    eprintln!(
        "{PRESET}: secret key {} bytes, public key set ({} rotations) {} bytes, b words {b_bytes} bytes",
        sk_bytes.len(),
        ROTATIONS.len(),
        pk_bytes.len()
    );
    // The secret key is its 2-bit coefficients plus a small header.
    assert!(
        sk_bytes.len() >= n / 4 && sk_bytes.len() < n / 4 + 1024,
        "{}",
        sk_bytes.len()
    );
    // The public file holds every b but only a seed for every a.
    assert!(pk_bytes.len() > b_bytes);
    assert!(
        (pk_bytes.len() as f64) < 0.55 * (2 * b_bytes) as f64,
        "{} vs {b_bytes}",
        pk_bytes.len()
    );
    // The packed secret coefficients appear nowhere in the public file.
    let coeffs = &sk_bytes[sk_bytes.len() - CHECKSUM_LEN - n / 4..sk_bytes.len() - CHECKSUM_LEN];
    for window in coeffs.chunks(32) {
        assert!(!pk_bytes.windows(window.len()).any(|w| w == window));
    }
    // Ciphertexts are two full polynomials per level.
    let one = CiphertextFile {
        shape: vec![1],
        values: 1,
        ciphertexts: vec![encrypt_values(&f.keys, &[0.5]).unwrap()],
    };
    let ct_bytes = ciphertexts_to_bytes(&one, &f.params).len();
    let words = 2 * (f.params.max_level() + 1) * n * 4;
    eprintln!("{PRESET}: one ciphertext at the top level {ct_bytes} bytes");
    assert!(ct_bytes > words && ct_bytes < words + 256);
}

/// Keys held compact (the `a` halves as seeds, re-expanded per key switch)
/// take half the memory and switch to exactly the words of expanded keys, on
/// the CPU and the GPU; a key file is streamed to disk with exactly the bytes
/// of the in-memory encoding, whichever way its keys are held.
#[test]
fn compact_keys_switch_to_the_same_words_and_stream_to_the_same_file() {
    let mut f = fixture(&ROTATIONS);
    let levels = KeyLevels {
        relin: Some(4),
        rotations: vec![(1, 4), (-3, 3), (5, 4)],
    };
    let compact = PublicKeySet::generate_at(&f.sk, &levels, KeyMemory::Compact);
    assert_eq!(
        compact.memory_bytes(),
        levels.memory_bytes(&f.params, KeyMemory::Compact)
    );
    assert_eq!(
        2 * compact.memory_bytes(),
        levels.memory_bytes(&f.params, KeyMemory::Expanded)
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("public.key");
    save_public_keys(&path, &compact).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        bytes,
        public_keys_to_bytes(&compact),
        "streamed and in-memory encodings differ"
    );
    assert_eq!(
        latent_he::ckks::public_keys_params(&path).unwrap().fingerprint(),
        f.params.fingerprint()
    );
    let expanded = Arc::new(latent_he::ckks::load_public_keys_as(&path, KeyMemory::Expanded).unwrap());
    let reloaded = Arc::new(latent_he::ckks::load_public_keys_as(&path, KeyMemory::Compact).unwrap());
    assert_eq!(reloaded.memory_bytes(), compact.memory_bytes());
    assert_eq!(expanded.memory_bytes(), 2 * compact.memory_bytes());

    let (x, y) = (f.random(), f.random());
    let (fast, small) = (Evaluator::new(expanded.clone()), Evaluator::new(reloaded.clone()));
    let at_level_3 = |ct| {
        let mut ct = ct;
        fast.drop_level_assign(&mut ct, 3).unwrap();
        ct
    };
    let (cx, cy) = (
        at_level_3(encrypt_values(&expanded, &x).unwrap()),
        at_level_3(encrypt_values(&reloaded, &y).unwrap()),
    );
    for steps in [1, -3, 5] {
        let want = fast.rotate(&cx, steps).unwrap();
        assert_eq!(small.rotate(&cx, steps).unwrap(), want, "rotation by {steps}");
        assert!(precision_bits(&decrypt(&f.sk, &want).unwrap(), &rotate_left(&x, steps)) > KEYSWITCH_BITS);
    }
    assert_eq!(
        small.rotate_hoisted(&cy, &[1, -3, 5]).unwrap(),
        fast.rotate_hoisted(&cy, &[1, -3, 5]).unwrap()
    );
    assert_eq!(small.mul_relin(&cx, &cy).unwrap(), fast.mul_relin(&cx, &cy).unwrap());

    let ctx = latent_he::backend::gpu::GpuContext::new(None)
        .unwrap_or_else(|e| panic!("GPU TESTS CANNOT RUN: {e}. Install a Vulkan driver (mesa-vulkan-drivers)"));
    let gpu = latent_he::ckks::gpu_eval::GpuEvaluator::new(&ctx, &reloaded).unwrap();
    let on_gpu = gpu.rotate_hoisted(&gpu.upload(&cy).unwrap(), &[1, 5]).unwrap();
    for (g, c) in on_gpu.iter().zip(&fast.rotate_hoisted(&cy, &[1, 5]).unwrap()) {
        assert_eq!(
            &gpu.download(g).unwrap(),
            c,
            "the GPU with compact keys differs from the CPU"
        );
    }
}

#[test]
fn foreign_wrong_kind_and_wrong_version_files_are_refused() {
    let f = fixture(&[]);
    let sk_bytes = secret_key_to_bytes(&f.sk);
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.resize(200, 0);
    assert!(matches!(secret_key_from_bytes(&png), Err(FileError::NotLatentHe)));
    assert!(matches!(public_keys_from_bytes(&png), Err(FileError::NotLatentHe)));
    let e = ciphertexts_from_bytes(&png, &f.params).unwrap_err();
    assert!(matches!(e, FileError::NotLatentHe));
    assert!(one_line(&e).contains("not a latent-he file"));
    assert!(matches!(peek_header(b"hello"), Err(FileError::NotLatentHe)));

    let e = public_keys_from_bytes(&sk_bytes).unwrap_err();
    assert!(
        matches!(
            e,
            FileError::WrongKind {
                expected: FileKind::PublicKeys,
                found: FileKind::SecretKey
            }
        ),
        "{e:?}"
    );
    assert!(one_line(&e).contains("expected a public key set file, found a secret key file"));
    assert!(matches!(
        ciphertexts_from_bytes(&sk_bytes, &f.params),
        Err(FileError::WrongKind { .. })
    ));
    let pk_bytes = public_keys_to_bytes(&f.keys);
    assert!(matches!(
        secret_key_from_bytes(&pk_bytes),
        Err(FileError::WrongKind { .. })
    ));

    // A later version, and version 1 (whose keys expanded `a` from one
    // ChaCha20 stream, limb after limb): both refused, neither misread.
    for version in [3u8, 1] {
        let mut other = sk_bytes.clone();
        other[8] = version;
        let e = secret_key_from_bytes(&other).unwrap_err();
        assert!(
            matches!(e, FileError::UnsupportedVersion { found, supported: 2 } if found == u16::from(version)),
            "{e:?}"
        );
        one_line(&e);
    }

    let mut longer = sk_bytes.clone();
    longer.push(0);
    let e = secret_key_from_bytes(&longer).unwrap_err();
    assert!(matches!(e, FileError::Corrupt { .. }), "{e:?}");
    one_line(&e);
}

#[test]
fn truncated_and_damaged_files_are_refused() {
    let mut f = fixture(&[1]);
    let (file, _) = f.ciphertext_file();
    let all = f.all_file_bytes(&file);
    let parse = |bytes: &[u8], kind: usize| match kind {
        0 => secret_key_from_bytes(bytes).map(|_| ()),
        1 => public_keys_from_bytes(bytes).map(|_| ()),
        _ => ciphertexts_from_bytes(bytes, &f.params).map(|_| ()),
    };
    let mut rng = common::rng();
    for (kind, bytes) in all.iter().enumerate() {
        parse(bytes, kind).unwrap();
        let mut offsets: Vec<usize> = (0..20).map(|_| rng.gen_range(0..bytes.len())).collect();
        offsets.extend([0, 5, 8, 9, 51, 52, bytes.len() - 1]);
        for cut in offsets {
            let e = parse(&bytes[..cut], kind).unwrap_err();
            assert!(
                matches!(e, FileError::Truncated { found, .. } if found == cut as u64),
                "kind {kind}, cut at {cut}: {e:?}"
            );
            assert!(one_line(&e).starts_with("truncated file (expected "));
        }
        for _ in 0..20 {
            let mut damaged = bytes.clone();
            let at = loop {
                let at = rng.gen_range(12..bytes.len());
                if !(44..52).contains(&at) {
                    break at;
                }
            };
            damaged[at] ^= 1 << rng.gen_range(0..8);
            let e = parse(&damaged, kind).unwrap_err();
            assert!(
                matches!(e, FileError::ChecksumMismatch),
                "kind {kind}, byte {at}: {e:?}"
            );
            one_line(&e);
        }
        // Every single-byte change of the header is refused too.
        for at in 0..HEADER_LEN {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            one_line(&parse(&damaged, kind).unwrap_err());
        }
    }
}

#[test]
fn invalid_content_under_a_valid_checksum_is_refused() {
    let f = fixture(&[1]);
    let n = f.params.n();
    // A non-canonical word in the public key.
    let pk = public_keys_to_bytes(&f.keys);
    let first_word = after_params(&pk) + 8;
    let mut bad = pk.clone();
    bad[first_word..first_word + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = public_keys_from_bytes(&reseal(bad)).unwrap_err();
    assert!(
        matches!(&e, FileError::Corrupt { reason } if reason.contains("not below its prime")),
        "{e:?}"
    );
    one_line(&e);
    // A Galois element that does not match its rotation.
    let pair = 8 + f.params.ring().full_layout().len() * n * 4 + 32;
    let digits = f.params.digits(f.params.max_level()).len();
    let g_at = after_params(&pk) + pair + 1 + 4 + digits * pair + 4;
    let g = u64::from_le_bytes(pk[g_at..g_at + 8].try_into().unwrap());
    assert_eq!(g, latent_he::ring::automorphism::rotation_galois_element(1, n));
    let mut bad = pk.clone();
    bad[g_at..g_at + 8].copy_from_slice(&(g + 2).to_le_bytes());
    let e = public_keys_from_bytes(&reseal(bad)).unwrap_err();
    assert!(
        matches!(&e, FileError::Corrupt { reason } if reason.contains("Galois")),
        "{e:?}"
    );
    // Parameters that do not match the header's fingerprint.
    let mut bad = pk.clone();
    bad[12] ^= 1;
    let e = public_keys_from_bytes(&reseal(bad)).unwrap_err();
    assert!(
        matches!(&e, FileError::Corrupt { reason } if reason.contains("fingerprint")),
        "{e:?}"
    );
    // A secret coefficient with the invalid code 3.
    let mut sk = secret_key_to_bytes(&f.sk);
    let last = sk.len() - CHECKSUM_LEN - 1;
    sk[last] = 0xff;
    let e = secret_key_from_bytes(&reseal(sk)).unwrap_err();
    assert!(
        matches!(&e, FileError::Corrupt { reason } if reason.contains("code 3")),
        "{e:?}"
    );
}

/// A ciphertext whose scale field is not its level's canonical scale is
/// refused: a forged scale (finite and positive, or not) would decrypt to
/// values off by the ratio, or to inf/NaN.
#[test]
fn a_scale_other_than_the_levels_canonical_one_is_refused() {
    let mut f = fixture(&[1]);
    let (file, _) = f.ciphertext_file();
    let bytes = ciphertexts_to_bytes(&file, &f.params);
    let level = file.ciphertexts[0].level();
    let canonical = f.params.scale(level).to_le_bytes();
    let at = bytes
        .windows(8)
        .position(|w| w == canonical)
        .expect("the first ciphertext's scale is in the file");
    for forged in [f.params.scale(level) * 2.0, 1e-300, f64::MAX] {
        let mut bad = bytes.clone();
        bad[at..at + 8].copy_from_slice(&forged.to_le_bytes());
        let e = ciphertexts_from_bytes(&reseal(bad), &f.params).unwrap_err();
        assert!(
            matches!(&e, FileError::Corrupt { reason } if reason.contains("scale")),
            "{forged:e}: {e:?}"
        );
        one_line(&e);
    }
}

#[test]
fn mismatched_params_and_keys_are_refused() {
    let mut f = fixture(&[]);
    let (file, _) = f.ciphertext_file();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.ct");
    save_ciphertexts(&path, &file, &f.params).unwrap();

    let other = Params::preset("n14").unwrap();
    let e = load_ciphertexts(&path, &other).unwrap_err();
    assert!(matches!(e.innermost(), FileError::ParamsMismatch { .. }), "{e:?}");
    let msg = one_line(&e);
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("other parameters") && msg.contains(&other.fingerprint_hex()),
        "{msg}"
    );

    // Another secret key for the same parameters.
    let loaded = load_ciphertexts(&path, &f.params).unwrap();
    let stranger = SecretKey::generate(&f.params);
    assert_ne!(loaded.key_id(), Some(stranger.id()));
    let e = decrypt(&stranger, &loaded.ciphertexts[0]).unwrap_err();
    assert!(matches!(e, CkksError::KeyMismatch { .. }), "{e:?}");
    one_line(&e);
}

#[test]
fn load_errors_name_the_path() {
    let f = fixture(&[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("public.key");
    save_public_keys(&path, &f.keys).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..100]).unwrap();
    let e = load_public_keys(&path).unwrap_err();
    assert!(matches!(e.innermost(), FileError::Truncated { expected, found: 100 } if *expected == bytes.len() as u64));
    let msg = one_line(&e);
    assert_eq!(
        msg,
        format!(
            "{}: truncated file (expected {} bytes, found 100)",
            path.display(),
            bytes.len()
        )
    );

    let missing = dir.path().join("missing.key");
    let e = load_secret_key(&missing).unwrap_err();
    assert!(matches!(e, FileError::Io { .. }));
    assert!(one_line(&e).starts_with(&missing.display().to_string()));

    let e = save_secret_key(&dir.path().join("no-such-dir").join("secret.key"), &f.sk).unwrap_err();
    assert!(matches!(e, FileError::Io { .. }));
    one_line(&e);

    std::fs::write(&path, secret_key_to_bytes(&f.sk)).unwrap();
    let e = load_public_keys(&path).unwrap_err();
    assert!(matches!(e.innermost(), FileError::WrongKind { .. }));
    assert!(one_line(&e).starts_with(&path.display().to_string()));
}

#[test]
fn random_mutations_never_panic() {
    let mut f = fixture(&[1]);
    let (file, _) = f.ciphertext_file();
    let all = f.all_file_bytes(&file);
    let mut rng = common::rng();
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..200 {
        let kind = round % 3;
        let mut bytes = all[kind].clone();
        // Mostly in the parameter block and the structure around the words,
        // where a mutation changes the most.
        let hot = if kind == 2 {
            HEADER_LEN + 200
        } else {
            after_params(&bytes) + 64
        };
        let pick = |rng: &mut ChaCha20Rng, len: usize| {
            if rng.gen_bool(0.7) {
                rng.gen_range(HEADER_LEN.min(len - 1)..hot.min(len))
            } else {
                rng.gen_range(0..len)
            }
        };
        match rng.gen_range(0..5) {
            0 => {
                for _ in 0..rng.gen_range(1..8) {
                    let at = pick(&mut rng, bytes.len());
                    bytes[at] = rng.gen();
                }
            }
            1 => {
                let at = pick(&mut rng, bytes.len());
                bytes.truncate(at.max(HEADER_LEN + CHECKSUM_LEN));
            }
            2 => {
                let at = pick(&mut rng, bytes.len());
                let extra: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
                bytes.splice(at..at, extra);
            }
            3 => {
                let at = pick(&mut rng, bytes.len());
                let end = (at + rng.gen_range(1..64)).min(bytes.len());
                bytes.drain(at..end);
            }
            _ => {
                let at = rng.gen_range(HEADER_LEN..bytes.len() - CHECKSUM_LEN);
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
        }
        // Half the time make the checksum and length agree with the edit, so
        // that the body parser sees it.
        if rng.gen_bool(0.5) && bytes.len() >= HEADER_LEN + CHECKSUM_LEN {
            bytes = reseal(bytes);
        }
        let ok = match kind {
            0 => secret_key_from_bytes(&bytes).is_ok(),
            1 => public_keys_from_bytes(&bytes).is_ok(),
            _ => ciphertexts_from_bytes(&bytes, &f.params).is_ok(),
        };
        let _ = peek_header(&bytes);
        if ok {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    eprintln!("random mutations: {accepted} accepted, {refused} refused");
    assert!(refused > 100);
}

/// The public key set of preset n16 without rotations (about 75 MB). Slow:
/// `cargo test --release --test files -- --ignored`.
#[test]
#[ignore]
fn n16_public_key_set_size() {
    let params = Params::preset("n16").unwrap();
    let sk = SecretKey::generate(&params);
    let keys = PublicKeySet::generate(&sk, &[]);
    let bytes = public_keys_to_bytes(&keys);
    let n = params.n();
    let limbs = params.ring().full_layout().len();
    let digits = params.digits(params.max_level()).len();
    let b_bytes = (1 + digits) * limbs * n * 4;
    eprintln!(
        "n16: secret key {} bytes, public key set {} bytes ({:.1} MiB), b words {b_bytes} bytes, {digits} digits, {limbs} limbs",
        secret_key_to_bytes(&sk).len(),
        bytes.len(),
        bytes.len() as f64 / (1 << 20) as f64
    );
    assert!((bytes.len() as f64) < 0.55 * (2 * b_bytes) as f64);
    let loaded = public_keys_from_bytes(&bytes).unwrap();
    assert_eq!(loaded.relin_key(), keys.relin_key());
}

/// The file of `sk` encrypted under `pass`, with its checksum recomputed
/// after `edit` (so that only the authentication can catch the change).
fn resealed(sk: &SecretKey, pass: &Passphrase, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = sealed_secret_key_to_bytes(sk, pass);
    bytes.truncate(bytes.len() - CHECKSUM_LEN);
    edit(&mut bytes);
    let hash = blake3::hash(&bytes);
    bytes.extend_from_slice(hash.as_bytes());
    bytes
}

#[test]
fn a_passphrase_encrypted_secret_key_round_trips_and_refuses_the_wrong_passphrase() {
    let f = fixture(&[]);
    let pass = Passphrase::new(b"correct horse battery staple".to_vec()).unwrap();
    let bytes = sealed_secret_key_to_bytes(&f.sk, &pass);
    assert_eq!(peek_header(&bytes).unwrap().kind, FileKind::SealedSecretKey);
    let back = sealed_secret_key_from_bytes(&bytes, &pass).unwrap();
    assert_eq!(secret_key_to_bytes(&back), secret_key_to_bytes(&f.sk));
    // Fresh salt and nonce every time.
    assert_ne!(sealed_secret_key_to_bytes(&f.sk, &pass), bytes);
    let wrong = Passphrase::new(b"correct horse battery stapler".to_vec()).unwrap();
    assert!(matches!(
        sealed_secret_key_from_bytes(&bytes, &wrong),
        Err(FileError::WrongPassphrase)
    ));
    // Not a plain secret key file, and the plain loader says so.
    assert!(matches!(
        secret_key_from_bytes(&bytes),
        Err(FileError::WrongKind {
            expected: FileKind::SecretKey,
            found: FileKind::SealedSecretKey
        })
    ));
    for (what, bytes) in [("empty", vec![]), ("too long", vec![b'a'; 1025])] {
        assert!(
            matches!(Passphrase::new(bytes), Err(FileError::Passphrase { .. })),
            "{what}"
        );
    }
}

#[test]
fn the_encrypted_secret_key_holds_no_plain_key_bytes() {
    let f = fixture(&[]);
    let pass = Passphrase::new(b"p".to_vec()).unwrap();
    let bytes = sealed_secret_key_to_bytes(&f.sk, &pass);
    let plain = secret_key_to_bytes(&f.sk);
    // The packed coefficients: the plain file's last N/4 bytes before its
    // checksum. No 16-byte run of them appears in the encrypted file.
    let n = f.params.n();
    let coeffs = &plain[plain.len() - CHECKSUM_LEN - n / 4..plain.len() - CHECKSUM_LEN];
    for run in coeffs.chunks(16) {
        assert!(
            !bytes.windows(run.len()).any(|w| w == run),
            "a run of the secret coefficients appears in the encrypted file"
        );
    }
}

#[test]
fn a_tampered_encrypted_secret_key_is_refused() {
    let f = fixture(&[]);
    let pass = Passphrase::new(b"passphrase".to_vec()).unwrap();
    // Any byte flipped without the checksum: the checksum catches it.
    let mut bytes = sealed_secret_key_to_bytes(&f.sk, &pass);
    let last = bytes.len() - CHECKSUM_LEN - 1;
    bytes[last] ^= 1;
    assert!(matches!(
        sealed_secret_key_from_bytes(&bytes, &pass),
        Err(FileError::ChecksumMismatch)
    ));
    // With the checksum recomputed: the key identifier in the header, the
    // salt, the nonce and the sealed bytes all fail authentication.
    let body = HEADER_LEN;
    for (what, at) in [
        ("key identifier", 30),
        ("salt", body + 14),
        ("nonce", body + 1 + 12 + 16 + 1 + 3),
        ("sealed bytes", body + 60),
    ] {
        let bytes = resealed(&f.sk, &pass, |b| b[at] ^= 0x80);
        let e = sealed_secret_key_from_bytes(&bytes, &pass).unwrap_err();
        assert!(matches!(e, FileError::WrongPassphrase), "{what}: {e}");
    }
    // Costs past the caps are refused before any key derivation.
    let bytes = resealed(&f.sk, &pass, |b| {
        b[body + 1..body + 5].copy_from_slice(&u32::MAX.to_le_bytes())
    });
    let e = sealed_secret_key_from_bytes(&bytes, &pass).unwrap_err();
    assert!(e.to_string().contains("past the caps"), "{e}");
    // A sealed length that runs past the body.
    let bytes = resealed(&f.sk, &pass, |b| {
        b[body + 42..body + 46].copy_from_slice(&u32::MAX.to_le_bytes())
    });
    assert!(matches!(
        sealed_secret_key_from_bytes(&bytes, &pass),
        Err(FileError::Corrupt { .. })
    ));
}

#[test]
fn the_secret_key_loader_reads_both_kinds_and_asks_for_the_passphrase() {
    let f = fixture(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (plain, sealed, pass_file) = (
        dir.path().join("plain.key"),
        dir.path().join("sealed.key"),
        dir.path().join("pass"),
    );
    std::fs::write(&pass_file, "a passphrase\r\n").unwrap();
    let pass = Passphrase::read(&pass_file).unwrap();
    assert_eq!(
        sealed_secret_key_from_bytes(
            &sealed_secret_key_to_bytes(&f.sk, &Passphrase::new(b"a passphrase".to_vec()).unwrap()),
            &pass
        )
        .unwrap()
        .id(),
        f.sk.id(),
        "the final line ending is not part of the passphrase"
    );
    save_secret_key(&plain, &f.sk).unwrap();
    save_sealed_secret_key(&sealed, &f.sk, &pass).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sealed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    for (path, p) in [(&plain, None), (&plain, Some(&pass)), (&sealed, Some(&pass))] {
        assert_eq!(load_secret_key_with(path, p).unwrap().id(), f.sk.id());
    }
    let e = load_secret_key_with(&sealed, None).unwrap_err();
    assert!(matches!(e.innermost(), FileError::PassphraseRequired), "{e}");
    assert!(e.to_string().contains("sealed.key"), "{e}");
    std::fs::write(&pass_file, "\n").unwrap();
    assert!(matches!(
        Passphrase::read(&pass_file).unwrap_err().innermost(),
        FileError::Passphrase { .. }
    ));
}
