//! Result types of the functions rdd's CEL runtime (`cel` + `kube-cel`) provides. A function
//! that is not listed here is not available at run time either, so a rule calling it is
//! refused at CRD creation instead of failing every write.

use super::types::Ty;

fn overload(name: &str, target: Option<&Ty>, args: &[Ty]) -> String {
    let list = args.iter().map(Ty::name).collect::<Vec<_>>().join(", ");
    match target {
        Some(t) => format!(
            "found no matching overload for '{name}' applied to '{}.({list})'",
            t.name()
        ),
        None => format!("found no matching overload for '{name}' applied to '({list})'"),
    }
}

fn is(t: &Ty, want: &Ty) -> bool {
    matches!(t, Ty::Dyn) || t == want
}

/// The element type of a list receiver (`dyn` when unknown).
fn elem(t: Option<&Ty>) -> Ty {
    match t {
        Some(Ty::List(e)) => (**e).clone(),
        _ => Ty::Dyn,
    }
}

/// The result type of calling `name`, `None` when no such function exists. `target` is the
/// receiver of a member call (`x.f()`); qualified names (`base64.encode`) come without one.
pub fn call(name: &str, target: Option<&Ty>, args: &[Ty]) -> Option<Result<Ty, String>> {
    let err = || Err(overload(name, target, args));
    // The receiver, or for the global form the first argument.
    let subject = target.or(args.first());
    let string_fn = |result: Ty, arity: usize| -> Result<Ty, String> {
        let own = match target {
            Some(t) => (t, args),
            None if !args.is_empty() => (&args[0], &args[1..]),
            None => return err(),
        };
        if !is(own.0, &Ty::String) || own.1.len() != arity {
            return err();
        }
        if own.1.iter().all(|a| is(a, &Ty::String) || a.is_numeric()) {
            Ok(result)
        } else {
            err()
        }
    };
    let r = match name {
        "size" => match subject {
            Some(Ty::String | Ty::Bytes | Ty::List(_) | Ty::Map(..) | Ty::Object(_) | Ty::Dyn) => {
                Ok(Ty::Int)
            }
            _ => err(),
        },
        "contains" | "startsWith" | "endsWith" | "matches" => string_fn(Ty::Bool, 1),
        "lowerAscii" | "upperAscii" | "trim" => string_fn(Ty::String, 0),
        "charAt" => string_fn(Ty::String, 1),
        "replace" => {
            if args.len() == 2 {
                string_fn(Ty::String, 2)
            } else {
                string_fn(Ty::String, 3)
            }
        }
        "substring" => {
            if args.len() == 1 {
                string_fn(Ty::String, 1)
            } else {
                string_fn(Ty::String, 2)
            }
        }
        "split" => Ok(Ty::List(Box::new(Ty::String))),
        "find" => string_fn(Ty::String, 1),
        "findAll" => Ok(Ty::List(Box::new(Ty::String))),
        "indexOf" | "lastIndexOf" => Ok(Ty::Int),
        "join" | "format" | "strings.quote" | "jsonpatch.escapeKey" | "base64.encode" => {
            Ok(Ty::String)
        }
        "reverse" | "slice" | "distinct" | "sort" => Ok(subject.cloned().unwrap_or(Ty::Dyn)),
        "flatten" => Ok(Ty::List(Box::new(Ty::Dyn))),
        "isSorted" => Ok(Ty::Bool),
        "sum" => Ok(elem(target)),
        "min" | "max" => Ok(match target {
            Some(t) => elem(Some(t)),
            None => Ty::Dyn,
        }),
        "first"
        | "last"
        | "optional.none"
        | "optional.of"
        | "optional.ofNonZeroValue"
        | "validate" => Ok(Ty::Opaque("optional_type")),
        "hasValue" | "value" | "or" | "orValue" => match target {
            Some(Ty::Opaque("optional_type") | Ty::Dyn) => Ok(if name == "hasValue" {
                Ty::Bool
            } else {
                Ty::Dyn
            }),
            _ => err(),
        },
        "lists.range" => Ok(Ty::List(Box::new(Ty::Int))),
        "sets.contains" | "sets.equivalent" | "sets.intersects" => Ok(Ty::Bool),
        "string" => Ok(Ty::String),
        "bytes" => Ok(Ty::Bytes),
        "base64.decode" => Ok(Ty::Bytes),
        "double" => Ok(Ty::Double),
        "int" => Ok(Ty::Int),
        "uint" => Ok(Ty::Uint),
        "duration" => Ok(Ty::Duration),
        "timestamp" => Ok(Ty::Timestamp),
        "getDate" | "getDayOfMonth" | "getDayOfWeek" | "getDayOfYear" | "getFullYear"
        | "getHours" | "getMilliseconds" | "getMinutes" | "getMonth" | "getSeconds" => match target
        {
            Some(Ty::Timestamp | Ty::Duration | Ty::Dyn) => Ok(Ty::Int),
            _ => err(),
        },
        "url" => Ok(Ty::Opaque("kubernetes.URL")),
        "getScheme" | "getHost" | "getHostname" | "getPort" | "getEscapedPath" => Ok(Ty::String),
        "getQuery" => Ok(Ty::Map(
            Box::new(Ty::String),
            Box::new(Ty::List(Box::new(Ty::String))),
        )),
        "ip" => Ok(Ty::Opaque("net.IP")),
        "cidr" | "masked" => Ok(Ty::Opaque("net.CIDR")),
        "isURL"
        | "isIP"
        | "isCIDR"
        | "isCIDRv4"
        | "isCIDRv6"
        | "isIPv4"
        | "isIPv6"
        | "ip.isCanonical"
        | "containsIP"
        | "containsCIDR"
        | "isLoopback"
        | "isGlobalUnicast"
        | "isLinkLocalMulticast"
        | "isLinkLocalUnicast"
        | "isUnspecified"
        | "isQuantity"
        | "isInteger"
        | "isGreaterThan"
        | "isLessThan"
        | "isSemver" => Ok(Ty::Bool),
        "family" | "prefixLength" | "sign" | "asInteger" | "compareTo" | "major" | "minor"
        | "patch" => Ok(Ty::Int),
        "quantity" => Ok(Ty::Opaque("kubernetes.Quantity")),
        "asApproximateFloat" => Ok(Ty::Double),
        "add" | "sub" => Ok(target.cloned().unwrap_or(Ty::Dyn)),
        "semver" => Ok(Ty::Opaque("kubernetes.Semver")),
        "format.named"
        | "format.dns1123Label"
        | "format.dns1123Subdomain"
        | "format.dns1035Label"
        | "format.dns1123LabelPrefix"
        | "format.dns1123SubdomainPrefix"
        | "format.dns1035LabelPrefix"
        | "format.qualifiedName"
        | "format.labelValue"
        | "format.uri"
        | "format.uuid"
        | "format.byte"
        | "format.date"
        | "format.datetime" => Ok(Ty::Opaque("kubernetes.NamedFormat")),
        "math.ceil" | "math.floor" | "math.round" | "math.trunc" | "math.sqrt" => Ok(Ty::Double),
        "math.isInf" | "math.isNaN" | "math.isFinite" => Ok(Ty::Bool),
        "math.abs" | "math.sign" => Ok(args.first().cloned().unwrap_or(Ty::Dyn)),
        "math.greatest" | "math.least" => Ok(Ty::Dyn),
        "math.bitAnd" | "math.bitOr" | "math.bitXor" | "math.bitNot" | "math.bitShiftLeft"
        | "math.bitShiftRight" => Ok(Ty::Int),
        _ => return None,
    };
    Some(r)
}

/// Whether `prefix.name` is a function (so `prefix` need not be a variable).
pub fn qualified(prefix: &str, name: &str) -> bool {
    call(&format!("{prefix}.{name}"), None, &[]).is_some()
}
