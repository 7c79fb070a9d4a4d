//! Settings read from environment variables. A malformed value is an error naming the
//! variable, not something silently ignored.

use crate::error::{OrionError, Result};

/// Parse `name` as a non-negative integer, `None` when unset or empty.
pub(crate) fn env_u64(name: &str) -> Result<Option<u64>> {
    parse_u64(name, std::env::var(name).ok().as_deref())
}

fn parse_u64(name: &str, raw: Option<&str>) -> Result<Option<u64>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            OrionError::InvalidOption(format!(
                "environment variable {name}={v:?} is not a non-negative integer; fix or unset it"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_integers_and_rejects_garbage() {
        assert_eq!(parse_u64("X", None).unwrap(), None);
        assert_eq!(parse_u64("X", Some(" ")).unwrap(), None);
        assert_eq!(parse_u64("X", Some("42")).unwrap(), Some(42));
        let e = parse_u64("ORION_X", Some("-1")).unwrap_err();
        assert_eq!(e.code(), "INVALID_OPTION");
        assert!(e.to_string().contains("ORION_X"));
        assert!(parse_u64("X", Some("1.5")).is_err());
    }
}
