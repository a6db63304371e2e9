//! Container template variables (`{{.Input}}`, `{{ $OutputPrefix }}`, `{{.Inputs.x}}`):
//! case-insensitive, `.` or `$` prefix, whitespace allowed. Nothing else is templated.

use contrail_idl::core::{Literal, LiteralMap, literal, primitive, scalar};
use regex::{Captures, Regex, RegexBuilder};
use std::sync::OnceLock;

/// Values for the fixed variables (already in the form the task should see).
#[derive(Debug, Clone, Default)]
pub struct Vars<'a> {
    pub input: &'a str,
    pub input_prefix: &'a str,
    pub output_prefix: &'a str,
    pub raw_output_prefix: &'a str,
    pub checkpoint_prefix: &'a str,
    /// `None` on the first attempt: rendered as the two characters `""`.
    pub prev_checkpoint_prefix: Option<&'a str>,
    pub per_retry_unique_key: &'a str,
    pub task_template_path: Option<&'a str>,
    pub namespace: &'a str,
    pub inputs: Option<&'a LiteralMap>,
}

/// Renders a container's command and arguments for a task that reaches its data by URI (on
/// another machine): `{{.input}}` and the prefixes are the attempt's blob-store URIs.
pub fn render_remote(spec: &crate::AttemptSpec, argv: &[String]) -> Result<Vec<String>, String> {
    let input_prefix = spec
        .paths
        .inputs
        .rsplit_once('/')
        .map(|(dir, _)| dir.to_string())
        .unwrap_or_default();
    let unique = spec
        .id
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
    let namespace = format!("{}-{}", spec.project, spec.domain);
    let vars = Vars {
        input: &spec.paths.inputs,
        input_prefix: &input_prefix,
        output_prefix: &spec.paths.output_prefix,
        raw_output_prefix: &spec.paths.raw_output_prefix,
        checkpoint_prefix: &spec.paths.checkpoint_prefix,
        prev_checkpoint_prefix: spec.paths.prev_checkpoint_prefix.as_deref(),
        per_retry_unique_key: &unique,
        task_template_path: None,
        namespace: &namespace,
        inputs: Some(&spec.inputs),
    };
    render_all(argv, &vars).map_err(|e| e.to_string())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("template variable {{{{.Inputs.{0}}}}}: no such input")]
    UnknownInput(String),
    #[error("template variable {{{{.Inputs.{0}}}}}: cannot render {1} as text")]
    Unrenderable(String, &'static str),
}

fn pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        RegexBuilder::new(r"\{\{[ \t]*[.$]([A-Za-z0-9_.]+)[ \t]*\}\}")
            .case_insensitive(true)
            .build()
            .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    })
}

/// Renders one argument.
pub fn render(arg: &str, v: &Vars<'_>) -> Result<String, TemplateError> {
    let mut failure = None;
    let out = pattern().replace_all(arg, |c: &Captures<'_>| {
        let name = &c[1];
        let lower = name.to_ascii_lowercase();
        let fixed = match lower.as_str() {
            "input" => Some(v.input.to_string()),
            "inputprefix" => Some(v.input_prefix.to_string()),
            "outputprefix" => Some(v.output_prefix.to_string()),
            "rawoutputdataprefix" => Some(v.raw_output_prefix.to_string()),
            "checkpointoutputprefix" => Some(v.checkpoint_prefix.to_string()),
            "prevcheckpointprefix" => Some(v.prev_checkpoint_prefix.unwrap_or("\"\"").to_string()),
            "perretryuniquekey" => Some(v.per_retry_unique_key.to_string()),
            "namespace" => Some(v.namespace.to_string()),
            "tasktemplatepath" => v.task_template_path.map(str::to_string),
            _ => None,
        };
        if let Some(s) = fixed {
            return s;
        }
        if let Some(var) = lower
            .strip_prefix("inputs.")
            .map(|_| &name["inputs.".len()..])
        {
            let lit = v.inputs.and_then(|m| m.literals.get(var));
            return match lit.map(|l| literal_text(var, l)) {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    failure.get_or_insert(e);
                    String::new()
                }
                None => {
                    failure.get_or_insert(TemplateError::UnknownInput(var.to_string()));
                    String::new()
                }
            };
        }
        // Not a variable we know: left as written.
        c[0].to_string()
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(out.into_owned()),
    }
}

/// Renders every argument.
pub fn render_all(args: &[String], v: &Vars<'_>) -> Result<Vec<String>, TemplateError> {
    args.iter().map(|a| render(a, v)).collect()
}

/// A literal as `{{.Inputs.x}}` shows it.
pub fn literal_text(var: &str, l: &Literal) -> Result<String, TemplateError> {
    let bad = |what| Err(TemplateError::Unrenderable(var.to_string(), what));
    match &l.value {
        Some(literal::Value::Scalar(s)) => match &s.value {
            Some(scalar::Value::Primitive(p)) => Ok(match &p.value {
                Some(primitive::Value::Integer(i)) => i.to_string(),
                Some(primitive::Value::FloatValue(f)) => f.to_string(),
                Some(primitive::Value::StringValue(s)) => s.clone(),
                Some(primitive::Value::Boolean(b)) => b.to_string(),
                Some(primitive::Value::Datetime(t)) => {
                    chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                        .unwrap_or_default()
                }
                Some(primitive::Value::Duration(d)) => {
                    let secs = d.seconds as f64 + d.nanos as f64 / 1e9;
                    format!("{secs}s")
                }
                None => String::new(),
            }),
            Some(scalar::Value::Blob(b)) => Ok(b.uri.clone()),
            Some(scalar::Value::Schema(s)) => Ok(s.uri.clone()),
            Some(scalar::Value::StructuredDataset(s)) => Ok(s.uri.clone()),
            Some(scalar::Value::Binary(b)) if b.tag == "msgpack" => {
                // A bounded depth: rmpv's default (1024) can overflow a thread's stack.
                rmpv::decode::read_value_with_max_depth(&mut b.value.as_slice(), 64)
                    .map(|v| match v {
                        rmpv::Value::String(s) => s.into_str().unwrap_or_default(),
                        other => other.to_string(),
                    })
                    .or_else(|_| bad("undecodable msgpack"))
            }
            Some(scalar::Value::NoneType(_)) => Ok(String::new()),
            Some(scalar::Value::Union(u)) => match &u.value {
                Some(inner) => literal_text(var, inner),
                None => Ok(String::new()),
            },
            _ => bad("this scalar"),
        },
        Some(literal::Value::Collection(c)) => {
            let items = c
                .literals
                .iter()
                .map(|l| literal_text(var, l))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(format!("[{}]", items.join(",")))
        }
        Some(literal::Value::Map(_)) => bad("a map"),
        _ => bad("an empty literal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_idl::core::{LiteralCollection, Primitive, Scalar};

    fn int(i: i64) -> Literal {
        Literal {
            value: Some(literal::Value::Scalar(Box::new(Scalar {
                value: Some(scalar::Value::Primitive(Primitive {
                    value: Some(primitive::Value::Integer(i)),
                })),
            }))),
            ..Default::default()
        }
    }

    #[test]
    fn flytekit_args_render_case_insensitively() {
        let inputs = LiteralMap {
            literals: [
                ("a".to_string(), int(3)),
                (
                    "xs".to_string(),
                    Literal {
                        value: Some(literal::Value::Collection(LiteralCollection {
                            literals: vec![int(1), int(2)],
                        })),
                        ..Default::default()
                    },
                ),
            ]
            .into(),
        };
        let v = Vars {
            input: "/d/inputs.pb",
            output_prefix: "/d/0",
            raw_output_prefix: "s3://b/xy/raw",
            checkpoint_prefix: "s3://b/xy/raw/_flytecheckpoints",
            inputs: Some(&inputs),
            ..Default::default()
        };
        let args: Vec<String> = [
            "--inputs",
            "{{.input}}",
            "--output-prefix",
            "{{.outputPrefix}}",
            "{{ $RawOutputDataPrefix }}",
            "--prev-checkpoint",
            "{{.prevCheckpointPrefix}}",
            "echo {{.Inputs.a}} {{.inputs.xs}} > /var/outputs/out",
            "{{.unknownThing}}",
        ]
        .map(String::from)
        .to_vec();
        let got = render_all(&args, &v).unwrap();
        assert_eq!(
            got,
            [
                "--inputs",
                "/d/inputs.pb",
                "--output-prefix",
                "/d/0",
                "s3://b/xy/raw",
                "--prev-checkpoint",
                "\"\"",
                "echo 3 [1,2] > /var/outputs/out",
                "{{.unknownThing}}"
            ]
        );
        assert_eq!(
            render("{{.Inputs.zz}}", &v),
            Err(TemplateError::UnknownInput("zz".into()))
        );
    }
}
