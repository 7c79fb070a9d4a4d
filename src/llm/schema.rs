//! Which JSON schemas constrained generation follows exactly: every keyword of a schema
//! is one llama.cpp's schema-to-grammar conversion enforces (or an annotation), else the
//! schema is refused with `SCHEMA_UNSUPPORTED` naming the keyword and where it is. The
//! conversion itself ignores what it does not know (a `format: "email"`, a `minimum` on a
//! number, a `pattern` it cannot translate accepts any string), which would loosen the
//! schema without a word; this check is what stops that.

use crate::engine::llm::SchemaEngine;
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

/// Most `$ref`s in a schema: the conversion recurses once per reference it follows, so
/// a chain of them is a nesting the depth above does not see.
const MAX_REFS: usize = 64;

/// Largest count (`minLength`, `maxItems`, ...) a grammar repeats exactly: llama.cpp's
/// grammar parser makes a larger upper bound unbounded.
const MAX_COUNT: u64 = 2000;

/// Keywords that may stand beside `$ref`, `anyOf` or `oneOf` (which the conversion
/// follows alone).
const BESIDE_ALTERNATIVES: &[&str] = &["$defs", "definitions"];

/// Check `schema` before `engine` converts it; `Ok` when every keyword is enforced.
/// llguidance refuses what it does not implement itself (its compiler is strict); its
/// input's nesting is bounded where JS values are read (64 levels), and chains of `$ref`
/// here, as for llama.cpp.
pub(crate) fn check_for(schema: &Value, engine: SchemaEngine) -> Result<()> {
    shape(schema, "#")?;
    match engine {
        SchemaEngine::LlamaCpp => check(schema),
        SchemaEngine::Llguidance => check_refs(schema),
    }
}

/// Whether `s` is shaped as a schema where either engine reads one: malformed is
/// `INVALID_OPTION` (the engines would call it unsupported, or llama.cpp's ignore it);
/// which keywords are enforced is each engine's to judge.
fn shape(s: &Value, at: &str) -> Result<()> {
    let Value::Object(o) = s else {
        // `true` and `false` are schemas too (anything, nothing) below the top.
        if s.is_boolean() && at != "#" {
            return Ok(());
        }
        return Err(OrionError::InvalidOption(format!(
            "jsonSchema at {at} must be an object, got {}",
            kind(s)
        )));
    };
    for (k, v) in o {
        let here = format!("{at}/{k}");
        match k.as_str() {
            "properties" | "$defs" | "definitions" | "patternProperties" => {
                for (name, sub) in object(v, &here)? {
                    shape(sub, &format!("{here}/{name}"))?;
                }
            }
            "additionalProperties" | "items" | "additionalItems" | "not" => shape(v, &here)?,
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                let Value::Array(list) = v else {
                    return Err(OrionError::InvalidOption(format!(
                        "jsonSchema at {here} must be an array of schemas, got {}",
                        kind(v)
                    )));
                };
                for (i, sub) in list.iter().enumerate() {
                    shape(sub, &format!("{here}/{i}"))?;
                }
            }
            "required" | "enum"
                if !v
                    .as_array()
                    .is_some_and(|a| k == "enum" || a.iter().all(Value::is_string)) =>
            {
                return Err(OrionError::InvalidOption(format!(
                    "jsonSchema at {here} must be an array{}, got {}",
                    if k == "required" { " of names" } else { "" },
                    kind(v)
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Check `schema` before llama.cpp converts it; `Ok` when every keyword is enforced.
pub(crate) fn check(schema: &Value) -> Result<()> {
    check_refs(schema)?;
    walk(schema, "#", 0)
}

/// At most [`MAX_REFS`] `$ref`s: each engine follows them by recursion.
fn check_refs(schema: &Value) -> Result<()> {
    let refs = serde_json::to_string(schema).map_or(0, |s| s.matches("\"$ref\"").count());
    if refs > MAX_REFS {
        return Err(unsupported(
            "#",
            format!("{refs} $refs; at most {MAX_REFS} are followed"),
        ));
    }
    Ok(())
}

/// Combinations of keywords the conversion would follow in part only.
fn check_combinations(o: &serde_json::Map<String, Value>, at: &str) -> Result<()> {
    let has = |k: &str| o.contains_key(k);
    let constraining = |k: &&String| {
        !ANNOTATIONS.contains(&k.as_str()) && !BESIDE_ALTERNATIVES.contains(&k.as_str())
    };
    for alone in ["$ref", "anyOf", "oneOf"] {
        if has(alone) {
            if let Some(other) = o.keys().filter(constraining).find(|k| *k != alone) {
                return Err(unsupported(
                    at,
                    format!("`{other}` beside `{alone}` is not enforced (the conversion follows `{alone}` alone): move it into the schemas it leads to"),
                ));
            }
        }
    }
    for (a, b) in [
        ("pattern", "format"),
        ("pattern", "minLength"),
        ("pattern", "maxLength"),
        ("items", "prefixItems"),
        ("prefixItems", "minItems"),
        ("prefixItems", "maxItems"),
        ("minimum", "exclusiveMinimum"),
        ("maximum", "exclusiveMaximum"),
    ] {
        if has(a) && has(b) {
            return Err(unsupported(
                at,
                format!("`{a}` and `{b}` together are not enforced: keep one"),
            ));
        }
    }
    let array = o.get("type").and_then(Value::as_str) == Some("array")
        || has("items")
        || has("prefixItems");
    if (has("minItems") || has("maxItems")) && !array {
        return Err(unsupported(
            at,
            "minItems and maxItems are enforced on arrays only (\"type\": \"array\")",
        ));
    }
    for k in ["minLength", "maxLength", "minItems", "maxItems"] {
        if let Some(n) = o.get(k) {
            if n.as_u64().is_none_or(|n| n > MAX_COUNT) {
                return Err(unsupported(
                    at,
                    format!("`{k}` must be an integer from 0 to {MAX_COUNT}, got {n}"),
                ));
            }
        }
    }
    if let Some(required) = o.get("required").and_then(Value::as_array) {
        let properties = o.get("properties").and_then(Value::as_object);
        if let Some(name) = required
            .iter()
            .filter_map(Value::as_str)
            .find(|n| !properties.is_some_and(|p| p.contains_key(*n)))
        {
            return Err(unsupported(
                at,
                format!("required \"{name}\" has no schema in `properties`, so it is not enforced"),
            ));
        }
    }
    Ok(())
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
    let Value::Object(o) = s else {
        return Err(OrionError::InvalidOption(format!(
            "jsonSchema at {at} must be an object, got {}",
            kind(s)
        )));
    };
    check_combinations(o, at)?;
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
            "additionalProperties" => match v {
                Value::Bool(_) => {}
                _ => walk(v, &here, depth + 1)?,
            },
            "items" => walk(v, &here, depth + 1)?,
            "anyOf" | "oneOf" | "prefixItems" => {
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

/// A `pattern` the conversion translates into grammar, and whose strings are JSON
/// strings as they are written: anchored with `^` and `$`, with groups, alternatives,
/// classes and counted repetitions. Refused: what llama.cpp would replace with "any
/// string" (an unanchored pattern, `\d`, a lookahead, an escape it does not know) and
/// what would write a character raw that JSON must escape (`.`, a negated class, a quote,
/// a backslash or a control character), which would leave the answer unparseable.
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
    let body: Vec<char> = pattern[1..pattern.len() - 1].chars().collect();
    let mut pos = 0;
    // Inside a character class `^` and `$` are characters.
    let mut in_class = false;
    while pos < body.len() {
        match body[pos] {
            '\\' => {
                let next = body.get(pos + 1).copied().unwrap_or(' ');
                let known = if in_class {
                    matches!(next, '[' | ']' | '-')
                } else {
                    "^$.[]()|{}*+?-".contains(next)
                };
                if !known {
                    return Err(refuse(&format!(
                        "the escape \\{next} is not supported (write a class such as [0-9] for \\d)"
                    )));
                }
                pos += 1;
            }
            '"' => return Err(refuse("a quote in it would be written unescaped in the JSON")),
            c if c.is_control() => {
                return Err(refuse("a control character would be written unescaped in the JSON"))
            }
            '[' if !in_class => {
                if body.get(pos + 1) == Some(&'^') {
                    return Err(refuse(
                        "a negated class could write a quote or a backslash unescaped in the JSON",
                    ));
                }
                in_class = true;
            }
            ']' if in_class => in_class = false,
            '.' if !in_class => {
                return Err(refuse(
                    "`.` could write a quote or a backslash unescaped in the JSON: list what may come, as in [a-z0-9 ]",
                ))
            }
            '(' if !in_class && body.get(pos + 1) == Some(&'?') && body.get(pos + 2) != Some(&':') => {
                return Err(refuse("lookarounds and named groups are not supported"));
            }
            '^' | '$' if !in_class => return Err(refuse("anchors inside it are not supported")),
            '{' if !in_class => {
                let Some(len) = body[pos..].iter().position(|&x| x == '}') else {
                    return Err(refuse("a repetition must be {n}, {n,} or {n,m}"));
                };
                let inner: String = body[pos + 1..pos + len].iter().collect();
                let counts: Vec<&str> = inner.split(',').collect();
                let well_formed = counts.len() <= 2
                    && counts.iter().enumerate().all(|(i, n)| {
                        n.chars().all(|d| d.is_ascii_digit()) && (i == 1 || !n.is_empty())
                    });
                if !well_formed {
                    return Err(refuse("a repetition must be {n}, {n,} or {n,m}"));
                }
                pos += len;
            }
            _ => {}
        }
        pos += 1;
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
                "code": { "type": "string", "pattern": "^([A-Z]{3}|x)-[0-9]{2,4}(?:[a-c\\-]+)?$" },
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
                "beside `$ref`",
            ),
            (
                json!({ "type": "string", "anyOf": [{ "maxLength": 1 }] }),
                "beside `anyOf`",
            ),
            (json!({ "allOf": [{ "type": "string" }] }), "`allOf`"),
            (
                json!({ "type": "string", "pattern": "^[a-z]+$", "maxLength": 5 }),
                "together",
            ),
            (
                json!({ "type": "string", "maxLength": 5000 }),
                "from 0 to 2000",
            ),
            (json!({ "minItems": 1 }), "arrays only"),
            (
                json!({ "type": "object", "required": ["id"] }),
                "required \"id\"",
            ),
            (json!({ "type": "string", "pattern": "^.{1,40}$" }), "`.`"),
            (json!({ "type": "string", "pattern": "^[^a]+$" }), "negated"),
            (
                json!({ "type": "string", "pattern": "^[0-9\\.]+$" }),
                "escape",
            ),
            (
                json!({ "type": "string", "pattern": "^a{x}$" }),
                "repetition",
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
        assert_eq!(code(&json!(true)), "INVALID_OPTION");
        assert_eq!(
            code(&json!({ "type": "array", "items": true })),
            "INVALID_OPTION"
        );
        let mut chain = serde_json::Map::new();
        for i in 0..100 {
            chain.insert(
                format!("d{i}"),
                json!({ "$ref": format!("#/$defs/d{}", i + 1) }),
            );
        }
        chain.insert("d100".into(), json!({ "type": "string" }));
        let chained = json!({ "$ref": "#/$defs/d0", "$defs": chain });
        assert_eq!(code(&chained), "SCHEMA_UNSUPPORTED");
        // $defs beside a root $ref, as Pydantic writes recursive models, is fine.
        let pydantic = json!({ "$ref": "#/$defs/a", "$defs": { "a": { "type": "string" } } });
        assert_eq!(code(&pydantic), "OK");
        assert_eq!(code(&json!({ "properties": [1] })), "INVALID_OPTION");
        assert_eq!(code(&json!({ "anyOf": {} })), "INVALID_OPTION");
        let mut deep = json!({ "type": "string" });
        for _ in 0..100 {
            deep = json!({ "type": "array", "items": deep });
        }
        assert_eq!(code(&deep), "SCHEMA_UNSUPPORTED");
    }
}
