//! The type check of CRD validation rules at CRD creation (CP-123a). The `cel` crate is
//! dynamically typed, so without this a rule naming a field the schema does not declare, or
//! returning a string, would be stored and then fail (or pass) every write. Kubernetes
//! type-checks rules against the schema; this module does the same over the parsed rule:
//!
//! | finding                                               | message (after `compilation failed: ERROR: <input>: `) |
//! |-------------------------------------------------------|-----------------------------------|
//! | field not in the schema (closed object)               | `undefined field 'x'`             |
//! | unknown variable or function                          | `undeclared reference to 'x' (in container '')` |
//! | operator or function on the wrong types               | `found no matching overload for '_+_' applied to '(int, string)'` |
//! | field selection on a scalar                           | `type 'int' does not support field selection` |
//! | rule not bool / messageExpression not string          | `cel expression must evaluate to a bool` / `messageExpression must evaluate to a string` |
//!
//! Types follow the schema (`types.rs`); `dyn` (int-or-string, preserve-unknown-fields,
//! untyped nodes) accepts everything, as upstream's checker does.

mod functions;
pub mod types;

use std::collections::HashMap;

use kube_cel::cel::common::ast::{self, Expr, LiteralValue, operators};
use kube_cel::cel::parser::Parser;
use serde_json::Value;

use crate::error::Cause;
pub use types::Ty;

/// The reasons a rule may give (upstream's allowed list).
const REASONS: &[&str] = &[
    "FieldValueInvalid",
    "FieldValueForbidden",
    "FieldValueRequired",
    "FieldValueDuplicate",
];

struct Checker {
    scopes: Vec<HashMap<String, Ty>>,
}

type Res = Result<Ty, String>;

impl Checker {
    fn new(self_ty: &Ty, optional_old_self: bool) -> Checker {
        let mut vars = HashMap::new();
        vars.insert("self".to_string(), self_ty.clone());
        // With optionalOldSelf upstream makes oldSelf an optional; the runtime here (kube-cel)
        // binds it to null when there is no old value and to the old value otherwise, so it
        // is typed like self (null compares with everything) and optional functions on it are
        // refused by `check_rule` with a hint.
        let _ = optional_old_self;
        vars.insert("oldSelf".to_string(), self_ty.clone());
        Checker { scopes: vec![vars] }
    }

    fn lookup(&self, name: &str) -> Option<&Ty> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    fn expr(&mut self, e: &ast::IdedExpr) -> Res {
        match &e.expr {
            Expr::Unspecified => Ok(Ty::Dyn),
            Expr::Literal(l) => Ok(match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            }),
            Expr::Ident(name) => match self.lookup(name) {
                Some(t) => Ok(t.clone()),
                None if matches!(
                    name.as_str(),
                    "bool"
                        | "int"
                        | "uint"
                        | "double"
                        | "string"
                        | "bytes"
                        | "list"
                        | "map"
                        | "null_type"
                        | "type"
                ) =>
                {
                    Ok(Ty::Type)
                }
                None => Err(format!(
                    "undeclared reference to '{name}' (in container '')"
                )),
            },
            Expr::Select(s) => {
                let t = self.expr(&s.operand)?;
                let field = select(&t, &s.field)?;
                Ok(if s.test { Ty::Bool } else { field })
            }
            Expr::List(l) => {
                let mut elem: Option<Ty> = None;
                for x in &l.elements {
                    let t = self.expr(x)?;
                    elem = Some(match elem {
                        None => t,
                        Some(prev) => types::join(&prev, &t),
                    });
                }
                Ok(Ty::List(Box::new(elem.unwrap_or(Ty::Dyn))))
            }
            Expr::Map(m) => {
                let (mut key, mut val): (Option<Ty>, Option<Ty>) = (None, None);
                for entry in &m.entries {
                    let ast::EntryExpr::MapEntry(me) = &entry.expr else {
                        return Err("message construction is not supported".into());
                    };
                    let k = self.expr(&me.key)?;
                    let v = self.expr(&me.value)?;
                    key = Some(key.map_or(k.clone(), |p| types::join(&p, &k)));
                    val = Some(val.map_or(v.clone(), |p| types::join(&p, &v)));
                }
                Ok(Ty::Map(
                    Box::new(key.unwrap_or(Ty::Dyn)),
                    Box::new(val.unwrap_or(Ty::Dyn)),
                ))
            }
            Expr::Struct(s) => Err(format!(
                "undeclared reference to '{}' (in container '')",
                s.type_name
            )),
            Expr::Comprehension(c) => self.comprehension(c),
            Expr::Call(c) => self.call(c),
        }
    }

    fn comprehension(&mut self, c: &ast::ComprehensionExpr) -> Res {
        let range = self.expr(&c.iter_range)?;
        let (first, second) = match &range {
            Ty::List(t) => match c.iter_var2 {
                Some(_) => (Ty::Int, (**t).clone()),
                None => ((**t).clone(), Ty::Dyn),
            },
            Ty::Map(k, v) => ((**k).clone(), (**v).clone()),
            Ty::Object(_) => (Ty::String, Ty::Dyn),
            Ty::Dyn => (Ty::Dyn, Ty::Dyn),
            other => {
                return Err(format!(
                    "expression of type '{}' cannot be range of a comprehension (must be list, map, or dynamic)",
                    other.name()
                ));
            }
        };
        let init = self.expr(&c.accu_init)?;
        let mut scope = HashMap::new();
        scope.insert(c.iter_var.clone(), first);
        if let Some(v2) = &c.iter_var2 {
            scope.insert(v2.clone(), second);
        }
        scope.insert(c.accu_var.clone(), init.clone());
        self.scopes.push(scope);
        let r = (|| {
            let cond = self.expr(&c.loop_cond)?;
            if !matches!(cond, Ty::Bool | Ty::Dyn) {
                return Err(format!(
                    "found no matching overload for 'loop condition' applied to '({})'",
                    cond.name()
                ));
            }
            let step = self.expr(&c.loop_step)?;
            // `map()` starts from `[]` (a list of dyn); the step knows the element type.
            let accu = match (&init, &step) {
                (Ty::List(e), Ty::List(_)) if **e == Ty::Dyn => step,
                _ => init.clone(),
            };
            if let Some(s) = self.scopes.last_mut() {
                s.insert(c.accu_var.clone(), accu);
            }
            self.expr(&c.result)
        })();
        self.scopes.pop();
        r
    }

    fn call(&mut self, c: &ast::CallExpr) -> Res {
        let name = c.func_name.as_str();
        // `base64.encode(x)` parses as a member call on the identifier `base64`.
        if let Some(t) = &c.target
            && let Expr::Ident(prefix) = &t.expr
            && self.lookup(prefix).is_none()
            && functions::qualified(prefix, name)
        {
            let args = self.args(&c.args)?;
            let q = format!("{prefix}.{name}");
            return functions::call(&q, None, &args).unwrap_or_else(|| Err(undeclared(&q)));
        }
        let target = match &c.target {
            Some(t) => Some(self.expr(t)?),
            None => None,
        };
        let args = self.args(&c.args)?;
        if target.is_none()
            && let Some(r) = operator(name, &args)
        {
            return r;
        }
        match functions::call(name, target.as_ref(), &args) {
            Some(r) => r,
            None => Err(undeclared(name)),
        }
    }

    fn args(&mut self, args: &[ast::IdedExpr]) -> Result<Vec<Ty>, String> {
        args.iter().map(|a| self.expr(a)).collect()
    }
}

fn undeclared(name: &str) -> String {
    format!("undeclared reference to '{name}' (in container '')")
}

fn select(t: &Ty, field: &str) -> Res {
    match t {
        Ty::Object(o) => match o.fields.get(field) {
            Some(f) => Ok(f.clone()),
            None if o.open => Ok(Ty::Dyn),
            None => Err(format!("undefined field '{field}'")),
        },
        Ty::Map(_, v) => Ok((**v).clone()),
        Ty::Dyn => Ok(Ty::Dyn),
        other => Err(format!(
            "type '{}' does not support field selection",
            other.name()
        )),
    }
}

fn no_overload(op: &str, args: &[Ty]) -> String {
    let list = args.iter().map(Ty::name).collect::<Vec<_>>().join(", ");
    format!("found no matching overload for '{op}' applied to '({list})'")
}

/// Built-in operators; `None` when `name` is not one.
fn operator(name: &str, a: &[Ty]) -> Option<Res> {
    let bad = || Err(no_overload(name, a));
    let boolish = |t: &Ty| matches!(t, Ty::Bool | Ty::Dyn);
    let r = match (name, a) {
        (operators::LOGICAL_AND | operators::LOGICAL_OR, [x, y]) => {
            if boolish(x) && boolish(y) {
                Ok(Ty::Bool)
            } else {
                bad()
            }
        }
        (operators::LOGICAL_NOT, [x]) => {
            if boolish(x) {
                Ok(Ty::Bool)
            } else {
                bad()
            }
        }
        (operators::NOT_STRICTLY_FALSE, [_]) => Ok(Ty::Bool),
        (operators::EQUALS | operators::NOT_EQUALS, [x, y]) => {
            if types::compatible(x, y) {
                Ok(Ty::Bool)
            } else {
                bad()
            }
        }
        (
            operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS,
            [x, y],
        ) => {
            let ordered = |t: &Ty| {
                t.is_numeric()
                    || matches!(
                        t,
                        Ty::String | Ty::Bytes | Ty::Bool | Ty::Timestamp | Ty::Duration
                    )
            };
            match (x, y) {
                (Ty::Dyn, t) | (t, Ty::Dyn) if ordered(t) || *t == Ty::Dyn => Ok(Ty::Bool),
                (x, y) if x.is_numeric() && y.is_numeric() => Ok(Ty::Bool),
                (x, y) if x == y && ordered(x) => Ok(Ty::Bool),
                _ => bad(),
            }
        }
        (operators::ADD, [x, y]) => match (x, y) {
            (Ty::Dyn, _) | (_, Ty::Dyn) => Ok(if x == &Ty::Dyn { y.clone() } else { x.clone() })
                .map(|t| {
                    if matches!(t, Ty::Timestamp | Ty::Duration) {
                        Ty::Dyn
                    } else {
                        t
                    }
                }),
            (Ty::Timestamp, Ty::Duration) | (Ty::Duration, Ty::Timestamp) => Ok(Ty::Timestamp),
            (Ty::List(p), Ty::List(q)) => Ok(Ty::List(Box::new(types::join(p, q)))),
            (x, y)
                if x == y
                    && (x.is_numeric() || matches!(x, Ty::String | Ty::Bytes | Ty::Duration)) =>
            {
                Ok(x.clone())
            }
            _ => bad(),
        },
        (operators::SUBSTRACT, [x, y]) => match (x, y) {
            (Ty::Dyn, _) | (_, Ty::Dyn) => Ok(Ty::Dyn),
            (Ty::Timestamp, Ty::Timestamp) => Ok(Ty::Duration),
            (Ty::Timestamp, Ty::Duration) => Ok(Ty::Timestamp),
            (x, y) if x == y && (x.is_numeric() || *x == Ty::Duration) => Ok(x.clone()),
            _ => bad(),
        },
        (operators::MULTIPLY | operators::DIVIDE | operators::MODULO, [x, y]) => match (x, y) {
            (Ty::Dyn, t) | (t, Ty::Dyn) if t.is_numeric() || *t == Ty::Dyn => Ok(t.clone()),
            (x, y)
                if x == y && x.is_numeric() && !(name == operators::MODULO && *x == Ty::Double) =>
            {
                Ok(x.clone())
            }
            _ => bad(),
        },
        (operators::NEGATE, [x]) => match x {
            Ty::Int | Ty::Double | Ty::Duration | Ty::Dyn => Ok(x.clone()),
            _ => bad(),
        },
        (operators::CONDITIONAL, [c, x, y]) => {
            if !boolish(c) {
                bad()
            } else if types::compatible(x, y) {
                Ok(types::join(x, y))
            } else {
                bad()
            }
        }
        (operators::INDEX, [x, i]) => match x {
            Ty::List(e) if matches!(i, Ty::Int | Ty::Uint | Ty::Dyn) => Ok((**e).clone()),
            Ty::Map(k, v) if types::compatible(k, i) => Ok((**v).clone()),
            Ty::Object(_) if matches!(i, Ty::String | Ty::Dyn) => Ok(Ty::Dyn),
            Ty::Dyn => Ok(Ty::Dyn),
            _ => bad(),
        },
        (operators::IN, [x, c]) => match c {
            Ty::List(e) if types::compatible(x, e) => Ok(Ty::Bool),
            Ty::Map(k, _) if types::compatible(x, k) => Ok(Ty::Bool),
            Ty::Object(_) if matches!(x, Ty::String | Ty::Dyn) => Ok(Ty::Bool),
            Ty::Dyn => Ok(Ty::Bool),
            _ => bad(),
        },
        (operators::OPT_INDEX | operators::OPT_SELECT, _) => Ok(Ty::Opaque("optional_type")),
        _ => return None,
    };
    Some(r)
}

fn parse(expr: &str) -> Result<ast::IdedExpr, String> {
    Parser::default().parse(expr).map_err(|e| e.to_string())
}

/// Type-check one expression against `self_ty`: its result type, or why it is refused.
pub fn check(expr: &str, self_ty: &Ty) -> Res {
    check_with(expr, self_ty, false)
}

fn check_with(expr: &str, self_ty: &Ty, optional_old_self: bool) -> Res {
    let ast = parse(expr)?;
    Checker::new(self_ty, optional_old_self).expr(&ast)
}

/// Every rule of a CRD version's schema, checked at the node it sits on. Parse errors are
/// reported by kube-cel's compilation (`crd::cel_errors`); this adds types, results, reasons.
pub fn check_schema(schema: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    walk(schema, &types::of_root(schema), path, &mut out, 0);
    out
}

fn walk(s: &Value, self_ty: &Ty, path: &str, out: &mut Vec<Cause>, depth: usize) {
    if depth > 64 {
        return;
    }
    for (i, rule) in s
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        check_rule(
            rule,
            self_ty,
            &format!("{path}.x-kubernetes-validations[{i}]"),
            out,
        );
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            walk(
                v,
                &types::of_schema(v),
                &format!("{path}.properties[{k}]"),
                out,
                depth + 1,
            );
        }
    }
    if let Some(items) = s.get("items").filter(|i| i.is_object()) {
        walk(
            items,
            &types::of_schema(items),
            &format!("{path}.items"),
            out,
            depth + 1,
        );
    }
    if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
        walk(
            ap,
            &types::of_schema(ap),
            &format!("{path}.additionalProperties"),
            out,
            depth + 1,
        );
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, sub) in s
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            // A rule under allOf & co. sees the node it describes.
            walk(sub, self_ty, &format!("{path}.{key}[{i}]"), out, depth + 1);
        }
    }
}

fn invalid(field: String, value: &str, msg: String) -> Cause {
    Cause {
        reason: "FieldValueInvalid".into(),
        field,
        message: format!("Invalid value: {value:?}: {msg}"),
    }
}

fn check_rule(rule: &Value, self_ty: &Ty, path: &str, out: &mut Vec<Cause>) {
    let text = rule.get("rule").and_then(Value::as_str).unwrap_or("");
    if text.trim().is_empty() {
        out.push(Cause {
            reason: "FieldValueRequired".into(),
            field: format!("{path}.rule"),
            message: "Required value".into(),
        });
        return;
    }
    let optional = rule.get("optionalOldSelf").and_then(Value::as_bool) == Some(true);
    if parse(text).is_ok() {
        match check_with(text, self_ty, optional) {
            Ok(Ty::Bool | Ty::Dyn) => {}
            Ok(other) => out.push(invalid(
                format!("{path}.rule"),
                text,
                format!(
                    "compilation failed: ERROR: <input>: cel expression must evaluate to a bool (got {})",
                    other.name()
                ),
            )),
            Err(e) => {
                let hint = if optional
                    && ["'hasValue'", "'value'", "'orValue'", "'or'"]
                        .iter()
                        .any(|f| e.contains(f))
                {
                    " (with optionalOldSelf, rdd binds oldSelf to null when there is no old value instead of to an optional: write `oldSelf == null || ...` and use oldSelf directly)"
                } else {
                    ""
                };
                out.push(invalid(
                    format!("{path}.rule"),
                    text,
                    format!("compilation failed: ERROR: <input>: {e}{hint}"),
                ))
            }
        }
    }
    if let Some(m) = rule.get("messageExpression").and_then(Value::as_str)
        && parse(m).is_ok()
    {
        match check_with(m, self_ty, optional) {
            Ok(Ty::String | Ty::Dyn) => {}
            Ok(other) => out.push(invalid(
                format!("{path}.messageExpression"),
                m,
                format!(
                    "compilation failed: ERROR: <input>: messageExpression must evaluate to a string (got {})",
                    other.name()
                ),
            )),
            Err(e) => out.push(invalid(
                format!("{path}.messageExpression"),
                m,
                format!("compilation failed: ERROR: <input>: {e}"),
            )),
        }
    }
    if let Some(r) = rule.get("reason").and_then(Value::as_str)
        && !REASONS.contains(&r)
    {
        out.push(Cause {
            reason: "FieldValueNotSupported".into(),
            field: format!("{path}.reason"),
            message: format!(
                "Unsupported value: {r:?}: supported values: {}",
                REASONS
                    .iter()
                    .map(|r| format!("{r:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
}

#[cfg(test)]
mod tests;
