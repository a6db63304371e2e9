//! `contrail-bench`: starts a real `contrail` binary on a temporary data directory, registers
//! a workflow of raw-container `true` tasks (a chain or a fan-out), runs it through the
//! gRPC API and reports wall time, per-node orchestration overhead, the server's CPU time
//! and peak RSS. A command, not a test: results go to docs/benchmarks.md by hand.

use clap::Parser;
use contrail_idl::admin as a;
use contrail_idl::core as c;
use contrail_idl::service::admin_service_client::AdminServiceClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(Parser, Debug)]
#[command(about = "Measure Contrail's per-node orchestration overhead")]
struct Args {
    /// The contrail binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/contrail")]
    bin: PathBuf,
    /// Length of the chain workflow (0 skips it).
    #[arg(long, default_value_t = 500)]
    chain: usize,
    /// Width of the fan-out workflow (0 skips it).
    #[arg(long, default_value_t = 1000)]
    fanout: usize,
    /// Items of the map task (array node) workflow (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    map: usize,
    /// Items of the map task running at once.
    #[arg(long, default_value_t = 64)]
    map_parallelism: u32,
    /// Nodes a dynamic task generates (0 skips it).
    #[arg(long, default_value_t = 1000)]
    dynamic: usize,
    /// Keep each scenario's data directory (its path goes to stderr) to inspect the store.
    #[arg(long)]
    keep: bool,
    /// Executions of each workflow started at once (e.g. 100 chains of `--chain 50`).
    #[arg(long, default_value_t = 1)]
    concurrent: usize,
    /// Run on PostgreSQL: a maintenance URL (`postgres://USER@HOST:PORT/postgres`) where
    /// each scenario creates a fresh database (with `psql`). Default: embedded SQLite.
    #[arg(long)]
    database_admin: Option<String>,
    /// Controller replicas beside one `--role api` process (0: one process doing both).
    #[arg(long, default_value_t = 0)]
    controllers: usize,
}

/// The workflows this harness can measure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chain,
    Fanout,
    /// One array node whose items run the `true` task.
    Map {
        parallelism: u32,
    },
    /// One raw-container task that writes a futures.pb of `true` nodes.
    Dynamic,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The processes of one deployment: the API (or all-in-one) process first.
struct Server {
    children: Vec<Child>,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where the state lives for one scenario.
struct Deployment<'a> {
    bin: &'a Path,
    /// A fresh database's URL, or None for SQLite in the data directory.
    database: Option<String>,
    controllers: usize,
}

/// A fresh database on the server `admin` names (`psql` does the DDL); its URL.
fn fresh_database(admin: &str) -> Res<String> {
    let name = format!(
        "bench_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let ok = Command::new("psql")
        .args([admin, "-qc", &format!("CREATE DATABASE {name}")])
        .status()?
        .success();
    if !ok {
        return Err(format!("psql {admin}: CREATE DATABASE failed").into());
    }
    let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

fn start(d: &Deployment<'_>, data: &Path) -> Res<Server> {
    let port = free_port()?;
    let s3 = free_port()?;
    let spawn = |role: &str, extra: &[String]| -> Res<Child> {
        let mut cmd = Command::new(d.bin);
        cmd.args([
            "start",
            "--role",
            role,
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--s3-addr", &format!("127.0.0.1:{s3}")])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if let Some(db) = &d.database {
            cmd.args(["--database", db]);
        }
        Ok(cmd.spawn()?)
    };
    let mut children = Vec::new();
    if d.controllers == 0 {
        children.push(spawn("all", &[])?);
    } else {
        children.push(spawn("api", &[])?);
        for i in 0..d.controllers {
            children.push(spawn(
                "controller",
                &["--replica-id".into(), format!("c{i}")],
            )?);
        }
    }
    Ok(Server { children, port })
}

fn id(kind: c::ResourceType, name: &str) -> c::Identifier {
    c::Identifier {
        resource_type: kind as i32,
        project: "flytesnacks".into(),
        domain: "development".into(),
        name: name.into(),
        version: "bench".into(),
        org: String::new(),
    }
}

fn task_node(id: &str, task: &c::Identifier, ups: Vec<String>) -> c::Node {
    c::Node {
        id: id.into(),
        upstream_node_ids: ups,
        target: Some(c::node::Target::TaskNode(c::TaskNode {
            reference: Some(c::task_node::Reference::ReferenceId(task.clone())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn int_list() -> c::LiteralType {
    c::LiteralType {
        r#type: Some(c::literal_type::Type::CollectionType(Box::new(
            c::LiteralType {
                r#type: Some(c::literal_type::Type::Simple(c::SimpleType::Integer as i32)),
                ..Default::default()
            },
        ))),
        ..Default::default()
    }
}

fn list_interface() -> c::TypedInterface {
    c::TypedInterface {
        inputs: Some(c::VariableMap {
            variables: [(
                "xs".to_string(),
                c::Variable {
                    r#type: Some(int_list()),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
        }),
        outputs: Some(c::VariableMap::default()),
    }
}

fn workflow(name: &str, n: usize, shape: Shape) -> a::WorkflowSpec {
    let task = id(c::ResourceType::Task, "bench.true");
    let (nodes, interface) = match shape {
        Shape::Chain | Shape::Fanout => (
            (0..n)
                .map(|i| {
                    let ups = if shape == Shape::Chain && i > 0 {
                        vec![format!("n{}", i - 1)]
                    } else {
                        vec![]
                    };
                    task_node(&format!("n{i}"), &task, ups)
                })
                .collect(),
            c::TypedInterface::default(),
        ),
        Shape::Map { parallelism } => {
            let mut sub = task_node("n0", &id(c::ResourceType::Task, "bench.true-array"), vec![]);
            sub.inputs = vec![c::Binding {
                var: "xs".into(),
                binding: Some(c::BindingData {
                    value: Some(c::binding_data::Value::Promise(c::OutputReference {
                        node_id: String::new(),
                        var: "xs".into(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }),
            }];
            let array = c::Node {
                id: "n0".into(),
                inputs: sub.inputs.clone(),
                target: Some(c::node::Target::ArrayNode(Box::new(c::ArrayNode {
                    node: Some(Box::new(sub)),
                    parallelism_option: Some(c::array_node::ParallelismOption::Parallelism(
                        parallelism,
                    )),
                    ..Default::default()
                }))),
                ..Default::default()
            };
            (vec![array], list_interface())
        }
        Shape::Dynamic => (
            vec![task_node(
                "n0",
                &id(c::ResourceType::Task, "bench.dynamic"),
                vec![],
            )],
            c::TypedInterface::default(),
        ),
    };
    a::WorkflowSpec {
        template: Some(c::WorkflowTemplate {
            id: Some(id(c::ResourceType::Workflow, name)),
            interface: Some(interface),
            nodes,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn raw_task(name: &str, command: Vec<String>, interface: c::TypedInterface) -> c::TaskTemplate {
    c::TaskTemplate {
        id: Some(id(c::ResourceType::Task, name)),
        r#type: "raw-container".into(),
        interface: Some(interface),
        metadata: Some(c::TaskMetadata::default()),
        target: Some(c::task_template::Target::Container(c::Container {
            image: "none".into(),
            command,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The futures.pb of the dynamic shape: `n` independent `true` nodes, the task inline.
fn futures(n: usize) -> c::DynamicJobSpec {
    let t = raw_task(
        "bench.true",
        vec!["true".into()],
        c::TypedInterface::default(),
    );
    let tid = t.id.clone().unwrap_or_default();
    c::DynamicJobSpec {
        nodes: (0..n)
            .map(|i| task_node(&format!("dn{i}"), &tid, vec![]))
            .collect(),
        min_successes: n as i64,
        tasks: vec![t],
        ..Default::default()
    }
}

/// (user + system CPU seconds, peak RSS in KiB) of a process.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (11 and 12 after the command name).
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, hwm)
}

/// Seconds the tasks themselves ran (from the supervisors' records).
fn task_seconds(data: &Path) -> f64 {
    let root = data.join("attempts/flytesnacks/development");
    let mut total = 0.0;
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if let Ok(b) = std::fs::read(e.path().join("exit.json"))
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b)
        {
            let f = |k: &str| v[k].as_i64().unwrap_or(0);
            total += (f("finished_at") - f("started_at")) as f64 / 1e9;
        }
    }
    total
}

async fn scenario(
    d: &Deployment<'_>,
    name: &str,
    n: usize,
    shape: Shape,
    concurrent: usize,
    keep: bool,
) -> Res<()> {
    let mut dir = tempfile::tempdir()?;
    if keep {
        dir.disable_cleanup(true);
        eprintln!("{name}: data directory {}", dir.path().display());
    }
    let server = start(d, dir.path())?;
    let url = format!("http://127.0.0.1:{}", server.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let channel = loop {
        match Channel::from_shared(url.clone())?.connect().await {
            Ok(ch) => break ch,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut admin = AdminServiceClient::new(channel).max_decoding_message_size(256 << 20);
    // The dynamic task copies a prepared futures.pb into its output prefix (an s3:// URI
    // under this data directory's bucket).
    let futures_file = dir.path().join("futures.pb");
    std::fs::write(&futures_file, prost::Message::encode_to_vec(&futures(n)))?;
    let copy = format!(
        "d=$(echo {{{{.outputPrefix}}}} | sed 's#^s3://contrail#{}/blobs/contrail#'); mkdir -p $d && cp {} $d/futures.pb",
        dir.path().display(),
        futures_file.display()
    );
    let array_iface = c::TypedInterface {
        inputs: list_interface().inputs,
        outputs: Some(c::VariableMap::default()),
    };
    for task in [
        raw_task(
            "bench.true",
            vec!["true".into()],
            c::TypedInterface::default(),
        ),
        raw_task("bench.true-array", vec!["true".into()], array_iface),
        raw_task(
            "bench.dynamic",
            vec!["sh".into(), "-c".into(), copy],
            c::TypedInterface::default(),
        ),
    ] {
        admin
            .create_task(a::TaskCreateRequest {
                id: task.id.clone(),
                spec: Some(a::TaskSpec {
                    template: Some(task),
                    ..Default::default()
                }),
            })
            .await?;
    }
    let wf = workflow(name, n, shape);
    admin
        .create_workflow(a::WorkflowCreateRequest {
            id: Some(id(c::ResourceType::Workflow, name)),
            spec: Some(wf),
        })
        .await?;
    admin
        .create_launch_plan(a::LaunchPlanCreateRequest {
            id: Some(id(c::ResourceType::LaunchPlan, name)),
            spec: Some(a::LaunchPlanSpec {
                workflow_id: Some(id(c::ResourceType::Workflow, name)),
                ..Default::default()
            }),
        })
        .await?;
    let t0 = Instant::now();
    let mut executions = Vec::new();
    for _ in 0..concurrent.max(1) {
        let created = admin
            .create_execution(a::ExecutionCreateRequest {
                project: "flytesnacks".into(),
                domain: "development".into(),
                spec: Some(a::ExecutionSpec {
                    launch_plan: Some(id(c::ResourceType::LaunchPlan, name)),
                    max_parallelism: n as i32,
                    ..Default::default()
                }),
                inputs: matches!(shape, Shape::Map { .. }).then(|| c::LiteralMap {
                    literals: [(
                        "xs".to_string(),
                        c::Literal {
                            value: Some(c::literal::Value::Collection(c::LiteralCollection {
                                literals: (0..n as i64)
                                    .map(|i| c::Literal {
                                        value: Some(c::literal::Value::Scalar(Box::new(
                                            c::Scalar {
                                                value: Some(c::scalar::Value::Primitive(
                                                    c::Primitive {
                                                        value: Some(c::primitive::Value::Integer(
                                                            i,
                                                        )),
                                                    },
                                                )),
                                            },
                                        ))),
                                        ..Default::default()
                                    })
                                    .collect(),
                            })),
                            ..Default::default()
                        },
                    )]
                    .into_iter()
                    .collect(),
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        executions.push(created.id);
    }
    // Every poll is also a latency sample of GetExecution while the workflows run.
    let mut latencies = Vec::new();
    let mut phase = 4;
    while !executions.is_empty() {
        let mut running = Vec::new();
        for id in executions {
            let asked = Instant::now();
            let e = admin
                .get_execution(a::WorkflowExecutionGetRequest { id: id.clone() })
                .await?
                .into_inner();
            latencies.push(asked.elapsed().as_secs_f64() * 1000.0);
            let p = e.closure.map(|c| c.phase).unwrap_or(0);
            if matches!(p, 4 | 6..=8) {
                if p != 4 {
                    phase = p;
                }
            } else {
                running.push(id);
            }
        }
        executions = running;
        if !executions.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    // CPU and peak RSS of Contrail's own processes (summed CPU; the largest RSS).
    let (cpu, rss) = server
        .children
        .iter()
        .map(|c| usage(c.id()))
        .fold((0.0, 0), |(c, r), (c2, r2)| (c + c2, r.max(r2)));
    let tasks = task_seconds(dir.path());
    let nodes = n * concurrent.max(1);
    let overhead = if shape == Shape::Chain && concurrent <= 1 {
        (wall - tasks) / n as f64
    } else {
        wall / nodes as f64
    };
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let store = match (&d.database, d.controllers) {
        (None, _) => "SQLite".to_string(),
        (Some(_), 0) => "PostgreSQL, 1 process".to_string(),
        (Some(_), k) => format!("PostgreSQL, {k} controller(s)"),
    };
    println!(
        "| {store} | {name} | {n} × {} | {} | {wall:.2} | {:.0} | {:.2} | {:.2} | {cpu:.2} | {} | {:.2} | {:.2} |",
        concurrent.max(1),
        c::workflow_execution::Phase::try_from(phase)
            .map(|p| p.as_str_name())
            .unwrap_or("?"),
        nodes as f64 / wall,
        tasks,
        overhead * 1000.0,
        rss / 1024,
        quantile(0.5),
        quantile(0.99),
    );
    drop(server);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Res<()> {
    let args = Args::parse();
    println!(
        "| store | shape | nodes × executions | result | wall s | nodes/s | task s | overhead ms/node | server CPU s | server peak RSS MiB | GetExecution p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut shapes = Vec::new();
    if args.chain > 0 {
        shapes.push(("bench.chain", args.chain, Shape::Chain));
    }
    if args.fanout > 0 {
        shapes.push(("bench.fanout", args.fanout, Shape::Fanout));
    }
    if args.map > 0 {
        let shape = Shape::Map {
            parallelism: args.map_parallelism,
        };
        shapes.push(("bench.map", args.map, shape));
    }
    if args.dynamic > 0 {
        shapes.push(("bench.dynamic", args.dynamic, Shape::Dynamic));
    }
    for (name, n, shape) in shapes {
        let database = match &args.database_admin {
            Some(admin) => Some(fresh_database(admin)?),
            None => None,
        };
        let deployment = Deployment {
            bin: &args.bin,
            database,
            controllers: args.controllers,
        };
        scenario(&deployment, name, n, shape, args.concurrent, args.keep).await?;
    }
    Ok(())
}
