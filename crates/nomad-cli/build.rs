//! Links the `nomad` binary as a position-dependent executable on Linux, as Go links Nomad.
//!
//! Why: every task's exit recorder is an exec of this binary (`nomad exit-recorder`). A PIE
//! image has its pointer tables relocated at load time, which dirties (and so copies) some
//! hundreds of KiB per process; a position-dependent image keeps them as clean file pages
//! shared by the agent and every recorder.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bin=nomad=-no-pie");
    }
}
