//! Build script (Cargo.toml `build = …`), not part of the library: decides whether the dense
//! layers run on the system OpenBLAS (`cfg(pelt_blas)`) or on candle's built-in matmul.
//!
//! - feature `openblas`: OpenBLAS is required (linking fails without it);
//! - `PELT_BLAS=off`: never;
//! - otherwise: used when `libopenblas` is found in `OPENBLAS_LIB_DIR`, `LIBRARY_PATH` or the
//!   usual system library folders (Debian/Ubuntu: `apt install libopenblas-dev`).

use std::path::PathBuf;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(pelt_blas)");
    println!("cargo:rerun-if-changed=src/build_probe.rs");
    for v in ["PELT_BLAS", "OPENBLAS_LIB_DIR", "LIBRARY_PATH"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    let required = std::env::var_os("CARGO_FEATURE_OPENBLAS").is_some();
    let off = matches!(
        std::env::var("PELT_BLAS").as_deref(),
        Ok("off" | "0" | "no" | "false")
    );
    if off && !required {
        return;
    }
    let cross = std::env::var("HOST").ok() != std::env::var("TARGET").ok();
    let found = if cross { None } else { find_openblas() };
    match found {
        Some(dir) => {
            println!("cargo:rustc-link-search=native={}", dir.display());
        }
        None if required => {}
        None => return,
    }
    println!("cargo:rustc-link-lib=dylib=openblas");
    println!("cargo:rustc-cfg=pelt_blas");
}

/// A folder holding a linkable OpenBLAS (`libopenblas.so`/`.dylib`, not just the runtime
/// `.so.0`, which has no link-time name).
fn find_openblas() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("OPENBLAS_LIB_DIR") {
        dirs.push(d.into());
    }
    if let Some(p) = std::env::var_os("LIBRARY_PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    for d in [
        format!("/usr/lib/{arch}-linux-gnu"),
        "/usr/lib64".into(),
        "/usr/lib".into(),
        "/usr/local/lib".into(),
        "/opt/homebrew/opt/openblas/lib".into(),
        "/usr/local/opt/openblas/lib".into(),
    ] {
        dirs.push(d.into());
    }
    let name = if os == "macos" {
        "libopenblas.dylib"
    } else {
        "libopenblas.so"
    };
    dirs.into_iter().find(|d| d.join(name).exists())
}
