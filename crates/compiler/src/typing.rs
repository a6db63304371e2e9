//! Flyte's type-castability rules (what may be bound to what) and literal typing.

use contrail_idl::core::{
    LiteralType, Scalar, SimpleType, binding_data, literal_type::Type, primitive, scalar,
};

/// Renders a type the way error messages show it, e.g. `list<INTEGER>`.
pub fn describe(t: &LiteralType) -> String {
    match &t.r#type {
        None => "<no type>".into(),
        Some(Type::Simple(s)) => SimpleType::try_from(*s)
            .map(|s| s.as_str_name().to_string())
            .unwrap_or_else(|_| format!("simple({s})")),
        Some(Type::Schema(_)) => "schema".into(),
        Some(Type::CollectionType(e)) => format!("list<{}>", describe(e)),
        Some(Type::MapValueType(v)) => format!("map<STRING, {}>", describe(v)),
        Some(Type::Blob(b)) => {
            let dim = if b.dimensionality == 1 {
                "multipart"
            } else {
                "single"
            };
            format!(
                "blob({dim}{})",
                if b.format.is_empty() {
                    String::new()
                } else {
                    format!(", {}", b.format)
                }
            )
        }
        Some(Type::EnumType(e)) => format!("enum{{{}}}", e.values.join(",")),
        Some(Type::StructuredDatasetType(s)) => {
            format!("structured_dataset({})", s.format)
        }
        Some(Type::UnionType(u)) => format!(
            "union<{}>",
            u.variants
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(" | ")
        ),
    }
}

fn simple(t: &LiteralType) -> Option<SimpleType> {
    match &t.r#type {
        Some(Type::Simple(s)) => SimpleType::try_from(*s).ok(),
        _ => None,
    }
}

fn tag(t: &LiteralType) -> &str {
    t.structure.as_ref().map(|s| s.tag.as_str()).unwrap_or("")
}

/// Whether a value of type `up` may flow into a slot of type `down` (Flyte's `AreTypesCastable`).
pub fn castable(up: &LiteralType, down: &LiteralType) -> bool {
    // A union source must have every variant acceptable downstream (one variant unwraps).
    if let Some(Type::UnionType(u)) = &up.r#type
        && (!matches!(down.r#type, Some(Type::UnionType(_))) || u.variants.len() == 1)
    {
        return !u.variants.is_empty() && u.variants.iter().all(|v| castable(v, down));
    }
    // Tags, when both sides carry one, must match.
    if !tag(up).is_empty() && !tag(down).is_empty() && tag(up) != tag(down) {
        return false;
    }
    match (&up.r#type, &down.r#type) {
        (_, Some(Type::UnionType(d))) => match &up.r#type {
            Some(Type::UnionType(u)) => u
                .variants
                .iter()
                .all(|uv| d.variants.iter().any(|dv| castable(uv, dv))),
            _ => d.variants.iter().any(|dv| castable(up, dv)),
        },
        (Some(Type::Simple(_)), Some(Type::Simple(_))) => simple(up) == simple(down),
        (Some(Type::EnumType(_)), Some(Type::Simple(_))) => {
            simple(down) == Some(SimpleType::String)
        }
        (Some(Type::Simple(_)), Some(Type::EnumType(_))) => simple(up) == Some(SimpleType::String),
        (Some(Type::EnumType(u)), Some(Type::EnumType(d))) => {
            u.values.iter().all(|v| d.values.contains(v))
        }
        (Some(Type::CollectionType(u)), Some(Type::CollectionType(d))) => castable(u, d),
        (Some(Type::MapValueType(u)), Some(Type::MapValueType(d))) => castable(u, d),
        (Some(Type::Blob(u)), Some(Type::Blob(d))) => {
            u.dimensionality == d.dimensionality
                && (u.format.is_empty() || d.format.is_empty() || u.format == d.format)
        }
        (Some(Type::StructuredDatasetType(u)), Some(Type::StructuredDatasetType(d))) => {
            u.format.is_empty() || d.format.is_empty() || u.format == d.format
        }
        (Some(Type::Schema(_)), Some(Type::Schema(_)))
        | (Some(Type::Schema(_)), Some(Type::StructuredDatasetType(_)))
        | (Some(Type::StructuredDatasetType(_)), Some(Type::Schema(_))) => true,
        _ => false,
    }
}

/// The type of a constant scalar binding, when it is definite enough to check.
/// `None` means "not checked" (generic structs, binaries, errors, offloaded data).
pub fn scalar_type(s: &Scalar) -> Option<LiteralType> {
    let simple = |t: SimpleType| LiteralType {
        r#type: Some(Type::Simple(t as i32)),
        ..Default::default()
    };
    match s.value.as_ref()? {
        scalar::Value::Primitive(p) => Some(simple(match p.value.as_ref()? {
            primitive::Value::Integer(_) => SimpleType::Integer,
            primitive::Value::FloatValue(_) => SimpleType::Float,
            primitive::Value::StringValue(_) => SimpleType::String,
            primitive::Value::Boolean(_) => SimpleType::Boolean,
            primitive::Value::Datetime(_) => SimpleType::Datetime,
            primitive::Value::Duration(_) => SimpleType::Duration,
        })),
        scalar::Value::NoneType(_) => Some(simple(SimpleType::None)),
        scalar::Value::Blob(b) => b
            .metadata
            .as_ref()
            .and_then(|m| m.r#type.clone())
            .map(|bt| LiteralType {
                r#type: Some(Type::Blob(bt)),
                ..Default::default()
            }),
        scalar::Value::Union(u) => u.r#type.clone(),
        _ => None,
    }
}

/// Checks a constant binding against the slot type; returns the offending type description.
pub fn check_constant(value: &binding_data::Value, down: &LiteralType) -> Result<(), String> {
    match value {
        binding_data::Value::Scalar(s) => match scalar_type(s) {
            // A string constant fits an enum slot only when it names a value.
            Some(t) => {
                if let (Some(Type::EnumType(e)), Some(scalar::Value::Primitive(p))) =
                    (&down.r#type, &s.value)
                    && let Some(primitive::Value::StringValue(v)) = &p.value
                {
                    return if e.values.contains(v) {
                        Ok(())
                    } else {
                        Err(format!(
                            "'{v}' is not one of enum{{{}}}",
                            e.values.join(",")
                        ))
                    };
                }
                if castable(&t, down) {
                    Ok(())
                } else {
                    Err(describe(&t))
                }
            }
            None => Ok(()),
        },
        binding_data::Value::Collection(c) => match &down.r#type {
            Some(Type::CollectionType(elem)) => c
                .bindings
                .iter()
                .filter_map(|b| b.value.as_ref())
                .try_for_each(|v| check_constant(v, elem)),
            Some(Type::UnionType(_)) => Ok(()),
            _ => Err("list".into()),
        },
        binding_data::Value::Map(m) => match &down.r#type {
            Some(Type::MapValueType(vt)) => m
                .bindings
                .values()
                .filter_map(|b| b.value.as_ref())
                .try_for_each(|v| check_constant(v, vt)),
            Some(Type::UnionType(_)) | Some(Type::Simple(_)) => Ok(()),
            _ => Err("map".into()),
        },
        // Promises are checked against their source's type by the caller.
        binding_data::Value::Promise(_) | binding_data::Value::OffloadedMetadata(_) => Ok(()),
    }
}

/// Whether an input of this type may be left unbound (an optional: a union containing none).
pub fn is_optional(t: &LiteralType) -> bool {
    match &t.r#type {
        Some(Type::UnionType(u)) => u
            .variants
            .iter()
            .any(|v| simple(v) == Some(SimpleType::None)),
        Some(Type::Simple(s)) => *s == SimpleType::None as i32,
        _ => false,
    }
}

/// `list<t>`: how an array node sees a sub-node variable.
pub fn collection_of(t: &LiteralType) -> LiteralType {
    LiteralType {
        r#type: Some(Type::CollectionType(Box::new(t.clone()))),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_idl::core::{BlobType, EnumType, UnionType};

    fn s(t: SimpleType) -> LiteralType {
        LiteralType {
            r#type: Some(Type::Simple(t as i32)),
            ..Default::default()
        }
    }
    fn u(vs: Vec<LiteralType>) -> LiteralType {
        LiteralType {
            r#type: Some(Type::UnionType(UnionType { variants: vs })),
            ..Default::default()
        }
    }
    fn blob(dim: i32, fmt: &str) -> LiteralType {
        LiteralType {
            r#type: Some(Type::Blob(BlobType {
                format: fmt.into(),
                dimensionality: dim,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn simple_types_cast_only_to_themselves() {
        assert!(castable(&s(SimpleType::Integer), &s(SimpleType::Integer)));
        assert!(!castable(&s(SimpleType::Integer), &s(SimpleType::Float)));
        assert!(!castable(&s(SimpleType::String), &s(SimpleType::Integer)));
    }

    #[test]
    fn a_value_fits_an_optional_but_an_optional_does_not_fit_a_plain_slot() {
        let opt = u(vec![s(SimpleType::Integer), s(SimpleType::None)]);
        assert!(castable(&s(SimpleType::Integer), &opt));
        assert!(castable(&s(SimpleType::None), &opt));
        assert!(!castable(&opt, &s(SimpleType::Integer)));
        assert!(castable(
            &u(vec![s(SimpleType::Integer)]),
            &s(SimpleType::Integer)
        ));
        assert!(castable(
            &opt,
            &u(vec![
                s(SimpleType::None),
                s(SimpleType::Integer),
                s(SimpleType::String)
            ])
        ));
        assert!(!castable(&s(SimpleType::Float), &opt));
    }

    #[test]
    fn collections_and_maps_are_covariant() {
        assert!(castable(
            &collection_of(&s(SimpleType::Integer)),
            &collection_of(&s(SimpleType::Integer))
        ));
        assert!(!castable(
            &collection_of(&s(SimpleType::Integer)),
            &collection_of(&s(SimpleType::String))
        ));
        let m = |t| LiteralType {
            r#type: Some(Type::MapValueType(Box::new(t))),
            ..Default::default()
        };
        assert!(castable(
            &m(s(SimpleType::String)),
            &m(s(SimpleType::String))
        ));
        assert!(!castable(
            &m(s(SimpleType::String)),
            &collection_of(&s(SimpleType::String))
        ));
    }

    #[test]
    fn blobs_need_equal_dimensionality_and_compatible_formats() {
        assert!(castable(&blob(0, ""), &blob(0, "csv")));
        assert!(castable(&blob(0, "csv"), &blob(0, "csv")));
        assert!(!castable(&blob(0, "csv"), &blob(0, "parquet")));
        assert!(!castable(&blob(0, ""), &blob(1, "")));
    }

    #[test]
    fn enums_and_strings_interconvert() {
        let e = LiteralType {
            r#type: Some(Type::EnumType(EnumType {
                values: vec!["a".into(), "b".into()],
            })),
            ..Default::default()
        };
        assert!(castable(&e, &s(SimpleType::String)));
        assert!(castable(&s(SimpleType::String), &e));
        assert!(!castable(&e, &s(SimpleType::Integer)));
    }

    #[test]
    fn none_only_fits_none_or_optionals() {
        assert!(castable(&s(SimpleType::None), &s(SimpleType::None)));
        assert!(!castable(&s(SimpleType::None), &s(SimpleType::Integer)));
    }
}
