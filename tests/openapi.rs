//! Checks real responses against docs/openapi.json, so the document cannot
//! drift from the code: a field the code sends and the document does not
//! name fails (our schemas say `additionalProperties: false`), and so does
//! a missing required field or a value outside an enum.
//!
//! A validator for the part of JSON Schema the document uses: type,
//! properties, required, additionalProperties, items, enum, const, oneOf,
//! $ref to components.

use serde_json::Value;
use std::sync::OnceLock;

pub fn doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::from_str(include_str!("../docs/openapi.json")).expect("openapi.json parses")
    })
}

/// Validates `value` against the named component schema; panics with every
/// problem found.
pub fn assert_valid(component: &str, value: &Value) {
    let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{component}") });
    let mut errors = Vec::new();
    check(&schema, value, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "response does not match {component} in docs/openapi.json:\n  {}\nvalue: {}",
        errors.join("\n  "),
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// The schema a path's response is documented with.
pub fn response_schema(path: &str, method: &str, status: &str) -> Value {
    let op = &doc()["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    let content = &op["responses"][status]["content"];
    assert!(
        content.is_object(),
        "{method} {path} has no documented {status} response"
    );
    let (_, media) = content
        .as_object()
        .and_then(|m| m.iter().next())
        .expect("a media type");
    media["schema"].clone()
}

pub fn assert_response(path: &str, method: &str, status: u16, value: &Value) {
    let schema = response_schema(path, method, &status.to_string());
    let mut errors = Vec::new();
    check(&schema, value, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not match docs/openapi.json:\n  {}\nvalue: {}",
        errors.join("\n  "),
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn resolve(schema: &Value) -> &Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unsupported $ref {r}"));
            let target = &doc()["components"]["schemas"][name];
            assert!(target.is_object(), "dangling $ref {r}");
            resolve(target)
        }
        None => schema,
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("unsupported type {other}"),
    }
}

fn check(schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(schema);
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = alts
            .iter()
            .filter(|alt| {
                let mut e = Vec::new();
                check(alt, v, at, &mut e);
                e.is_empty()
            })
            .count();
        if matching != 1 {
            errors.push(format!(
                "{at}: matches {matching} of the oneOf alternatives"
            ));
        }
        return;
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        errors.push(format!("{at}: expected {c}, got {v}"));
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{at}: {v} is not one of {e:?}"));
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_ok(t, v) => {
            errors.push(format!("{at}: expected {t}, got {v}"));
            return;
        }
        Some(Value::Array(ts)) if !ts.iter().any(|t| type_ok(t.as_str().unwrap_or(""), v)) => {
            errors.push(format!("{at}: expected one of {ts:?}, got {v}"));
            return;
        }
        _ => {}
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = req.as_str().unwrap_or("");
            if !obj.contains_key(name) {
                errors.push(format!("{at}: missing required field {name:?}"));
            }
        }
        for (k, field) in obj {
            let path = format!("{at}.{k}");
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(s, field, &path, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{at}: field {k:?} is not documented"))
                    }
                    Some(s @ Value::Object(_)) => check(s, field, &path, errors),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            check(items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

#[test]
fn the_validator_catches_drift() {
    let good = serde_json::json!({"code": 554, "enhanced": "5.7.1", "text": "no"});
    let mut e = Vec::new();
    check(
        &serde_json::json!({"$ref": "#/components/schemas/Reply"}),
        &good,
        "$",
        &mut e,
    );
    assert!(e.is_empty(), "{e:?}");
    let extra = serde_json::json!({"code": 554, "enhanced": "5.7.1", "text": "no", "x": 1});
    check(
        &serde_json::json!({"$ref": "#/components/schemas/Reply"}),
        &extra,
        "$",
        &mut e,
    );
    assert_eq!(e.len(), 1, "{e:?}");
    e.clear();
    let bad = serde_json::json!({"code": "554", "enhanced": "5.7.1"});
    check(
        &serde_json::json!({"$ref": "#/components/schemas/Reply"}),
        &bad,
        "$",
        &mut e,
    );
    assert_eq!(e.len(), 2, "{e:?}");
    e.clear();
    check(
        &serde_json::json!({"$ref": "#/components/schemas/Action"}),
        &serde_json::json!("maybe"),
        "$",
        &mut e,
    );
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn every_reference_in_the_document_resolves() {
    fn walk(v: &Value) {
        match v {
            Value::Object(m) => {
                if m.contains_key("$ref") {
                    resolve(v);
                }
                m.values().for_each(walk);
            }
            Value::Array(a) => a.iter().for_each(walk),
            _ => {}
        }
    }
    walk(doc());
    assert_eq!(doc()["openapi"], "3.1.0");
}
