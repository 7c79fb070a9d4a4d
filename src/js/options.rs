//! Reading option objects from JS with a clear INVALID_OPTION for every kind of
//! mistake: not an object, an unknown key (usually a typo), a wrong type, an
//! out-of-range number.

use crate::error::OrionError;
use napi::bindgen_prelude::*;
use napi::{Env, JsValue, ValueType};

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

    pub fn boolean(&self, key: &str) -> R<Option<bool>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.get_type().map_err(napi_err)? != ValueType::Boolean {
            return Err(self.bad(key, "a boolean", &v));
        }
        Ok(Some(unsafe { v.cast::<bool>() }.map_err(napi_err)?))
    }

    /// A number in `min..=max` (not necessarily an integer).
    pub fn ranged(&self, key: &str, min: f64, max: f64) -> R<Option<f64>> {
        let Some(n) = self.number(key)? else {
            return Ok(None);
        };
        if n < min || n > max {
            return Err(OrionError::InvalidOption(format!(
                "{}.{key} must be from {min} to {max}, got {n}",
                self.what
            )));
        }
        Ok(Some(n))
    }

    /// A function value.
    pub fn function(&self, key: &str) -> R<Option<Unknown<'e>>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.get_type().map_err(napi_err)? != ValueType::Function {
            return Err(self.bad(key, "a function", &v));
        }
        Ok(Some(v))
    }

    /// A string or an array of strings.
    pub fn strings(&self, key: &str) -> R<Option<Vec<String>>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.get_type().map_err(napi_err)? == ValueType::String {
            return Ok(Some(vec![unsafe { v.cast::<String>() }.map_err(napi_err)?]));
        }
        if !v.is_array().map_err(napi_err)? {
            return Err(self.bad(key, "a string or an array of strings", &v));
        }
        let arr: Object = unsafe { v.cast() }.map_err(napi_err)?;
        let n = arr.get_array_length().map_err(napi_err)?;
        (0..n)
            .map(|i| {
                let item: Unknown = arr.get_element(i).map_err(napi_err)?;
                if item.get_type().map_err(napi_err)? != ValueType::String {
                    return Err(self.bad(&format!("{key}[{i}]"), "a string", &item));
                }
                unsafe { item.cast::<String>() }.map_err(napi_err)
            })
            .collect::<R<Vec<_>>>()
            .map(Some)
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

type AddEventListener<'a> = Function<'a, FnArgs<(&'a str, Function<'a, (), ()>)>, Unknown<'a>>;

/// Run `fire` (on this JS thread) when the AbortSignal `signal` fires. An already
/// aborted signal is an ABORTED error right away.
pub fn on_abort(env: &Env, signal: Unknown, fire: impl Fn() + 'static) -> R<()> {
    let not_signal = || OrionError::InvalidOption("options.signal must be an AbortSignal".into());
    if signal.get_type().ok() != Some(ValueType::Object) {
        return Err(not_signal());
    }
    let obj: Object = unsafe { signal.cast() }.map_err(|_| not_signal())?;
    let aborted: Option<bool> = obj.get("aborted").ok().flatten();
    let add: Option<AddEventListener> = obj.get("addEventListener").ok().flatten();
    let (Some(aborted), Some(add)) = (aborted, add) else {
        return Err(not_signal());
    };
    if aborted {
        return Err(OrionError::Aborted);
    }
    let listener = env
        .create_function_from_closure("orionAbort", move |_| {
            fire();
            Ok(())
        })
        .map_err(|e| OrionError::Internal(e.reason.clone()))?;
    add.apply(obj, ("abort", listener).into())
        .map_err(|e| OrionError::InvalidOption(format!("options.signal: {}", e.reason)))?;
    Ok(())
}
