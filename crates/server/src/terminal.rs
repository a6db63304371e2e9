//! `contrail watch` and `contrail executions ls`: the terminal's view of a server, through
//! its REST API (so a remote server and its authentication work as for any client).

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Where the server is and who is asking.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// The server's address (`host:port` or a URL).
    #[arg(long, env = "CONTRAIL_ENDPOINT", default_value = "localhost:30080")]
    pub endpoint: String,
    /// A bearer token, when the server requires one.
    #[arg(long, env = "CONTRAIL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, default_value = "flytesnacks")]
    pub project: String,
    #[arg(long, default_value = "development")]
    pub domain: String,
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

const TERMINAL: &[&str] = &[
    "SUCCEEDED",
    "FAILED",
    "ABORTED",
    "TIMED_OUT",
    "RECOVERED",
    "SKIPPED",
];
const POLL: Duration = Duration::from_millis(500);
/// Log lines printed of a failed node.
const LOG_TAIL: usize = 20;

/// Writes a line to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// `s` as one percent-encoded URL path segment or query value.
fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Client {
    fn new(target: &Target) -> Result<Self, String> {
        let base = if target.endpoint.contains("://") {
            target.endpoint.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", target.endpoint)
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Client {
            http,
            base,
            token: target.token.clone(),
        })
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        let text = self.text(path).await?;
        serde_json::from_str(&text).map_err(|e| format!("{path}: not JSON: {e}"))
    }

    async fn text(&self, path: &str) -> Result<String, String> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or(body);
            return Err(format!("{status}: {message}"));
        }
        Ok(body)
    }
}

fn phase(v: &Value) -> &str {
    v["closure"]["phase"].as_str().unwrap_or("UNDEFINED")
}

fn mark(phase: &str) -> &'static str {
    match phase {
        "SUCCEEDED" | "RECOVERED" => "✓",
        "FAILED" | "TIMED_OUT" => "✗",
        "ABORTED" | "SKIPPED" => "−",
        "RUNNING" | "QUEUED" | "DYNAMIC_RUNNING" | "SUCCEEDING" => "…",
        _ => " ",
    }
}

/// `contrail executions ls`: the newest executions first.
pub async fn list(
    target: &Target,
    limit: u32,
    phase_filter: Option<&str>,
) -> Result<String, String> {
    let client = Client::new(target)?;
    let mut query = format!("limit={limit}&sort_by.key=created_at&sort_by.direction=DESCENDING");
    if let Some(p) = phase_filter {
        query.push_str(&format!("&filters=eq(phase,{})", enc(&p.to_uppercase())));
    }
    let list = client
        .get(&format!(
            "/api/v1/executions/{}/{}?{query}",
            enc(&target.project),
            enc(&target.domain)
        ))
        .await?;
    let mut out = format!(
        "{:<22} {:<10} {:<40} {:<22} {}\n",
        "NAME", "PHASE", "LAUNCH PLAN", "STARTED", "DURATION"
    );
    for e in list["executions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<22} {:<10} {:<40} {:<22} {}\n",
            e["id"]["name"].as_str().unwrap_or(""),
            phase(e),
            e["spec"]["launch_plan"]["name"].as_str().unwrap_or(""),
            e["closure"]["started_at"]
                .as_str()
                .map(|t| t.get(..19).unwrap_or(t).replace('T', " "))
                .unwrap_or_default(),
            e["closure"]["duration"].as_str().unwrap_or(""),
        ));
    }
    Ok(out)
}

/// `contrail watch <execution>`: the node tree with phases and a progress bar until the
/// execution ends; `Err` (a non-zero exit) unless it succeeded, after printing the error
/// and the failed node's log tail.
pub async fn watch(target: &Target, name: &str) -> Result<(), String> {
    let client = Client::new(target)?;
    let exec_path = format!(
        "/api/v1/executions/{}/{}/{}",
        enc(&target.project),
        enc(&target.domain),
        enc(name)
    );
    let nodes_path = format!(
        "/api/v1/node_executions/{}/{}/{}",
        enc(&target.project),
        enc(&target.domain),
        enc(name)
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} nodes {msg}")
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let exec = client.get(&exec_path).await?;
        let mut nodes = Vec::new();
        collect_nodes(&client, &nodes_path, "", 0, &mut nodes).await?;
        let shown: Vec<&(usize, Value)> = nodes
            .iter()
            .filter(|(_, n)| {
                !matches!(n["id"]["node_id"].as_str(), Some("start-node" | "end-node"))
            })
            .collect();
        bar.set_length(shown.len() as u64);
        bar.set_position(
            shown
                .iter()
                .filter(|(_, n)| TERMINAL.contains(&phase(n)))
                .count() as u64,
        );
        for (depth, node) in &shown {
            let id = node["id"]["node_id"].as_str().unwrap_or("").to_string();
            let p = phase(node).to_string();
            if seen.get(&id) != Some(&p) {
                let line = format!("{}{} {:<28} {}", "  ".repeat(*depth), mark(&p), id, p);
                // Without a terminal the bar is hidden, and so would its lines be.
                if bar.is_hidden() {
                    say(&line);
                } else {
                    bar.println(line);
                }
                seen.insert(id, p);
            }
        }
        let exec_phase = phase(&exec).to_string();
        bar.set_message(exec_phase.clone());
        if TERMINAL.contains(&exec_phase.as_str()) {
            bar.finish_and_clear();
            say(&format!("{name}: {exec_phase}"));
            if exec_phase == "SUCCEEDED" {
                return Ok(());
            }
            if let Some(message) = exec["closure"]["error"]["message"].as_str() {
                say(&format!(
                    "error ({}): {message}",
                    exec["closure"]["error"]["code"].as_str().unwrap_or("")
                ));
            }
            if let Some((_, failed)) = shown.iter().rev().find(|(_, n)| {
                phase(n) == "FAILED" && !n["metadata"]["is_parent_node"].as_bool().unwrap_or(false)
            }) {
                print_log_tail(&client, target, name, failed).await;
            }
            return Err(format!("execution {name} ended {exec_phase}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The node executions under `parent` (all, depth first), with their depth.
async fn collect_nodes(
    client: &Client,
    nodes_path: &str,
    parent: &str,
    depth: usize,
    out: &mut Vec<(usize, Value)>,
) -> Result<(), String> {
    if depth > 8 {
        return Ok(());
    }
    let mut path = format!("{nodes_path}?limit=1000");
    if !parent.is_empty() {
        path.push_str(&format!("&unique_parent_id={}", enc(parent)));
    }
    let list = client.get(&path).await?;
    for node in list["node_executions"].as_array().into_iter().flatten() {
        out.push((depth, node.clone()));
        if node["metadata"]["is_parent_node"]
            .as_bool()
            .unwrap_or(false)
        {
            let id = node["id"]["node_id"].as_str().unwrap_or("").to_string();
            Box::pin(collect_nodes(client, nodes_path, &id, depth + 1, out)).await?;
        }
    }
    Ok(())
}

async fn print_log_tail(client: &Client, target: &Target, name: &str, node: &Value) {
    let id = node["id"]["node_id"].as_str().unwrap_or("");
    let Ok(tasks) = client
        .get(&format!(
            "/api/v1/task_executions/{}/{}/{}/{}?limit=100",
            enc(&target.project),
            enc(&target.domain),
            enc(name),
            enc(id)
        ))
        .await
    else {
        return;
    };
    let Some(last) = tasks["task_executions"].as_array().and_then(|t| t.last()) else {
        return;
    };
    if let Some(message) = last["closure"]["error"]["message"].as_str() {
        say(&format!(
            "node {id} failed: {}",
            message.lines().last().unwrap_or(message)
        ));
    }
    for log in last["closure"]["logs"].as_array().into_iter().flatten() {
        let uri = log["uri"].as_str().unwrap_or("");
        let Some(path) = uri.find("/logs/").map(|i| &uri[i..]) else {
            say(&format!(
                "log {}: {uri}",
                log["name"].as_str().unwrap_or("")
            ));
            continue;
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        if let Ok(text) = client.text(&format!("{path}{sep}follow=false")).await {
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                continue;
            }
            say(&format!(
                "--- {} (last {LOG_TAIL} lines) ---",
                log["name"].as_str().unwrap_or("log")
            ));
            for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
                say(line);
            }
        }
    }
}
