//! Link options for the binaries.
//!
//! The executable is position-independent, so the loader relocates its tables of pointers at
//! start. Written as plain relocation records they take 14 MB of the file, every page of
//! which the loader reads and keeps resident; packed (`DT_RELR`, GNU ld 2.38 and glibc 2.36
//! onwards) they take a few hundred kilobytes.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
