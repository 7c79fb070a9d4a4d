//! Typed option values: integers and numbers with their ranges in their types, so that
//! a range is checked once, as the value is read, and the value has its Rust type from
//! then on (no check-then-cast).

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// An integer from `MIN` to `MAX`, given as a JS number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Int<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Int<MIN, MAX> {
    /// `n` when it is in range.
    #[cfg(test)]
    pub(crate) fn new(n: u64) -> Option<Self> {
        (MIN..=MAX).contains(&n).then_some(Self(n))
    }

    pub(crate) fn get(self) -> u64 {
        self.0
    }

    pub(crate) fn usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// The value as a `u32`; only for ranges that fit (checked when compiled).
    pub(crate) fn u32(self) -> u32 {
        const { assert!(MAX <= u32::MAX as u64, "the range does not fit a u32") };
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }

    /// The value as an `i32`; only for ranges that fit (checked when compiled).
    pub(crate) fn i32(self) -> i32 {
        const { assert!(MAX <= i32::MAX as u64, "the range does not fit an i32") };
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }

    /// The value as milliseconds.
    pub(crate) fn millis(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl<'de, const MIN: u64, const MAX: u64> serde::Deserialize<'de> for Int<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MIN: u64, const MAX: u64>;
        impl<const MIN: u64, const MAX: u64> Visitor<'_> for V<MIN, MAX> {
            type Value = Int<MIN, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an integer from {MIN} to {MAX}")
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                // The one conversion of an option's number to an integer: exact, since
                // it is whole and within 0..=2^53 - 1, where every integer is a double.
                let whole = n.fract() == 0.0 && (0.0..=9_007_199_254_740_991.0).contains(&n);
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let v = n as u64;
                if whole && (MIN..=MAX).contains(&v) {
                    Ok(Int(v))
                } else {
                    Err(E::custom(format!(
                        "must be an integer from {MIN} to {MAX}, got {n}"
                    )))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if (MIN..=MAX).contains(&v) {
                    Ok(Int(v))
                } else {
                    Err(E::custom(format!(
                        "must be an integer from {MIN} to {MAX}, got {v}"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!(
                        "must be an integer from {MIN} to {MAX}, got {v}"
                    ))),
                }
            }
        }
        d.deserialize_f64(V::<MIN, MAX>)
    }
}

/// A number from `MIN / 100` to `MAX / 100` (hundredths: const generics are integers),
/// given as a JS number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Real<const MIN: u32, const MAX: u32>(f64);

impl<const MIN: u32, const MAX: u32> Real<MIN, MAX> {
    fn bounds() -> (f64, f64) {
        (f64::from(MIN) / 100.0, f64::from(MAX) / 100.0)
    }

    #[cfg(test)]
    pub(crate) fn get(self) -> f64 {
        self.0
    }

    /// The value as the `f32` the samplers take.
    #[allow(clippy::cast_possible_truncation)]
    pub(crate) fn f32(self) -> f32 {
        // In range (at most 100 here): nothing is lost but precision, as intended.
        self.0 as f32
    }
}

impl<'de, const MIN: u32, const MAX: u32> serde::Deserialize<'de> for Real<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const MIN: u32, const MAX: u32>;
        impl<const MIN: u32, const MAX: u32> Visitor<'_> for V<MIN, MAX> {
            type Value = Real<MIN, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                let (lo, hi) = Real::<MIN, MAX>::bounds();
                write!(f, "a number from {lo} to {hi}")
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                let (lo, hi) = Real::<MIN, MAX>::bounds();
                if n >= lo && n <= hi {
                    Ok(Real(n))
                } else {
                    Err(E::custom(format!("must be from {lo} to {hi}, got {n}")))
                }
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                // Only from JSON in tests: JS numbers arrive as f64.
                self.visit_f64(v as f64)
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_f64(V::<MIN, MAX>)
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    fn int<const A: u64, const B: u64>(v: serde_json::Value) -> Result<u64, String> {
        serde_json::from_value::<Int<A, B>>(v)
            .map(Int::get)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn integers_are_whole_and_in_range() {
        assert_eq!(int::<1, 64>(serde_json::json!(64.0)), Ok(64));
        assert_eq!(int::<1, 64>(serde_json::json!(1)), Ok(1));
        assert_eq!(
            int::<1, 64>(serde_json::json!(65)).unwrap_err(),
            "must be an integer from 1 to 64, got 65"
        );
        assert_eq!(
            int::<1, 64>(serde_json::json!(1.5)).unwrap_err(),
            "must be an integer from 1 to 64, got 1.5"
        );
        assert!(int::<0, 9>(serde_json::json!(-1)).is_err());
        assert!(int::<0, 9>(serde_json::json!(-0.0)).is_ok());
        assert!(int::<0, 9>(serde_json::json!("3")).is_err());
        let big = 9_007_199_254_740_991_u64;
        assert_eq!(
            int::<0, 9_007_199_254_740_991>(serde_json::json!(big as f64)),
            Ok(big)
        );
        assert_eq!(Int::<1, 64>::new(65), None);
        assert_eq!(Int::<1, 64>::new(3).map(Int::u32), Some(3));
    }

    #[test]
    fn reals_are_in_their_range_in_hundredths() {
        let r = |v| serde_json::from_value::<Real<1, 1000>>(v).map_err(|e| e.to_string());
        assert_eq!(r(serde_json::json!(0.01)).unwrap().get(), 0.01);
        assert_eq!(r(serde_json::json!(10)).unwrap().f32(), 10.0);
        assert_eq!(
            r(serde_json::json!(0.001)).unwrap_err(),
            "must be from 0.01 to 10, got 0.001"
        );
        assert_eq!(
            r(serde_json::json!(11)).unwrap_err(),
            "must be from 0.01 to 10, got 11"
        );
    }
}
