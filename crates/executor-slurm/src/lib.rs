//! Runs task attempts as Slurm batch jobs through Slurm's commands (`sbatch`, `squeue`,
//! `scontrol`, `scancel`), so it works wherever a login node's client does, with munge or
//! JWT, and needs no slurmrestd.
//!
//! - **Identity.** The job name is the attempt id. `launch` asks Slurm for a job of that
//!   name before it submits, so a launch repeated after a crash finds the job it started
//!   and never submits twice; an attempt whose job Slurm has forgotten but whose outputs
//!   are in the blob store is not run again either.
//! - **Observation.** One poller thread lists every job (`squeue -t all`) at an interval
//!   and wakes the rounds of attempts whose job changed state; `status` reads the latest
//!   listing, so a round never waits on Slurm.
//! - **Outcome.** A job that ended by itself is judged as a process: `error.pb`,
//!   `outputs.pb` and `futures.pb` in the blob store, then its exit code. A job Slurm ended
//!   is judged by its state ([`state`]).

pub mod job;
pub mod state;

use contrail_blob::BlobStore;
use contrail_engine::{Failure, TaskStatus};
use contrail_executor::outcome::{Exit, decide, read_leftovers, tail};
use contrail_executor::{AttemptSpec, Executor, Result, io, lock};
use contrail_idl::core::TaskLog;
use serde::Deserialize;
use state::{Job, Phase};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Settings of one Slurm executor (`[executors.NAME]` with `kind = "slurm"`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// Directory for the jobs' stdout and stderr files (`<attempt>.out`, `<attempt>.err`),
    /// on a filesystem the compute nodes write and users can read.
    pub log_dir: String,
    /// Where each job makes its scratch directory on its node.
    #[serde(default = "default_work_dir")]
    pub work_dir: String,
    #[serde(default)]
    pub partition: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    /// Container image (exact, or a prefix ending in `*`) → Python environment on the nodes
    /// whose `bin/` goes first on PATH.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// Extra environment for every job (e.g. a storage endpoint as the nodes reach it).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// PATH the jobs start from.
    #[serde(default = "default_path")]
    pub path: String,
    /// A directory on the nodes holding `<group>/<key>` secret files (flytekit reads them
    /// there); unset: tasks asking for secrets find none.
    #[serde(default)]
    pub secrets_dir: Option<String>,
    /// More `sbatch` options, as given (e.g. `--qos=high`).
    #[serde(default)]
    pub sbatch_args: Vec<String>,
    /// How often jobs are listed.
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// Directory of the Slurm commands; unset: found on PATH.
    #[serde(default)]
    pub bin_dir: Option<String>,
}

fn default_work_dir() -> String {
    "/tmp".into()
}

fn default_path() -> String {
    "/usr/local/bin:/usr/bin:/bin".into()
}

fn default_poll_ms() -> u64 {
    1000
}

impl SlurmConfig {
    /// The image patterns in matching order: exact names, then prefixes, longest first.
    pub fn images_in_order(&self) -> Vec<(String, String)> {
        let mut images: Vec<(String, String)> = self
            .images
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        images.sort_by_key(|(pattern, _)| {
            (
                pattern.ends_with('*'),
                std::cmp::Reverse(pattern.len()),
                pattern.clone(),
            )
        });
        images
    }
}

/// What to call when an attempt's job may have changed.
type Waker = Arc<dyn Fn() + Send + Sync>;

/// The jobs Slurm listed, by name (the newest job of a name wins).
struct Listing {
    jobs: HashMap<String, Job>,
    /// When the `squeue` that produced it started: jobs submitted later may be missing.
    taken_at: Instant,
}

#[derive(Default)]
struct Book {
    listing: Option<Listing>,
    /// Jobs this process submitted and has not seen listed yet: name → submission time.
    submitted: HashMap<String, Instant>,
    /// Attempts being submitted right now (a second launch of one waits for the next round).
    launching: HashSet<String>,
    wakers: HashMap<String, Waker>,
    aborted: HashSet<String>,
    /// Attempts that cannot run on Slurm, why, and since when (forgotten after an hour:
    /// the engine records the failure at its next round).
    refused: HashMap<String, (String, Instant)>,
    /// Exit codes of failed jobs, read once.
    exit_codes: HashMap<u64, i32>,
}

struct Inner {
    cfg: SlurmConfig,
    blob: BlobStore,
    /// Storage and API settings every job gets (`FLYTE_AWS_*`, `FLYTE_PLATFORM_URL`).
    endpoints: Vec<(String, String)>,
    book: Mutex<Book>,
    /// Serialises listings (the poller's and a status call's first).
    polling: Mutex<()>,
    poller_started: std::sync::Once,
}

pub struct SlurmExecutor {
    inner: Arc<Inner>,
}

impl SlurmExecutor {
    pub fn new(cfg: SlurmConfig, blob: BlobStore, endpoints: Vec<(String, String)>) -> Self {
        SlurmExecutor {
            inner: Arc::new(Inner {
                cfg,
                blob,
                endpoints,
                book: Mutex::default(),
                polling: Mutex::new(()),
                poller_started: std::sync::Once::new(),
            }),
        }
    }

    /// Starts the poller thread once; it ends when the executor is dropped.
    fn start_poller(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        self.inner.poller_started.call_once(|| {
            let spawned = std::thread::Builder::new()
                .name("slurm-poller".into())
                .spawn(move || {
                    loop {
                        let Some(inner) = weak.upgrade() else { return };
                        if let Err(e) = inner.poll() {
                            tracing::warn!("squeue: {e}");
                        }
                        let interval = Duration::from_millis(inner.cfg.poll_interval_ms.max(50));
                        drop(inner);
                        std::thread::sleep(interval);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start the Slurm poller: {e}");
            }
        });
    }
}

impl Inner {
    fn command(&self, name: &str) -> Command {
        let program = match &self.cfg.bin_dir {
            Some(dir) => format!("{}/{name}", dir.trim_end_matches('/')),
            None => name.to_string(),
        };
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs a Slurm command and returns its standard output.
    fn run(&self, mut cmd: Command, what: &str) -> Result<String> {
        let out = cmd
            .output()
            .map_err(|e| io(format!("cannot run {what}: {e}")))?;
        if !out.status.success() {
            return Err(io(format!(
                "{what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Lists every job Slurm still knows, publishes the listing and wakes the rounds of
    /// attempts whose job changed.
    fn poll(&self) -> Result<()> {
        let _one_at_a_time = lock(&self.polling);
        let taken_at = Instant::now();
        let mut cmd = self.command("squeue");
        cmd.args(["--noheader", "--states=all", "--format=%i|%T|%r|%j"]);
        let text = self.run(cmd, "squeue")?;
        let mut jobs: HashMap<String, Job> = HashMap::new();
        for (name, job) in text.lines().filter_map(state::parse_line) {
            match jobs.get(&name) {
                Some(seen) if seen.id > job.id => {}
                _ => {
                    jobs.insert(name, job);
                }
            }
        }
        let mut wake = Vec::new();
        {
            let mut book = lock(&self.book);
            let old = book.listing.take();
            let changed = |name: &String| {
                let before = old.as_ref().and_then(|l| l.jobs.get(name));
                before.map(|j| &j.state) != jobs.get(name).map(|j| &j.state)
            };
            let names: Vec<String> = book.wakers.keys().filter(|n| changed(n)).cloned().collect();
            for name in names {
                // A finished job changes no more: its waker is dropped after this call.
                let done = jobs.get(&name).is_some_and(|j| state::finished(&j.state));
                let waker = if done {
                    book.wakers.remove(&name)
                } else {
                    book.wakers.get(&name).cloned()
                };
                wake.extend(waker);
            }
            book.submitted.retain(|name, _| !jobs.contains_key(name));
            // Only what Slurm still lists (or was just refused) is remembered.
            let ids: HashSet<u64> = jobs.values().map(|j| j.id).collect();
            book.exit_codes.retain(|id, _| ids.contains(id));
            book.aborted.retain(|name| jobs.contains_key(name));
            let Book {
                wakers,
                submitted,
                launching,
                ..
            } = &mut *book;
            wakers.retain(|name, _| {
                jobs.contains_key(name) || submitted.contains_key(name) || launching.contains(name)
            });
            book.refused
                .retain(|_, (_, at)| at.elapsed() < Duration::from_secs(3600));
            book.listing = Some(Listing { jobs, taken_at });
        }
        for w in wake {
            w();
        }
        Ok(())
    }

    /// Makes sure a listing exists (the first call after a start lists synchronously).
    fn ensure_listing(&self) -> Result<()> {
        if lock(&self.book).listing.is_some() {
            return Ok(());
        }
        self.poll()
    }

    fn log_path(&self, spec: &AttemptSpec, ext: &str) -> String {
        format!(
            "{}/{}.{ext}",
            self.cfg.log_dir.trim_end_matches('/'),
            spec.id
        )
    }

    /// Whether Slurm has a job of this name right now (asked directly, not the listing).
    fn job_exists(&self, name: &str) -> Result<bool> {
        let mut cmd = self.command("squeue");
        cmd.args(["--noheader", "--states=all", "--format=%i", "--name", name]);
        Ok(!self.run(cmd, "squeue")?.trim().is_empty())
    }

    fn submit(&self, spec: &AttemptSpec, job: &job::BatchJob) -> Result<u64> {
        std::fs::create_dir_all(&self.cfg.log_dir)
            .map_err(|e| io(format!("cannot create log_dir {}: {e}", self.cfg.log_dir)))?;
        let mut child = self
            .command("sbatch")
            .args(&job.options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io(format!("cannot run sbatch: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(job.script.as_bytes()).map_err(io)?;
        }
        let out = child.wait_with_output().map_err(io)?;
        if !out.status.success() {
            return Err(io(format!(
                "sbatch for {} failed ({}): {}",
                spec.id,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        // `--parsable` prints `<id>` or `<id>;<cluster>`.
        text.trim()
            .split(';')
            .next()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| io(format!("sbatch printed no job id: {text:?}")))
    }

    /// The exit code of an ended job (`scontrol show job`), 1 when Slurm does not say.
    fn exit_code(&self, job: &Job) -> i32 {
        if job.state == "COMPLETED" {
            return 0;
        }
        if let Some(code) = lock(&self.book).exit_codes.get(&job.id) {
            return *code;
        }
        let mut cmd = self.command("scontrol");
        cmd.args(["show", "job", "--oneliner", &job.id.to_string()]);
        let code = self
            .run(cmd, "scontrol show job")
            .ok()
            .and_then(|text| {
                text.split_whitespace()
                    .find_map(|f| f.strip_prefix("ExitCode="))
                    .and_then(|c| c.split(':').next())
                    .and_then(|c| c.parse().ok())
            })
            .unwrap_or(1);
        lock(&self.book).exit_codes.insert(job.id, code);
        code
    }

    fn stderr_tail(&self, spec: &AttemptSpec) -> String {
        std::fs::read(self.log_path(spec, "err"))
            .map(|b| tail(&b))
            .unwrap_or_default()
    }
}

impl Executor for SlurmExecutor {
    fn launch(&self, spec: &AttemptSpec, on_change: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        self.start_poller();
        let inner = &self.inner;
        inner.ensure_listing()?;
        {
            let mut book = lock(&inner.book);
            let known = book.refused.contains_key(&spec.id)
                || book.submitted.contains_key(&spec.id)
                || book
                    .listing
                    .as_ref()
                    .is_some_and(|l| l.jobs.contains_key(&spec.id));
            if known || !book.launching.insert(spec.id.clone()) {
                book.wakers.insert(spec.id.clone(), Arc::from(on_change));
                return Ok(());
            }
        }
        let outcome = (|| -> Result<()> {
            let job = match job::build(spec, &inner.cfg, &inner.endpoints) {
                Ok(job) => job,
                Err(message) => {
                    lock(&inner.book)
                        .refused
                        .insert(spec.id.clone(), (message, Instant::now()));
                    return Ok(());
                }
            };
            // A job of this name from before a restart, or one Slurm forgot after it ended
            // (its outcome is in the blob store): never run an attempt twice.
            if inner.job_exists(&spec.id)? {
                return Ok(());
            }
            let left = read_leftovers(&inner.blob, spec, String::new(), false)?;
            if left.error_doc.is_some() || left.outputs_written || left.futures_written {
                return Ok(());
            }
            let id = inner.submit(spec, &job)?;
            tracing::debug!(attempt = %spec.id, job = id, "submitted to Slurm");
            lock(&inner.book)
                .submitted
                .insert(spec.id.clone(), Instant::now());
            Ok(())
        })();
        let mut book = lock(&inner.book);
        book.launching.remove(&spec.id);
        book.wakers.insert(spec.id.clone(), Arc::from(on_change));
        outcome
    }

    fn status(&self, spec: &AttemptSpec) -> Result<TaskStatus> {
        self.start_poller();
        let inner = &self.inner;
        inner.ensure_listing()?;
        let (job, submitted_unseen, aborted) = {
            let book = lock(&inner.book);
            if let Some((message, _)) = book.refused.get(&spec.id) {
                return Ok(TaskStatus::Failed(Failure::user(
                    "CannotStart",
                    message.clone(),
                    false,
                )));
            }
            let listing = book.listing.as_ref();
            let job = listing.and_then(|l| l.jobs.get(&spec.id)).cloned();
            let unseen = match (book.submitted.get(&spec.id), listing) {
                (Some(at), Some(l)) => *at >= l.taken_at,
                (Some(_), None) => true,
                _ => false,
            };
            (
                job,
                unseen || book.launching.contains(&spec.id),
                book.aborted.contains(&spec.id),
            )
        };
        let Some(job) = job else {
            if submitted_unseen {
                return Ok(TaskStatus::Queued);
            }
            // Never submitted, or forgotten by Slurm after it ended: what it wrote says which.
            let left = read_leftovers(&inner.blob, spec, String::new(), aborted)?;
            if left.error_doc.is_some() || left.outputs_written || left.futures_written {
                return Ok(decide(&Exit::Lost, &left));
            }
            return Ok(TaskStatus::Unknown);
        };
        let phase = state::phase(&job);
        if let Some(live) = state::live_status(&phase) {
            return Ok(live);
        }
        let left = read_leftovers(&inner.blob, spec, inner.stderr_tail(spec), aborted)?;
        match phase {
            Phase::Ended(failure) if left.error_doc.is_none() && !aborted => {
                Ok(TaskStatus::Failed(failure))
            }
            Phase::Ended(_) => Ok(decide(&Exit::Signal(9), &left)),
            _ => Ok(decide(&Exit::Code(inner.exit_code(&job)), &left)),
        }
    }

    fn abort(&self, spec: &AttemptSpec) -> Result<()> {
        let inner = &self.inner;
        lock(&inner.book).aborted.insert(spec.id.clone());
        let mut cmd = inner.command("scancel");
        cmd.args(["--name", &spec.id]);
        inner.run(cmd, "scancel").map(|_| ())
    }

    fn logs(&self, spec: &AttemptSpec) -> Vec<TaskLog> {
        [("stdout", "out"), ("stderr", "err")]
            .into_iter()
            .map(|(name, ext)| TaskLog {
                name: format!("{name} (Slurm)"),
                uri: format!("file://{}", self.inner.log_path(spec, ext)),
                ..Default::default()
            })
            .collect()
    }
}
