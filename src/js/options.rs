//! Reading option objects from JS with a clear INVALID_OPTION for every kind of
//! mistake: not an object, an unknown key (usually a typo), a wrong type, an
//! out-of-range number.

use crate::error::OrionError;
use napi::bindgen_prelude::*;
use napi::{JsValue, ValueType};

type R<T> = std::result::Result<T, OrionError>;

fn napi_err(e: napi::Error) -> OrionError {
    OrionError::InvalidOption(e.reason.clone())
}

pub struct Options<'e> {
    obj: Option<Object<'e>>,
    what: &'static str,
}

impl<'e> Options<'e> {
    /// `value` must be undefined, null, or a plain object with only `allowed` keys.
    pub fn parse(value: Option<Unknown<'e>>, what: &'static str, allowed: &[&str]) -> R<Self> {
        let Some(v) = value else {
            return Ok(Self { obj: None, what });
        };
        match v.get_type().map_err(napi_err)? {
            ValueType::Undefined | ValueType::Null => return Ok(Self { obj: None, what }),
            ValueType::Object if !v.is_array().map_err(napi_err)? => {}
            _ => {
                return Err(OrionError::InvalidOption(format!(
                    "{what} must be an object, got {}",
                    describe(&v)
                )))
            }
        }
        let obj: Object<'e> = unsafe { v.cast() }.map_err(napi_err)?;
        for key in Object::keys(&obj).map_err(napi_err)? {
            if !allowed.contains(&key.as_str()) {
                return Err(OrionError::InvalidOption(format!(
                    "unknown option `{key}` in {what}; expected one of: {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(Self {
            obj: Some(obj),
            what,
        })
    }

    /// The value under `key`, `None` when absent or undefined.
    pub fn raw(&self, key: &str) -> R<Option<Unknown<'e>>> {
        let Some(obj) = &self.obj else {
            return Ok(None);
        };
        let v: Option<Unknown<'e>> = obj.get(key).map_err(napi_err)?;
        Ok(v.filter(|v| !matches!(v.get_type(), Ok(ValueType::Undefined))))
    }

    fn bad(&self, key: &str, expected: &str, got: &Unknown) -> OrionError {
        OrionError::InvalidOption(format!(
            "{}.{key} must be {expected}, got {}",
            self.what,
            describe(got)
        ))
    }

    pub fn number(&self, key: &str) -> R<Option<f64>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.get_type().map_err(napi_err)? != ValueType::Number {
            return Err(self.bad(key, "a number", &v));
        }
        let n: f64 = unsafe { v.cast() }.map_err(napi_err)?;
        if !n.is_finite() {
            return Err(self.bad(key, "a finite number", &v));
        }
        Ok(Some(n))
    }

    /// An integer in `min..=max`.
    pub fn integer(&self, key: &str, min: u64, max: u64) -> R<Option<u64>> {
        let Some(n) = self.number(key)? else {
            return Ok(None);
        };
        if n.fract() != 0.0 || n < min as f64 || n > max as f64 {
            return Err(OrionError::InvalidOption(format!(
                "{}.{key} must be an integer from {min} to {max}, got {n}",
                self.what
            )));
        }
        Ok(Some(n as u64))
    }

    pub fn string(&self, key: &str) -> R<Option<String>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.get_type().map_err(napi_err)? != ValueType::String {
            return Err(self.bad(key, "a string", &v));
        }
        Ok(Some(unsafe { v.cast::<String>() }.map_err(napi_err)?))
    }
}

/// A short description of a JS value for error messages.
pub fn describe(v: &Unknown) -> String {
    match v.get_type() {
        Ok(ValueType::Object) if v.is_array().unwrap_or(false) => "an array".into(),
        Ok(ValueType::Number) => match unsafe { v.cast::<f64>() } {
            Ok(n) => format!("the number {n}"),
            Err(_) => "a number".into(),
        },
        Ok(t) => format!("a value of type {}", format!("{t:?}").to_lowercase()),
        Err(_) => "an unreadable value".into(),
    }
}
