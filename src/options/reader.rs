//! The options reader: a JS value, checked key by key against an options struct.

use crate::error::{clipped, OrionError};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

type R<T> = std::result::Result<T, OrionError>;

/// Items of one array read from JS at most (options' string lists, a descriptor's
/// arrays, chat messages). An array's length is only a claim: `a.length = 2 ** 32 - 1`
/// makes an empty array that says it has four billion items, and sizing a vector by it
/// asked for 206 GB, an allocation failure that aborts the process. Far above any real
/// list; the embedding texts have their own cap (`MAX_TEXTS`).
pub(crate) const MAX_ARRAY_ITEMS: u32 = 100_000;

/// A JS value's type, as the reader tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Undefined,
    Null,
    Boolean,
    Number,
    String,
    Array,
    Object,
    Function,
    /// Symbols, bigints, externals.
    Other,
}

/// A JS value as the reader sees it: napi's values in the binding layer, plain data in
/// tests. Reading may run the caller's code (a getter, a Proxy trap): its exception is
/// an `INVALID_OPTION` error with the engine's reason.
pub(crate) trait JsValue: Sized + Clone {
    fn kind(&self) -> R<Kind>;
    /// The number, for a value of kind `Number`.
    fn number(&self) -> R<f64>;
    /// The boolean, for a value of kind `Boolean`.
    fn boolean(&self) -> R<bool>;
    /// The string, for a value of kind `String`.
    fn string(&self) -> R<String>;
    /// An object's own enumerable keys.
    fn keys(&self) -> R<Vec<String>>;
    /// An object's property `key`, `None` when absent.
    fn property(&self, key: &str) -> R<Option<Self>>;
    /// The length an array claims (not to be trusted for sizing anything).
    fn claimed_len(&self) -> R<u32>;
    /// An array's item `i`.
    fn item(&self, i: u32) -> R<Self>;
    /// A short description for messages ("the number 3", "an array").
    fn describe(&self) -> String;
}

/// An options object being read: its allowed keys' values.
pub(crate) struct Options<J> {
    obj: Option<J>,
    what: Cow<'static, str>,
    /// The allowed keys' values, once [`read`] has read them (each exactly once: a
    /// getter runs once).
    given: Option<Vec<(&'static str, J)>>,
}

impl<J: JsValue> Options<J> {
    /// `value` must be undefined, null, or a plain object with only `allowed` keys.
    pub(crate) fn parse(
        value: Option<J>,
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
        match v.kind()? {
            Kind::Undefined | Kind::Null => return none(what),
            Kind::Object => {}
            _ => {
                return Err(OrionError::InvalidOption(format!(
                    "{what} must be an object, got {}",
                    v.describe()
                )))
            }
        }
        for key in v.keys()? {
            if !allowed.contains(&key.as_str()) {
                return Err(OrionError::InvalidOption(format!(
                    "unknown option `{}` in {what}; expected one of: {}",
                    clipped(&key),
                    allowed.join(", ")
                )));
            }
        }
        Ok(Self {
            obj: Some(v),
            what,
            given: None,
        })
    }

    /// The value under `key`, `None` when absent or undefined.
    pub(crate) fn raw(&self, key: &str) -> R<Option<J>> {
        if let Some(given) = &self.given {
            return Ok(given
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone()));
        }
        let Some(obj) = &self.obj else {
            return Ok(None);
        };
        Ok(obj
            .property(key)?
            .filter(|v| !matches!(v.kind(), Ok(Kind::Undefined))))
    }

    fn bad(&self, key: &str, expected: &str, got: &J) -> OrionError {
        OrionError::InvalidOption(format!(
            "{}.{key} must be {expected}, got {}",
            self.what,
            got.describe()
        ))
    }

    /// `v`, the value under `key`, as a finite number.
    fn as_number(&self, key: &str, v: &J) -> R<f64> {
        if v.kind()? != Kind::Number {
            return Err(self.bad(key, "a number", v));
        }
        let n = v.number()?;
        if !n.is_finite() {
            return Err(self.bad(key, "a finite number", v));
        }
        Ok(n)
    }

    fn as_boolean(&self, key: &str, v: &J) -> R<bool> {
        if v.kind()? != Kind::Boolean {
            return Err(self.bad(key, "a boolean", v));
        }
        v.boolean()
    }

    fn as_string(&self, key: &str, v: &J) -> R<String> {
        if v.kind()? != Kind::String {
            return Err(self.bad(key, "a string", v));
        }
        v.string()
    }

    /// `v`, the value under `key`, as a string or an array of strings.
    fn as_strings(&self, key: &str, v: &J) -> R<Vec<String>> {
        match v.kind()? {
            Kind::String => return Ok(vec![v.string()?]),
            Kind::Array => {}
            _ => return Err(self.bad(key, "a string or an array of strings", v)),
        }
        let n = v.claimed_len()?;
        if n > MAX_ARRAY_ITEMS {
            return Err(OrionError::InvalidOption(format!(
                "{}.{key} has {n} items; at most {MAX_ARRAY_ITEMS} are accepted",
                self.what
            )));
        }
        (0..n)
            .map(|i| {
                let item = v.item(i)?;
                if item.kind()? != Kind::String {
                    return Err(self.bad(&format!("{key}[{i}]"), "a string", &item));
                }
                item.string()
            })
            .collect()
    }

    /// A function value.
    pub(crate) fn function(&self, key: &str) -> R<Option<J>> {
        let Some(v) = self.raw(key)? else {
            return Ok(None);
        };
        if v.kind()? != Kind::Function {
            return Err(self.bad(key, "a function", &v));
        }
        Ok(Some(v))
    }

    pub(crate) fn string(&self, key: &str) -> R<Option<String>> {
        self.raw(key)?.map(|v| self.as_string(key, &v)).transpose()
    }
}

/// Read the options object `value` (undefined and null are no options) into the
/// options struct `T`, whose fields are the allowed keys. The [`Options`] come back
/// too, for the fields of type [`Given`].
pub(crate) fn read<T: DeserializeOwned, J: JsValue>(
    value: Option<J>,
    what: &'static str,
) -> R<(T, Options<J>)> {
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
        struct J;
        impl Visitor<'_> for J {
            type Value = Given;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Given, E> {
                Ok(Given)
            }
        }
        d.deserialize_ignored_any(J)
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
struct ObjectDe<'a, J> {
    value: Option<J>,
    what: Cow<'static, str>,
    /// Where the object's [`Options`] go once read.
    out: &'a mut Option<Options<J>>,
}

impl<'de, J: JsValue> Deserializer<'de> for ObjectDe<'_, J> {
    type Error = DeError;

    fn deserialize_struct<Vi: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: Vi,
    ) -> std::result::Result<Vi::Value, DeError> {
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

    fn deserialize_any<Vi: Visitor<'de>>(self, _: Vi) -> std::result::Result<Vi::Value, DeError> {
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
struct Entries<'a, J> {
    o: &'a Options<J>,
    given: std::vec::IntoIter<(&'static str, J)>,
    next: Option<(&'static str, J)>,
}

impl<'de, J: JsValue> MapAccess<'de> for Entries<'_, J> {
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

    fn next_value_seed<S: de::DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> std::result::Result<S::Value, DeError> {
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
        .map_err(|e| match e.0 {
            // A typed value's own complaint ("must be an integer from 1 to 64, got 0"):
            // said of the option it is about.
            OrionError::InvalidOption(m)
                if m.starts_with("must be") || m.starts_with("unknown variant") =>
            {
                DeError(OrionError::InvalidOption(format!(
                    "{}.{key} {m}",
                    self.o.what
                )))
            }
            other => DeError(other),
        })
    }
}

/// One given option's value, checked as the type of its field asks.
struct ValueDe<'a, J> {
    o: &'a Options<J>,
    key: &'static str,
    value: J,
}

impl<'de, J: JsValue> Deserializer<'de> for ValueDe<'_, J> {
    type Error = DeError;

    fn deserialize_option<Vi: Visitor<'de>>(
        self,
        v: Vi,
    ) -> std::result::Result<Vi::Value, DeError> {
        // Absent and undefined keys are never visited: a value is there (null included,
        // which the field's type then refuses).
        v.visit_some(self)
    }

    fn deserialize_f64<Vi: Visitor<'de>>(self, v: Vi) -> std::result::Result<Vi::Value, DeError> {
        v.visit_f64(self.o.as_number(self.key, &self.value)?)
    }

    fn deserialize_bool<Vi: Visitor<'de>>(self, v: Vi) -> std::result::Result<Vi::Value, DeError> {
        v.visit_bool(self.o.as_boolean(self.key, &self.value)?)
    }

    fn deserialize_string<Vi: Visitor<'de>>(
        self,
        v: Vi,
    ) -> std::result::Result<Vi::Value, DeError> {
        v.visit_string(self.o.as_string(self.key, &self.value)?)
    }

    fn deserialize_str<Vi: Visitor<'de>>(self, v: Vi) -> std::result::Result<Vi::Value, DeError> {
        self.deserialize_string(v)
    }

    /// An enum of unit variants reads a string naming one.
    fn deserialize_enum<Vi: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: Vi,
    ) -> std::result::Result<Vi::Value, DeError> {
        let s = self.o.as_string(self.key, &self.value)?;
        v.visit_enum(s.into_deserializer())
    }

    fn deserialize_seq<Vi: Visitor<'de>>(self, v: Vi) -> std::result::Result<Vi::Value, DeError> {
        let strings = self.o.as_strings(self.key, &self.value)?;
        v.visit_seq(de::value::SeqDeserializer::new(strings.into_iter()))
    }

    /// A newtype field takes a string or an array of strings (`url: string | string[]`).
    fn deserialize_newtype_struct<Vi: Visitor<'de>>(
        self,
        _name: &'static str,
        v: Vi,
    ) -> std::result::Result<Vi::Value, DeError> {
        if self.value.kind()? == Kind::String {
            return self.deserialize_string(v);
        }
        self.deserialize_seq(v)
    }

    fn deserialize_struct<Vi: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: Vi,
    ) -> std::result::Result<Vi::Value, DeError> {
        ObjectDe {
            value: Some(self.value),
            what: format!("{}.{}", self.o.what, self.key).into(),
            out: &mut None,
        }
        .deserialize_struct(name, fields, v)
    }

    fn deserialize_ignored_any<Vi: Visitor<'de>>(
        self,
        v: Vi,
    ) -> std::result::Result<Vi::Value, DeError> {
        v.visit_unit()
    }

    /// A field whose type takes several kinds of value (`gpu: 'auto' | ... | false`)
    /// gets what was given, and its visitor decides; a value it refuses is worded as
    /// every other option's ("options.gpu must be <what it expects>, got ...").
    fn deserialize_any<Vi: Visitor<'de>>(self, v: Vi) -> std::result::Result<Vi::Value, DeError> {
        let r = match self.value.kind()? {
            Kind::Boolean => v.visit_bool(self.value.boolean()?),
            Kind::Number => v.visit_f64(self.value.number()?),
            Kind::String => v.visit_string(self.value.string()?),
            // Lets the visitor refuse it, saying what it expects.
            _ => v.visit_unit(),
        };
        r.map_err(|DeError(e)| match e {
            OrionError::InvalidOption(m) => match m.split_once(", expected ") {
                Some((_, expected)) => DeError(self.o.bad(self.key, expected, &self.value)),
                None => DeError(OrionError::InvalidOption(format!(
                    "{}.{}: {m}",
                    self.o.what, self.key
                ))),
            },
            other => DeError(other),
        })
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 char bytes byte_buf
        unit unit_struct tuple tuple_struct map identifier
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{Int, Real};
    use serde::Deserialize;

    /// Plain data standing in for JS values.
    #[derive(Clone, Debug)]
    enum Js {
        Undefined,
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        /// Items, and the length the array claims.
        Arr(Vec<Js>, u32),
        Obj(Vec<(String, Js)>),
        Func,
        /// A property whose getter throws.
        Throws,
    }

    impl JsValue for Js {
        fn kind(&self) -> R<Kind> {
            Ok(match self {
                Js::Undefined => Kind::Undefined,
                Js::Null => Kind::Null,
                Js::Bool(_) => Kind::Boolean,
                Js::Num(_) => Kind::Number,
                Js::Str(_) => Kind::String,
                Js::Arr(..) => Kind::Array,
                Js::Obj(_) => Kind::Object,
                Js::Func => Kind::Function,
                Js::Throws => return Err(OrionError::InvalidOption("the getter threw".into())),
            })
        }
        fn number(&self) -> R<f64> {
            match self {
                Js::Num(n) => Ok(*n),
                _ => Err(OrionError::Internal("not a number".into())),
            }
        }
        fn boolean(&self) -> R<bool> {
            match self {
                Js::Bool(b) => Ok(*b),
                _ => Err(OrionError::Internal("not a boolean".into())),
            }
        }
        fn string(&self) -> R<String> {
            match self {
                Js::Str(s) => Ok(s.clone()),
                _ => Err(OrionError::Internal("not a string".into())),
            }
        }
        fn keys(&self) -> R<Vec<String>> {
            match self {
                Js::Obj(kv) => Ok(kv.iter().map(|(k, _)| k.clone()).collect()),
                _ => Ok(Vec::new()),
            }
        }
        fn property(&self, key: &str) -> R<Option<Self>> {
            match self {
                Js::Obj(kv) => match kv.iter().find(|(k, _)| k == key) {
                    Some((_, Js::Throws)) => {
                        Err(OrionError::InvalidOption("the getter threw".into()))
                    }
                    found => Ok(found.map(|(_, v)| v.clone())),
                },
                _ => Ok(None),
            }
        }
        fn claimed_len(&self) -> R<u32> {
            match self {
                Js::Arr(_, n) => Ok(*n),
                _ => Ok(0),
            }
        }
        fn item(&self, i: u32) -> R<Self> {
            match self {
                Js::Arr(items, _) => Ok(items.get(i as usize).cloned().unwrap_or(Js::Undefined)),
                _ => Ok(Js::Undefined),
            }
        }
        fn describe(&self) -> String {
            match self {
                Js::Arr(..) => "an array".into(),
                Js::Num(n) => format!("the number {n}"),
                Js::Str(_) => "a value of type string".into(),
                Js::Bool(_) => "a value of type boolean".into(),
                other => format!("{other:?}"),
            }
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Exact,
        Int8,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Nested {
        url: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Opts {
        max_tokens: Option<Int<1, 1_048_576>>,
        temperature: Option<Real<0, 10_000>>,
        raw: Option<bool>,
        stop: Option<Vec<String>>,
        signal: Option<Given>,
        mode: Option<Mode>,
        nested: Option<Nested>,
    }

    fn obj(kv: &[(&str, Js)]) -> Js {
        Js::Obj(
            kv.iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect(),
        )
    }

    fn read_opts(v: Js) -> Result<Opts, String> {
        read::<Opts, Js>(Some(v), "options")
            .map(|(o, _)| o)
            .map_err(|e| {
                assert_eq!(e.code(), "INVALID_OPTION", "{e}");
                e.to_string()
            })
    }

    #[test]
    fn undefined_and_null_are_no_options() {
        for v in [Js::Undefined, Js::Null] {
            let o = read_opts(v).unwrap();
            assert!(o.max_tokens.is_none() && o.raw.is_none() && o.signal.is_none());
        }
        let (o, _) = read::<Opts, Js>(None, "options").unwrap();
        assert!(o.stop.is_none());
    }

    #[test]
    fn values_of_every_kind_are_read_typed() {
        let (o, given) = read::<Opts, Js>(
            Some(obj(&[
                ("maxTokens", Js::Num(64.0)),
                ("temperature", Js::Num(0.5)),
                ("raw", Js::Bool(true)),
                (
                    "stop",
                    Js::Arr(vec![Js::Str("a".into()), Js::Str("b".into())], 2),
                ),
                ("mode", Js::Str("int8".into())),
                ("nested", obj(&[("url", Js::Str("http://h".into()))])),
                ("signal", Js::Func),
            ])),
            "options",
        )
        .unwrap();
        assert_eq!(o.max_tokens.map(Int::u32), Some(64));
        assert_eq!(o.temperature.map(Real::f32), Some(0.5));
        assert_eq!(o.raw, Some(true));
        assert_eq!(o.stop, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(o.mode, Some(Mode::Int8));
        assert_eq!(o.nested.unwrap().url.as_deref(), Some("http://h"));
        assert_eq!(o.signal, Some(Given));
        assert!(matches!(given.raw("signal"), Ok(Some(Js::Func))));
        assert!(matches!(given.function("signal"), Ok(Some(Js::Func))));
        // A single string is a list of one; an undefined value is no value.
        let o = read_opts(obj(&[
            ("stop", Js::Str("x".into())),
            ("raw", Js::Undefined),
        ]))
        .unwrap();
        assert_eq!(o.stop, Some(vec!["x".to_string()]));
        assert_eq!(o.raw, None);
    }

    #[test]
    fn mistakes_are_invalid_option_saying_which_key_and_why() {
        let cases: &[(&[(&str, Js)], &str)] = &[
            (&[("maxToken", Js::Num(1.0))], "unknown option `maxToken` in options; expected one of: maxTokens, temperature, raw, stop, signal, mode, nested"),
            (&[("maxTokens", Js::Str("3".into()))], "options.maxTokens must be a number, got a value of type string"),
            (&[("maxTokens", Js::Num(f64::NAN))], "options.maxTokens must be a finite number, got the number NaN"),
            (&[("maxTokens", Js::Num(0.0))], "options.maxTokens must be an integer from 1 to 1048576, got 0"),
            (&[("maxTokens", Js::Num(1.5))], "options.maxTokens must be an integer from 1 to 1048576, got 1.5"),
            (&[("temperature", Js::Num(101.0))], "options.temperature must be from 0 to 100, got 101"),
            (&[("raw", Js::Num(1.0))], "options.raw must be a boolean, got the number 1"),
            (&[("stop", Js::Arr(vec![Js::Num(1.0)], 1))], "options.stop[0] must be a string, got the number 1"),
            (&[("stop", Js::Arr(Vec::new(), u32::MAX))], "options.stop has 4294967295 items; at most 100000 are accepted"),
            (&[("stop", Js::Num(2.0))], "options.stop must be a string or an array of strings, got the number 2"),
            (&[("mode", Js::Str("fp16".into()))], "options.mode unknown variant `fp16`, expected `exact` or `int8`"),
            (&[("nested", obj(&[("url", Js::Num(3.0))]))], "options.nested.url must be a string, got the number 3"),
            (&[("nested", obj(&[("uri", Js::Null)]))], "unknown option `uri` in options.nested; expected one of: url"),
            (&[("nested", Js::Num(3.0))], "options.nested must be an object, got the number 3"),
            (&[("raw", Js::Throws)], "the getter threw"),
        ];
        for (kv, want) in cases {
            let got = read_opts(obj(kv)).unwrap_err();
            assert_eq!(&got, want);
        }
        assert_eq!(
            read_opts(Js::Num(3.0)).unwrap_err(),
            "options must be an object, got the number 3"
        );
        assert_eq!(
            read_opts(Js::Arr(Vec::new(), 0)).unwrap_err(),
            "options must be an object, got an array"
        );
    }

    #[test]
    fn a_field_of_several_kinds_gets_what_was_given() {
        use crate::settings::Gpu;
        #[derive(Debug, Deserialize)]
        struct G {
            gpu: Option<Gpu>,
        }
        let read_gpu =
            |v: Js| read::<G, Js>(Some(obj(&[("gpu", v)])), "options").map(|(o, _)| o.gpu);
        assert_eq!(read_gpu(Js::Bool(false)).unwrap(), Some(Gpu::Off));
        assert_eq!(read_gpu(Js::Bool(true)).unwrap(), Some(Gpu::Auto));
        assert_eq!(
            read_gpu(Js::Str("vulkan".into())).unwrap(),
            Some(Gpu::Vulkan)
        );
        assert_eq!(read_gpu(Js::Str("auto".into())).unwrap(), Some(Gpu::Auto));
        for (v, got) in [
            (Js::Str("vulkn".into()), "a value of type string"),
            (Js::Num(1.0), "the number 1"),
            (Js::Arr(Vec::new(), 0), "an array"),
        ] {
            let e = read_gpu(v).unwrap_err();
            assert_eq!(e.code(), "INVALID_OPTION");
            assert_eq!(
                e.to_string(),
                format!(
                    "options.gpu must be 'auto', 'vulkan', 'cuda', 'metal' or false, got {got}"
                )
            );
        }
    }
}
