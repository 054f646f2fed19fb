pub mod math;
pub mod ring;
pub mod ckks;
