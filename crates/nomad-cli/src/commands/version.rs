//! `nomad version`.

/// The version line (`Nomad v2.0.6`).
pub fn version_line() -> String {
    format!("Nomad v{}", nomad_structs::NOMAD_VERSION)
}

/// Runs `nomad version`.
pub fn run(_args: &[String]) -> i32 {
    outln!("{}", version_line());
    0
}
