//! CEL types of schema nodes, as Kubernetes declares them for `self` (`[doc]` cel.md, "Type
//! checking"): objects with their declared properties, maps from `additionalProperties`,
//! lists, scalars by `type`/`format`, and `dyn` where the schema leaves the shape open.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

/// Deeper schemas are typed `dyn` below this depth (kube-cel stops compiling at 64 too).
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
    /// Unknown until run time (int-or-string, preserve-unknown-fields, `dyn`).
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    Object(Arc<Object>),
    /// Library types: Quantity, URL, net.IP, optional, …; only their functions apply.
    Opaque(&'static str),
    /// A type denotation (`int`, `string`, … used as values).
    Type,
}

/// A schema object: its declared properties under their CEL (escaped) names.
#[derive(Debug, PartialEq, Default)]
pub struct Object {
    pub fields: BTreeMap<String, Ty>,
    /// `x-kubernetes-preserve-unknown-fields` next to properties: undeclared fields may exist.
    pub open: bool,
}

impl Ty {
    pub fn name(&self) -> String {
        match self {
            Ty::Dyn => "dyn".into(),
            Ty::Null => "null_type".into(),
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Uint => "uint".into(),
            Ty::Double => "double".into(),
            Ty::String => "string".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Duration => "google.protobuf.Duration".into(),
            Ty::Timestamp => "google.protobuf.Timestamp".into(),
            Ty::List(t) => format!("list({})", t.name()),
            Ty::Map(k, v) => format!("map({}, {})", k.name(), v.name()),
            Ty::Object(_) => "object".into(),
            Ty::Opaque(n) => (*n).into(),
            Ty::Type => "type".into(),
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }
}

/// Whether values of the two types can be compared for equality (and so whether one can stand
/// where the other is expected). `dyn` and `null` go with everything; numbers compare across
/// int, uint and double as Kubernetes' CEL environment allows.
pub fn compatible(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Dyn, _) | (_, Ty::Dyn) | (Ty::Null, _) | (_, Ty::Null) => true,
        (x, y) if x.is_numeric() && y.is_numeric() => true,
        (Ty::List(x), Ty::List(y)) => compatible(x, y),
        (Ty::Map(k1, v1), Ty::Map(k2, v2)) => compatible(k1, k2) && compatible(v1, v2),
        (Ty::Object(_), Ty::Object(_)) => true,
        // An object and a string-keyed map hold the same JSON.
        (Ty::Object(_), Ty::Map(k, _)) | (Ty::Map(k, _), Ty::Object(_)) => {
            compatible(k, &Ty::String)
        }
        (x, y) => x == y,
    }
}

/// The common type of list elements or conditional branches: equal types keep it, anything
/// else widens to `dyn`.
pub fn join(a: &Ty, b: &Ty) -> Ty {
    if a == b { a.clone() } else { Ty::Dyn }
}

/// The CEL name of a property: reserved words become `__word__`; `_ . - /` are spelled out.
pub fn escape(name: &str) -> String {
    const RESERVED: &[&str] = &[
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    if RESERVED.contains(&name) {
        return format!("__{name}__");
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '_' => out.push_str("__"),
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c => out.push(c),
        }
    }
    out
}

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool) == Some(true)
}

/// The type of a schema node.
pub fn of_schema(s: &Value) -> Ty {
    of(s, 0)
}

fn of(s: &Value, depth: usize) -> Ty {
    if depth > MAX_DEPTH || flag(s, "x-kubernetes-int-or-string") {
        return Ty::Dyn;
    }
    let props = s.get("properties").and_then(Value::as_object);
    let embedded = flag(s, "x-kubernetes-embedded-resource");
    let preserve = flag(s, "x-kubernetes-preserve-unknown-fields");
    match s.get("type").and_then(Value::as_str) {
        Some("array") => Ty::List(Box::new(
            s.get("items").map(|i| of(i, depth + 1)).unwrap_or(Ty::Dyn),
        )),
        Some("string") => match s.get("format").and_then(Value::as_str) {
            Some("byte") => Ty::Bytes,
            Some("duration") => Ty::Duration,
            Some("date-time") => Ty::Timestamp,
            _ => Ty::String,
        },
        Some("integer") => Ty::Int,
        Some("number") => Ty::Double,
        Some("boolean") => Ty::Bool,
        Some("object") | None => {
            match s.get("additionalProperties") {
                Some(Value::Bool(true)) => {
                    return Ty::Map(Box::new(Ty::String), Box::new(Ty::Dyn));
                }
                Some(ap @ Value::Object(_)) => {
                    return Ty::Map(Box::new(Ty::String), Box::new(of(ap, depth + 1)));
                }
                _ => {}
            }
            if props.is_none() && !embedded && (preserve || s.get("type").is_none()) {
                return Ty::Dyn;
            }
            let mut o = Object {
                fields: BTreeMap::new(),
                open: preserve,
            };
            for (k, v) in props.into_iter().flatten() {
                o.fields.insert(escape(k), of(v, depth + 1));
            }
            if embedded {
                o.fields.entry("apiVersion".into()).or_insert(Ty::String);
                o.fields.entry("kind".into()).or_insert(Ty::String);
                o.fields.insert("metadata".into(), metadata());
            }
            Ty::Object(Arc::new(o))
        }
        Some(_) => Ty::Dyn,
    }
}

/// What rules may read of `metadata` (upstream exposes only these two).
fn metadata() -> Ty {
    let mut o = Object::default();
    o.fields.insert("name".into(), Ty::String);
    o.fields.insert("generateName".into(), Ty::String);
    Ty::Object(Arc::new(o))
}

/// The type of `self` at the root of a CRD schema: the schema plus `apiVersion`, `kind` and
/// `metadata.name`/`metadata.generateName`.
pub fn of_root(s: &Value) -> Ty {
    let mut o = match of(s, 0) {
        Ty::Object(o) => Object {
            fields: o.fields.clone(),
            open: o.open,
        },
        _ => Object::default(),
    };
    o.fields.insert("apiVersion".into(), Ty::String);
    o.fields.insert("kind".into(), Ty::String);
    o.fields.insert("metadata".into(), metadata());
    Ty::Object(Arc::new(o))
}
