//! The batch job of an attempt, built purely from its description: `sbatch` options and
//! the script Slurm runs on a compute node. Tasks reach their data through the object
//! store (the URIs in the command, `FLYTE_AWS_*` in the environment), never through the
//! server's files.

use crate::SlurmConfig;
use contrail_executor::AttemptSpec;
use contrail_executor::env::{image_match, last_wins, task_env};
use contrail_executor::resources::amount;
use contrail_executor::template;
use contrail_idl::core::resources::ResourceName;

/// What `sbatch` is given: its options, and the script on its standard input.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchJob {
    pub options: Vec<String>,
    pub script: String,
}

/// The shell variable holding the job's working directory on the node.
const WORK: &str = "CONTRAIL_WORK_DIR";

fn quote(s: &str) -> String {
    // Only NUL cannot be quoted; task arguments never hold it, and if one did, the job
    // would fail to start rather than run something else.
    shlex::try_quote(s)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| "''".into())
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `--time` for a timeout: whole minutes, rounded up, at least one.
fn time_limit(seconds: i64) -> String {
    let minutes = (seconds.max(1) + 59) / 60;
    format!("{}:{:02}:00", minutes / 60, minutes % 60)
}

/// The attempt's job. `Err` is a message for the user: the attempt cannot run on Slurm.
pub fn build(
    spec: &AttemptSpec,
    cfg: &SlurmConfig,
    endpoints: &[(String, String)],
) -> Result<BatchJob, String> {
    let task = &spec.task;
    let Some(container) = contrail_executor::container(task) else {
        return Err(format!(
            "task type '{}' has no container; the Slurm executor runs container tasks only",
            task.r#type
        ));
    };
    if container.data_config.as_ref().is_some_and(|d| d.enabled) {
        return Err(
            "raw container tasks (data_config) need a container runtime; the Slurm executor \
             runs commands in a Python environment: route this task to another executor"
                .into(),
        );
    }
    let argv: Vec<String> = container
        .command
        .iter()
        .chain(&container.args)
        .cloned()
        .collect();
    let argv = template::render_remote(spec, &argv)?;
    if argv.is_empty() {
        return Err("the task's container has no command".into());
    }
    // pyflyte-fast-execute extracts the code into --dest-dir: the job's own directory.
    let dest = argv.iter().position(|a| a == "--dest-dir").map(|i| i + 1);
    let command: Vec<String> = argv
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if Some(i) == dest {
                format!("\"${WORK}\"")
            } else {
                quote(a)
            }
        })
        .collect();

    let mut env: Vec<(String, String)> = vec![("PATH".into(), cfg.path.clone())];
    env.extend(endpoints.iter().cloned());
    env.extend(cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(dir) = &cfg.secrets_dir {
        env.push(("FLYTE_SECRETS_DEFAULT_DIR".into(), dir.clone()));
    }
    env.extend(task_env(spec));
    let images: Vec<(String, String)> = cfg.images_in_order();
    if let Some(venv) = image_match(&images, &container.image) {
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        env.push(("PATH".into(), format!("{venv}/bin:{path}")));
        env.push(("VIRTUAL_ENV".into(), venv.clone()));
    }
    let env = last_wins(env);

    let mut script = String::from("#!/bin/bash\n# Contrail task attempt ");
    script.push_str(&spec.id);
    script.push('\n');
    for (name, value) in &env {
        if valid_env_name(name) {
            script.push_str(&format!("export {name}={}\n", quote(value)));
        }
    }
    script.push_str(&format!(
        "{WORK}={}/contrail-\"$SLURM_JOB_ID\"\n\
         mkdir -p \"${WORK}\" && cd \"${WORK}\" || exit 1\n\
         {}\n\
         status=$?\n\
         cd / && rm -rf \"${WORK}\"\n\
         exit $status\n",
        quote(&cfg.work_dir),
        command.join(" ")
    ));

    let log = |ext: &str| format!("{}/{}.{ext}", cfg.log_dir.trim_end_matches('/'), spec.id);
    let mut options = vec![
        "--parsable".to_string(),
        format!("--job-name={}", spec.id),
        format!("--output={}", log("out")),
        format!("--error={}", log("err")),
        format!("--chdir={}", cfg.work_dir),
        "--export=NONE".into(),
        "--no-requeue".into(),
        format!(
            "--comment=contrail {}/{}/{} {}",
            spec.project, spec.domain, spec.execution, spec.node_id
        ),
    ];
    if let Some(p) = &cfg.partition {
        options.push(format!("--partition={p}"));
    }
    if let Some(a) = &cfg.account {
        options.push(format!("--account={a}"));
    }
    let cpu_millis = amount(spec, ResourceName::Cpu, 1000.0, false);
    if cpu_millis > 0 {
        options.push(format!("--cpus-per-task={}", cpu_millis.div_ceil(1000)));
    }
    // Slurm enforces --mem as a ceiling: the limit, else the request.
    let memory = amount(spec, ResourceName::Memory, 1.0, true);
    if memory > 0 {
        options.push(format!("--mem={}M", memory.div_ceil(1 << 20)));
    }
    let gpus = amount(spec, ResourceName::Gpu, 1.0, true);
    if gpus > 0 {
        options.push(format!("--gres=gpu:{gpus}"));
    }
    if let Some(timeout) = task
        .metadata
        .as_ref()
        .and_then(|m| m.timeout.as_ref())
        .filter(|t| t.seconds > 0 || t.nanos > 0)
    {
        options.push(format!(
            "--time={}",
            time_limit(timeout.seconds + i64::from(timeout.nanos > 0))
        ));
    }
    options.extend(cfg.sbatch_args.iter().cloned());
    Ok(BatchJob { options, script })
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_idl::core::{
        Container, KeyValuePair, Resources, TaskMetadata, resources::ResourceEntry, task_template,
    };

    fn entry(name: ResourceName, value: &str) -> ResourceEntry {
        ResourceEntry {
            name: name as i32,
            value: value.into(),
        }
    }

    fn spec() -> AttemptSpec {
        let mut spec = AttemptSpec {
            id: "abc-n0-0".into(),
            project: "flytesnacks".into(),
            domain: "development".into(),
            execution: "abc".into(),
            node_id: "n0".into(),
            envs: vec![("FROM_EXECUTION".into(), "it's here".into())],
            ..Default::default()
        };
        spec.paths.inputs = "s3://bucket/m/abc/n0/data/inputs.pb".into();
        spec.paths.output_prefix = "s3://bucket/m/abc/n0/data/0".into();
        spec.paths.raw_output_prefix = "s3://bucket/raw/xy/abc-n0-0".into();
        spec.task.r#type = "python-task".into();
        spec.task.metadata = Some(TaskMetadata {
            timeout: Some(prost_types_duration(90)),
            ..Default::default()
        });
        spec.task.target = Some(task_template::Target::Container(Container {
            image: "ghcr.io/flyteorg/flytekit:py3.11".into(),
            command: vec![],
            args: vec![
                "pyflyte-fast-execute".into(),
                "--additional-distribution".into(),
                "s3://bucket/code/x.tar.gz".into(),
                "--dest-dir".into(),
                ".".into(),
                "--".into(),
                "pyflyte-execute".into(),
                "--inputs".into(),
                "{{.input}}".into(),
                "--output-prefix".into(),
                "{{.outputPrefix}}".into(),
            ],
            env: vec![KeyValuePair {
                key: "FROM_TASK".into(),
                value: "1".into(),
            }],
            resources: Some(Resources {
                requests: vec![
                    entry(ResourceName::Cpu, "1500m"),
                    entry(ResourceName::Memory, "300Mi"),
                ],
                limits: vec![
                    entry(ResourceName::Memory, "1Gi"),
                    entry(ResourceName::Gpu, "2"),
                ],
            }),
            ..Default::default()
        }));
        spec
    }

    fn prost_types_duration(seconds: i64) -> prost_types::Duration {
        prost_types::Duration { seconds, nanos: 0 }
    }

    fn config() -> SlurmConfig {
        toml::from_str(
            r#"
            log_dir = "/shared/logs"
            partition = "gpu"
            account = "ml"
            sbatch_args = ["--qos=high"]
            [images]
            "ghcr.io/flyteorg/*" = "/opt/flyte-venv"
            [env]
            FROM_CONFIG = "yes"
            "#,
        )
        .unwrap()
    }

    #[test]
    fn options_carry_identity_resources_and_configuration() {
        let job = build(&spec(), &config(), &[]).unwrap();
        let want = [
            "--parsable",
            "--job-name=abc-n0-0",
            "--output=/shared/logs/abc-n0-0.out",
            "--error=/shared/logs/abc-n0-0.err",
            "--chdir=/tmp",
            "--export=NONE",
            "--no-requeue",
            "--comment=contrail flytesnacks/development/abc n0",
            "--partition=gpu",
            "--account=ml",
            "--cpus-per-task=2",
            "--mem=1024M",
            "--gres=gpu:2",
            "--time=0:02:00",
            "--qos=high",
        ];
        assert_eq!(job.options, want);
    }

    #[test]
    fn the_script_sets_the_environment_and_runs_the_rendered_command() {
        let endpoints = [(
            "FLYTE_AWS_ENDPOINT".to_string(),
            "http://10.0.0.5:8333".to_string(),
        )];
        let job = build(&spec(), &config(), &endpoints).unwrap();
        let s = &job.script;
        assert!(s.starts_with("#!/bin/bash\n"), "{s}");
        for line in [
            "export FLYTE_AWS_ENDPOINT=http://10.0.0.5:8333\n",
            "export FROM_CONFIG=yes\n",
            "export FROM_TASK=1\n",
            "export FROM_EXECUTION=\"it's here\"\n",
            "export FLYTE_INTERNAL_EXECUTION_ID=abc\n",
            "export FLYTE_ATTEMPT_NUMBER=0\n",
            "export PATH=/opt/flyte-venv/bin:/usr/local/bin:/usr/bin:/bin\n",
            "export VIRTUAL_ENV=/opt/flyte-venv\n",
        ] {
            assert!(s.contains(line), "missing {line:?} in\n{s}");
        }
        assert!(
            s.contains(
                "pyflyte-fast-execute --additional-distribution s3://bucket/code/x.tar.gz \
                 --dest-dir \"$CONTRAIL_WORK_DIR\" -- pyflyte-execute --inputs \
                 s3://bucket/m/abc/n0/data/inputs.pb --output-prefix s3://bucket/m/abc/n0/data/0\n"
            ),
            "{s}"
        );
        assert_eq!(s.matches("export PATH=").count(), 1, "{s}");
    }

    #[test]
    fn tasks_slurm_cannot_run_are_refused_with_a_reason() {
        let mut sql = spec();
        sql.task.r#type = "sql".into();
        sql.task.target = None;
        let err = build(&sql, &config(), &[]).unwrap_err();
        assert!(err.contains("task type 'sql'"), "{err}");
        let mut raw = spec();
        if let Some(task_template::Target::Container(c)) = &mut raw.task.target {
            c.data_config = Some(contrail_idl::core::DataLoadingConfig {
                enabled: true,
                ..Default::default()
            });
        }
        assert!(
            build(&raw, &config(), &[])
                .unwrap_err()
                .contains("raw container")
        );
    }

    #[test]
    fn time_limits_round_up_to_minutes() {
        assert_eq!(time_limit(1), "0:01:00");
        assert_eq!(time_limit(60), "0:01:00");
        assert_eq!(time_limit(61), "0:02:00");
        assert_eq!(time_limit(3600 * 25), "25:00:00");
    }
}
