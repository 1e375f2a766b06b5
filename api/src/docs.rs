//! `docs/api.md`, rendered from the CRDs and the catalog.

use std::fmt::Write;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};

use crate::catalog;

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn type_of(p: &JSONSchemaProps) -> String {
    let t = p.type_.clone().unwrap_or_else(|| "any".into());
    match t.as_str() {
        "array" => {
            let item = match &p.items {
                Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(s)) => type_of(s),
                _ => "any".into(),
            };
            let list = p.x_kubernetes_list_type.as_deref().map(|l| match l {
                "map" => format!(
                    " (map list keyed by {})",
                    p.x_kubernetes_list_map_keys
                        .clone()
                        .unwrap_or_default()
                        .join(", ")
                ),
                other => format!(" ({other} list)"),
            });
            format!("[]{item}{}", list.unwrap_or_default())
        }
        "object" if p.properties.is_none() && p.additional_properties.is_some() => {
            "map[string]string".into()
        }
        _ => match &p.format {
            Some(f) => format!("{t} ({f})"),
            None => t,
        },
    }
}

fn walk(out: &mut String, path: &str, p: &JSONSchemaProps, required: bool) {
    let mut notes = Vec::new();
    if let Some(e) = &p.enum_ {
        notes.push(format!(
            "one of {}",
            e.iter()
                .map(|v| format!("`{}`", v.0.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(d) = &p.default {
        notes.push(format!("default `{}`", d.0));
    }
    for v in p.x_kubernetes_validations.iter().flatten() {
        notes.push(format!(
            "rule `{}`: {}",
            v.rule,
            v.message.clone().unwrap_or_default()
        ));
    }
    let mut desc = one_line(p.description.as_deref().unwrap_or(""));
    if !notes.is_empty() {
        desc = format!("{desc} ({})", one_line(&notes.join("; ")))
            .trim_start()
            .to_string();
    }
    let _ = writeln!(
        out,
        "| `{path}` | {} | {} | {desc} |",
        type_of(p),
        if required { "yes" } else { "" }
    );
    let req = p.required.clone().unwrap_or_default();
    if let Some(props) = &p.properties {
        for (name, child) in props {
            walk(out, &format!("{path}.{name}"), child, req.contains(name));
        }
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(item)) = &p.items
        && let Some(props) = &item.properties {
            let ireq = item.required.clone().unwrap_or_default();
            for (name, child) in props {
                walk(out, &format!("{path}[].{name}"), child, ireq.contains(name));
            }
        }
}

fn kind_section(out: &mut String, crd: &CustomResourceDefinition) {
    let names = &crd.spec.names;
    let v = &crd.spec.versions[0];
    let _ = writeln!(out, "## {} (`{}/{}`)\n", names.kind, crd.spec.group, v.name);
    let _ = writeln!(out, "| property | value |\n|---|---|");
    let _ = writeln!(
        out,
        "| CRD | `{}` |",
        crd.metadata.name.clone().unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "| plural / singular | `{}` / `{}` |",
        names.plural,
        names.singular.clone().unwrap_or_default()
    );
    let _ = writeln!(out, "| scope | {} |", crd.spec.scope);
    if let Some(s) = &names.short_names {
        let _ = writeln!(out, "| short names | {} |", s.join(", "));
    }
    if let Some(c) = &names.categories {
        let _ = writeln!(out, "| categories | {} |", c.join(", "));
    }
    let _ = writeln!(
        out,
        "| status subresource | {} |",
        if v.subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
        {
            "yes"
        } else {
            "no"
        }
    );
    if let Some(cols) = &v.additional_printer_columns {
        let _ = writeln!(
            out,
            "| printer columns | {} |",
            cols.iter()
                .map(|c| format!("{} (`{}`)", c.name, c.json_path.replace('|', "\\|")))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(f) = &v.selectable_fields {
        let _ = writeln!(
            out,
            "| selectable fields | {} |",
            f.iter()
                .map(|f| format!("`{}`", f.json_path))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(a) = &crd.metadata.annotations {
        for (k, val) in a {
            let _ = writeln!(out, "| annotation | `{k}: {val}` |");
        }
    }
    let _ = writeln!(
        out,
        "\n| field | type | required | description |\n|---|---|---|---|"
    );
    if let Some(schema) = v
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
    {
        for v in schema.x_kubernetes_validations.iter().flatten() {
            let _ = writeln!(
                out,
                "| (object) | | | rule `{}`: {} |",
                v.rule,
                v.message.clone().unwrap_or_default()
            );
        }
        let req = schema.required.clone().unwrap_or_default();
        if schema.properties.as_ref().is_none_or(|p| p.is_empty()) {
            let _ = writeln!(out, "| (metadata only) | | | no spec and no status |");
        }
        for (name, p) in schema.properties.iter().flatten() {
            walk(out, name, p, req.contains(name));
        }
    }
    let conds: Vec<_> = catalog::CONDITIONS
        .iter()
        .filter(|c| c.kind == names.kind)
        .collect();
    if !conds.is_empty() {
        let _ = writeln!(
            out,
            "\nConditions:\n\n| type | status | reason | message | writer |\n|---|---|---|---|---|"
        );
        for c in conds {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                c.type_,
                c.status,
                c.reason,
                one_line(c.message),
                c.writer
            );
        }
    }
    out.push('\n');
}

pub fn render() -> String {
    let mut out = String::from(
        "# rdd API reference\n\nGenerated by `cargo run -p rdd-api --bin crdgen` from the types in `api/` and the catalog in `api/src/catalog.rs`; do not edit. Every kind is served in `v1alpha1`; conditions follow the Kubernetes convention (`type`, `status`, `reason`, `message`, `lastTransitionTime`, `observedGeneration`) as a map list keyed by `type`.\n\n",
    );
    for crd in crate::crds() {
        kind_section(&mut out, &crd);
    }
    out.push_str(
        "## Finalizers\n\n| finalizer | on | added by | removed by |\n|---|---|---|---|\n",
    );
    for (f, on, add, rm) in catalog::FINALIZERS {
        let _ = writeln!(out, "| `{f}` | {on} | {add} | {rm} |");
    }
    out.push_str(
        "\n## Labels and annotations\n\n| key | kind | on | meaning |\n|---|---|---|---|\n",
    );
    for (k, t, on, m) in catalog::METADATA_KEYS {
        let _ = writeln!(out, "| `{k}` | {t} | {on} | {m} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_field_condition_and_finalizer_is_documented() {
        let doc = render();
        for crd in crate::crds() {
            assert!(doc.contains(&format!("## {} (", crd.spec.names.kind)));
        }
        for c in catalog::CONDITIONS {
            assert!(
                doc.contains(&format!("| `{}` | {} | {} |", c.type_, c.status, c.reason)),
                "{c:?}"
            );
            assert!(
                crate::crds().iter().any(|d| d.spec.names.kind == c.kind),
                "catalog names unknown kind {}",
                c.kind
            );
        }
        for (f, ..) in catalog::FINALIZERS {
            assert!(doc.contains(f));
        }
        assert!(
            doc.contains("| `status.ports` | []object (map list keyed by name) |"),
            "R-ENG-I4 list-map shown"
        );
        assert!(
            doc.contains("one of `created`, `running`, `pausing`"),
            "R-ENG-DOC3 enumerations spelled out"
        );
    }
}
