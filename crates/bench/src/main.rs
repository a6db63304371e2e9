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
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, data: &Path) -> Res<Server> {
    let port = free_port()?;
    let s3 = free_port()?;
    let child = Command::new(bin)
        .args(["start", "--addr", &format!("127.0.0.1:{port}")])
        .args(["--s3-addr", &format!("127.0.0.1:{s3}")])
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Server { child, port })
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

fn workflow(name: &str, n: usize, chain: bool) -> a::WorkflowSpec {
    let task = id(c::ResourceType::Task, "bench.true");
    let nodes = (0..n)
        .map(|i| c::Node {
            id: format!("n{i}"),
            upstream_node_ids: if chain && i > 0 {
                vec![format!("n{}", i - 1)]
            } else {
                vec![]
            },
            target: Some(c::node::Target::TaskNode(c::TaskNode {
                reference: Some(c::task_node::Reference::ReferenceId(task.clone())),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    a::WorkflowSpec {
        template: Some(c::WorkflowTemplate {
            id: Some(id(c::ResourceType::Workflow, name)),
            interface: Some(c::TypedInterface::default()),
            nodes,
            ..Default::default()
        }),
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

async fn scenario(bin: &Path, name: &str, n: usize, chain: bool) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let server = start(bin, dir.path())?;
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
    let task = c::TaskTemplate {
        id: Some(id(c::ResourceType::Task, "bench.true")),
        r#type: "raw-container".into(),
        interface: Some(c::TypedInterface::default()),
        metadata: Some(c::TaskMetadata::default()),
        target: Some(c::task_template::Target::Container(c::Container {
            image: "none".into(),
            command: vec!["true".into()],
            ..Default::default()
        })),
        ..Default::default()
    };
    admin
        .create_task(a::TaskCreateRequest {
            id: task.id.clone(),
            spec: Some(a::TaskSpec {
                template: Some(task),
                ..Default::default()
            }),
        })
        .await?;
    let wf = workflow(name, n, chain);
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
    let created = admin
        .create_execution(a::ExecutionCreateRequest {
            project: "flytesnacks".into(),
            domain: "development".into(),
            spec: Some(a::ExecutionSpec {
                launch_plan: Some(id(c::ResourceType::LaunchPlan, name)),
                max_parallelism: n as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    let phase = loop {
        let e = admin
            .get_execution(a::WorkflowExecutionGetRequest {
                id: created.id.clone(),
            })
            .await?
            .into_inner();
        let p = e.closure.map(|c| c.phase).unwrap_or(0);
        if matches!(p, 4 | 6..=8) {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, rss) = usage(server.child.id());
    let tasks = task_seconds(dir.path());
    let overhead = if chain {
        (wall - tasks) / n as f64
    } else {
        wall / n as f64
    };
    println!(
        "| {name} | {n} | {} | {wall:.2} | {:.2} | {:.2} | {cpu:.2} | {} |",
        c::workflow_execution::Phase::try_from(phase)
            .map(|p| p.as_str_name())
            .unwrap_or("?"),
        tasks,
        overhead * 1000.0,
        rss / 1024,
    );
    drop(server);
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Res<()> {
    let args = Args::parse();
    println!(
        "| shape | nodes | result | wall s | task s | overhead ms/node | server CPU s | server peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    if args.chain > 0 {
        scenario(&args.bin, "bench.chain", args.chain, true).await?;
    }
    if args.fanout > 0 {
        scenario(&args.bin, "bench.fanout", args.fanout, false).await?;
    }
    Ok(())
}
