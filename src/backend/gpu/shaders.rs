//! The WGSL sources: one file per kernel family in `shaders/`. The CKKS
//! kernels ([`KernelFile`]) have the shared modular arithmetic of
//! `shaders/modarith.wgsl` prepended; the f32 tensor kernels of the VQGAN
//! ([`TensorKernelFile`]) stand alone.

/// Shared modular arithmetic, prepended to every kernel file.
const MODARITH: &str = include_str!("../../../shaders/modarith.wgsl");
/// Basis conversion of one output word, shared by the conversion and NTT kernels.
const CONVERT: &str = include_str!("../../../shaders/convert.wgsl");
/// The key-switching inner product over all digits, alone and fused into
/// the NTT's first inverse pass.
const KEYSWITCH: &str = include_str!("../../../shaders/keyswitch.wgsl");
/// The portable 32x32 -> 64-bit product.
const MUL_WIDE_U32: &str = include_str!("../../../shaders/mul_wide_u32.wgsl");
/// The same product with 64-bit integers (SHADER_INT64).
const MUL_WIDE_U64: &str = include_str!("../../../shaders/mul_wide_u64.wgsl");

/// How the kernels build the 32x32 -> 64-bit product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WideMul {
    /// From 16-bit halves: every WGSL implementation.
    Portable,
    /// One `u64` multiply: adapters with `SHADER_INT64`.
    Int64,
}

/// Every kernel family; one `.wgsl` file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelFile {
    /// `shaders/ntt.wgsl`: forward and inverse NTT passes, the first pass
    /// optionally reading another buffer or a basis conversion, or computing
    /// the key-switching inner product or a tensor product; the inner
    /// product alone (`shaders/keyswitch.wgsl`, prepended).
    Ntt,
    /// `shaders/elementwise.wgsl`: add, sub, negate, mul, multiply-add, a
    /// sum of products.
    Elementwise,
    /// `shaders/basis.wgsl`: fast basis extension, plain and centred, into
    /// coefficient form.
    Basis,
    /// `shaders/limbwise.wgsl`: per-limb constants, ModDown's last step,
    /// rescale's broadcast, encoding's reduction.
    Limbwise,
}

impl KernelFile {
    /// All kernel files.
    pub const ALL: [KernelFile; 4] = [
        KernelFile::Ntt,
        KernelFile::Elementwise,
        KernelFile::Basis,
        KernelFile::Limbwise,
    ];

    /// File name under `shaders/`.
    pub fn name(self) -> &'static str {
        match self {
            KernelFile::Ntt => "ntt.wgsl",
            KernelFile::Elementwise => "elementwise.wgsl",
            KernelFile::Basis => "basis.wgsl",
            KernelFile::Limbwise => "limbwise.wgsl",
        }
    }

    fn body(self) -> &'static str {
        match self {
            KernelFile::Ntt => include_str!("../../../shaders/ntt.wgsl"),
            KernelFile::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
            KernelFile::Basis => include_str!("../../../shaders/basis.wgsl"),
            KernelFile::Limbwise => include_str!("../../../shaders/limbwise.wgsl"),
        }
    }

    /// The complete module source: the wide product, the shared arithmetic,
    /// the basis conversion and the inner product where the kernels use
    /// them, then the kernel file.
    pub fn source(self, wide: WideMul) -> String {
        let mul_wide = match wide {
            WideMul::Portable => MUL_WIDE_U32,
            WideMul::Int64 => MUL_WIDE_U64,
        };
        let (convert, keyswitch) = match self {
            KernelFile::Ntt => (CONVERT, KEYSWITCH),
            KernelFile::Basis => (CONVERT, ""),
            _ => ("", ""),
        };
        format!("{mul_wide}\n{MODARITH}\n{convert}\n{keyswitch}\n{}", self.body())
    }
}

/// The f32 tensor kernels (the VQGAN's, `crate::vqgan::gpu`); one `.wgsl`
/// file each, used as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TensorKernelFile {
    /// `shaders/vqgan_gemm.wgsl`: convolution as an implicit GEMM, and the
    /// strided GEMM (1x1 convolutions, attention's two products).
    Gemm,
    /// `shaders/vqgan_norm.wgsl`: GroupNorm with optional swish.
    GroupNorm,
    /// `shaders/vqgan_elementwise.wgsl`: add, nearest 2x upsampling, the
    /// column softmax of attention scores.
    Elementwise,
}

impl TensorKernelFile {
    /// All tensor kernel files.
    pub const ALL: [TensorKernelFile; 3] = [
        TensorKernelFile::Gemm,
        TensorKernelFile::GroupNorm,
        TensorKernelFile::Elementwise,
    ];

    /// File name under `shaders/`.
    pub fn name(self) -> &'static str {
        match self {
            TensorKernelFile::Gemm => "vqgan_gemm.wgsl",
            TensorKernelFile::GroupNorm => "vqgan_norm.wgsl",
            TensorKernelFile::Elementwise => "vqgan_elementwise.wgsl",
        }
    }

    /// The module source.
    pub fn source(self) -> &'static str {
        match self {
            TensorKernelFile::Gemm => include_str!("../../../shaders/vqgan_gemm.wgsl"),
            TensorKernelFile::GroupNorm => include_str!("../../../shaders/vqgan_norm.wgsl"),
            TensorKernelFile::Elementwise => include_str!("../../../shaders/vqgan_elementwise.wgsl"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shader_parses_and_validates_with_naga() {
        let cases = [
            (WideMul::Portable, naga::valid::Capabilities::empty()),
            (WideMul::Int64, naga::valid::Capabilities::SHADER_INT64),
        ];
        for (wide, capabilities) in cases {
            for file in KernelFile::ALL {
                let source = file.source(wide);
                let module = naga::front::wgsl::parse_str(&source)
                    .unwrap_or_else(|e| panic!("{} ({wide:?}): {}", file.name(), e.emit_to_string(&source)));
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{} ({wide:?}): {e:?}", file.name()));
            }
        }
        for file in TensorKernelFile::ALL {
            let source = file.source();
            let module = naga::front::wgsl::parse_str(source)
                .unwrap_or_else(|e| panic!("{}: {}", file.name(), e.emit_to_string(source)));
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{}: {e:?}", file.name()));
        }
    }

    #[test]
    fn the_int64_path_is_refused_without_the_capability() {
        let module = naga::front::wgsl::parse_str(&KernelFile::Elementwise.source(WideMul::Int64)).unwrap();
        let result =
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
                .validate(&module);
        assert!(result.is_err(), "u64 must need SHADER_INT64");
    }
}
