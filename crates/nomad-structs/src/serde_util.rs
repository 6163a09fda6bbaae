//! Serde helpers for Nomad's wire conventions: Go's nil slices and maps arrive as `null`.

use serde::{Deserialize, Deserializer};

/// Deserializes `null` (Go's nil) as the type's default value.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Accepts a JSON number or a numeric string; Nomad's Go client sends numbers, but HCL-derived
/// JSON from other tools sometimes quotes them.
pub fn lenient_u64<'de, D>(d: D) -> Result<u64, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        U(u64),
        I(i64),
        F(f64),
        S(String),
        Null(()),
    }
    match N::deserialize(d)? {
        N::U(v) => Ok(v),
        N::I(v) => u64::try_from(v).map_err(serde::de::Error::custom),
        N::F(v) if v >= 0.0 && v.fract() == 0.0 => Ok(v as u64),
        N::F(v) => Err(serde::de::Error::custom(format!(
            "expected an unsigned integer, got {v}"
        ))),
        N::S(s) => s.parse().map_err(serde::de::Error::custom),
        N::Null(()) => Ok(0),
    }
}
