//! Runs task attempts as local processes. Each attempt gets a directory under
//! `<attempts>/<project>/<domain>/<attempt id>/` with a fresh sandbox, its launch
//! description, logs and the supervisor's records (see [`supervisor`]). The attempt's
//! metadata files (`inputs.pb`, `outputs.pb`, `error.pb`) are handed to the task as local
//! paths into the blob directory; raw outputs go through the S3 endpoint.

pub mod daemon;
mod rawcontainer;
pub mod reaper;
pub mod supervisor;
mod warm;
pub mod zygote;

use contrail_blob::BlobStore;
use contrail_engine::{Failure, TaskStatus};
use contrail_executor::outcome::{Exit, Leftovers, decide};
use contrail_executor::template::{self, Vars};
use contrail_executor::{AttemptSpec, Executor, Result, io, lock};
use contrail_idl::core::TaskLog;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use supervisor::{DirState, ExitRecord, Launch};

/// The directory under `attempts_dir` holding every attempt's ledger.
const LEDGER: &str = ".ledger";

/// Settings of the local executor.
#[derive(Debug, Clone, Default)]
pub struct LocalConfig {
    /// Where attempt directories live.
    pub attempts_dir: PathBuf,
    /// The command that runs a supervisor; the attempt directory is appended.
    pub supervisor: Vec<String>,
    /// The command that starts the resident supervisor (see [`daemon`]); the socket path is
    /// appended. Empty: a supervisor process per attempt.
    pub daemon: Vec<String>,
    /// The resident supervisor's socket.
    pub daemon_socket: PathBuf,
    /// Environment variables added to the resident supervisor's (its settings).
    pub daemon_env: Vec<(String, String)>,
    /// Environment every task starts from (PATH, HOME, storage settings).
    pub base_env: Vec<(String, String)>,
    /// `<dir>/<group>/<key>` files become `_FSEC_<GROUP>_<KEY>` variables.
    pub secrets_dir: PathBuf,
    /// Container image (exact, or prefix ending in `*`) → Python environment directory whose
    /// `bin/` goes first on PATH.
    pub images: Vec<(String, PathBuf)>,
    /// Prepended to PYTHONPATH (user source for non-fast registrations).
    pub python_path: Vec<PathBuf>,
    /// Capacity tasks are admitted against.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// What a task that requests nothing counts with.
    pub default_cpu_millis: u64,
    pub default_memory_bytes: u64,
    /// Run flytekit tasks in processes forked from warm Python workers (see [`zygote`]).
    pub warm_workers: bool,
    /// Where fast-registration archives are extracted, once per digest, for warm attempts.
    pub code_cache: PathBuf,
}

/// The warm worker of each Python environment (`None`: the server's own), found once.
type Workers = HashMap<Option<PathBuf>, supervisor::Warm>;

#[derive(Default)]
struct Book {
    /// Whether `running` was read from the attempt directories on disk yet.
    seeded: bool,
    /// Attempts admitted and not yet seen finished: dir → (cpu, memory). Seeded from the
    /// directories of live attempts, so a restarted server admits against what runs.
    running: HashMap<PathBuf, (u64, u64)>,
    /// Attempts waiting for capacity.
    pending: HashSet<PathBuf>,
    /// Supervisors spawned by this process that have not exited yet.
    spawned: HashSet<PathBuf>,
}

pub struct LocalExecutor {
    cfg: LocalConfig,
    blob: BlobStore,
    book: Arc<Mutex<Book>>,
    /// Connection to the resident supervisor, when there is one.
    link: Arc<Mutex<Option<daemon::Link>>>,
    /// When the resident supervisor last could not be reached (retried after a while).
    daemon_failed: Mutex<Option<std::time::Instant>>,
    /// Wake-ups for attempts handed to the resident supervisor, by attempt directory.
    waiters: Arc<Mutex<HashMap<PathBuf, Waker>>>,
    workers: Mutex<Workers>,
    code: warm::CodeCache,
}

/// What to call when an attempt's status may have changed.
type Waker = Box<dyn Fn() + Send + Sync>;

pub use contrail_executor::resources::requests;

/// The value of a variable in an environment being assembled (the last one set wins).
pub(crate) fn getenv<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// PATH and VIRTUAL_ENV of a Python environment directory, given the environment so far.
fn venv_env(env: &[(String, String)], dir: &Path) -> [(String, String); 2] {
    let path = getenv(env, "PATH").unwrap_or_default();
    [
        (
            "PATH".into(),
            format!("{}:{path}", dir.join("bin").display()),
        ),
        ("VIRTUAL_ENV".into(), dir.to_string_lossy().into_owned()),
    ]
}

impl LocalExecutor {
    pub fn new(cfg: LocalConfig, blob: BlobStore) -> Self {
        LocalExecutor {
            code: warm::CodeCache::new(cfg.code_cache.clone()),
            workers: Mutex::default(),
            cfg,
            blob,
            book: Arc::default(),
            link: Arc::default(),
            daemon_failed: Mutex::default(),
            waiters: Arc::default(),
        }
    }

    /// Connects to the resident supervisor, starting it if needed. False when there is none
    /// (attempts then get a supervisor process each).
    fn connect(&self) -> bool {
        let mut link = lock(&self.link);
        if link.is_some() {
            return true;
        }
        let Some((exe, args)) = self.cfg.daemon.split_first() else {
            return false;
        };
        let recently_failed = lock(&self.daemon_failed)
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(30));
        if recently_failed {
            return false;
        }
        let socket = &self.cfg.daemon_socket;
        let book = self.book.clone();
        let waiters = self.waiters.clone();
        let on_exit = move |dir: PathBuf| {
            lock(&book).spawned.remove(&dir);
            if let Some(w) = lock(&waiters).remove(&dir) {
                w();
            }
        };
        let (book, waiters, shared) = (self.book.clone(), self.waiters.clone(), self.link.clone());
        let on_close = move || {
            lock(&shared).take();
            // Attempts handed over are no longer "being started": let rounds look again.
            let all: Vec<_> = lock(&waiters).drain().collect();
            let mut b = lock(&book);
            for (dir, w) in all {
                b.spawned.remove(&dir);
                w();
            }
        };
        use std::os::unix::process::CommandExt;
        let connected =
            daemon::Link::connect(socket, on_exit.clone(), on_close.clone()).or_else(|_| {
                let started = std::process::Command::new(exe)
                    .args(args)
                    .arg(socket)
                    .envs(self.cfg.daemon_env.iter().map(|(k, v)| (k, v)))
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .process_group(0)
                    .spawn();
                match started {
                    Ok(mut child) => {
                        // Reap it when it exits (it outlives us if we are killed first).
                        std::thread::spawn(move || child.wait());
                    }
                    Err(e) => return Err(e),
                }
                if !daemon::wait_for(socket, std::time::Duration::from_secs(5)) {
                    return Err(std::io::Error::other(
                        "the resident supervisor did not start",
                    ));
                }
                daemon::Link::connect(socket, on_exit, on_close)
            });
        match connected {
            Ok(mut l) => {
                self.prewarm(&mut l);
                *link = Some(l);
                true
            }
            Err(e) => {
                tracing::warn!("resident supervisor unavailable, starting one per attempt: {e}");
                *lock(&self.daemon_failed) = Some(std::time::Instant::now());
                false
            }
        }
    }

    /// Connects to the resident supervisor (starting it) so that the warm workers boot
    /// before the first task needs them. Blocking; call it off the async workers.
    pub fn warm_up(&self) {
        if self.cfg.warm_workers {
            self.connect();
        }
    }

    pub fn attempt_dir(&self, spec: &AttemptSpec) -> PathBuf {
        self.cfg
            .attempts_dir
            .join(&spec.project)
            .join(&spec.domain)
            .join(&spec.id)
    }

    /// The attempt's ledger: its record of the run, outside the attempt directory (see
    /// [`supervisor`]).
    pub fn ledger_dir(&self, spec: &AttemptSpec) -> PathBuf {
        self.cfg
            .attempts_dir
            .join(LEDGER)
            .join(&spec.project)
            .join(&spec.domain)
            .join(&spec.id)
    }

    /// Local path of a blob URI in our bucket (local blobs only).
    fn local(&self, uri: &str) -> Result<PathBuf> {
        let key = self.blob.key_of(uri).map_err(io)?;
        self.blob.path(key).map_err(io)
    }

    /// A local file holding the object `uri` names (a code archive): the object itself for
    /// local blobs, else a copy fetched once into the code cache. None when absent.
    fn fetch(&self, uri: &str) -> Option<PathBuf> {
        if self.blob.is_local() {
            return self.local(uri).ok().filter(|p| p.is_file());
        }
        let key = self.blob.key_of(uri).ok()?;
        let name = contrail_blob::hex(&<sha2::Sha256 as sha2::Digest>::digest(uri.as_bytes()));
        let path = self.cfg.code_cache.join("fetched").join(name);
        if path.is_file() {
            return Some(path);
        }
        let staged = path.with_extension(format!("part{}", std::process::id()));
        match self.blob.download(key, &staged) {
            Ok(()) => std::fs::rename(&staged, &path).ok().map(|_| path),
            Err(e) => {
                tracing::warn!(uri, "cannot fetch code archive: {e}");
                let _ = std::fs::remove_file(&staged);
                None
            }
        }
    }

    /// What an attempt counts with: its requests, or the defaults for what it leaves out.
    fn demand(&self, spec: &AttemptSpec) -> (u64, u64) {
        let (cpu, memory) = requests(spec);
        (
            if cpu == 0 {
                self.cfg.default_cpu_millis
            } else {
                cpu
            },
            if memory == 0 {
                self.cfg.default_memory_bytes
            } else {
                memory
            },
        )
    }

    /// Reads the live attempts on disk (launched, not ended) into the book, once.
    fn seed(&self, book: &mut Book) {
        if std::mem::replace(&mut book.seeded, true) {
            return;
        }
        let dirs = |d: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(d)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.is_dir())
                        .collect()
                })
                .unwrap_or_default()
        };
        for project in dirs(&self.cfg.attempts_dir) {
            for domain in dirs(&project) {
                for attempt in dirs(&domain) {
                    // Only what may still run holds capacity: not an attempt that ended,
                    // nor one whose task is dead though nothing recorded its end.
                    match supervisor::inspect(&attempt) {
                        Ok(DirState::Exited(_)) => continue,
                        Ok(DirState::Unsupervised {
                            started_pid: Some(pid),
                        }) if !supervisor::alive(pid) => continue,
                        _ => {}
                    }
                    let Ok(bytes) = std::fs::read(attempt.join(supervisor::LAUNCH)) else {
                        continue;
                    };
                    if let Ok(l) = serde_json::from_slice::<Launch>(&bytes) {
                        book.running.insert(attempt, (l.cpu_millis, l.memory_bytes));
                    }
                }
            }
        }
    }

    /// (cpu, memory) in use by attempts that have not ended, by their records: an entry
    /// whose attempt recorded its end is dropped. (An admitted attempt's directory may not
    /// exist yet: it appears, complete, when its start renames it into place.)
    fn in_use(&self, book: &mut Book) -> (u64, u64) {
        self.seed(book);
        book.running
            .retain(|dir, _| !dir.join(supervisor::EXIT).exists());
        book.running
            .values()
            .fold((0, 0), |(c, m), (a, b)| (c + a, m + b))
    }

    /// `None` when the attempt fits now, else why it waits.
    fn shortfall(&self, book: &mut Book, want: (u64, u64)) -> Option<String> {
        let (cpu, mem) = self.in_use(book);
        let (cap_cpu, cap_mem) = (self.cfg.cpu_millis, self.cfg.memory_bytes);
        if cpu + want.0 <= cap_cpu && mem + want.1 <= cap_mem {
            return None;
        }
        let mib = |b: u64| b / (1024 * 1024);
        Some(format!(
            "waiting for local capacity: the task needs {}m CPU and {} MiB; {cpu}m of {cap_cpu}m CPU and {} of {} MiB are in use by {} running tasks",
            want.0,
            mib(want.1),
            mib(mem),
            mib(cap_mem),
            book.running.len()
        ))
    }

    fn admit(&self, book: &mut Book, dir: &Path, want: (u64, u64)) -> bool {
        let fits = self.shortfall(book, want).is_none();
        if fits {
            book.pending.remove(dir);
            book.running.insert(dir.to_path_buf(), want);
        } else {
            book.pending.insert(dir.to_path_buf());
        }
        fits
    }

    /// Creates the attempt directory (atomically) and starts its supervisor.
    fn start(
        &self,
        spec: &AttemptSpec,
        dir: &Path,
        on_change: Box<dyn Fn() + Send + Sync>,
    ) -> Result<()> {
        let parent = dir
            .parent()
            .ok_or_else(|| io("attempt dir has no parent"))?;
        std::fs::create_dir_all(parent).map_err(io)?;
        let tmp = parent.join(format!(".tmp-{}-{}", spec.id, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("sandbox")).map_err(io)?;
        // The ledger exists before the directory does: once an attempt may have run, its
        // ledger says so.
        std::fs::create_dir_all(self.ledger_dir(spec)).map_err(io)?;
        let sandbox = dir.join("sandbox");
        let launch = match self.build(spec, &sandbox, &tmp.join("sandbox")) {
            Ok(l) => Some(l),
            Err(message) => {
                let rec = ExitRecord {
                    spawn_error: Some(message),
                    started_at: supervisor::now_nanos(),
                    finished_at: supervisor::now_nanos(),
                    ..Default::default()
                };
                std::fs::write(
                    tmp.join(supervisor::EXIT),
                    serde_json::to_vec(&rec).map_err(io)?,
                )
                .map_err(io)?;
                None
            }
        };
        if let Some(l) = &launch {
            std::fs::write(
                tmp.join(supervisor::LAUNCH),
                serde_json::to_vec(l).map_err(io)?,
            )
            .map_err(io)?;
        }
        match std::fs::rename(&tmp, dir) {
            Ok(()) => {}
            Err(_) if dir.exists() => {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(e) => return Err(io(e)),
        }
        if launch.is_some() {
            self.spawn_supervisor(dir, on_change)?;
        }
        Ok(())
    }

    fn spawn_supervisor(&self, dir: &Path, on_change: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        if self.connect() {
            lock(&self.book).spawned.insert(dir.to_path_buf());
            lock(&self.waiters).insert(dir.to_path_buf(), on_change);
            let sent = lock(&self.link).as_mut().map(|l| l.launch(dir));
            match sent {
                Some(Ok(())) => return Ok(()),
                _ => {
                    lock(&self.link).take();
                    lock(&self.book).spawned.remove(dir);
                    let Some(on_change) = lock(&self.waiters).remove(dir) else {
                        return Ok(()); // the closing connection already woke the round
                    };
                    return self.spawn_process(dir, on_change);
                }
            }
        }
        self.spawn_process(dir, on_change)
    }

    /// Starts a supervisor process for one attempt.
    fn spawn_process(&self, dir: &Path, on_change: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        let (exe, args) = self
            .cfg
            .supervisor
            .split_first()
            .ok_or_else(|| io("no supervisor command configured"))?;
        let mut child = tokio::process::Command::new(exe)
            .args(args)
            .arg(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| io(format!("cannot start supervisor {exe}: {e}")))?;
        lock(&self.book).spawned.insert(dir.to_path_buf());
        let book = self.book.clone();
        let dir = dir.to_path_buf();
        tokio::spawn(async move {
            let _ = child.wait().await;
            lock(&book).spawned.remove(&dir);
            on_change();
        });
        Ok(())
    }

    /// The launch description: argv rendered, paths rewritten, environment assembled.
    /// `Err` is a message for the user (the attempt fails without running).
    fn build(
        &self,
        spec: &AttemptSpec,
        sandbox: &Path,
        staging: &Path,
    ) -> std::result::Result<Launch, String> {
        let t = &spec.task;
        let Some(c) = contrail_executor::container(t) else {
            return Err(format!(
                "task type '{}' has no container; the local executor runs container tasks only",
                t.r#type
            ));
        };
        // Local blobs are handed to tasks as paths (read and written in place); blobs in an
        // object store as their URIs (flytekit reaches the store with FLYTE_AWS_*).
        let (input, output) = if self.blob.is_local() {
            let local = |uri: &str| -> std::result::Result<String, String> {
                self.local(uri)
                    .map(|p| p.to_string_lossy().into_owned())
                    .map_err(|e| e.to_string())
            };
            let output = local(&spec.paths.output_prefix)?;
            std::fs::create_dir_all(&output).map_err(|e| format!("cannot create {output}: {e}"))?;
            (local(&spec.paths.inputs)?, output)
        } else {
            (spec.paths.inputs.clone(), spec.paths.output_prefix.clone())
        };
        let input_prefix = Path::new(&input)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let unique = spec
            .id
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
        let vars = Vars {
            input: &input,
            input_prefix: &input_prefix,
            output_prefix: &output,
            raw_output_prefix: &spec.paths.raw_output_prefix,
            checkpoint_prefix: &spec.paths.checkpoint_prefix,
            prev_checkpoint_prefix: spec.paths.prev_checkpoint_prefix.as_deref(),
            per_retry_unique_key: &unique,
            task_template_path: None,
            namespace: &format!("{}-{}", spec.project, spec.domain),
            inputs: Some(&spec.inputs),
        };
        let mut argv: Vec<String> = c.command.iter().chain(&c.args).cloned().collect();
        argv = template::render_all(&argv, &vars).map_err(|e| e.to_string())?;
        let sandbox_s = sandbox.to_string_lossy().into_owned();
        // pyflyte-fast-execute extracts the code into --dest-dir, which must exist: the sandbox.
        if let Some(i) = argv.iter().position(|a| a == "--dest-dir")
            && let Some(v) = argv.get_mut(i + 1)
        {
            *v = sandbox_s.clone();
        }
        if let Some(dc) = c.data_config.as_ref().filter(|d| d.enabled) {
            rawcontainer::stage_inputs(&self.blob, dc, spec, sandbox, staging, &mut argv)?;
        }
        let mut env: Vec<(String, String)> = self.cfg.base_env.clone();
        let secrets = &self.cfg.secrets_dir;
        env.push((
            "FLYTE_SECRETS_DEFAULT_DIR".into(),
            secrets.to_string_lossy().into_owned(),
        ));
        for s in t.security_context.iter().flat_map(|c| &c.secrets) {
            let path = secrets.join(&s.group).join(&s.key);
            let Ok(value) = std::fs::read_to_string(&path) else {
                return Err(format!(
                    "secret {}/{} is not available: put it in {}",
                    s.group,
                    s.key,
                    path.display()
                ));
            };
            let name = contrail_executor::env::secret_env_name(&s.group, &s.group_version, &s.key);
            if !s.env_var.is_empty() {
                env.push((s.env_var.clone(), value.clone()));
            }
            env.push((name, value));
        }
        env.extend(contrail_executor::env::task_env(spec));
        let venv = contrail_executor::env::image_match(&self.cfg.images, &c.image);
        if let Some(dir) = venv {
            env.extend(venv_env(&env, dir));
        }
        if !self.cfg.python_path.is_empty() {
            let mut parts: Vec<String> = self
                .cfg
                .python_path
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            parts.extend(getenv(&env, "PYTHONPATH").map(str::to_string));
            env.push(("PYTHONPATH".into(), parts.join(":")));
        }
        // Last value of a name wins, as with a shell's `export`.
        let dedup = contrail_executor::env::last_wins(env);
        let (cpu_millis, memory_bytes) = self.demand(spec);
        let warm = if self.cfg.warm_workers {
            warm::plan(
                warm::Attempt {
                    argv: &argv,
                    env: &dedup,
                    sandbox,
                    code: &self.code,
                },
                || self.worker(venv.map(|dir| dir.as_path())),
                |uri| self.fetch(uri),
            )?
        } else {
            None
        };
        Ok(Launch {
            argv,
            env: dedup,
            cwd: sandbox.to_path_buf(),
            cpu_millis,
            memory_bytes,
            warm,
            ledger: Some(self.ledger_dir(spec)),
        })
    }

    /// The warm worker of a Python environment (`None`: the server's own), found on its
    /// PATH the first time it is asked for and remembered.
    fn worker(&self, venv: Option<&Path>) -> Option<supervisor::Warm> {
        let key = venv.map(Path::to_path_buf);
        if let Some(found) = lock(&self.workers).get(&key) {
            return Some(found.clone());
        }
        let found = warm::worker(self.worker_env(venv))?;
        lock(&self.workers).insert(key, found.clone());
        Some(found)
    }

    /// The environment a warm worker starts with: the server's, with the Python
    /// environment's PATH, and nothing of any task (no PYTHONPATH: user code is imported
    /// only by the tasks).
    fn worker_env(&self, venv: Option<&Path>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .cfg
            .base_env
            .iter()
            .filter(|(k, _)| k != "PYTHONPATH")
            .cloned()
            .collect();
        if let Some(dir) = venv {
            let adjusted = venv_env(&env, dir);
            env.retain(|(k, _)| !adjusted.iter().any(|(a, _)| a == k));
            env.extend(adjusted);
        }
        env
    }

    /// Asks the resident supervisor to start the warm workers of every configured Python
    /// environment ahead of their first task.
    fn prewarm(&self, link: &mut daemon::Link) {
        if !self.cfg.warm_workers {
            return;
        }
        let venvs =
            std::iter::once(None).chain(self.cfg.images.iter().map(|(_, d)| Some(d.as_path())));
        for venv in venvs {
            if let Some(worker) = self.worker(venv) {
                let _ = link.warm(&worker);
            }
        }
    }

    fn leftovers(
        &self,
        spec: &AttemptSpec,
        dir: &Path,
        rec: Option<&ExitRecord>,
    ) -> Result<Leftovers> {
        let out = self
            .blob
            .key_of(&spec.paths.output_prefix)
            .map_err(io)?
            .trim_end_matches('/')
            .to_string();
        let written = |name: &str| self.blob.exists(&format!("{out}/{name}")).map_err(io);
        let c = contrail_executor::container(&spec.task);
        if let (Some(dc), Some(rec)) = (c.and_then(|c| c.data_config.as_ref()), rec)
            && dc.enabled
            && rec.code == Some(0)
            && !written("outputs.pb")?
        {
            rawcontainer::collect_outputs(&self.blob, dc, spec, &dir.join("sandbox"), &out)?;
        }
        let stderr = std::fs::read(dir.join(supervisor::STDERR)).unwrap_or_default();
        contrail_executor::outcome::read_leftovers(
            &self.blob,
            spec,
            contrail_executor::outcome::tail(&stderr),
            rec.is_some_and(|r| r.aborted),
        )
    }

    fn settle(&self, dir: &Path) {
        let mut b = lock(&self.book);
        b.running.remove(dir);
        b.pending.remove(dir);
    }
}

impl Executor for LocalExecutor {
    fn launch(&self, spec: &AttemptSpec, on_change: Box<dyn Fn() + Send + Sync>) -> Result<()> {
        let dir = self.attempt_dir(spec);
        match supervisor::inspect(&dir).map_err(io)? {
            DirState::Exited(_) | DirState::Supervised { .. } => Ok(()),
            DirState::Unsupervised { .. } => {
                if lock(&self.book).spawned.contains(&dir) {
                    return Ok(());
                }
                self.spawn_supervisor(&dir, on_change)
            }
            // Launched before and its directory vanished since: never started again.
            DirState::Missing if self.ledger_dir(spec).exists() => Ok(()),
            DirState::Missing => {
                let admitted = {
                    let mut b = lock(&self.book);
                    self.admit(&mut b, &dir, self.demand(spec))
                };
                if !admitted {
                    return Ok(());
                }
                let started = self.start(spec, &dir, on_change);
                if started.is_err() && !dir.exists() {
                    self.settle(&dir);
                }
                started
            }
        }
    }

    fn status(&self, spec: &AttemptSpec) -> Result<TaskStatus> {
        let dir = self.attempt_dir(spec);
        let ledger = self.ledger_dir(spec);
        let mut state = supervisor::inspect(&dir).map_err(io)?;
        if state == DirState::Missing && ledger.exists() {
            // The attempt ran (or runs) and its directory vanished: its ledger is the
            // record. A supervisor holding it, or a live task group, still runs it; else
            // it is known dead and its outputs decide.
            state = match supervisor::inspect(&ledger).map_err(io)? {
                DirState::Unsupervised { started_pid }
                    if started_pid.is_none_or(|pid| !supervisor::alive(pid)) =>
                {
                    DirState::Exited(ExitRecord {
                        lost: true,
                        ..Default::default()
                    })
                }
                other => other,
            };
        }
        match state {
            DirState::Missing => {
                let pending = lock(&self.book).pending.contains(&dir);
                if !pending {
                    // Not run here. It may have run and finished elsewhere (another
                    // replica's machine): its outputs in the blob store say so, and a task
                    // that succeeded must not run again.
                    let left = self.leftovers(spec, &dir, None)?;
                    if left.outputs_written || left.futures_written {
                        return Ok(decide(&Exit::Lost, &left));
                    }
                    return Ok(TaskStatus::Unknown);
                }
                let want = self.demand(spec);
                let (cpu, mem) = (self.cfg.cpu_millis, self.cfg.memory_bytes);
                if want.0 > cpu || want.1 > mem {
                    self.settle(&dir);
                    return Ok(TaskStatus::Failed(Failure::user(
                        "InsufficientResources",
                        format!(
                            "the task requests {} millicores and {} bytes; this machine offers {cpu} millicores and {mem} bytes",
                            want.0, want.1
                        ),
                        false,
                    )));
                }
                match self.shortfall(&mut lock(&self.book), want) {
                    // Capacity is free now: report it unlaunched so the engine launches it.
                    None => Ok(TaskStatus::Unknown),
                    Some(reason) => Ok(TaskStatus::Waiting { reason }),
                }
            }
            DirState::Supervised { started } => {
                if started {
                    Ok(TaskStatus::Running { started_at: None })
                } else {
                    Ok(TaskStatus::Queued)
                }
            }
            DirState::Unsupervised { started_pid } => {
                if let Some(pid) = started_pid {
                    if supervisor::alive(pid) {
                        // Orphaned but still running; its end is judged from its files.
                        return Ok(TaskStatus::Running { started_at: None });
                    }
                    let left = self.leftovers(spec, &dir, None)?;
                    // Its supervisor died before the task: the end is recorded now, so
                    // the attempt no longer counts as running after a restart.
                    supervisor::record_lost(&dir, Some(&ledger)).map_err(io)?;
                    self.settle(&dir);
                    return Ok(decide(&Exit::Lost, &left));
                }
                if lock(&self.book).spawned.contains(&dir) {
                    Ok(TaskStatus::Queued)
                } else {
                    Ok(TaskStatus::Unknown)
                }
            }
            DirState::Exited(rec) => {
                self.settle(&dir);
                if let Some(msg) = &rec.spawn_error {
                    return Ok(TaskStatus::Failed(Failure::user(
                        "CannotStart",
                        msg.clone(),
                        false,
                    )));
                }
                let left = self.leftovers(spec, &dir, Some(&rec))?;
                let exit = if rec.lost {
                    Exit::Lost
                } else if let Some(s) = rec.signal {
                    Exit::Signal(s)
                } else {
                    Exit::Code(rec.code.unwrap_or(-1))
                };
                Ok(decide(&exit, &left))
            }
        }
    }

    fn abort(&self, spec: &AttemptSpec) -> Result<()> {
        let dir = self.attempt_dir(spec);
        self.settle(&dir);
        supervisor::abort(&dir).map_err(io)?;
        supervisor::abort_by_ledger(&self.ledger_dir(spec)).map_err(io)
    }

    fn logs(&self, spec: &AttemptSpec) -> Vec<TaskLog> {
        let dir = self.attempt_dir(spec);
        [
            ("stdout", supervisor::STDOUT),
            ("stderr", supervisor::STDERR),
        ]
        .into_iter()
        .map(|(name, file)| TaskLog {
            name: format!("{name} (local)"),
            uri: format!("file://{}", dir.join(file).display()),
            ..Default::default()
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contrail_idl::core::{
        Container, Resources,
        resources::{ResourceEntry, ResourceName},
        task_template,
    };

    fn spec(id: &str, cpu: &str) -> AttemptSpec {
        AttemptSpec {
            id: id.into(),
            project: "p".into(),
            domain: "d".into(),
            task: contrail_idl::core::TaskTemplate {
                target: Some(task_template::Target::Container(Container {
                    command: vec!["true".into()],
                    resources: Some(Resources {
                        requests: vec![ResourceEntry {
                            name: ResourceName::Cpu as i32,
                            value: cpu.into(),
                        }],
                        limits: vec![],
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            },
            paths: contrail_executor::AttemptPaths {
                inputs: format!("s3://b/m/{id}/inputs.pb"),
                output_prefix: format!("s3://b/m/{id}/0"),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn tasks_wait_for_capacity_and_impossible_requests_fail() {
        let d = tempfile::tempdir().unwrap();
        let ex = LocalExecutor::new(
            LocalConfig {
                attempts_dir: d.path().join("attempts"),
                // A supervisor that does nothing: this test is about admission only.
                supervisor: vec!["true".into()],
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
                ..Default::default()
            },
            BlobStore::new(d.path().join("blobs"), "b", vec![0; 32]),
        );
        let (a, b, huge) = (spec("a", "800m"), spec("b", "800m"), spec("c", "4"));
        ex.launch(&a, Box::new(|| {})).unwrap();
        assert!(ex.attempt_dir(&a).join(supervisor::LAUNCH).exists());
        ex.launch(&b, Box::new(|| {})).unwrap();
        assert!(
            !ex.attempt_dir(&b).exists(),
            "b must wait: 800m + 800m > 1000m"
        );
        let TaskStatus::Waiting { reason } = ex.status(&b).unwrap() else {
            panic!("b must wait for capacity")
        };
        assert!(reason.contains("800m"), "{reason}");
        // a finishes: its capacity is released and b is admitted on its next launch.
        std::fs::write(
            ex.attempt_dir(&a).join(supervisor::EXIT),
            serde_json::to_vec(&ExitRecord {
                code: Some(0),
                ..Default::default()
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(ex.status(&a).unwrap(), TaskStatus::Succeeded);
        assert_eq!(
            ex.status(&b).unwrap(),
            TaskStatus::Unknown,
            "b may start now"
        );
        ex.launch(&b, Box::new(|| {})).unwrap();
        assert!(ex.attempt_dir(&b).join(supervisor::LAUNCH).exists());
        ex.launch(&huge, Box::new(|| {})).unwrap();
        let TaskStatus::Failed(f) = ex.status(&huge).unwrap() else {
            panic!("a request above the machine's capacity must fail")
        };
        assert_eq!(f.code, "InsufficientResources");
    }

    /// Waits (with a deadline) until `f` holds.
    fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn an_attempt_whose_directory_vanishes_is_neither_started_again_nor_rerun() {
        let d = tempfile::tempdir().unwrap();
        let executor = || {
            LocalExecutor::new(
                LocalConfig {
                    attempts_dir: d.path().join("attempts"),
                    // The test runs the supervisor itself, in a thread.
                    supervisor: vec!["true".into()],
                    cpu_millis: 1000,
                    memory_bytes: 1 << 30,
                    ..Default::default()
                },
                BlobStore::new(d.path().join("blobs"), "b", vec![0; 32]),
            )
        };
        let (runs, go) = (d.path().join("runs"), d.path().join("go"));
        let mut a = spec("a", "100m");
        if let Some(task_template::Target::Container(c)) = a.task.target.as_mut() {
            c.command = vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "echo run >> {}; while [ ! -e {} ]; do sleep 0.02; done",
                    runs.display(),
                    go.display()
                ),
            ];
        }
        let ex = executor();
        ex.launch(&a, Box::new(|| {})).unwrap();
        let dir = ex.attempt_dir(&a);
        let supervised = {
            let dir = dir.clone();
            std::thread::spawn(move || supervisor::supervise(&dir))
        };
        eventually("the task runs", || {
            matches!(ex.status(&a).unwrap(), TaskStatus::Running { .. })
        });
        std::fs::remove_dir_all(&dir).unwrap();
        // Its supervisor still holds the ledger: still running, and not started again.
        assert!(matches!(ex.status(&a).unwrap(), TaskStatus::Running { .. }));
        ex.launch(&a, Box::new(|| {})).unwrap();
        assert!(
            !dir.exists(),
            "a vanished attempt must not be started again"
        );
        std::fs::write(&go, b"").unwrap();
        supervised.join().unwrap();
        assert_eq!(ex.status(&a).unwrap(), TaskStatus::Succeeded);
        // After a restart the ledger still tells: succeeded, and never run again.
        let restarted = executor();
        restarted.launch(&a, Box::new(|| {})).unwrap();
        assert_eq!(restarted.status(&a).unwrap(), TaskStatus::Succeeded);
        assert!(!dir.exists());
        assert_eq!(std::fs::read_to_string(&runs).unwrap(), "run\n");

        // Launched, its directory gone, and no supervisor or task alive: known dead, so
        // the engine may retry it under a new attempt.
        let b = spec("b", "100m");
        ex.launch(&b, Box::new(|| {})).unwrap();
        std::fs::remove_dir_all(ex.attempt_dir(&b)).unwrap();
        let TaskStatus::Failed(f) = ex.status(&b).unwrap() else {
            panic!("a dead attempt without outputs has failed")
        };
        assert_eq!((f.code.as_str(), f.recoverable), ("SupervisorLost", true));
    }

    #[test]
    fn an_attempt_that_finished_on_another_machine_is_known_by_its_outputs() {
        let d = tempfile::tempdir().unwrap();
        let blob = BlobStore::new(d.path().join("blobs"), "b", vec![0; 32]);
        let ex = LocalExecutor::new(
            LocalConfig {
                attempts_dir: d.path().join("attempts"),
                supervisor: vec!["true".into()],
                ..Default::default()
            },
            blob.clone(),
        );
        let (done, never) = (spec("done", "100m"), spec("never", "100m"));
        // No attempt directory here for either; only `done` left outputs in the blobs.
        blob.put("m/done/0/outputs.pb", b"").unwrap();
        assert_eq!(ex.status(&done).unwrap(), TaskStatus::Succeeded);
        assert_eq!(
            ex.status(&never).unwrap(),
            TaskStatus::Unknown,
            "never launched: launch it"
        );
    }

    /// An executor over `dir` whose supervisor runs nothing, with room for two attempts
    /// without requests (1000m, each counting 500m).
    fn room_for_two(dir: &Path) -> LocalExecutor {
        LocalExecutor::new(
            LocalConfig {
                attempts_dir: dir.join("attempts"),
                supervisor: vec!["true".into()],
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
                default_cpu_millis: 500,
                default_memory_bytes: 1 << 20,
                ..Default::default()
            },
            BlobStore::new(dir.join("blobs"), "b", vec![0; 32]),
        )
    }

    #[tokio::test]
    async fn a_restarted_executor_admits_against_the_attempts_still_running() {
        let d = tempfile::tempdir().unwrap();
        let executor = || room_for_two(d.path());
        let before = executor();
        // No requests: each counts with the default 500m, so two fit.
        let (a, b, c) = (spec("a", "0"), spec("b", "0"), spec("c", "0"));
        before.launch(&a, Box::new(|| {})).unwrap();
        before.launch(&b, Box::new(|| {})).unwrap();
        assert!(before.attempt_dir(&b).join(supervisor::LAUNCH).exists());
        // A new process (a restart) reads what is still running from the attempt records.
        let after = executor();
        after.launch(&c, Box::new(|| {})).unwrap();
        assert!(
            !after.attempt_dir(&c).exists(),
            "c must wait: a and b still run"
        );
        assert!(matches!(
            after.status(&c).unwrap(),
            TaskStatus::Waiting { .. }
        ));
        std::fs::write(
            after.attempt_dir(&a).join(supervisor::EXIT),
            serde_json::to_vec(&ExitRecord::default()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            after.status(&c).unwrap(),
            TaskStatus::Unknown,
            "a ended: c may start"
        );
    }

    #[tokio::test]
    async fn an_attempt_whose_supervisor_died_before_it_frees_its_capacity_after_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let executor = || room_for_two(d.path());
        let before = executor();
        let (a, b, c) = (spec("a", "0"), spec("b", "0"), spec("c", "0"));
        before.launch(&a, Box::new(|| {})).unwrap();
        before.launch(&b, Box::new(|| {})).unwrap();
        // Both tasks ran and ended, and their supervisor was killed before recording it:
        // `started` names a process that is gone, and there is no exit record.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead = gone.id().to_string();
        gone.wait().unwrap();
        for x in [&a, &b] {
            std::fs::write(before.attempt_dir(x).join(supervisor::STARTED), &dead).unwrap();
        }
        // A restarted server does not count them as running: c starts.
        let after = executor();
        after.launch(&c, Box::new(|| {})).unwrap();
        assert!(
            after.attempt_dir(&c).exists(),
            "c must not wait for dead attempts"
        );
        // Judging a's end records it, once and for good.
        assert!(matches!(after.status(&a).unwrap(), TaskStatus::Failed(_)));
        let rec: ExitRecord = serde_json::from_slice(
            &std::fs::read(after.attempt_dir(&a).join(supervisor::EXIT)).unwrap(),
        )
        .unwrap();
        assert!(rec.lost);
    }

    #[tokio::test]
    async fn a_task_type_without_a_container_fails_naming_the_type() {
        let d = tempfile::tempdir().unwrap();
        let ex = LocalExecutor::new(
            LocalConfig {
                attempts_dir: d.path().join("attempts"),
                supervisor: vec!["true".into()],
                ..Default::default()
            },
            BlobStore::new(d.path().join("blobs"), "b", vec![0; 32]),
        );
        let mut sql = spec("q", "100m");
        sql.task.r#type = "sql".into();
        sql.task.target = None;
        ex.launch(&sql, Box::new(|| {})).unwrap();
        let TaskStatus::Failed(f) = ex.status(&sql).unwrap() else {
            panic!("a task without a container cannot run")
        };
        assert_eq!(f.code, "CannotStart");
        assert!(f.message.contains("task type 'sql'"), "{}", f.message);
    }
}
