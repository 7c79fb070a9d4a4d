//! Quantization levels: the app's names (`q4`, `q8`, ...), the MLC-style model ids it
//! builds from them, and the GGUF file types they select.

use crate::error::{echo, OrionError, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct QuantLevel {
    /// The app's name for the level.
    pub(crate) name: &'static str,
    /// The suffix the app's `applyQuantization` appends (MLC naming).
    pub(crate) mlc: &'static str,
    /// GGUF file types that implement this level, preferred first.
    pub(crate) gguf: &'static [&'static str],
    /// Average bits per weight, for memory estimates.
    pub(crate) bits: f32,
}

/// Ordered from smallest to largest.
pub(crate) const LEVELS: &[QuantLevel] = &[
    QuantLevel {
        name: "q3",
        mlc: "q3f16_1",
        gguf: &["Q3_K_M", "Q3_K_S", "Q3_K_L"],
        bits: 3.9,
    },
    QuantLevel {
        name: "q4",
        mlc: "q4f16_1",
        gguf: &["Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1"],
        bits: 4.8,
    },
    QuantLevel {
        name: "q4f32",
        mlc: "q4f32_1",
        gguf: &["Q4_K_M", "Q4_0", "Q4_1"],
        bits: 4.8,
    },
    QuantLevel {
        name: "q5",
        mlc: "q5f16_1",
        gguf: &["Q5_K_M", "Q5_K_S", "Q5_0", "Q5_1"],
        bits: 5.7,
    },
    QuantLevel {
        name: "q6",
        mlc: "q6f16_1",
        gguf: &["Q6_K"],
        bits: 6.6,
    },
    QuantLevel {
        name: "q8",
        mlc: "q8f16_1",
        gguf: &["Q8_0"],
        bits: 8.5,
    },
    QuantLevel {
        name: "f16",
        mlc: "q0f16",
        gguf: &["F16", "BF16"],
        bits: 16.0,
    },
    QuantLevel {
        name: "f32",
        mlc: "q0f32",
        gguf: &["F32"],
        bits: 32.0,
    },
];

pub(crate) fn level(name: &str) -> Result<&'static QuantLevel> {
    LEVELS
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            OrionError::InvalidOption(format!(
                "unknown quantization level {}; expected one of: {}",
                echo(name),
                LEVELS.iter().map(|l| l.name).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// The app's naming, kept exactly: `applyQuantization('Mistral-7B-Instruct-v0.2', 'q4')`
/// is `'Mistral-7B-Instruct-v0.2-q4f16_1-MLC'`. An id that already carries a level is
/// re-quantized rather than suffixed twice.
pub(crate) fn apply_quantization(model_id: &str, level_name: &str) -> Result<String> {
    let l = level(level_name)?;
    let base = split_quantized_id(model_id).map_or(model_id, |(base, _)| base);
    if base.trim().is_empty() {
        return Err(OrionError::InvalidInput(
            "model id must not be empty".into(),
        ));
    }
    Ok(format!("{base}-{}-MLC", l.mlc))
}

/// `Mistral-7B-Instruct-v0.2-q4f16_1-MLC` → (`Mistral-7B-Instruct-v0.2`, q4).
pub(crate) fn split_quantized_id(id: &str) -> Option<(&str, &'static QuantLevel)> {
    let rest = id.strip_suffix("-MLC")?;
    let (base, suffix) = rest.rsplit_once('-')?;
    let l = LEVELS.iter().find(|l| l.mlc == suffix)?;
    Some((base, l))
}

/// The level a GGUF file type (as in file names: `Q4_K_M`, `Q8_0`, ...) belongs to.
#[cfg(test)]
pub(crate) fn level_of_gguf_type(file_type: &str) -> Option<&'static QuantLevel> {
    let t = file_type.to_ascii_uppercase();
    LEVELS.iter().find(|l| l.gguf.iter().any(|g| *g == t))
}

/// The GGUF file type named in a file name such as `SmolLM2-135M-Instruct.Q4_1.gguf`.
pub(crate) fn gguf_type_in_file_name(name: &str) -> Option<String> {
    let stem = name
        .strip_suffix(".gguf")
        .unwrap_or(name)
        .to_ascii_uppercase();
    LEVELS
        .iter()
        .flat_map(|l| l.gguf.iter())
        .filter(|g| {
            stem.ends_with(&format!(".{g}"))
                || stem.ends_with(&format!("-{g}"))
                || stem.ends_with(&format!("_{g}"))
        })
        .max_by_key(|g| g.len())
        .map(ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apps_naming_is_kept_exactly() {
        assert_eq!(
            apply_quantization("Mistral-7B-Instruct-v0.2", "q4").unwrap(),
            "Mistral-7B-Instruct-v0.2-q4f16_1-MLC"
        );
        assert_eq!(apply_quantization("demo", "f16").unwrap(), "demo-q0f16-MLC");
    }

    #[test]
    fn requantizing_replaces_the_level() {
        let q4 = apply_quantization("Mistral-7B-Instruct-v0.2", "q4").unwrap();
        assert_eq!(
            apply_quantization(&q4, "q8").unwrap(),
            "Mistral-7B-Instruct-v0.2-q8f16_1-MLC"
        );
        let (base, l) = split_quantized_id(&q4).unwrap();
        assert_eq!((base, l.name), ("Mistral-7B-Instruct-v0.2", "q4"));
        assert!(split_quantized_id("plain-name").is_none());
    }

    #[test]
    fn unknown_levels_and_empty_ids_are_errors() {
        assert_eq!(
            apply_quantization("m", "q9").unwrap_err().code(),
            "INVALID_OPTION"
        );
        assert_eq!(
            apply_quantization("", "q4").unwrap_err().code(),
            "INVALID_INPUT"
        );
    }

    #[test]
    fn levels_map_to_gguf_types() {
        assert_eq!(level("q4").unwrap().gguf[0], "Q4_K_M");
        assert_eq!(level("q8").unwrap().gguf[0], "Q8_0");
        assert_eq!(level("F16").unwrap().gguf[0], "F16");
        assert_eq!(level_of_gguf_type("q4_1").unwrap().name, "q4");
        assert_eq!(
            gguf_type_in_file_name("SmolLM2-135M-Instruct.Q4_1.gguf").as_deref(),
            Some("Q4_1")
        );
        assert_eq!(
            gguf_type_in_file_name("mistral-7b-instruct-v0.2.Q4_K_M.gguf").as_deref(),
            Some("Q4_K_M")
        );
        assert_eq!(gguf_type_in_file_name("model.gguf"), None);
    }
}
