//! Which JSON schemas constrained generation follows exactly: every keyword of a schema
//! is one llama.cpp's schema-to-grammar conversion enforces (or an annotation), else the
//! schema is refused with `SCHEMA_UNSUPPORTED` naming the keyword and where it is. The
//! conversion itself ignores what it does not know (a `format: "email"`, a `minimum` on a
//! number, a `pattern` it cannot translate accepts any string), which would loosen the
//! schema without a word; this check is what stops that.

use crate::error::{OrionError, Result};
use serde_json::Value;

/// Keywords that constrain, and are enforced by the grammar.
const ENFORCED: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "$defs",
    "definitions",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
];

/// Keywords that describe without constraining: allowed, and without effect.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// The string formats the grammar enforces.
const FORMATS: &[&str] = &[
    "date",
    "time",
    "date-time",
    "uuid",
    "uuid1",
    "uuid2",
    "uuid3",
    "uuid4",
    "uuid5",
];

/// Deepest nesting of schemas accepted: the conversion recurses through them.
const MAX_DEPTH: usize = 64;

/// Check `schema` before it is converted; `Ok` when every keyword is enforced.
pub(crate) fn check(schema: &Value) -> Result<()> {
    walk(schema, "#", 0)
}

fn unsupported(at: &str, what: impl std::fmt::Display) -> OrionError {
    OrionError::SchemaUnsupported(format!("{at}: {what}"))
}

fn walk(s: &Value, at: &str, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(unsupported(
            at,
            format!("schemas nested more than {MAX_DEPTH} deep"),
        ));
    }
    let o = match s {
        Value::Object(o) => o,
        // `true` (anything) is what an absent schema means; `false` allows nothing.
        Value::Bool(true) => return Ok(()),
        _ => {
            return Err(OrionError::InvalidOption(format!(
                "jsonSchema at {at} must be an object, got {}",
                kind(s)
            )))
        }
    };
    for (k, v) in o {
        if ANNOTATIONS.contains(&k.as_str()) {
            continue;
        }
        if !ENFORCED.contains(&k.as_str()) {
            return Err(unsupported(
                at,
                format!(
                    "`{k}` is not enforced by constrained generation (the keywords that are: \
                     {}), so the output could break it: remove it and check it yourself",
                    ENFORCED.join(", ")
                ),
            ));
        }
        let here = format!("{at}/{k}");
        match k.as_str() {
            "properties" | "$defs" | "definitions" => {
                for (name, sub) in object(v, &here)? {
                    walk(sub, &format!("{here}/{name}"), depth + 1)?;
                }
            }
            "additionalProperties" | "items" => match v {
                Value::Bool(_) => {}
                _ => walk(v, &here, depth + 1)?,
            },
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                let Value::Array(list) = v else {
                    return Err(OrionError::InvalidOption(format!(
                        "jsonSchema at {here} must be an array of schemas, got {}",
                        kind(v)
                    )));
                };
                for (i, sub) in list.iter().enumerate() {
                    walk(sub, &format!("{here}/{i}"), depth + 1)?;
                }
            }
            "format" => {
                let f = v.as_str().unwrap_or_default();
                if !FORMATS.contains(&f) {
                    return Err(unsupported(
                        &here,
                        format!(
                            "format {v} is not enforced (those that are: {}); use a pattern",
                            FORMATS.join(", ")
                        ),
                    ));
                }
            }
            "pattern" => check_pattern(v, &here)?,
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum"
                if o.get("type").and_then(Value::as_str) != Some("integer") =>
            {
                return Err(unsupported(
                    &here,
                    format!("`{k}` is enforced on integers only (\"type\": \"integer\")"),
                ));
            }
            "$ref" => {
                let r = v.as_str().unwrap_or_default();
                if !r.starts_with("#/") {
                    return Err(unsupported(
                        &here,
                        format!(
                            "$ref {v}: only references into the schema itself (#/...) are followed"
                        ),
                    ));
                }
                // The conversion follows the reference and ignores what is beside it.
                if let Some(other) = o
                    .keys()
                    .find(|x| *x != "$ref" && !ANNOTATIONS.contains(&x.as_str()))
                {
                    return Err(unsupported(
                        at,
                        format!("`{other}` beside a $ref is not enforced: move it into the schema referred to"),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn object<'v>(v: &'v Value, at: &str) -> Result<&'v serde_json::Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        OrionError::InvalidOption(format!(
            "jsonSchema at {at} must be an object, got {}",
            kind(v)
        ))
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A `pattern` the conversion translates into grammar: anchored with `^` and `$`, with
/// groups, classes, repetitions and the escapes llama.cpp's grammars know. Others (an
/// unanchored pattern, `\d`, a lookahead, a backreference) it would replace with "any
/// string".
fn check_pattern(value: &Value, at: &str) -> Result<()> {
    let Some(pattern) = value.as_str() else {
        return Err(OrionError::InvalidOption(format!(
            "jsonSchema at {at} must be a string, got {}",
            kind(value)
        )));
    };
    let refuse = |why: &str| unsupported(at, format!("pattern {value} cannot be enforced: {why}"));
    if pattern.len() < 2 || !pattern.starts_with('^') || !pattern.ends_with('$') {
        return Err(refuse(
            "it must be anchored with ^ at the start and $ at the end",
        ));
    }
    let bytes = pattern.as_bytes();
    let mut at_byte = 1;
    // Inside a character class `^` and `$` are characters.
    let mut in_class = false;
    while at_byte < bytes.len() - 1 {
        match bytes[at_byte] {
            b'[' if !in_class => {
                in_class = true;
                at_byte += 1;
            }
            b']' if in_class => {
                in_class = false;
                at_byte += 1;
            }
            b'\\' => {
                let next = bytes.get(at_byte + 1).copied().unwrap_or(0);
                let width = match next {
                    b'x' => 4,
                    b'u' => 6,
                    b'U' => 10,
                    b't' | b'r' | b'n' | b'\\' | b'"' | b'[' | b']' | b'-' | b'^' | b'$' | b'.'
                    | b'(' | b')' | b'|' | b'{' | b'}' | b'*' | b'+' | b'?' | b'/' => 2,
                    _ => {
                        return Err(refuse(&format!(
                        "the escape \\{} is not supported (write a class such as [0-9] for \\d)",
                        char::from(next)
                    )))
                    }
                };
                at_byte += width;
            }
            b'(' if !in_class
                && bytes.get(at_byte + 1) == Some(&b'?')
                && bytes.get(at_byte + 2) != Some(&b':') =>
            {
                return Err(refuse("lookarounds and named groups are not supported"));
            }
            b'^' | b'$' if !in_class => {
                return Err(refuse("anchors inside it are not supported"));
            }
            _ => at_byte += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(s: &Value) -> &'static str {
        check(s).map_or_else(|e| e.code(), |()| "OK")
    }

    #[test]
    fn schemas_of_enforced_keywords_pass() {
        let s = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "A person",
            "type": "object",
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": 40, "description": "x" },
                "age": { "type": "integer", "minimum": 0, "maximum": 150 },
                "email": { "type": "string", "pattern": "^[a-z]+@[a-z]+\\.com$" },
                "born": { "type": "string", "format": "date" },
                "tags": { "type": "array", "items": { "enum": ["a", "b"] }, "maxItems": 3 },
                "pet": { "$ref": "#/$defs/pet" },
                "either": { "anyOf": [{ "type": "null" }, { "type": "number" }] }
            },
            "required": ["name", "age"],
            "additionalProperties": false,
            "$defs": { "pet": { "type": "object", "properties": { "kind": { "const": "cat" } } } }
        });
        assert_eq!(code(&s), "OK");
        assert_eq!(code(&json!(true)), "OK");
    }

    #[test]
    fn keywords_the_grammar_would_ignore_are_refused_by_name() {
        for (s, says) in [
            (json!({ "type": "number", "multipleOf": 2 }), "`multipleOf`"),
            (
                json!({ "type": "array", "uniqueItems": true }),
                "`uniqueItems`",
            ),
            (json!({ "not": { "type": "string" } }), "`not`"),
            (
                json!({ "type": "string", "format": "email" }),
                "format \"email\"",
            ),
            (json!({ "type": "number", "minimum": 0 }), "integers only"),
            (json!({ "type": "string", "pattern": "[a-z]+" }), "anchored"),
            (json!({ "type": "string", "pattern": "^\\d+$" }), "\\d"),
            (
                json!({ "type": "string", "pattern": "^(?=a)a$" }),
                "lookaround",
            ),
            (json!({ "$ref": "https://x.org/s.json" }), "only references"),
            (
                json!({ "$ref": "#/$defs/a", "maxLength": 3 }),
                "beside a $ref",
            ),
            (
                json!({ "properties": { "a": { "patternProperties": {} } } }),
                "#/properties/a: `patternProperties`",
            ),
        ] {
            let e = check(&s).unwrap_err();
            assert_eq!(e.code(), "SCHEMA_UNSUPPORTED", "{s}");
            assert!(e.to_string().contains(says), "{s}: {e}");
        }
    }

    #[test]
    fn malformed_schemas_are_bad_options() {
        assert_eq!(code(&json!(42)), "INVALID_OPTION");
        assert_eq!(code(&json!({ "properties": [1] })), "INVALID_OPTION");
        assert_eq!(code(&json!({ "anyOf": {} })), "INVALID_OPTION");
        let mut deep = json!({ "type": "string" });
        for _ in 0..100 {
            deep = json!({ "type": "array", "items": deep });
        }
        assert_eq!(code(&deep), "SCHEMA_UNSUPPORTED");
    }
}
