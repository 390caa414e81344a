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

/// `docs/schemas/event.v1.json` (the schema SIEM teams are given) is the
/// `Event` component with the components it uses inlined as `$defs`: the
/// two cannot drift apart. `PORTCULLIS_BLESS=1` rewrites the file.
pub fn standalone_event_schema() -> Value {
    fn rewrite(v: &Value, used: &mut Vec<String>) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        if k == "$ref"
                            && let Some(name) = v
                                .as_str()
                                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                        {
                            if !used.iter().any(|u| u == name) {
                                used.push(name.to_string());
                            }
                            return (k.clone(), Value::String(format!("#/$defs/{name}")));
                        }
                        (k.clone(), rewrite(v, used))
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|v| rewrite(v, used)).collect()),
            other => other.clone(),
        }
    }
    let schemas = &doc()["components"]["schemas"];
    let mut used = Vec::new();
    let mut root = rewrite(&schemas["Event"], &mut used);
    let mut defs = serde_json::Map::new();
    let mut i = 0;
    while i < used.len() {
        let name = used[i].clone();
        let def = rewrite(&schemas[&name], &mut used);
        defs.insert(name, def);
        i += 1;
    }
    let obj = root.as_object_mut().expect("Event is an object schema");
    obj.insert(
        "$schema".into(),
        Value::String("https://json-schema.org/draft/2020-12/schema".into()),
    );
    obj.insert(
        "$id".into(),
        Value::String("https://portcullis.dev/schemas/event.v1.json".into()),
    );
    obj.insert("title".into(), Value::String("portcullis.event.v1".into()));
    obj.insert("$defs".into(), Value::Object(defs));
    root
}

#[test]
fn the_committed_event_schema_is_the_documented_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schemas/event.v1.json");
    let want = standalone_event_schema();
    if std::env::var_os("PORTCULLIS_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&want).unwrap() + "\n";
        std::fs::write(path, text).unwrap();
    }
    let have: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("docs/schemas/event.v1.json"))
            .expect("event.v1.json parses");
    assert_eq!(
        have, want,
        "docs/schemas/event.v1.json differs from the Event component of docs/openapi.json; \
         run the test with PORTCULLIS_BLESS=1 to regenerate it"
    );
}
