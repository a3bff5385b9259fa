//! Writes a self-signed certificate and its private key for `localhost` and `127.0.0.1`, for
//! the TLS cells of `scripts/rolling-restart.sh --tls`: the servers take them as `TLS_CERT`
//! and `TLS_KEY`, the load generator trusts the certificate with `--ca`.
//!
//! ```sh
//! cargo run -p tower-drain-harness --bin certs -- DIR   # DIR/cert.pem, DIR/key.pem
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: certs DIR (writes DIR/cert.pem and DIR/key.pem)");
        return ExitCode::from(2);
    };
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let certified = match rcgen::generate_simple_self_signed(names) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("certs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let files = [
        ("cert.pem", certified.cert.pem()),
        ("key.pem", certified.signing_key.serialize_pem()),
    ];
    for (name, pem) in files {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, pem) {
            eprintln!("certs: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("{}", dir.display());
    ExitCode::SUCCESS
}
