//! Writes `js/types.generated.d.ts`: the TypeScript declarations of the hub `zap serve`
//! runs (its chat and helpers), from their Rust types.
//!
//! ```sh
//! cargo run -p zapsocket-realtime --example gen-ts           # write the file
//! cargo run -p zapsocket-realtime --example gen-ts -- --check # fail if it differs
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../js/types.generated.d.ts");
    let generated = zapsocket_realtime::demo::hub(zapsocket_realtime::Hub::new()).typescript();
    if std::env::args().any(|a| a == "--check") {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            eprintln!(
                "{} is out of date: run `cargo run -p zapsocket-realtime --example gen-ts`",
                path.display()
            );
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    match std::fs::write(&path, generated) {
        Ok(()) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
