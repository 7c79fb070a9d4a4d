//! Reading option objects from JS with a clear `INVALID_OPTION` for every kind of
//! mistake: not an object, an unknown key (usually a typo), a wrong type, an
//! out-of-range number.
//!
//! Each options object of the API is declared once, as an options struct: a
//! `#[napi(object, object_from_js = false, object_to_js = false)]` struct (its fields'
//! doc comments, with their ranges and defaults, become index.d.ts) that also derives
//! serde's `Deserialize` (`rename_all = "camelCase"`, napi's own renaming). [`read`]
//! fills it from the JS object through the [`Options`] reader: the struct's fields are
//! the allowed keys and their types the checks (`f64`: a finite number, `bool`, `String`,
//! `Vec<String>`: a string or an array of strings, a nested struct: a nested object,
//! [`Given`]: any value, read afterwards from the returned [`Options`]). Numbers are
//! `f64`, as JS has them: each struct's `validate` checks integer-ness and ranges with
//! [`integer`] and [`ranged`], worded as they always were.

use crate::error::{clipped, OrionError};
use napi::bindgen_prelude::*;
use napi::{Env, JsValue, ValueType};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

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

/// Items of one array read from JS at most (options' string lists, a descriptor's
/// arrays, chat messages). An array's length is only a claim: `a.length = 2 ** 32 - 1`
/// makes an empty array that says it has four billion items, and sizing a vector by it
/// asked for 206 GB, an allocation failure that aborts the process. Far above any real
/// list; the embedding texts have their own cap (`MAX_TEXTS`).
pub(crate) const MAX_ARRAY_ITEMS: u32 = 100_000;
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

/// `what.key`, a number given for it, as an integer in `min..=max`.
pub(crate) fn integer(what: &str, key: &str, n: Option<f64>, min: u64, max: u64) -> R<Option<u64>> {
    let Some(n) = n else {
        return Ok(None);
    };
    if n.fract() != 0.0 || n < min as f64 || n > max as f64 {
        return Err(OrionError::InvalidOption(format!(
            "{what}.{key} must be an integer from {min} to {max}, got {n}"
        )));
    }
    Ok(Some(n as u64))
}

/// `what.key`, a number given for it, checked to be in `min..=max` (not necessarily an
/// integer).
pub(crate) fn ranged(what: &str, key: &str, n: Option<f64>, min: f64, max: f64) -> R<Option<f64>> {
    let Some(n) = n else {
        return Ok(None);
    };
    if n < min || n > max {
        return Err(OrionError::InvalidOption(format!(
            "{what}.{key} must be from {min} to {max}, got {n}"
        )));
    }
    Ok(Some(n))
}

pub(crate) struct Options<'e> {
    obj: Option<Object<'e>>,
    what: Cow<'static, str>,
    /// The allowed keys' values, once [`read`] has read them (each exactly once: a
    /// getter runs once).
    given: Option<Vec<(&'static str, Unknown<'e>)>>,
}

impl<'e> Options<'e> {
    /// `value` must be undefined, null, or a plain object with only `allowed` keys.
    pub(crate) fn parse(
        value: Option<Unknown<'e>>,
        what: impl Into<Cow<'static, str>>,
        allowed: &[&str],
    ) -> R<Self> {
        let what = what.into();
        let none = |what| {
            Ok(Self {
                obj: None,
                what,
                given: None,
            })
        };
        let Some(v) = value else {
            return none(what);
        };
        match v.get_type().map_err(napi_err)? {
            ValueType::Undefined | ValueType::Null => return none(what),
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
                    "unknown option `{}` in {what}; expected one of: {}",
                    clipped(&key),
                    allowed.join(", ")
                )));
            }
        }
        Ok(Self {
            obj: Some(obj),
            what,
            given: None,
        })
    }

    /// The value under `key`, `None` when absent or undefined.
    pub(crate) fn raw(&self, key: &str) -> R<Option<Unknown<'e>>> {
        if let Some(given) = &self.given {
            return Ok(given.iter().find(|(k, _)| *k == key).map(|(_, v)| *v));
        }
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

    /// `v`, the value under `key`, as a finite number.
    fn as_number(&self, key: &str, v: &Unknown) -> R<f64> {
        if v.get_type().map_err(napi_err)? != ValueType::Number {
            return Err(self.bad(key, "a number", v));
        }
        let n: f64 = cast_checked(v).map_err(napi_err)?;
        if !n.is_finite() {
            return Err(self.bad(key, "a finite number", v));
        }
        Ok(n)
    }

    /// `v`, the value under `key`, as a boolean.
    fn as_boolean(&self, key: &str, v: &Unknown) -> R<bool> {
        if v.get_type().map_err(napi_err)? != ValueType::Boolean {
            return Err(self.bad(key, "a boolean", v));
        }
        cast_checked::<bool>(v).map_err(napi_err)
    }

    /// `v`, the value under `key`, as a string.
    fn as_string(&self, key: &str, v: &Unknown) -> R<String> {
        if v.get_type().map_err(napi_err)? != ValueType::String {
            return Err(self.bad(key, "a string", v));
        }
        cast_checked::<String>(v).map_err(napi_err)
    }

    /// `v`, the value under `key`, as a string or an array of strings.
    fn as_strings(&self, key: &str, v: &Unknown) -> R<Vec<String>> {
        if v.get_type().map_err(napi_err)? == ValueType::String {
            return Ok(vec![cast_checked::<String>(v).map_err(napi_err)?]);
        }
        if !v.is_array().map_err(napi_err)? {
            return Err(self.bad(key, "a string or an array of strings", v));
        }
        let arr: Object = cast_checked(v).map_err(napi_err)?;
        let n = array_length(
            &arr,
            &format!("{}.{key}", self.what),
            MAX_ARRAY_ITEMS,
            OrionError::InvalidOption,
        )?;
        (0..n)
            .map(|i| {
                let item: Unknown = arr.get_element(i).map_err(napi_err)?;
                if item.get_type().map_err(napi_err)? != ValueType::String {
                    return Err(self.bad(&format!("{key}[{i}]"), "a string", &item));
                }
                cast_checked::<String>(&item).map_err(napi_err)
            })
            .collect()
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

    pub(crate) fn string(&self, key: &str) -> R<Option<String>> {
        self.raw(key)?.map(|v| self.as_string(key, &v)).transpose()
    }

    pub(crate) fn boolean(&self, key: &str) -> R<Option<bool>> {
        self.raw(key)?.map(|v| self.as_boolean(key, &v)).transpose()
    }

    /// A string or an array of strings.
    pub(crate) fn strings(&self, key: &str) -> R<Option<Vec<String>>> {
        self.raw(key)?.map(|v| self.as_strings(key, &v)).transpose()
    }
}

/// Read the options object `value` (undefined and null are no options) into the
/// options struct `T`, whose fields are the allowed keys. The [`Options`] come back
/// too, for the fields of type [`Given`].
pub(crate) fn read<'e, T: DeserializeOwned>(
    value: Option<Unknown<'e>>,
    what: &'static str,
) -> R<(T, Options<'e>)> {
    let mut out = None;
    let t = T::deserialize(ObjectDe {
        value,
        what: what.into(),
        out: &mut out,
    })
    .map_err(|e| e.0)?;
    let o = out.ok_or_else(|| OrionError::Internal(format!("{what}: not an options struct")))?;
    Ok((t, o))
}

/// A field holding a JS value that is not plain data (an `AbortSignal`, a callback):
/// the struct records that it was given; the code reads it from the [`Options`] that
/// [`read`] returns, with its own checks. Its TypeScript type is the field's `ts_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Given;

impl<'de> serde::Deserialize<'de> for Given {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Given;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Given, E> {
                Ok(Given)
            }
        }
        d.deserialize_ignored_any(V)
    }
}

/// An [`OrionError`] on its way through serde.
#[derive(Debug)]
struct DeError(OrionError);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(OrionError::InvalidOption(msg.to_string()))
    }
}

impl From<OrionError> for DeError {
    fn from(e: OrionError) -> Self {
        Self(e)
    }
}

/// An options object, to be read into a struct.
struct ObjectDe<'a, 'e> {
    value: Option<Unknown<'e>>,
    what: Cow<'static, str>,
    /// Where the object's [`Options`] go once read.
    out: &'a mut Option<Options<'e>>,
}

impl<'de> Deserializer<'de> for ObjectDe<'_, '_> {
    type Error = DeError;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> std::result::Result<V::Value, DeError> {
        let mut o = Options::parse(self.value, self.what, fields)?;
        let mut given = Vec::new();
        for key in fields {
            if let Some(v) = o.raw(key)? {
                given.push((*key, v));
            }
        }
        o.given = Some(given.clone());
        let value = visitor.visit_map(Entries {
            o: &o,
            given: given.into_iter(),
            next: None,
        })?;
        *self.out = Some(o);
        Ok(value)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, DeError> {
        Err(DeError(OrionError::Internal(format!(
            "{} is read into a struct only",
            self.what
        ))))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The given keys of an options object and their values, in the struct's field order.
struct Entries<'a, 'e> {
    o: &'a Options<'e>,
    given: std::vec::IntoIter<(&'static str, Unknown<'e>)>,
    next: Option<(&'static str, Unknown<'e>)>,
}

impl<'de> MapAccess<'de> for Entries<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> std::result::Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.given.next() else {
            return Ok(None);
        };
        self.next = Some((key, value));
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> std::result::Result<V::Value, DeError> {
        let (key, value) = self.next.take().ok_or_else(|| {
            DeError(OrionError::Internal(
                "an option's value before its key".into(),
            ))
        })?;
        seed.deserialize(ValueDe {
            o: self.o,
            key,
            value,
        })
    }
}

/// One given option's value, checked as the type of its field asks.
struct ValueDe<'a, 'e> {
    o: &'a Options<'e>,
    key: &'static str,
    value: Unknown<'e>,
}

impl<'de> Deserializer<'de> for ValueDe<'_, '_> {
    type Error = DeError;

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, DeError> {
        // Absent and undefined keys are never visited: a value is there (null included,
        // which the field's type then refuses).
        v.visit_some(self)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, DeError> {
        v.visit_f64(self.o.as_number(self.key, &self.value)?)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, DeError> {
        v.visit_bool(self.o.as_boolean(self.key, &self.value)?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, DeError> {
        v.visit_string(self.o.as_string(self.key, &self.value)?)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, DeError> {
        self.deserialize_string(v)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> std::result::Result<V::Value, DeError> {
        let strings = self.o.as_strings(self.key, &self.value)?;
        v.visit_seq(de::value::SeqDeserializer::new(strings.into_iter()))
    }

    /// A newtype field takes a string or an array of strings (`url: string | string[]`).
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> std::result::Result<V::Value, DeError> {
        if self.value.get_type().ok() == Some(ValueType::String) {
            return self.deserialize_string(v);
        }
        self.deserialize_seq(v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> std::result::Result<V::Value, DeError> {
        ObjectDe {
            value: Some(self.value),
            what: format!("{}.{}", self.o.what, self.key).into(),
            out: &mut None,
        }
        .deserialize_struct(name, fields, v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(
        self,
        v: V,
    ) -> std::result::Result<V::Value, DeError> {
        v.visit_unit()
    }

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, DeError> {
        Err(DeError(OrionError::Internal(format!(
            "{}.{}: an options struct's field of a type options are not read into",
            self.o.what, self.key
        ))))
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 char bytes byte_buf
        unit unit_struct tuple tuple_struct map enum identifier
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
