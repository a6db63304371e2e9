//! DataCatalog semantics, pure: when a task is cacheable, and the cache key Flyte derives
//! for it, byte for byte, so that keys agree with Flyte's own datacatalog.
//!
//! - dataset: `flyte_task-<task name>`, version `<cache_version>-<in8>-<out8>`, where in8/out8
//!   are the first 8 characters of the hash of the stripped input/output interface;
//! - tag: `flyte_cached-<hash of the inputs>`, without `cache_ignore_input_vars`, each
//!   literal replaced by its `hash` when it has one.
//!
//! The hash is Flyte's `pbhash`: objecthash (SHA-256) over the message's proto-JSON
//! (lowerCamelCase names, zero values omitted, enums as names, 64-bit integers as strings),
//! then unpadded base64url.

mod objecthash;

use base64::Engine as _;
use contrail_idl::core::{self, Literal, LiteralMap, LiteralType, TaskTemplate, VariableMap};
use prost_reflect::{DescriptorPool, DynamicMessage};
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the task has no cache version (metadata.discovery_version)")]
    NoCacheVersion,
    #[error("cannot hash {0}: {1}")]
    Hash(&'static str, String),
}

/// Where an artifact is filed: Flyte's dataset id plus the tag of one set of inputs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CacheKey {
    pub project: String,
    pub domain: String,
    /// `flyte_task-<task name>`
    pub name: String,
    /// `<cache_version>-<in8>-<out8>`
    pub version: String,
    /// `flyte_cached-<inputs hash>`
    pub tag: String,
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}@{}:{}",
            self.project, self.domain, self.name, self.version, self.tag
        )
    }
}

/// Whether the task's outputs may be memoized (`cache=True`).
pub fn is_cacheable(t: &TaskTemplate) -> bool {
    t.metadata.as_ref().is_some_and(|m| m.discoverable)
}

/// Whether identical runs must not overlap (`cache_serialize=True`).
pub fn is_serializable(t: &TaskTemplate) -> bool {
    is_cacheable(t) && t.metadata.as_ref().is_some_and(|m| m.cache_serializable)
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(contrail_idl::FILE_DESCRIPTOR_SET)
            .expect("the compiled flyteidl descriptor set decodes")
    })
}

/// Flyte's `pbhash.ComputeHash`: objecthash of the message's proto-JSON.
pub fn pbhash<M: prost::Message>(m: &M, full_name: &str) -> Result<[u8; 32], KeyError> {
    let desc = pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| KeyError::Hash("message", format!("{full_name} is not in the schema")))?;
    let dynamic = DynamicMessage::decode(desc, m.encode_to_vec().as_slice())
        .map_err(|e| KeyError::Hash("message", e.to_string()))?;
    let json =
        serde_json::to_value(&dynamic).map_err(|e| KeyError::Hash("message", e.to_string()))?;
    Ok(objecthash::hash(&json))
}

fn b64(h: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h)
}

/// An interface with what does not identify the data removed (Flyte's
/// `StripInterfaceTypeMetadata`).
pub fn strip_variables(m: &VariableMap) -> VariableMap {
    VariableMap {
        variables: m
            .variables
            .iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                v.description.clear();
                v.r#type = v.r#type.as_ref().map(strip_type);
                (k.clone(), v)
            })
            .collect(),
    }
}

fn strip_type(t: &LiteralType) -> LiteralType {
    use core::literal_type::Type;
    let mut c = t.clone();
    c.metadata = None;
    if c.annotation
        .as_ref()
        .and_then(|a| a.annotations.as_ref())
        .is_none_or(|s| !s.fields.contains_key("cache-key-metadata"))
    {
        c.annotation = None;
    }
    if let Some(s) = c.structure.as_mut() {
        for v in s.dataclass_type.values_mut() {
            *v = strip_type(v);
        }
    }
    c.r#type = match c.r#type.take() {
        Some(Type::CollectionType(inner)) => {
            Some(Type::CollectionType(Box::new(strip_type(&inner))))
        }
        Some(Type::MapValueType(inner)) => Some(Type::MapValueType(Box::new(strip_type(&inner)))),
        Some(Type::UnionType(mut u)) => {
            u.variants = u.variants.iter().map(strip_type).collect();
            Some(Type::UnionType(u))
        }
        Some(Type::StructuredDatasetType(mut sd)) => {
            for col in &mut sd.columns {
                col.literal_type = col.literal_type.as_ref().map(strip_type);
            }
            Some(Type::StructuredDatasetType(sd))
        }
        other => other,
    };
    c
}

fn interface_sig(m: Option<&VariableMap>) -> Result<String, KeyError> {
    let stripped = strip_variables(m.unwrap_or(&VariableMap::default()));
    let mut s = b64(&pbhash(&stripped, "flyteidl.core.VariableMap")?);
    s.truncate(8);
    Ok(s)
}

/// A literal as the cache sees it: its `hash` alone when it has one.
fn hashify(l: &Literal) -> Literal {
    use core::literal::Value;
    if !l.hash.is_empty() {
        return Literal {
            hash: l.hash.clone(),
            ..Default::default()
        };
    }
    match &l.value {
        Some(Value::Collection(c)) => Literal {
            value: Some(Value::Collection(core::LiteralCollection {
                literals: c.literals.iter().map(hashify).collect(),
            })),
            ..l.clone()
        },
        Some(Value::Map(m)) => Literal {
            value: Some(Value::Map(LiteralMap {
                literals: m
                    .literals
                    .iter()
                    .map(|(k, v)| (k.clone(), hashify(v)))
                    .collect(),
            })),
            ..l.clone()
        },
        _ => l.clone(),
    }
}

/// The tag of one set of inputs.
pub fn tag(inputs: &LiteralMap, ignored: &[String]) -> Result<String, KeyError> {
    let m = LiteralMap {
        literals: inputs
            .literals
            .iter()
            .filter(|(k, _)| !ignored.contains(k))
            .map(|(k, v)| (k.clone(), hashify(v)))
            .collect(),
    };
    Ok(format!(
        "flyte_cached-{}",
        b64(&pbhash(&m, "flyteidl.core.LiteralMap")?)
    ))
}

/// The full cache key of running `task` on `inputs`.
pub fn cache_key(task: &TaskTemplate, inputs: &LiteralMap) -> Result<CacheKey, KeyError> {
    let meta = task.metadata.clone().unwrap_or_default();
    let version = meta.discovery_version.trim();
    if version.is_empty() {
        return Err(KeyError::NoCacheVersion);
    }
    let id = task.id.clone().unwrap_or_default();
    let iface = task.interface.as_ref();
    Ok(CacheKey {
        project: id.project,
        domain: id.domain,
        name: format!("flyte_task-{}", id.name),
        version: format!(
            "{version}-{}-{}",
            interface_sig(iface.and_then(|i| i.inputs.as_ref()))?,
            interface_sig(iface.and_then(|i| i.outputs.as_ref()))?
        ),
        tag: tag(inputs, &meta.cache_ignore_input_vars)?,
    })
}

#[cfg(test)]
mod tests {
    //! The vectors of `cache-key-vectors.md` (asserted by Flyte's own unit tests).
    use super::*;
    use contrail_idl::core::{Variable, primitive::Value as P};

    fn simple(t: core::SimpleType) -> LiteralType {
        LiteralType {
            r#type: Some(core::literal_type::Type::Simple(t as i32)),
            ..Default::default()
        }
    }

    fn vars(pairs: &[(&str, core::SimpleType)]) -> VariableMap {
        VariableMap {
            variables: pairs
                .iter()
                .map(|(k, t)| {
                    (
                        k.to_string(),
                        Variable {
                            r#type: Some(simple(*t)),
                            description: "ignored".into(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        }
    }

    fn task(name: &str, inputs: Option<VariableMap>, outputs: Option<VariableMap>) -> TaskTemplate {
        TaskTemplate {
            id: Some(core::Identifier {
                project: "p".into(),
                domain: "d".into(),
                name: name.into(),
                version: "v".into(),
                ..Default::default()
            }),
            interface: Some(core::TypedInterface { inputs, outputs }),
            metadata: Some(core::TaskMetadata {
                discoverable: true,
                discovery_version: "1.0.0".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn lit(v: P) -> Literal {
        contrail_idl::core::Literal {
            value: Some(core::literal::Value::Scalar(Box::new(core::Scalar {
                value: Some(core::scalar::Value::Primitive(core::Primitive {
                    value: Some(v),
                })),
            }))),
            ..Default::default()
        }
    }

    fn map(pairs: &[(&str, Literal)]) -> LiteralMap {
        LiteralMap {
            literals: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    #[test]
    fn dataset_versions_match_flyte() {
        let empty = LiteralMap::default();
        for (inputs, outputs) in [
            (None, None),
            (Some(VariableMap::default()), Some(VariableMap::default())),
        ] {
            let k = cache_key(&task("t", inputs, outputs), &empty).unwrap();
            assert_eq!(k.version, "1.0.0-GKw-c0Pw-GKw-c0Pw");
        }
        use contrail_idl::core::SimpleType::{Integer, String as Str};
        let k = cache_key(
            &task("t", Some(vars(&[("1", Integer), ("2", Integer)])), None),
            &empty,
        )
        .unwrap();
        assert_eq!(k.version, "1.0.0-UxVtPm0k-GKw-c0Pw");
        let k = cache_key(
            &task(
                "name",
                Some(vars(&[("test", Str)])),
                Some(vars(&[("test", Str)])),
            ),
            &empty,
        )
        .unwrap();
        assert_eq!(
            (k.name.as_str(), k.version.as_str()),
            ("flyte_task-name", "1.0.0-ue5g6uuI-ue5g6uuI")
        );
        assert_eq!((k.project.as_str(), k.domain.as_str()), ("p", "d"));
    }

    #[test]
    fn tags_match_flyte() {
        let two = map(&[("1", lit(P::Integer(1))), ("2", lit(P::Integer(2)))]);
        let expected = "flyte_cached-GQid5LjHbakcW68DS3P2jp80QLbiF0olFHF2hTh5bg8";
        assert_eq!(tag(&two, &[]).unwrap(), expected);
        let three = map(&[
            ("1", lit(P::Integer(1))),
            ("2", lit(P::Integer(2))),
            ("3", lit(P::Integer(3))),
        ]);
        assert_eq!(tag(&three, &["3".to_string()]).unwrap(), expected);
        let s = map(&[("out1", lit(P::StringValue("output1-stringval".into())))]);
        assert_eq!(
            tag(&s, &[]).unwrap(),
            "flyte_cached-BE6CZsMk6N3ExR_4X9EuwBgj2Jh2UwasXK3a_pM9xlY"
        );
        assert_eq!(
            tag(&LiteralMap::default(), &[]).unwrap(),
            "flyte_cached-GKw-c0PwFokMUQ6T-TUmEWnZ4_VlQ2Qpgw-vCTT0-OQ"
        );
    }

    #[test]
    fn a_literal_hash_stands_for_its_value_and_descriptions_do_not_count() {
        let mut a = lit(P::StringValue("big file contents".into()));
        a.hash = "content-hash".into();
        let mut b = lit(P::StringValue("other bytes".into()));
        b.hash = "content-hash".into();
        assert_eq!(
            tag(&map(&[("f", a)]), &[]).unwrap(),
            tag(&map(&[("f", b)]), &[]).unwrap()
        );
        let mut plain = vars(&[("x", core::SimpleType::Integer)]);
        let k1 = cache_key(
            &task("t", Some(plain.clone()), None),
            &LiteralMap::default(),
        )
        .unwrap();
        plain.variables.get_mut("x").unwrap().description = "something else".into();
        let k2 = cache_key(&task("t", Some(plain), None), &LiteralMap::default()).unwrap();
        assert_eq!(k1.version, k2.version);
    }

    #[test]
    fn a_task_without_a_cache_version_has_no_key() {
        let mut t = task("t", None, None);
        t.metadata.as_mut().unwrap().discovery_version = "  ".into();
        assert_eq!(
            cache_key(&t, &LiteralMap::default()),
            Err(KeyError::NoCacheVersion)
        );
    }
}
