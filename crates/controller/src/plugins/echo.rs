//! The `echo` task type (flytekit's `Echo`, emitted for the empty branches of a
//! `conditional`): its outputs are its inputs, written at launch without any process.
//!
//! Flyte's plugin accepts at most one input; here inputs and outputs are paired in the
//! order of their names (`o0`, `o1`, … as flytekit names outputs), so several inputs work
//! too. Different counts fail the attempt with an error naming both.

use contrail_blob::BlobStore;
use contrail_engine::{Failure, TaskStatus};
use contrail_executor::{AttemptSpec, Error, Executor, Result};
use contrail_idl::core::{LiteralMap, TaskLog};
use prost::Message;

pub const TASK_TYPE: &str = "echo";

pub struct Echo {
    blob: BlobStore,
}

impl Echo {
    pub fn new(blob: BlobStore) -> Self {
        Echo { blob }
    }

    fn outputs_key(&self, spec: &AttemptSpec) -> Result<String> {
        let key = self
            .blob
            .key_of(&spec.paths.output_prefix)
            .map_err(|e| Error::Io(e.to_string()))?;
        Ok(contrail_blob::layout::outputs_in(key.trim_end_matches('/')))
    }
}

/// The interface's input and output names, paired; `Err` when the counts differ.
fn pairs(spec: &AttemptSpec) -> std::result::Result<Vec<(&String, &String)>, String> {
    let interface = spec.task.interface.as_ref();
    let inputs: Vec<&String> = interface
        .and_then(|i| i.inputs.as_ref())
        .map(|v| v.variables.keys().collect())
        .unwrap_or_default();
    let outputs: Vec<&String> = interface
        .and_then(|i| i.outputs.as_ref())
        .map(|v| v.variables.keys().collect())
        .unwrap_or_default();
    if inputs.len() != outputs.len() {
        return Err(format!(
            "echo task has {} inputs and {} outputs; they must be equal",
            inputs.len(),
            outputs.len()
        ));
    }
    Ok(inputs.into_iter().zip(outputs).collect())
}

/// The outputs of echoing the attempt's inputs.
fn echo(spec: &AttemptSpec) -> std::result::Result<LiteralMap, String> {
    let mut literals = std::collections::BTreeMap::new();
    for (input, output) in pairs(spec)? {
        let value = spec
            .inputs
            .literals
            .get(input)
            .ok_or_else(|| format!("echo task input '{input}' has no value"))?;
        literals.insert(output.clone(), value.clone());
    }
    Ok(LiteralMap { literals })
}

impl Executor for Echo {
    fn launch(&self, spec: &AttemptSpec, _on_change: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        // A mismatched interface is reported by `status`; inputs always match it, since
        // the engine resolved them from it.
        if let Ok(outputs) = echo(spec) {
            self.blob
                .put(&self.outputs_key(spec)?, &outputs.encode_to_vec())
                .map_err(|e| Error::Io(e.to_string()))?;
        }
        Ok(())
    }

    fn status(&self, spec: &AttemptSpec) -> Result<TaskStatus> {
        let io = |e: contrail_blob::Error| Error::Io(e.to_string());
        if self.blob.exists(&self.outputs_key(spec)?).map_err(io)? {
            return Ok(TaskStatus::Succeeded);
        }
        match pairs(spec) {
            Err(message) => Ok(TaskStatus::Failed(Failure::user(
                "EchoFailed",
                message,
                false,
            ))),
            Ok(_) => Ok(TaskStatus::Unknown),
        }
    }

    fn abort(&self, _spec: &AttemptSpec) -> Result<()> {
        Ok(())
    }

    fn logs(&self, _spec: &AttemptSpec) -> Vec<TaskLog> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_executor::AttemptPaths;
    use contrail_idl::core::{
        Literal, TaskTemplate, TypedInterface, Variable, VariableMap, primitive, scalar,
    };

    fn int(v: i64) -> Literal {
        contrail_engine::resolve::scalar_literal(scalar::Value::Primitive(
            contrail_idl::core::Primitive {
                value: Some(primitive::Value::Integer(v)),
            },
        ))
    }

    fn vars(names: &[&str]) -> Option<VariableMap> {
        Some(VariableMap {
            variables: names
                .iter()
                .map(|n| (n.to_string(), Variable::default()))
                .collect(),
        })
    }

    fn spec(ins: &[&str], outs: &[&str]) -> AttemptSpec {
        AttemptSpec {
            task: TaskTemplate {
                r#type: TASK_TYPE.into(),
                interface: Some(TypedInterface {
                    inputs: vars(ins),
                    outputs: vars(outs),
                }),
                ..Default::default()
            },
            paths: AttemptPaths {
                output_prefix: "s3://b/out/n0/data/0".into(),
                ..Default::default()
            },
            inputs: LiteralMap {
                literals: ins.iter().map(|n| (n.to_string(), int(7))).collect(),
            },
            ..Default::default()
        }
    }

    #[test]
    fn outputs_are_the_inputs_without_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let echo = Echo::new(BlobStore::new(dir.path(), "b", vec![1]));
        let s = spec(&["a"], &["o0"]);
        assert_eq!(echo.status(&s).unwrap(), TaskStatus::Unknown);
        echo.launch(&s, Box::new(|| {})).unwrap();
        assert_eq!(echo.status(&s).unwrap(), TaskStatus::Succeeded);
        let out = LiteralMap::decode(
            echo.blob
                .get("out/n0/data/0/outputs.pb")
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        assert_eq!(out.literals.get("o0"), Some(&int(7)));
    }

    #[test]
    fn mismatched_interfaces_fail_the_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let echo = Echo::new(BlobStore::new(dir.path(), "b", vec![1]));
        let s = spec(&["a", "b"], &["o0"]);
        echo.launch(&s, Box::new(|| {})).unwrap();
        match echo.status(&s).unwrap() {
            TaskStatus::Failed(f) => assert!(f.message.contains("2 inputs and 1 outputs")),
            other => panic!("{other:?}"),
        }
    }
}
