//! The examples' binaries, for the tests that start them as child processes
//! (`shutdown_process.rs`, `examples_tls.rs`): built once per test binary.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Every example these tests start, built together.
pub const EXAMPLES: [&str; 4] = ["axum", "hyper", "sse", "tonic"];

/// The path of example `name`'s binary, built first (once per test binary, every one of
/// [`EXAMPLES`]). `cargo test --all-features` has just built them, so the build here is a no-op
/// then; it keeps `cargo test --test <name>` (which builds no example) from running stale
/// binaries. Cargo does not hold its build lock while tests run, so calling it from a test is
/// safe.
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // target/<profile>/deps/<test>-HASH -> target/<profile>/examples/
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("test binary lives in target/<profile>/deps");
        if let Ok(cargo) = std::env::var("CARGO") {
            let mut build = Command::new(cargo);
            build.args(["build", "--quiet", "--all-features"]);
            for example in EXAMPLES {
                build.args(["--example", example]);
            }
            if profile_dir.ends_with("release") {
                build.arg("--release");
            }
            cargo_configuration_only(&mut build);
            let status = build.status().expect("run cargo build --example ..");
            assert!(status.success(), "cargo build of the examples failed");
        }
        profile_dir.join("examples")
    });
    assert!(EXAMPLES.contains(&name), "add {name} to EXAMPLES");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "example binary not found at {}",
        path.display()
    );
    path
}

/// Removes from `cargo`'s environment the `CARGO_*` variables that cargo set for this test
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...), keeping those that configure cargo. Build
/// scripts that read a variable ask to be rerun when it changes (ring's reads
/// `CARGO_PKG_NAME`): inherited, these made every run rebuild ring, and the next `cargo test`
/// rebuild it again.
fn cargo_configuration_only(cargo: &mut Command) {
    const CONFIGURATION: [&str; 9] = [
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_",
        "CARGO_PROFILE_",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTR",
        "CARGO_TERM_",
        "CARGO_INCREMENTAL",
    ];
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_") && !CONFIGURATION.iter().any(|kept| name.starts_with(kept)) {
            cargo.env_remove(name);
        }
    }
}
