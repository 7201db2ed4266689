//! Build script (Cargo.toml `build = …`), not part of the library: decides whether the dense
//! layers run on the system OpenBLAS (`cfg(pelt_blas)`) or on candle's built-in matmul.
//!
//! - feature `openblas`: OpenBLAS is required (linking fails without it);
//! - `PELT_BLAS=off`: never;
//! - otherwise: used when `libopenblas` is found in `OPENBLAS_LIB_DIR`, `LIBRARY_PATH` or the
//!   usual system library folders (Debian/Ubuntu: `apt install libopenblas-dev`).
//!
//! It also tells the tests which vector instruction sets the building CPU has
//! (`cfg(pelt_cpu_avx2)`: AVX2 and FMA; `cfg(pelt_cpu_avx512)`: AVX-512F too), so that a test
//! of a kernel this CPU cannot run is reported as ignored, with the reason, instead of passing.

use std::path::PathBuf;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(pelt_blas)");
    println!("cargo:rerun-if-changed=src/build_probe.rs");
    cpu_features();
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

/// `cfg(pelt_cpu_avx2)` and `cfg(pelt_cpu_avx512)` when the CPU running this build has them
/// (native builds only: a cross build tests nothing here).
fn cpu_features() {
    println!("cargo:rustc-check-cfg=cfg(pelt_cpu_avx2)");
    println!("cargo:rustc-check-cfg=cfg(pelt_cpu_avx512)");
    if std::env::var("HOST").ok() != std::env::var("TARGET").ok() {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2 {
            println!("cargo:rustc-cfg=pelt_cpu_avx2");
        }
        if avx2 && is_x86_feature_detected!("avx512f") {
            println!("cargo:rustc-cfg=pelt_cpu_avx512");
        }
    }
}
