//! Explains how two registrations under one id differ, by walking both specs with
//! reflection over the compiled schema and naming the first differing field path.

use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value};

fn pool() -> &'static DescriptorPool {
    crate::schema()
}

/// The path of the first field where the two encoded messages of `type_name` differ.
pub fn first_difference(type_name: &str, old: &[u8], new: &[u8]) -> Option<String> {
    let desc = pool().get_message_by_name(type_name)?;
    let a = DynamicMessage::decode(desc.clone(), old).ok()?;
    let b = DynamicMessage::decode(desc, new).ok()?;
    diff_message(&a, &b, "spec")
}

fn diff_message(a: &DynamicMessage, b: &DynamicMessage, path: &str) -> Option<String> {
    for field in a.descriptor().fields() {
        let (va, vb) = (a.get_field(&field), b.get_field(&field));
        if va != vb {
            let p = format!("{path}.{}", field.name());
            return Some(diff_value(&va, &vb, &p).unwrap_or(p));
        }
    }
    None
}

fn diff_value(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Message(x), Value::Message(y)) => diff_message(x, y, path),
        (Value::List(x), Value::List(y)) => {
            for (i, (ex, ey)) in x.iter().zip(y.iter()).enumerate() {
                if ex != ey {
                    let p = format!("{path}[{i}]");
                    return Some(diff_value(ex, ey, &p).unwrap_or(p));
                }
            }
            Some(format!("{path} (length {} vs {})", x.len(), y.len()))
        }
        (Value::Map(x), Value::Map(y)) => {
            for (k, vx) in x {
                let p = format!("{path}[{k:?}]");
                match y.get(k) {
                    Some(vy) if vy == vx => {}
                    Some(vy) => return Some(diff_value(vx, vy, &p).unwrap_or(p)),
                    None => return Some(p),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{path}[{k:?}]"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_idl::admin::TaskSpec;
    use contrail_idl::core::{Container, TaskTemplate, task_template::Target};
    use prost::Message;

    #[test]
    fn names_the_first_differing_argument() {
        let spec = |arg: &str| TaskSpec {
            template: Some(TaskTemplate {
                r#type: "python-task".into(),
                target: Some(Target::Container(Container {
                    args: vec!["a".into(), arg.into()],
                    ..Default::default()
                })),
                ..Default::default()
            }),
            description: None,
        };
        let d = first_difference(
            "flyteidl.admin.TaskSpec",
            &spec("x").encode_to_vec(),
            &spec("y").encode_to_vec(),
        );
        assert_eq!(d.as_deref(), Some("spec.template.container.args[1]"));
        assert_eq!(
            first_difference(
                "flyteidl.admin.TaskSpec",
                &spec("x").encode_to_vec(),
                &spec("x").encode_to_vec()
            ),
            None
        );
    }
}
