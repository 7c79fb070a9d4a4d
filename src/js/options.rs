//! The binding layer's side of reading options (the reader itself, its typed values
//! and its tests are in `crate::options`): napi's values as [`JsValue`]s, JSON data
//! read from JS with caps.

use crate::error::{clipped, OrionError};
pub(crate) use crate::options::{Given, Int, Real, MAX_ARRAY_ITEMS};
use crate::options::{JsValue as OptionValue, Kind};
use napi::bindgen_prelude::*;
use napi::{JsValue, ValueType};

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

/// Nesting of JSON data read from JS at most (napi's own conversion allows 1024).
const MAX_JSON_DEPTH: u32 = 64;
/// Values in one piece of JSON data read from JS at most: an array of the same object
/// 100,000 times, each holding the array again, is small in JS and endless to copy.
const MAX_JSON_VALUES: usize = 1_000_000;

/// `v` as JSON data, whatever its JS type, checked as it is read: no array longer than
/// [`MAX_ARRAY_ITEMS`], nothing deeper than 64 levels or bigger than a million values
/// (napi's own conversion sizes a vector by an array's claimed length first). Keys
/// whose value is `undefined` are left out, as `JSON.stringify` does.
pub(crate) fn to_json(v: &Unknown) -> std::result::Result<serde_json::Value, String> {
    let mut budget = MAX_JSON_VALUES;
    json_of(v, MAX_JSON_DEPTH, &mut budget, &mut String::new())
}

fn json_of(
    v: &Unknown,
    depth: u32,
    budget: &mut usize,
    at: &mut String,
) -> std::result::Result<serde_json::Value, String> {
    use serde_json::Value;
    use std::fmt::Write;
    let e = |e: napi::Error| e.reason.clone();
    let place = |at: &str| {
        if at.is_empty() {
            "the value".to_string()
        } else {
            at.to_string()
        }
    };
    *budget = budget
        .checked_sub(1)
        .ok_or_else(|| format!("more than {MAX_JSON_VALUES} values"))?;
    Ok(match v.get_type().map_err(e)? {
        ValueType::Null => Value::Null,
        ValueType::Boolean => Value::Bool(cast_checked(v).map_err(e)?),
        ValueType::Number => {
            let n: f64 = cast_checked(v).map_err(e)?;
            // Whole numbers as integers, so that integer fields read them.
            let int = n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_991.0;
            let number = match (int, n >= 0.0) {
                (true, true) => Some(serde_json::Number::from(n as u64)),
                (true, false) => Some(serde_json::Number::from(n as i64)),
                (false, _) => serde_json::Number::from_f64(n),
            };
            Value::Number(
                number.ok_or_else(|| format!("{} is {n}, not a finite number", place(at)))?,
            )
        }
        ValueType::String => Value::String(cast_checked(v).map_err(e)?),
        ValueType::Object => {
            if depth == 0 {
                return Err(format!(
                    "{} is nested more than {MAX_JSON_DEPTH} levels deep",
                    place(at)
                ));
            }
            let obj: Object = cast_checked(v).map_err(e)?;
            let mark = at.len();
            if v.is_array().map_err(e)? {
                let n = obj.get_array_length().map_err(e)?;
                if n > MAX_ARRAY_ITEMS {
                    return Err(format!(
                        "{} is an array of {n} items, more than {MAX_ARRAY_ITEMS}",
                        place(at)
                    ));
                }
                let mut items = Vec::new();
                for i in 0..n {
                    let item: Unknown = obj.get_element(i).map_err(e)?;
                    let _ = write!(at, "[{i}]");
                    items.push(json_of(&item, depth - 1, budget, at)?);
                    at.truncate(mark);
                }
                Value::Array(items)
            } else {
                let mut map = serde_json::Map::new();
                for key in Object::keys(&obj).map_err(e)? {
                    let item: Option<Unknown> = obj.get(&key).map_err(e)?;
                    let Some(item) =
                        item.filter(|i| !matches!(i.get_type(), Ok(ValueType::Undefined)))
                    else {
                        continue;
                    };
                    if !at.is_empty() {
                        at.push('.');
                    }
                    at.push_str(&clipped(&key));
                    let value = json_of(&item, depth - 1, budget, at)?;
                    at.truncate(mark);
                    map.insert(key, value);
                }
                Value::Object(map)
            }
        }
        t => {
            return Err(format!(
                "{} is a value of type {}, not JSON data",
                place(at),
                format!("{t:?}").to_lowercase()
            ))
        }
    })
}

/// The length of the JS array `arr` (`what` in messages), refused as `err` when it
/// claims more than `max` items, before anything is sized by it.
pub(crate) fn array_length(
    arr: &Object,
    what: &str,
    max: u32,
    err: fn(String) -> OrionError,
) -> R<u32> {
    let n = arr
        .get_array_length()
        .map_err(|e| err(format!("{what}: {}", e.reason)))?;
    if n > max {
        return Err(err(format!(
            "{what} has {n} items; at most {max} are accepted"
        )));
    }
    Ok(n)
}

fn napi_err(e: napi::Error) -> OrionError {
    OrionError::InvalidOption(e.reason)
}

/// The reader of option objects, over napi's values.
pub(crate) type Options<'e> = crate::options::Options<Unknown<'e>>;

/// Read the options object `value` into the options struct `T` (see
/// [`crate::options::read`]).
pub(crate) fn read<'e, T: serde::de::DeserializeOwned>(
    value: Option<Unknown<'e>>,
    what: &'static str,
) -> R<(T, Options<'e>)> {
    crate::options::read(value, what)
}

impl OptionValue for Unknown<'_> {
    fn kind(&self) -> R<Kind> {
        Ok(match self.get_type().map_err(napi_err)? {
            ValueType::Undefined => Kind::Undefined,
            ValueType::Null => Kind::Null,
            ValueType::Boolean => Kind::Boolean,
            ValueType::Number => Kind::Number,
            ValueType::String => Kind::String,
            ValueType::Object if self.is_array().map_err(napi_err)? => Kind::Array,
            ValueType::Object => Kind::Object,
            ValueType::Function => Kind::Function,
            _ => Kind::Other,
        })
    }

    fn number(&self) -> R<f64> {
        cast_checked(self).map_err(napi_err)
    }

    fn boolean(&self) -> R<bool> {
        cast_checked(self).map_err(napi_err)
    }

    fn string(&self) -> R<String> {
        cast_checked(self).map_err(napi_err)
    }

    fn keys(&self) -> R<Vec<String>> {
        let obj: Object = cast_checked(self).map_err(napi_err)?;
        Object::keys(&obj).map_err(napi_err)
    }

    fn property(&self, key: &str) -> R<Option<Self>> {
        let obj: Object = cast_checked(self).map_err(napi_err)?;
        obj.get(key).map_err(napi_err)
    }

    fn claimed_len(&self) -> R<u32> {
        let obj: Object = cast_checked(self).map_err(napi_err)?;
        obj.get_array_length().map_err(napi_err)
    }

    fn item(&self, i: u32) -> R<Self> {
        let obj: Object = cast_checked(self).map_err(napi_err)?;
        obj.get_element(i).map_err(napi_err)
    }

    fn describe(&self) -> String {
        describe(self)
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
