//! Transcription jobs: every accepted upload is a `processing_jobs` row, stored with its
//! session. The runner claims jobs with a lease, runs them on perf-pool's priority
//! `TaskPool` (at most one decoder per worker slot), renews the lease while a job runs, and
//! stores the transcript, or the failure once a job has failed `max_attempts` times. A job
//! whose process died is claimed again when its lease runs out; a job whose session was
//! deleted loses its lease at the next renewal and is cancelled.

mod callback;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use perf_cache::response::ResponseCacheLayer;
use perf_pool::task::{CancelToken, TaskError, TaskPool};
use tokio::sync::{Notify, broadcast};

pub use callback::{Callbacks, SIGNATURE, validate_callback};

use crate::audio::decode::{self, DecodeFailure};
use crate::config::{AudioConfig, JobsConfig};
use crate::engine::{DecodeOptions, EngineError, Transcriber, segments_of, summary, text_of};
use crate::memory::{MemoryGuard, MemoryShort};
use crate::store::{Job, ReuseKey, SessionStatus, Store, Transcript};

/// The kind jobs run as on the task pool, limited to the worker count.
pub const KIND: &str = "transcription";

/// A job finished (transcribed, or failed for good).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The session.
    pub session_id: String,
    /// Its status now.
    pub status: SessionStatus,
}

/// Words of a job as they are decoded: one utterance, or one stored segment of a transcript
/// that is reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The session.
    pub session_id: Arc<str>,
    /// The words, as the transcript shows them.
    pub text: String,
}

/// The job runner of this process.
pub struct Jobs {
    store: Arc<dyn Store>,
    engine: Arc<dyn Transcriber>,
    pool: TaskPool,
    workers: usize,
    jobs: JobsConfig,
    audio: AudioConfig,
    data_dir: PathBuf,
    /// Who holds the leases this process takes.
    worker: String,
    wake: Notify,
    finished: broadcast::Sender<Finished>,
    progress: broadcast::Sender<Progress>,
    running: AtomicUsize,
    responses: ResponseCacheLayer,
    callbacks: Callbacks,
    memory: MemoryGuard,
    /// Set when a job was given back for want of memory: no job is claimed until one that
    /// runs ends (they hold the memory), or a second has passed with none running.
    short_of_memory: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("worker", &self.worker)
            .field("running", &self.running.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// What the runner needs.
#[derive(Debug)]
pub struct JobsSetup {
    /// The job table and sessions.
    pub store: Arc<dyn Store>,
    /// The task pool, with [`KIND`] limited to `workers`.
    pub pool: TaskPool,
    /// Jobs run at once by this process.
    pub workers: usize,
    /// Leases, attempts, callbacks.
    pub jobs: JobsConfig,
    /// Decoding limits.
    pub audio: AudioConfig,
    /// Where the audio is.
    pub data_dir: PathBuf,
    /// Cached reads of a session are dropped when its job ends.
    pub responses: ResponseCacheLayer,
    /// Delivers results to `callback_url`s.
    pub callbacks: Callbacks,
    /// Decoded audio is counted against its limit.
    pub memory: MemoryGuard,
}

impl Jobs {
    /// A runner for `engine`; [`claim_forever`](Self::claim_forever) runs it.
    pub fn new(setup: JobsSetup, engine: Arc<dyn Transcriber>) -> Arc<Self> {
        let (finished, _) = broadcast::channel(1024);
        let (progress, _) = broadcast::channel(4096);
        Arc::new(Jobs {
            store: setup.store,
            engine,
            pool: setup.pool,
            workers: setup.workers.max(1),
            jobs: setup.jobs,
            audio: setup.audio,
            data_dir: setup.data_dir,
            worker: format!(
                "{}-{}-{}",
                rustix::system::uname().nodename().to_string_lossy(),
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            wake: Notify::new(),
            finished,
            progress,
            running: AtomicUsize::new(0),
            responses: setup.responses,
            callbacks: setup.callbacks,
            memory: setup.memory,
            short_of_memory: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The engine jobs run on.
    pub fn engine(&self) -> &dyn Transcriber {
        self.engine.as_ref()
    }

    /// A job was stored: look for it now rather than at the next poll.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Every job this process finishes, as it finishes.
    pub fn subscribe(&self) -> broadcast::Receiver<Finished> {
        self.finished.subscribe()
    }

    /// The words of every job this process runs, as they are decoded.
    pub fn subscribe_progress(&self) -> broadcast::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Jobs running in this process now.
    pub fn running(&self) -> usize {
        self.running.load(Relaxed)
    }

    /// Claims and runs jobs until the future is dropped: whenever a slot is free, on a wake
    /// from an upload, and every second for jobs other instances stored or whose lease ran
    /// out.
    pub async fn claim_forever(self: Arc<Self>) {
        let jobs = self;
        let mut backoff = Duration::from_millis(100);
        loop {
            // With every server of a remote engine down, jobs wait in the queue rather than
            // spend their attempts.
            if let Some(wait) = jobs.engine.unavailable_for() {
                tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
                continue;
            }
            while jobs.running() < jobs.workers && !jobs.short_of_memory.load(Relaxed) {
                match jobs.store.claim_job(&jobs.worker, jobs.jobs.lease).await {
                    Ok(Some(job)) => {
                        backoff = Duration::from_millis(100);
                        jobs.running.fetch_add(1, Relaxed);
                        let runner = Arc::clone(&jobs);
                        tokio::spawn(async move {
                            let memory_given_back = runner.run(job).await;
                            runner.running.fetch_sub(1, Relaxed);
                            if !memory_given_back {
                                // What it held is free: a job given back may fit now.
                                runner.short_of_memory.store(false, Relaxed);
                            }
                            runner.wake.notify_one();
                        });
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(%error, "claiming a job failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        break;
                    }
                }
            }
            tokio::select! {
                () = jobs.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    if jobs.running() == 0 {
                        // Memory is held by something other than jobs: look again.
                        jobs.short_of_memory.store(false, Relaxed);
                    }
                }
            }
        }
    }

    /// Runs one claimed job to its end; true when it was given back for want of memory.
    async fn run(self: &Arc<Self>, job: Job) -> bool {
        let session_id = job.session.id.clone();
        let started = Instant::now();
        tracing::info!(session = %session_id, attempt = job.attempts, "transcribing");
        let outcome = self.transcribe(&job).await;
        let status = match outcome {
            Ok(mut transcript) => {
                transcript.processing_time = started.elapsed().as_secs_f64();
                match self
                    .store
                    .complete_job(job.id, &self.worker, &transcript)
                    .await
                {
                    Ok(true) => {
                        metrics::histogram!("pocwhisp_job_duration_seconds")
                            .record(started.elapsed().as_secs_f64());
                        Some(SessionStatus::Completed)
                    }
                    Ok(false) => {
                        tracing::info!(session = %session_id, "job no longer ours (deleted or taken over); result dropped");
                        None
                    }
                    Err(error) => {
                        // The lease runs out and another attempt stores it (a full disk has
                        // given up its reserve for this write already).
                        tracing::warn!(session = %session_id, %error, "storing the transcript failed; the job is retried when its lease runs out");
                        finished("unstored");
                        None
                    }
                }
            }
            Err(JobError::Cancelled) => {
                tracing::info!(session = %session_id, "job cancelled: its session was deleted or its lease lost");
                finished("cancelled");
                None
            }
            Err(JobError::Unreachable(reason)) => {
                tracing::warn!(session = %session_id, %reason, "the engine is unreachable: the job waits in the queue");
                if let Err(error) = self.store.release_job(job.id, &self.worker, &reason).await {
                    // The lease runs out and the job is claimed again (with this attempt spent).
                    tracing::warn!(session = %session_id, %error, "giving the job back failed");
                }
                finished("deferred");
                None
            }
            Err(JobError::ShortOfMemory(short)) => {
                tracing::warn!(session = %session_id, %short, "not enough memory to decode now: the job waits in the queue");
                self.short_of_memory.store(true, Relaxed);
                if let Err(error) = self
                    .store
                    .release_job(job.id, &self.worker, &short.to_string())
                    .await
                {
                    tracing::warn!(session = %session_id, %error, "giving the job back failed");
                }
                finished("deferred");
                return true;
            }
            Err(JobError::Failed(reason)) => {
                tracing::warn!(session = %session_id, attempt = job.attempts, %reason, "transcription failed");
                match self
                    .store
                    .fail_job(job.id, &self.worker, &reason, self.jobs.max_attempts)
                    .await
                {
                    Ok(SessionStatus::Failed) => Some(SessionStatus::Failed),
                    Ok(_) => {
                        finished("retried");
                        None
                    }
                    Err(error) => {
                        tracing::warn!(session = %session_id, %error, "recording the failure failed");
                        None
                    }
                }
            }
        };
        if let Some(status) = status {
            finished(match status {
                SessionStatus::Failed => "failed",
                _ => "completed",
            });
            self.responses
                .invalidate_path(&format!("/api/v1/transcribe/{session_id}"));
            let _ = self.finished.send(Finished {
                session_id: session_id.clone(),
                status,
            });
            if let Some(url) = job.session.callback_url.clone() {
                let callbacks = self.callbacks.clone();
                let store = Arc::clone(&self.store);
                let responses = self.responses.clone();
                tokio::spawn(async move {
                    // Each attempt is recorded on the session: its cached read is stale.
                    let path = format!("/api/v1/transcribe/{session_id}");
                    let recorded = || {
                        responses.invalidate_path(&path);
                    };
                    callbacks
                        .deliver(store.as_ref(), &session_id, &url, &recorded)
                        .await;
                });
            }
        }
        false
    }

    /// The transcript of `job`'s audio: reused from an earlier session of the same owner
    /// with the same audio and engine, or decoded now on the task pool while the lease is renewed.
    async fn transcribe(self: &Arc<Self>, job: &Job) -> Result<Transcript, JobError> {
        let session = &job.session;
        let reuse = ReuseKey {
            owner: session.owner.clone(),
            sha256: session.sha256.clone(),
            engine: self.engine.name().to_owned(),
            model: self.engine.model().to_owned(),
            options: session.options.clone(),
        };
        if let Ok(Some(transcript)) = self.store.transcript_of(&reuse).await {
            tracing::info!(session = %session.id, "same audio transcribed before: reusing it");
            let session_id: Arc<str> = Arc::from(session.id.as_str());
            for segment in &transcript.segments {
                let _ = self.progress.send(Progress {
                    session_id: Arc::clone(&session_id),
                    text: segment.text.clone(),
                });
            }
            return Ok(transcript);
        }
        let path = self.data_dir.join(&session.filename);
        let options = session.options.clone();
        let engine = Arc::clone(&self.engine);
        let audio = self.audio.clone();
        let memory = self.memory.clone();
        let (progress, session_id) = (self.progress.clone(), Arc::<str>::from(session.id.as_str()));
        let handle = self
            .pool
            .submit_blocking(KIND, 0, move |cancel| {
                let mut on_text = |text: String| {
                    let _ = progress.send(Progress {
                        session_id: Arc::clone(&session_id),
                        text,
                    });
                };
                run_engine(
                    engine.as_ref(),
                    &path,
                    &audio,
                    &memory,
                    &options,
                    &cancel,
                    &mut on_text,
                )
            })
            .map_err(|_| JobError::Failed("the transcription queue is full".to_owned()))?;
        let mut handle = std::pin::pin!(handle);
        let mut renew = tokio::time::interval(self.jobs.lease / 3);
        renew.tick().await;
        loop {
            tokio::select! {
                result = &mut handle => {
                    return match result {
                        Ok(result) => result,
                        Err(TaskError::Cancelled) => Err(JobError::Cancelled),
                        Err(error) => Err(JobError::Failed(format!("the transcription task {error}"))),
                    };
                }
                _ = renew.tick() => {
                    match self.store.renew_lease(job.id, &self.worker, self.jobs.lease).await {
                        // Dropping the handle cancels the decoder at its next block.
                        Ok(false) => return Err(JobError::Cancelled),
                        Ok(true) => {}
                        Err(error) => tracing::warn!(session = %session.id, %error, "renewing the lease failed"),
                    }
                }
            }
        }
    }
}

/// Counts a job's end in `pocwhisp_jobs_finished_total`.
fn finished(outcome: &'static str) {
    metrics::counter!("pocwhisp_jobs_finished_total", "outcome" => outcome).increment(1);
}

#[derive(Debug)]
enum JobError {
    Cancelled,
    Failed(String),
    /// The engine's servers could not be reached: the job goes back to the queue with its
    /// attempt given back, and waits there while they are down (see `claim_forever`).
    Unreachable(String),
    /// Its audio does not fit under `memory.limit` beside the jobs running now: given back
    /// like `Unreachable`, and claimed again once one of them ends.
    ShortOfMemory(MemoryShort),
}

/// Decodes at the engine's rate and recognises each channel: the blocking part of a job.
/// The decoded samples and the engine's working memory are counted against `memory`'s
/// limit as they grow.
fn run_engine(
    engine: &dyn Transcriber,
    path: &std::path::Path,
    audio: &AudioConfig,
    memory: &MemoryGuard,
    options: &DecodeOptions,
    cancel: &CancelToken,
    on_text: &mut dyn FnMut(String),
) -> Result<Transcript, JobError> {
    let short = |short: MemoryShort| {
        if short.alone {
            JobError::Failed(format!("{short}, even with no other job running"))
        } else {
            JobError::ShortOfMemory(short)
        }
    };
    let mut reservation = memory.reservation();
    let decoded =
        decode::decode_for_engine(path, audio, &mut reservation).map_err(
            |failure| match failure {
                DecodeFailure::Audio(error) => JobError::Failed(error.to_string()),
                DecodeFailure::Memory(memory) => short(memory),
            },
        )?;
    let mut channels = Vec::with_capacity(decoded.channels.len());
    for pcm in &decoded.channels {
        let working = engine.working_bytes(pcm.len());
        reservation.grow(working).map_err(short)?;
        let heard = engine
            .transcribe(pcm, options, cancel, &mut |utterance| {
                let text = text_of(utterance);
                if !text.is_empty() {
                    on_text(text);
                }
            })
            .map_err(|error| match error {
                EngineError::Cancelled => JobError::Cancelled,
                EngineError::Unreachable(reason) => JobError::Unreachable(reason),
                other => JobError::Failed(other.to_string()),
            })?;
        reservation.shrink(working);
        channels.push(heard);
    }
    // Stereo: the language of the first channel that said anything, else of the first.
    let language = channels
        .iter()
        .find(|channel| !channel.utterances.is_empty())
        .or(channels.first())
        .and_then(|channel| channel.language.clone());
    let utterances: Vec<_> = channels
        .into_iter()
        .map(|channel| channel.utterances)
        .collect();
    let segments = segments_of(&utterances);
    Ok(Transcript {
        summary: summary::summarize(&segments),
        segments,
        engine: engine.name().to_owned(),
        model: engine.model().to_owned(),
        language,
        processing_time: 0.0,
    })
}
