pub mod math;
pub mod ring;
