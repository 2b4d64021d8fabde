//! The simulator: a fake Zoom (OAuth endpoint and QSS WebSocket) and a fake LogScale (HEC
//! endpoint), on loopback. `relay demo`, the integration tests and the benchmarks all use
//! this one implementation.

pub mod events;
pub mod logscale;
pub mod zoom;
