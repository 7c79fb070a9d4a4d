//! Reading the API's option objects, with a clear `INVALID_OPTION` for every kind of
//! mistake: not an object, an unknown key (usually a typo), a wrong type, an
//! out-of-range number.
//!
//! Each options object of the API is declared once, as an options struct (in `js/`:
//! its fields' doc comments, with their ranges and defaults, become index.d.ts) that
//! derives serde's `Deserialize` (`rename_all = "camelCase"`). [`read`] fills it from a
//! JS value through the [`Options`] reader: the struct's fields are the allowed keys and
//! their types the checks, each written once:
//!
//! - [`Int`]`<MIN, MAX>`: an integer in a range, [`Real`]`<MIN, MAX>` (hundredths): a
//!   number in a range, `bool`, `String`, `Vec<String>` (a string or an array of
//!   strings), an enum that reads a string (`Precision`), a nested struct: a nested
//!   object; [`Given`]: any value, read afterwards from the returned [`Options`].
//!
//! The reader is generic over [`JsValue`], which the binding layer implements for
//! napi's values and the tests below for plain data, so that what it accepts and the
//! messages it gives are tested without a JS engine.

mod reader;
mod values;

// Used by the binding layer, which tests do not build.
#[cfg_attr(test, allow(unused_imports))]
pub(crate) use reader::{read, Given, JsValue, Kind, Options, MAX_ARRAY_ITEMS};
#[cfg_attr(test, allow(unused_imports))]
pub(crate) use values::{Int, Real};
