//! Raw container tasks (flytekit `ContainerTask`), following Flyte's copilot convention:
//! each input is written as a file named after it into the input directory (primitives as
//! text, blobs as the file itself, plus `inputs.pb`), and each declared output is read back
//! from a file of its name in the output directory. The container's paths (`/var/inputs`,
//! `/var/outputs`) are rewritten to directories in the attempt's sandbox.

use contrail_blob::BlobStore;
use contrail_engine::resolve::{primitive_literal, scalar_literal};
use contrail_executor::AttemptSpec;
use contrail_executor::template::literal_text;
use contrail_idl::core::{
    self, Blob, BlobMetadata, ContainerError, DataLoadingConfig, ErrorDocument, Literal,
    LiteralMap, SimpleType, literal, literal_type, primitive, scalar,
};
use prost::Message;
use std::path::Path;

pub fn stage_inputs(
    blob: &BlobStore,
    dc: &DataLoadingConfig,
    spec: &AttemptSpec,
    sandbox: &Path,
    staging: &Path,
    argv: &mut [String],
) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot stage inputs: {e}");
    let inputs = staging.join("inputs");
    std::fs::create_dir_all(&inputs).map_err(fail)?;
    std::fs::create_dir_all(staging.join("outputs")).map_err(fail)?;
    for (var, lit) in &spec.inputs.literals {
        let target = inputs.join(var);
        if let Some(literal::Value::Scalar(s)) = &lit.value
            && let Some(scalar::Value::Blob(b)) = &s.value
        {
            blob.key_of(&b.uri)
                .and_then(|k| blob.download(k, &target))
                .map_err(|e| format!("input {var}: {e}"))?;
            continue;
        }
        if let Ok(text) = literal_text(var, lit) {
            std::fs::write(&target, text).map_err(fail)?;
        }
    }
    std::fs::write(inputs.join("inputs.pb"), spec.inputs.encode_to_vec()).map_err(fail)?;
    let ins = sandbox.join("inputs").to_string_lossy().into_owned();
    let outs = sandbox.join("outputs").to_string_lossy().into_owned();
    for a in argv.iter_mut() {
        if !dc.input_path.is_empty() {
            *a = a.replace(&dc.input_path, &ins);
        }
        if !dc.output_path.is_empty() {
            *a = a.replace(&dc.output_path, &outs);
        }
    }
    Ok(())
}

fn parse_output(
    blob: &BlobStore,
    spec: &AttemptSpec,
    var: &str,
    ty: &core::LiteralType,
    file: &Path,
) -> Result<Literal, String> {
    match &ty.r#type {
        Some(literal_type::Type::Blob(bt)) => {
            let key = format!(
                "{}/{var}",
                blob.key_of(&spec.paths.raw_output_prefix)
                    .map_err(|e| e.to_string())?
                    .trim_end_matches('/')
            );
            blob.upload(file, &key).map_err(|e| e.to_string())?;
            Ok(scalar_literal(scalar::Value::Blob(Blob {
                metadata: Some(BlobMetadata {
                    r#type: Some(bt.clone()),
                }),
                uri: blob.uri(&key),
            })))
        }
        Some(literal_type::Type::Simple(t)) => {
            let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
            let text = text.trim_end_matches(['\n', '\r']);
            let bad = || {
                format!(
                    "output {var}: cannot parse {text:?} as {}",
                    SimpleType::try_from(*t)
                        .map(|s| s.as_str_name())
                        .unwrap_or("?")
                )
            };
            let v = match SimpleType::try_from(*t) {
                Ok(SimpleType::Integer) => {
                    primitive::Value::Integer(text.trim().parse().map_err(|_| bad())?)
                }
                Ok(SimpleType::Float) => {
                    primitive::Value::FloatValue(text.trim().parse().map_err(|_| bad())?)
                }
                Ok(SimpleType::String) => primitive::Value::StringValue(text.to_string()),
                Ok(SimpleType::Boolean) => primitive::Value::Boolean(match text.trim() {
                    "true" | "True" | "1" => true,
                    "false" | "False" | "0" => false,
                    _ => return Err(bad()),
                }),
                _ => return Err(bad()),
            };
            Ok(primitive_literal(v))
        }
        _ => Err(format!(
            "output {var}: this type cannot be read from a file"
        )),
    }
}

/// Builds `outputs.pb` (or `error.pb`) under the output prefix `out` (a key) from the
/// files the container wrote. Writes nothing when a declared output is missing (the
/// attempt then fails with OutputsNotFound).
pub fn collect_outputs(
    blob: &BlobStore,
    _dc: &DataLoadingConfig,
    spec: &AttemptSpec,
    sandbox: &Path,
    out: &str,
) -> contrail_executor::Result<()> {
    let io = |e: contrail_blob::Error| contrail_executor::Error::Io(e.to_string());
    let vars = spec
        .task
        .interface
        .as_ref()
        .and_then(|i| i.outputs.as_ref())
        .map(|o| o.variables.clone())
        .unwrap_or_default();
    let mut map = LiteralMap::default();
    for (var, v) in &vars {
        let file = sandbox.join("outputs").join(var);
        if !file.exists() {
            return Ok(());
        }
        let ty = v.r#type.clone().unwrap_or_default();
        match parse_output(blob, spec, var, &ty, &file) {
            Ok(l) => {
                map.literals.insert(var.clone(), l);
            }
            Err(message) => {
                let doc = ErrorDocument {
                    error: Some(ContainerError {
                        code: "USER:OutputParseError".into(),
                        message,
                        kind: 0,
                        origin: 1,
                        ..Default::default()
                    }),
                };
                return blob
                    .put(&format!("{out}/error.pb"), &doc.encode_to_vec())
                    .map_err(io);
            }
        }
    }
    blob.put(&format!("{out}/outputs.pb"), &map.encode_to_vec())
        .map_err(io)
}
