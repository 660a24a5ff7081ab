//! The Airlock bridge as a library: everything the `airlock-bridge` binary runs, so tests build
//! exactly the app the binary serves.

pub mod app;
pub mod backup;
pub mod cli;
pub mod client_ip;
pub mod clock;
pub mod compat;
pub mod config;
pub mod export;
pub mod http;
pub mod identity;
pub mod import_php;
pub mod limits;
pub mod manage;
pub mod memory;
pub mod preview;
pub mod relay;
pub mod render;
pub mod serve;
pub mod store;
pub mod testing;
pub mod tokens;
pub mod validate;
pub mod wakeups;

pub use app::Bridge;
pub use config::Config;
