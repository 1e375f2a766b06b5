//! `FieldSet`: a trie of field paths plus the FieldsV1 wire encoding.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::SsaError;
use crate::path::{PathElement, path_string};

/// A set of field paths stored as a trie.
///
/// `member` says the path leading to this node is itself in the set; children
/// hold longer paths. Invariant: no child is empty (neither member nor
/// parent of one), so structural equality is set equality.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    /// Adds `path` to the set. The empty path marks the root itself.
    pub fn insert(&mut self, path: &[PathElement]) {
        let mut node = self;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.subtree(path).is_some_and(|n| n.member)
    }

    /// The part of the set below `path` (paths relative to it), if any.
    pub fn subtree(&self, path: &[PathElement]) -> Option<&FieldSet> {
        let mut node = self;
        for pe in path {
            node = node.children.get(pe)?;
        }
        Some(node)
    }

    pub(crate) fn child(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    pub(crate) fn is_member(&self) -> bool {
        self.member
    }

    pub(crate) fn children(&self) -> impl Iterator<Item = (&PathElement, &FieldSet)> {
        self.children.iter()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_in_place(other);
        out
    }

    fn union_in_place(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (pe, theirs) in &other.children {
            self.children
                .entry(pe.clone())
                .or_default()
                .union_in_place(theirs);
        }
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (pe, mine) in &self.children {
            let child = match other.children.get(pe) {
                Some(theirs) => mine.difference(theirs),
                None => mine.clone(),
            };
            if !child.is_empty() {
                out.children.insert(pe.clone(), child);
            }
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (pe, mine) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let child = mine.intersection(theirs);
                if !child.is_empty() {
                    out.children.insert(pe.clone(), child);
                }
            }
        }
        out
    }

    /// Removes `path` and everything below it.
    pub fn remove_subtree(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else {
            *self = FieldSet::default();
            return;
        };
        self.remove_below(parents, last);
    }

    fn remove_below(&mut self, parents: &[PathElement], last: &PathElement) {
        match parents.split_first() {
            None => {
                self.children.remove(last);
            }
            Some((first, rest)) => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove_below(rest, last);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Removes just the membership of `path`, keeping longer paths.
    pub fn remove_member(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = false,
            Some((first, rest)) => {
                if let Some(child) = self.children.get_mut(first) {
                    child.remove_member(rest);
                    if child.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Only the paths starting with `path` (kept at their full length).
    pub fn restricted_to(&self, path: &[PathElement]) -> FieldSet {
        let mut out = FieldSet::default();
        if let Some(sub) = self.subtree(path) {
            if sub.is_empty() {
                return out;
            }
            let mut node = &mut out;
            for pe in path {
                node = node.children.entry(pe.clone()).or_default();
            }
            *node = sub.clone();
        }
        out
    }

    /// Every inner node (other than the root) also becomes a member. Used so
    /// that a container someone owns anything under counts as owned, and a
    /// container a manager touched can be removed as a whole.
    pub(crate) fn with_containers(&self) -> FieldSet {
        fn mark(node: &mut FieldSet) {
            for child in node.children.values_mut() {
                if !child.children.is_empty() {
                    child.member = true;
                }
                mark(child);
            }
        }
        let mut out = self.clone();
        mark(&mut out);
        out
    }

    /// All member paths, depth first in element order.
    pub fn members(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Member paths in upstream's printed form, e.g. `.spec.ports[name="http"].port`.
    pub fn paths(&self) -> Vec<String> {
        self.members().iter().map(|p| path_string(p)).collect()
    }

    /// Decodes the FieldsV1 JSON form.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, SsaError> {
        let obj = v
            .as_object()
            .ok_or_else(|| SsaError::Invalid("fieldsV1 must be a JSON object".into()))?;
        let mut out = FieldSet::default();
        for (key, child) in obj {
            if key == "." {
                out.member = true;
                continue;
            }
            let pe = PathElement::from_fields_v1_key(key)?;
            let child_set = match child.as_object() {
                Some(m) if m.is_empty() => FieldSet {
                    member: true,
                    children: BTreeMap::new(),
                },
                Some(_) => FieldSet::from_fields_v1(child)?,
                None => {
                    return Err(SsaError::Invalid(format!(
                        "fieldsV1 entry {key:?} must be an object"
                    )));
                }
            };
            out.children
                .entry(pe)
                .or_default()
                .union_in_place(&child_set);
        }
        Ok(out)
    }

    /// Encodes to FieldsV1: `{}` for a leaf member, `"."` for a member that
    /// also has children. Output order is deterministic (`.` first, then
    /// elements in trie order).
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            m.insert(pe.to_fields_v1_key(), child.to_fields_v1());
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::field(name)
    }

    #[test]
    fn ops_keep_invariant() {
        let mut a = FieldSet::new();
        a.insert(&[f("spec"), f("a")]);
        a.insert(&[f("spec"), f("b")]);
        let mut b = FieldSet::new();
        b.insert(&[f("spec"), f("a")]);
        b.insert(&[f("spec"), f("b")]);
        assert!(a.difference(&b).is_empty());
        assert_eq!(a.intersection(&b), a);
        let mut c = a.clone();
        c.remove_member(&[f("spec"), f("a")]);
        c.remove_member(&[f("spec"), f("b")]);
        assert!(c.is_empty());
        assert_eq!(c, FieldSet::new());
    }

    #[test]
    fn containers_and_restrict() {
        let mut a = FieldSet::new();
        a.insert(&[f("status"), f("x")]);
        a.insert(&[f("spec"), f("y")]);
        assert!(a.with_containers().contains(&[f("spec")]));
        assert_eq!(a.restricted_to(&[f("status")]).paths(), vec![".status.x"]);
        let mut b = a.clone();
        b.remove_subtree(&[f("status")]);
        assert_eq!(b.paths(), vec![".spec.y"]);
    }

    #[test]
    fn rejects_non_object_entries() {
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
    }
}
