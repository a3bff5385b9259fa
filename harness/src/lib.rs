//! tower-drain's test harness: what the proofs in `docs/` run besides the examples.
//!
//! - `loadgen` ([`load`]): HTTP/1.1, HTTP/2 and gRPC load that records the outcome of every
//!   request, driven by `scripts/rolling-restart.sh` and `scripts/matrix.sh`;
//! - `naive` and `naive_tonic` ([`plain`]): the control, the examples' apps on the framework's
//!   own graceful shutdown alone, with no `tower-drain`;
//! - `bench_server`: the end-to-end benchmark's server (`scripts/bench-e2e.sh`).
//! - `certs`: the self-signed certificate for `localhost` of the TLS cells
//!   (`scripts/rolling-restart.sh --tls`).
//!
//! The controls must serve exactly what the examples serve, so the apps are compiled from the
//! examples' own files ([`routes`], [`echo`], [`env`]) rather than copied.
//!
//! Not published: the crate's package holds none of it.

#![forbid(unsafe_code)]
#![warn(rust_2018_idioms)]

#[path = "../../examples/support/echo.rs"]
pub mod echo;
#[path = "../../examples/support/env.rs"]
pub mod env;
pub mod load;
pub mod plain;
#[path = "../../examples/support/routes.rs"]
pub mod routes;
