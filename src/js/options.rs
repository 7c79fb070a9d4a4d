//! Reading option objects from JS with a clear `INVALID_OPTION` for every kind of
//! mistake: not an object, an unknown key (usually a typo), a wrong type, an
//! out-of-range number.

use crate::error::OrionError;
use napi::bindgen_prelude::*;
use napi::{Env, JsValue, ValueType};

type R<T> = std::result::Result<T, OrionError>;

/// `v` as a `T`, once its JS type is checked to be the one `T` converts from; an
/// `InvalidArg` error otherwise. Every conversion of a JS value by type goes through
/// here (callers check the type first anyway, to word their own error).
pub(crate) fn cast_checked<T>(v: &Unknown) -> napi::Result<T>
where
    T: FromNapiValue + TypeName,
{
    let actual = v.get_type()?;
    if actual != T::value_type() {
        return Err(napi::Error::new(
            Status::InvalidArg,
            format!("expected a {}, got a {actual:?}", T::type_name()),
        ));
    }
    // SAFETY: `Unknown::cast` requires that the value can be converted into `T`. Its JS
    // type was just read from the engine and is the type `T`'s conversion expects
    // (`TypeName::value_type`: number for the numeric types, string, boolean, object
    // (arrays included), function); `v` is a live handle of the environment on whose
    // thread this runs, as napi hands it to the call.
    unsafe { v.cast() }
}

/// `v` as JSON data, whatever its JS type.
pub(crate) fn to_json(v: &Unknown) -> napi::Result<serde_json::Value> {
    // SAFETY: `Unknown::cast` requires that the value can be converted into the target.
    // `serde_json::Value`'s conversion accepts every JS type: it reads the value's type
    // itself and converts (or reports an error) accordingly. `v` is a live handle of the
    // environment on whose thread this runs.
    unsafe { v.cast() }
}

fn napi_err(e: napi::Error) -> OrionError {
    OrionError::InvalidOption(e.reason)
}

pub(crate) struct Options<'e> {
    obj: Option<Object<'e>>,
    what: &'static str,
}

impl<'e> Options<'e> {
    /// `value` must be undefined, null, or a plain object with only `allowed` keys.
    pub(crate) fn parse(
        value: Option<Unknown<'e>>,
        what: &'static str,
        allowed: &[&str],
    ) -> R<Self> {
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
        let obj: Object<'e> = cast_checked(&v).map_err(napi_err)?;
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
    pub(crate) fn raw(&self, key: &str) -> R<Option<Unknown<'e>>> {
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

    pub(crate) fn number(&self, key: &str) -> R<Option<f64>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.get_type().map_err(napi_err)? != ValueType::Number {
            return Err(self.bad(key, "a number", &v));
        }
        let n: f64 = cast_checked(&v).map_err(napi_err)?;
        if !n.is_finite() {
            return Err(self.bad(key, "a finite number", &v));
        }
        Ok(Some(n))
    }

    /// An integer in `min..=max`.
    pub(crate) fn integer(&self, key: &str, min: u64, max: u64) -> R<Option<u64>> {
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

    pub(crate) fn boolean(&self, key: &str) -> R<Option<bool>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.get_type().map_err(napi_err)? != ValueType::Boolean {
            return Err(self.bad(key, "a boolean", &v));
        }
        Ok(Some(cast_checked::<bool>(&v).map_err(napi_err)?))
    }

    /// A number in `min..=max` (not necessarily an integer).
    pub(crate) fn ranged(&self, key: &str, min: f64, max: f64) -> R<Option<f64>> {
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
    pub(crate) fn function(&self, key: &str) -> R<Option<Unknown<'e>>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.get_type().map_err(napi_err)? != ValueType::Function {
            return Err(self.bad(key, "a function", &v));
        }
        Ok(Some(v))
    }

    /// A string or an array of strings.
    pub(crate) fn strings(&self, key: &str) -> R<Option<Vec<String>>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.get_type().map_err(napi_err)? == ValueType::String {
            return Ok(Some(vec![cast_checked::<String>(&v).map_err(napi_err)?]));
        }
        if !v.is_array().map_err(napi_err)? {
            return Err(self.bad(key, "a string or an array of strings", &v));
        }
        let arr: Object = cast_checked(&v).map_err(napi_err)?;
        let n = arr.get_array_length().map_err(napi_err)?;
        (0..n)
            .map(|i| {
                let item: Unknown = arr.get_element(i).map_err(napi_err)?;
                if item.get_type().map_err(napi_err)? != ValueType::String {
                    return Err(self.bad(&format!("{key}[{i}]"), "a string", &item));
                }
                cast_checked::<String>(&item).map_err(napi_err)
            })
            .collect::<R<Vec<_>>>()
            .map(Some)
    }

    pub(crate) fn string(&self, key: &str) -> R<Option<String>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.get_type().map_err(napi_err)? != ValueType::String {
            return Err(self.bad(key, "a string", &v));
        }
        Ok(Some(cast_checked::<String>(&v).map_err(napi_err)?))
    }
}

/// A short description of a JS value for error messages.
pub(crate) fn describe(v: &Unknown) -> String {
    match v.get_type() {
        Ok(ValueType::Object) if v.is_array().unwrap_or(false) => "an array".into(),
        Ok(ValueType::Number) => match cast_checked::<f64>(v) {
            Ok(n) => format!("the number {n}"),
            Err(_) => "a number".into(),
        },
        Ok(t) => format!("a value of type {}", format!("{t:?}").to_lowercase()),
        Err(_) => "an unreadable value".into(),
    }
}

type AddEventListener<'a> = Function<'a, FnArgs<(&'a str, Function<'a, (), ()>)>, Unknown<'a>>;

/// Run `fire` (on this JS thread) when the `AbortSignal` `signal` fires. An already
/// aborted signal is an ABORTED error right away.
pub(crate) fn on_abort(env: &Env, signal: Unknown, fire: impl Fn() + 'static) -> R<()> {
    let not_signal = || OrionError::InvalidOption("options.signal must be an AbortSignal".into());
    if signal.get_type().ok() != Some(ValueType::Object) {
        return Err(not_signal());
    }
    let obj: Object = cast_checked(&signal).map_err(|_| not_signal())?;
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
