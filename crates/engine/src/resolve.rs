//! Binding resolution: turns a node's input bindings into a `LiteralMap`, given the outputs
//! of the nodes it reads from. Pure; the caller loads the upstream outputs.

use contrail_idl::core::{
    self, Binary, Literal, LiteralCollection, LiteralMap, Primitive, Scalar, binding_data, literal,
    primitive, promise_attribute, scalar,
};

/// Why bindings could not be resolved (a data error: retrying cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ResolveError> {
    Err(ResolveError(msg.into()))
}

/// Resolves every binding; `outputs(node_id)` returns that node's outputs.
pub fn resolve_bindings<'a>(
    bindings: &[core::Binding],
    outputs: &dyn Fn(&str) -> Option<&'a LiteralMap>,
) -> Result<LiteralMap, ResolveError> {
    let mut out = LiteralMap::default();
    for b in bindings {
        let Some(data) = &b.binding else {
            return err(format!("input {}: binding has no value", b.var));
        };
        let lit = resolve(data, outputs)
            .map_err(|e| ResolveError(format!("input {}: {}", b.var, e.0)))?;
        out.literals.insert(b.var.clone(), lit);
    }
    Ok(out)
}

fn resolve<'a>(
    data: &core::BindingData,
    outputs: &dyn Fn(&str) -> Option<&'a LiteralMap>,
) -> Result<Literal, ResolveError> {
    let value = match &data.value {
        None => return err("empty binding"),
        Some(binding_data::Value::Scalar(s)) => literal::Value::Scalar(Box::new(s.clone())),
        Some(binding_data::Value::Collection(c)) => literal::Value::Collection(LiteralCollection {
            literals: c
                .bindings
                .iter()
                .map(|b| resolve(b, outputs))
                .collect::<Result<_, _>>()?,
        }),
        Some(binding_data::Value::Map(m)) => literal::Value::Map(LiteralMap {
            literals: m
                .bindings
                .iter()
                .map(|(k, b)| Ok((k.clone(), resolve(b, outputs)?)))
                .collect::<Result<_, ResolveError>>()?,
        }),
        Some(binding_data::Value::Promise(p)) => {
            let Some(map) = outputs(&p.node_id) else {
                return err(format!("outputs of node {} are not available", p.node_id));
            };
            let Some(lit) = map.literals.get(&p.var) else {
                return err(format!("node {} has no output {}", p.node_id, p.var));
            };
            return walk(lit.clone(), &p.attr_path);
        }
        Some(binding_data::Value::OffloadedMetadata(_)) => {
            return err("offloaded literals are not supported");
        }
    };
    Ok(Literal {
        value: Some(value),
        ..Default::default()
    })
}

fn key_text(a: &core::PromiseAttribute) -> String {
    match &a.value {
        Some(promise_attribute::Value::StringValue(s)) => s.clone(),
        Some(promise_attribute::Value::IntValue(i)) => i.to_string(),
        None => String::new(),
    }
}

/// How deep a msgpack value may nest. Task outputs are data a user's code wrote: a deeper
/// one is refused rather than recursed into (rmpv's own limit, 1024, overflows a 2 MiB
/// thread stack).
pub const MSGPACK_MAX_DEPTH: usize = 64;

/// Follows `attr_path` through maps, collections, msgpack binaries and protobuf structs.
pub fn walk(mut lit: Literal, path: &[core::PromiseAttribute]) -> Result<Literal, ResolveError> {
    for (i, a) in path.iter().enumerate() {
        match (lit.value.take(), &a.value) {
            (Some(literal::Value::Map(mut m)), Some(promise_attribute::Value::StringValue(k))) => {
                lit = m
                    .literals
                    .remove(k)
                    .ok_or_else(|| ResolveError(format!("key {k} not found")))?;
            }
            (
                Some(literal::Value::Collection(mut c)),
                Some(promise_attribute::Value::IntValue(ix)),
            ) => {
                let ix = *ix as usize;
                if ix >= c.literals.len() {
                    return err(format!("index {ix} out of range ({})", c.literals.len()));
                }
                lit = c.literals.swap_remove(ix);
            }
            (Some(literal::Value::Scalar(sc)), _) => match sc.value {
                Some(scalar::Value::Binary(b)) if b.tag == "msgpack" => {
                    let mut v = rmpv::decode::read_value_with_max_depth(
                        &mut b.value.as_slice(),
                        MSGPACK_MAX_DEPTH,
                    )
                    .map_err(|e| ResolveError(format!("cannot decode msgpack value: {e}")))?;
                    for a in &path[i..] {
                        v = msgpack_child(v, a)?;
                    }
                    return Ok(msgpack_literal(v));
                }
                Some(scalar::Value::Generic(st)) => {
                    let mut v = prost_types::Value {
                        kind: Some(prost_types::value::Kind::StructValue(st)),
                    };
                    for a in &path[i..] {
                        v = struct_child(v, a)?;
                    }
                    return Ok(struct_literal(v));
                }
                _ => return err(format!("cannot resolve attribute {}", key_text(a))),
            },
            _ => return err(format!("cannot resolve attribute {}", key_text(a))),
        }
    }
    Ok(lit)
}

fn msgpack_child(v: rmpv::Value, a: &core::PromiseAttribute) -> Result<rmpv::Value, ResolveError> {
    match (v, &a.value) {
        (rmpv::Value::Map(entries), Some(promise_attribute::Value::StringValue(k))) => entries
            .into_iter()
            .find(|(key, _)| key.as_str() == Some(k.as_str()))
            .map(|(_, v)| v)
            .ok_or_else(|| ResolveError(format!("key {k} not found"))),
        (rmpv::Value::Array(mut items), Some(promise_attribute::Value::IntValue(ix))) => {
            let ix = *ix as usize;
            if ix >= items.len() {
                return err(format!("index {ix} out of range ({})", items.len()));
            }
            Ok(items.swap_remove(ix))
        }
        _ => err(format!("cannot resolve attribute {}", key_text(a))),
    }
}

/// For an array node: a msgpack list (what an attribute path into a dataclass yields)
/// becomes a collection with one literal per element, so the node can be mapped over it.
pub fn spread_msgpack_lists(m: &mut LiteralMap) {
    for lit in m.literals.values_mut() {
        let Some(literal::Value::Scalar(sc)) = &lit.value else {
            continue;
        };
        let Some(scalar::Value::Binary(b)) = &sc.value else {
            continue;
        };
        if b.tag != "msgpack" {
            continue;
        }
        if let Ok(rmpv::Value::Array(items)) =
            rmpv::decode::read_value_with_max_depth(&mut b.value.as_slice(), MSGPACK_MAX_DEPTH)
        {
            *lit = Literal {
                value: Some(literal::Value::Collection(LiteralCollection {
                    literals: items.into_iter().map(msgpack_literal).collect(),
                })),
                ..Default::default()
            };
        }
    }
}

/// The inputs of one array item: element `i` of every collection input, except the inputs
/// passed whole (`bound`).
pub fn item_inputs(
    m: &LiteralMap,
    i: usize,
    bound: &std::collections::BTreeSet<String>,
) -> Result<LiteralMap, ResolveError> {
    let mut out = LiteralMap::default();
    for (k, v) in &m.literals {
        let lit = match &v.value {
            Some(literal::Value::Collection(c)) if !bound.contains(k) => c
                .literals
                .get(i)
                .cloned()
                .ok_or_else(|| ResolveError(format!("input {k} has no element {i}")))?,
            _ => v.clone(),
        };
        out.literals.insert(k.clone(), lit);
    }
    Ok(out)
}

/// A literal holding one primitive.
pub fn primitive_literal(p: primitive::Value) -> Literal {
    scalar_literal(scalar::Value::Primitive(Primitive { value: Some(p) }))
}

/// A literal holding one scalar.
pub fn scalar_literal(v: scalar::Value) -> Literal {
    Literal {
        value: Some(literal::Value::Scalar(Box::new(Scalar { value: Some(v) }))),
        ..Default::default()
    }
}

fn msgpack_literal(v: rmpv::Value) -> Literal {
    match v {
        rmpv::Value::Integer(i) if i.as_i64().is_some() => {
            primitive_literal(primitive::Value::Integer(i.as_i64().unwrap_or_default()))
        }
        rmpv::Value::F32(f) => primitive_literal(primitive::Value::FloatValue(f as f64)),
        rmpv::Value::F64(f) => primitive_literal(primitive::Value::FloatValue(f)),
        rmpv::Value::Boolean(b) => primitive_literal(primitive::Value::Boolean(b)),
        rmpv::Value::String(s) if s.as_str().is_some() => primitive_literal(
            primitive::Value::StringValue(s.into_str().unwrap_or_default()),
        ),
        rmpv::Value::Nil => scalar_literal(scalar::Value::NoneType(core::Void {})),
        other => {
            let mut buf = Vec::new();
            // Writing to a Vec cannot fail.
            let _ = rmpv::encode::write_value(&mut buf, &other);
            scalar_literal(scalar::Value::Binary(Binary {
                value: buf,
                tag: "msgpack".into(),
            }))
        }
    }
}

fn struct_child(
    v: prost_types::Value,
    a: &core::PromiseAttribute,
) -> Result<prost_types::Value, ResolveError> {
    use prost_types::value::Kind;
    match (v.kind, &a.value) {
        (Some(Kind::StructValue(mut s)), Some(promise_attribute::Value::StringValue(k))) => s
            .fields
            .remove(k)
            .ok_or_else(|| ResolveError(format!("key {k} not found"))),
        (Some(Kind::ListValue(mut l)), Some(promise_attribute::Value::IntValue(ix))) => {
            let ix = *ix as usize;
            if ix >= l.values.len() {
                return err(format!("index {ix} out of range ({})", l.values.len()));
            }
            Ok(l.values.swap_remove(ix))
        }
        _ => err(format!("cannot resolve attribute {}", key_text(a))),
    }
}

fn struct_literal(v: prost_types::Value) -> Literal {
    use prost_types::value::Kind;
    match v.kind {
        Some(Kind::NumberValue(n)) => primitive_literal(primitive::Value::FloatValue(n)),
        Some(Kind::StringValue(s)) => primitive_literal(primitive::Value::StringValue(s)),
        Some(Kind::BoolValue(b)) => primitive_literal(primitive::Value::Boolean(b)),
        Some(Kind::StructValue(s)) => scalar_literal(scalar::Value::Generic(s)),
        Some(Kind::ListValue(l)) => Literal {
            value: Some(literal::Value::Collection(LiteralCollection {
                literals: l.values.into_iter().map(struct_literal).collect(),
            })),
            ..Default::default()
        },
        Some(Kind::NullValue(_)) | None => scalar_literal(scalar::Value::NoneType(core::Void {})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> Literal {
        primitive_literal(primitive::Value::Integer(i))
    }

    fn list(xs: &[i64]) -> Literal {
        Literal {
            value: Some(literal::Value::Collection(LiteralCollection {
                literals: xs.iter().map(|x| int(*x)).collect(),
            })),
            ..Default::default()
        }
    }

    #[test]
    fn array_items_get_their_element_and_bound_inputs_whole() {
        let m = LiteralMap {
            literals: [
                ("x".to_string(), list(&[10, 20, 30])),
                ("k".to_string(), list(&[7, 8])),
                ("s".to_string(), int(5)),
            ]
            .into_iter()
            .collect(),
        };
        let bound = ["k".to_string()].into_iter().collect();
        let one = item_inputs(&m, 1, &bound).unwrap();
        assert_eq!(one.literals["x"], int(20));
        assert_eq!(one.literals["k"], list(&[7, 8]));
        assert_eq!(one.literals["s"], int(5));
        assert!(item_inputs(&m, 3, &bound).unwrap_err().0.contains("x"));
    }

    #[test]
    fn a_msgpack_list_spreads_into_a_collection_for_array_nodes() {
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &rmpv::Value::Array(vec![1.into(), 2.into()])).unwrap();
        let mut m = LiteralMap {
            literals: [(
                "x".to_string(),
                scalar_literal(scalar::Value::Binary(Binary {
                    value: buf,
                    tag: "msgpack".into(),
                })),
            )]
            .into_iter()
            .collect(),
        };
        spread_msgpack_lists(&mut m);
        assert_eq!(m.literals["x"], list(&[1, 2]));
    }

    fn promise(node: &str, var: &str, path: Vec<promise_attribute::Value>) -> core::BindingData {
        core::BindingData {
            value: Some(binding_data::Value::Promise(core::OutputReference {
                node_id: node.into(),
                var: var.into(),
                attr_path: path
                    .into_iter()
                    .map(|v| core::PromiseAttribute { value: Some(v) })
                    .collect(),
            })),
            ..Default::default()
        }
    }

    #[test]
    fn promises_collections_and_msgpack_attributes_resolve() {
        // {"a": {"b": [40, 41]}, "s": "x"} as msgpack
        let v = rmpv::Value::Map(vec![
            (
                "a".into(),
                rmpv::Value::Map(vec![(
                    "b".into(),
                    rmpv::Value::Array(vec![40.into(), 41.into()]),
                )]),
            ),
            ("s".into(), "x".into()),
        ]);
        let mut buf = Vec::new();
        rmpv::encode::write_value(&mut buf, &v).unwrap();
        let dc = scalar_literal(scalar::Value::Binary(Binary {
            value: buf,
            tag: "msgpack".into(),
        }));
        let n0 = LiteralMap {
            literals: [("o0".to_string(), int(7)), ("o1".to_string(), dc)].into(),
        };
        let inputs = LiteralMap {
            literals: [("x".to_string(), int(1))].into(),
        };
        let lookup = |id: &str| match id {
            "n0" => Some(&n0),
            "start-node" => Some(&inputs),
            _ => None,
        };
        use promise_attribute::Value::{IntValue, StringValue};
        let bindings = vec![
            core::Binding {
                var: "a".into(),
                binding: Some(promise("n0", "o0", vec![])),
            },
            core::Binding {
                var: "b".into(),
                binding: Some(core::BindingData {
                    value: Some(binding_data::Value::Collection(
                        core::BindingDataCollection {
                            bindings: vec![
                                promise("start-node", "x", vec![]),
                                promise("n0", "o0", vec![]),
                            ],
                        },
                    )),
                    ..Default::default()
                }),
            },
            core::Binding {
                var: "c".into(),
                binding: Some(promise(
                    "n0",
                    "o1",
                    vec![
                        StringValue("a".into()),
                        StringValue("b".into()),
                        IntValue(1),
                    ],
                )),
            },
        ];
        let got = resolve_bindings(&bindings, &lookup).unwrap();
        assert_eq!(got.literals["a"], int(7));
        assert_eq!(
            got.literals["b"].value,
            Some(literal::Value::Collection(LiteralCollection {
                literals: vec![int(1), int(7)]
            }))
        );
        assert_eq!(got.literals["c"], int(41));

        let missing = vec![core::Binding {
            var: "z".into(),
            binding: Some(promise("n0", "o1", vec![StringValue("nope".into())])),
        }];
        let e = resolve_bindings(&missing, &lookup).unwrap_err();
        assert_eq!(e.0, "input z: key nope not found");
        let absent = vec![core::Binding {
            var: "z".into(),
            binding: Some(promise("n9", "o0", vec![])),
        }];
        assert!(
            resolve_bindings(&absent, &lookup)
                .unwrap_err()
                .0
                .contains("n9")
        );
    }
}
