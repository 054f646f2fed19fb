//! The WGSL sources: one file per kernel family in `shaders/`, each with the
//! shared modular arithmetic of `shaders/modarith.wgsl` prepended.

/// Shared modular arithmetic, prepended to every kernel file.
const MODARITH: &str = include_str!("../../../shaders/modarith.wgsl");

/// Every kernel family; one `.wgsl` file each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelFile {
    /// `shaders/ntt.wgsl`: forward and inverse NTT passes.
    Ntt,
    /// `shaders/elementwise.wgsl`: add, sub, mul over limbs.
    Elementwise,
    /// `shaders/basis.wgsl`: fast basis extension, plain and centred.
    Basis,
    /// `shaders/keyswitch.wgsl`: the key-switching inner product.
    KeySwitch,
    /// `shaders/limbwise.wgsl`: permutation, per-limb constants, broadcast.
    Limbwise,
}

impl KernelFile {
    /// All kernel files.
    pub const ALL: [KernelFile; 4] = [
        KernelFile::Ntt,
        KernelFile::Elementwise,
        KernelFile::Basis,
        KernelFile::KeySwitch,
    ];

    /// File name under `shaders/`.
    pub fn name(self) -> &'static str {
        match self {
            KernelFile::Ntt => "ntt.wgsl",
            KernelFile::Elementwise => "elementwise.wgsl",
            KernelFile::Basis => "basis.wgsl",
            KernelFile::KeySwitch => "keyswitch.wgsl",
            KernelFile::Limbwise => "limbwise.wgsl",
        }
    }

    fn body(self) -> &'static str {
        match self {
            KernelFile::Ntt => include_str!("../../../shaders/ntt.wgsl"),
            KernelFile::Elementwise => include_str!("../../../shaders/elementwise.wgsl"),
            KernelFile::Basis => include_str!("../../../shaders/basis.wgsl"),
            KernelFile::KeySwitch => include_str!("../../../shaders/keyswitch.wgsl"),
            KernelFile::Limbwise => include_str!("../../../shaders/limbwise.wgsl"),
        }
    }

    /// The complete module source: shared arithmetic, then the kernel file.
    pub fn source(self) -> String {
        format!("{MODARITH}\n{}", self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shader_parses_and_validates_with_naga() {
        for file in KernelFile::ALL {
            let module = naga::front::wgsl::parse_str(&file.source())
                .unwrap_or_else(|e| panic!("{}: {}", file.name(), e.emit_to_string(&file.source())));
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{}: {e:?}", file.name()));
        }
    }
}
