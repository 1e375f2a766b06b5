//! core/v1 Events and events.k8s.io/v1 Events are one store with two views (as upstream):
//! stored as core/v1, converted field by field for the events.k8s.io view.

use serde_json::{Map, Value};

/// (core/v1 field, events.k8s.io/v1 field)
const FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("related", "related"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("metadata", "metadata"),
    ("apiVersion", "apiVersion"),
    ("kind", "kind"),
];

fn rename(obj: &Value, to_v1: bool) -> Value {
    let Some(src) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (core, v1) in FIELDS {
        let (from, to) = if to_v1 { (core, v1) } else { (v1, core) };
        if let Some(v) = src.get(*from)
            && !v.is_null()
        {
            out.insert(to.to_string(), v.clone());
        }
    }
    Value::Object(out)
}

pub fn core_to_v1(obj: &Value) -> Value {
    rename(obj, true)
}

pub fn v1_to_core(obj: &Value) -> Value {
    rename(obj, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let v1 = json!({"regarding": {"kind": "Pod", "name": "x"}, "note": "hi", "reason": "R", "reportingController": "c", "metadata": {"name": "e"}});
        let core = v1_to_core(&v1);
        assert_eq!(core["involvedObject"]["name"], "x");
        assert_eq!(core["message"], "hi");
        assert_eq!(core_to_v1(&core), v1);
    }
}
