//! The measurements, one module each.

pub mod capacity;
pub mod floors;
pub mod relay;
pub mod throughput;
