//! The storage contract, once for every backend: each test runs against a fresh SQLite file
//! and a fresh schema of the real PostgreSQL at 127.0.0.1:5432 (or
//! `POCWHISP_TEST_DATABASE_URL`), and expects the same answers from both.

use std::time::{Duration, SystemTime};

use pocwhisp_server::config::{DatabaseConfig, Secret};
use pocwhisp_server::engine::{DecodeOptions, Task};
use pocwhisp_server::store::{
    Delivery, ListQuery, NewSession, PostgresStore, ReuseKey, Segment, SessionStatus, SqliteStore,
    Store, Summary, Transcript,
};
use tempfile::TempDir;

#[path = "support/postgres.rs"]
mod postgres;

/// A store under test, with whatever keeps its database alive.
struct Backend {
    store: std::sync::Arc<dyn Store>,
    _keep: Keep,
}

enum Keep {
    Directory(#[allow(dead_code)] TempDir),
    Schema(#[allow(dead_code)] postgres::TestSchema),
}

/// A fresh store of every backend.
async fn backends() -> Vec<Backend> {
    let dir = TempDir::new().unwrap();
    let sqlite = SqliteStore::open(dir.path()).await.expect("SQLite opens");
    let schema = postgres::TestSchema::create("store").await;
    let store = PostgresStore::connect(&DatabaseConfig {
        url: Some(Secret::new(schema.url())),
        ..DatabaseConfig::default()
    })
    .await
    .unwrap();
    store.migrate().await.expect("the migrations run");
    vec![
        Backend {
            store: std::sync::Arc::new(sqlite),
            _keep: Keep::Directory(dir),
        },
        Backend {
            store: std::sync::Arc::new(store),
            _keep: Keep::Schema(schema),
        },
    ]
}

fn session(id: &str, owner: &str, sha256: &str, created_secs: u64) -> NewSession {
    NewSession {
        id: id.to_owned(),
        owner: owner.to_owned(),
        filename: format!("{sha256}.audio"),
        original_name: format!("{id}.wav"),
        sha256: sha256.to_owned(),
        duration: 7.1,
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 24,
        format: "wav".to_owned(),
        file_size: 1_234_567,
        callback_url: None,
        priority: 0,
        options: DecodeOptions::default(),
        created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + created_secs),
    }
}

fn transcript(text: &str) -> Transcript {
    Transcript {
        segments: vec![
            Segment {
                speaker: "left".to_owned(),
                start_time: 0.25,
                end_time: 1.5,
                text: text.to_owned(),
                confidence: 0.75,
                words: vec![pocwhisp_server::store::TimedWord {
                    word: "hello".to_owned(),
                    start: 0.25,
                    end: 0.5,
                }],
                avg_logprob: Some(-0.25),
                no_speech_prob: Some(0.125),
            },
            Segment {
                speaker: "right".to_owned(),
                start_time: 1.0,
                end_time: 2.0,
                text: "and the other side".to_owned(),
                confidence: 0.5,
                words: Vec::new(),
                avg_logprob: None,
                no_speech_prob: None,
            },
        ],
        summary: Some(Summary {
            text: text.to_owned(),
            key_points: vec!["one (1×)".to_owned(), "two (2×)".to_owned()],
            sentiment: "neutral".to_owned(),
            model_used: "extractive-v1".to_owned(),
        }),
        engine: "sphinx".to_owned(),
        model: "en-us".to_owned(),
        language: Some("en".to_owned()),
        processing_time: 1.25,
    }
}

/// The reuse key of audio `sha256` decoded by `engine` with `options`, for owner `a`.
fn key(sha256: &str, engine: &str, options: DecodeOptions) -> ReuseKey {
    ReuseKey {
        owner: "a".to_owned(),
        sha256: sha256.to_owned(),
        engine: engine.to_owned(),
        model: "en-us".to_owned(),
        options,
    }
}

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_session_reads_back_as_stored_for_its_owner_only() {
    for Backend { store, .. } in backends().await {
        let store = store.as_ref();
        store.ping().await.unwrap();
        let new = session("s-1", "alice", "aa", 1);
        store.create_session(&new).await.unwrap();

        let detail = store.session("s-1", Some("alice")).await.unwrap().unwrap();
        let stored = &detail.session;
        assert_eq!(stored.status, SessionStatus::Queued, "{}", store.backend());
        assert_eq!(
            (
                stored.owner.as_str(),
                stored.filename.as_str(),
                stored.sha256.as_str()
            ),
            ("alice", "aa.audio", "aa")
        );
        assert_eq!(
            (
                stored.channels,
                stored.sample_rate,
                stored.bits_per_sample,
                stored.file_size
            ),
            (2, 44_100, 24, 1_234_567)
        );
        assert_eq!(stored.created_at, new.created_at);
        assert!(detail.segments.is_empty() && detail.summary.is_none());

        assert_eq!(store.session("s-1", Some("bob")).await.unwrap(), None);
        assert!(
            store.session("s-1", None).await.unwrap().is_some(),
            "an admin reads all"
        );
        assert_eq!(store.session("nope", None).await.unwrap(), None);
        assert!(
            store.create_session(&new).await.is_err(),
            "{}: a duplicate id is refused",
            store.backend()
        );
    }
}

/// Renaming an identity moves exactly its sessions, and a second rename finds none.
#[tokio::test]
async fn an_owner_renamed_takes_its_sessions_and_no_one_else_s() {
    for Backend { store, .. } in backends().await {
        let store = store.as_ref();
        for (id, owner) in [
            ("r-1", "env:user-1"),
            ("r-2", "env:user-1"),
            ("r-3", "env:user-10"),
        ] {
            store
                .create_session(&session(id, owner, id, 1))
                .await
                .unwrap();
        }
        let backend = store.backend();
        assert_eq!(
            store
                .rename_owner("env:user-1", "env:0123456789abcdef")
                .await
                .unwrap(),
            2,
            "{backend}"
        );
        assert_eq!(
            store
                .rename_owner("env:user-1", "env:0123456789abcdef")
                .await
                .unwrap(),
            0,
            "{backend}"
        );
        for id in ["r-1", "r-2"] {
            assert!(
                store
                    .session(id, Some("env:0123456789abcdef"))
                    .await
                    .unwrap()
                    .is_some(),
                "{backend} {id}"
            );
        }
        assert!(
            store
                .session("r-3", Some("env:user-10"))
                .await
                .unwrap()
                .is_some(),
            "{backend}"
        );
    }
}

#[tokio::test]
async fn listings_are_newest_first_with_the_real_total() {
    for Backend { store, .. } in backends().await {
        let store = store.as_ref();
        for n in 0..5 {
            let owner = if n % 2 == 0 { "alice" } else { "bob" };
            store
                .create_session(&session(&format!("s-{n}"), owner, &format!("h{n}"), n))
                .await
                .unwrap();
        }
        let query = |owner: Option<&str>, status, limit, offset| ListQuery {
            owner: owner.map(str::to_owned),
            status,
            limit,
            offset,
        };
        let ids = |page: &pocwhisp_server::store::Page| {
            page.sessions
                .iter()
                .map(|s| s.id.clone())
                .collect::<Vec<_>>()
        };
        let all = store.list_sessions(&query(None, None, 2, 0)).await.unwrap();
        assert_eq!(all.total, 5, "{}", store.backend());
        assert_eq!(ids(&all), ["s-4", "s-3"]);
        let last = store.list_sessions(&query(None, None, 2, 4)).await.unwrap();
        assert_eq!((ids(&last), last.total), (vec!["s-0".to_owned()], 5));
        let beyond = store
            .list_sessions(&query(None, None, 2, 10))
            .await
            .unwrap();
        assert_eq!((beyond.sessions.len(), beyond.total), (0, 5));

        let alice = store
            .list_sessions(&query(Some("alice"), None, 10, 0))
            .await
            .unwrap();
        assert_eq!(
            (ids(&alice), alice.total),
            (vec!["s-4".into(), "s-2".into(), "s-0".into()], 3)
        );

        let job = store.claim_job("w", LEASE).await.unwrap().unwrap();
        store
            .complete_job(job.id, "w", &transcript("hi"))
            .await
            .unwrap();
        let completed = store
            .list_sessions(&query(None, Some(SessionStatus::Completed), 10, 0))
            .await
            .unwrap();
        assert_eq!(
            (ids(&completed), completed.total),
            (vec![job.session.id.clone()], 1)
        );
        let queued = store
            .list_sessions(&query(Some("bob"), Some(SessionStatus::Queued), 10, 0))
            .await
            .unwrap();
        assert_eq!(queued.total, 2);
    }
}

#[tokio::test]
async fn jobs_are_claimed_by_priority_then_age_and_once_each() {
    for Backend { store, .. } in backends().await {
        let store = store.as_ref();
        store
            .create_session(&session("old", "a", "h1", 1))
            .await
            .unwrap();
        store
            .create_session(&session("new", "a", "h2", 2))
            .await
            .unwrap();
        let mut urgent = session("urgent", "a", "h3", 3);
        urgent.priority = 5;
        store.create_session(&urgent).await.unwrap();

        let mut order = Vec::new();
        while let Some(job) = store.claim_job("w", LEASE).await.unwrap() {
            assert_eq!(job.attempts, 1);
            assert_eq!(job.session.status, SessionStatus::Processing);
            order.push(job.session.id);
        }
        assert_eq!(order, ["urgent", "old", "new"], "{}", store.backend());
        let stats = store.stats().await.unwrap();
        assert_eq!(
            (stats.jobs_queued, stats.jobs_running, stats.sessions),
            (0, 3, 3)
        );
    }
}

#[tokio::test]
async fn owners_take_turns_whoever_queued_first() {
    for Backend { store, .. } in backends().await {
        let store = store.as_ref();
        // One user queues three, then another one: first in, first out would make the
        // second wait for all three.
        for (n, id) in ["a1", "a2", "a3"].into_iter().enumerate() {
            store
                .create_session(&session(id, "a", id, n as u64 + 1))
                .await
                .unwrap();
        }
        store
            .create_session(&session("b1", "b", "b1", 4))
            .await
            .unwrap();
        assert_eq!(store.unfinished_jobs("a").await.unwrap(), 3);
        assert_eq!(store.unfinished_jobs("b").await.unwrap(), 1);

        let mut order = Vec::new();
        while let Some(job) = store.claim_job("w", LEASE).await.unwrap() {
            order.push(job.session.id);
        }
        assert_eq!(order, ["a1", "b1", "a2", "a3"], "{}", store.backend());
        assert_eq!(
            store.unfinished_jobs("a").await.unwrap(),
            3,
            "running counts"
        );
        assert_eq!(store.unfinished_jobs("nobody").await.unwrap(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_claiming_at_once_take_each_job_exactly_once() {
    for Backend { store, .. } in backends().await {
        for n in 0..40 {
            store
                .create_session(&session(&format!("s-{n:02}"), "a", &format!("h{n}"), n))
                .await
                .unwrap();
        }
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..8 {
            let store = std::sync::Arc::clone(&store);
            workers.spawn(async move {
                let name = format!("worker-{worker}");
                let mut claimed = Vec::new();
                loop {
                    match store.claim_job(&name, LEASE).await {
                        Ok(Some(job)) => {
                            assert!(
                                store
                                    .complete_job(job.id, &name, &transcript("x"))
                                    .await
                                    .unwrap()
                            );
                            claimed.push(job.session.id);
                        }
                        Ok(None) => return claimed,
                        // SQLite's single writer may say "busy" under this much contention:
                        // that is a retry, not a double claim.
                        Err(error) => {
                            assert!(
                                matches!(error, pocwhisp_server::store::StoreError::Unavailable(_)),
                                "{error}"
                            );
                            tokio::task::yield_now().await;
                        }
                    }
                }
            });
        }
        let mut all: Vec<String> = workers.join_all().await.into_iter().flatten().collect();
        all.sort();
        let expected: Vec<String> = (0..40).map(|n| format!("s-{n:02}")).collect();
        assert_eq!(all, expected, "{}: every job once", store.backend());
    }
}

#[tokio::test]
async fn a_lapsed_lease_passes_the_job_to_another_worker() {
    for Backend { store, .. } in backends().await {
        let store = store.as_ref();
        store
            .create_session(&session("s", "a", "h", 1))
            .await
            .unwrap();
        // A lease of zero has lapsed as soon as the clock moves: the first worker "died".
        let first = store
            .claim_job("dead", Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let second = store.claim_job("alive", LEASE).await.unwrap().unwrap();
        assert_eq!(second.id, first.id, "{}", store.backend());
        assert_eq!(second.attempts, 2, "the claim counts an attempt");
        assert_eq!(store.claim_job("third", LEASE).await.unwrap(), None, "held");

        // The first worker comes back: it no longer holds the job.
        assert!(!store.renew_lease(first.id, "dead", LEASE).await.unwrap());
        assert!(
            !store
                .complete_job(first.id, "dead", &transcript("stale"))
                .await
                .unwrap()
        );
        assert!(store.renew_lease(second.id, "alive", LEASE).await.unwrap());
        assert!(
            store
                .complete_job(second.id, "alive", &transcript("fresh"))
                .await
                .unwrap()
        );

        let detail = store.session("s", None).await.unwrap().unwrap();
        assert_eq!(detail.session.status, SessionStatus::Completed);
        assert_eq!(detail.segments, transcript("fresh").segments);
        assert_eq!(detail.summary, transcript("fresh").summary);
        assert_eq!(detail.session.engine.as_deref(), Some("sphinx"));
        assert_eq!(detail.session.processing_time, Some(1.25));
        assert!(detail.session.processed_at.is_some());
        assert_eq!(
            store.claim_job("third", Duration::ZERO).await.unwrap(),
            None,
            "done"
        );
    }
}

#[tokio::test]
async fn failures_are_retried_until_the_last_attempt() {
    for Backend { store, .. } in backends().await {
        let store = store.as_ref();
        store
            .create_session(&session("s", "a", "h", 1))
            .await
            .unwrap();
        for attempt in 1..=3 {
            let job = store.claim_job("w", LEASE).await.unwrap().unwrap();
            assert_eq!(job.attempts, attempt, "{}", store.backend());
            let status = store
                .fail_job(job.id, "w", &format!("boom {attempt}"), 3)
                .await
                .unwrap();
            let expected = if attempt < 3 {
                SessionStatus::Queued
            } else {
                SessionStatus::Failed
            };
            assert_eq!(status, expected);
        }
        assert_eq!(store.claim_job("w", LEASE).await.unwrap(), None);
        let detail = store.session("s", None).await.unwrap().unwrap();
        assert_eq!(detail.session.status, SessionStatus::Failed);
        assert_eq!(detail.session.error_message.as_deref(), Some("boom 3"));
    }
}

#[tokio::test]
async fn a_released_job_is_queued_again_without_spending_an_attempt() {
    for Backend { store, .. } in backends().await {
        let store = store.as_ref();
        store
            .create_session(&session("s", "a", "h", 1))
            .await
            .unwrap();
        let job = store.claim_job("w", LEASE).await.unwrap().unwrap();
        assert_eq!(job.attempts, 1);
        assert!(
            !store.release_job(job.id, "other", "x").await.unwrap(),
            "not its job"
        );
        assert!(
            store
                .release_job(job.id, "w", "no server answered")
                .await
                .unwrap()
        );
        assert!(
            !store.release_job(job.id, "w", "again").await.unwrap(),
            "no longer held"
        );
        let detail = store.session("s", None).await.unwrap().unwrap();
        assert_eq!(
            detail.session.status,
            SessionStatus::Queued,
            "{}",
            store.backend()
        );
        assert_eq!(
            detail.session.error_message.as_deref(),
            Some("no server answered")
        );
        let again = store.claim_job("w", LEASE).await.unwrap().unwrap();
        assert_eq!(
            (again.id, again.attempts),
            (job.id, 1),
            "the attempt was given back"
        );
    }
}

#[tokio::test]
async fn transcripts_of_the_same_audio_are_found_for_reuse() {
    let german = DecodeOptions {
        language: Some("de".to_owned()),
        ..DecodeOptions::default()
    };
    let translated = DecodeOptions {
        task: Task::Translate,
        ..DecodeOptions::default()
    };
    for Backend { store, .. } in backends().await {
        let store = store.as_ref();
        let mut asked = session("s", "a", "same", 1);
        asked.options = german.clone();
        store.create_session(&asked).await.unwrap();
        let same = key("same", "sphinx", german.clone());
        assert_eq!(store.transcript_of(&same).await.unwrap(), None);
        let job = store.claim_job("w", LEASE).await.unwrap().unwrap();
        assert_eq!(job.session.options, german, "the job decodes as asked");
        store
            .complete_job(job.id, "w", &transcript("words"))
            .await
            .unwrap();
        let found = store.transcript_of(&same).await.unwrap().unwrap();
        assert_eq!(
            found.segments,
            transcript("words").segments,
            "{}",
            store.backend()
        );
        assert_eq!(found.summary, transcript("words").summary);
        assert_eq!(found.language.as_deref(), Some("en"));
        let stored = store.session("s", None).await.unwrap().unwrap().session;
        assert_eq!(
            (stored.options, stored.language.as_deref()),
            (german.clone(), Some("en"))
        );
        assert_eq!(
            store
                .transcript_of(&key("same", "openai", german.clone()))
                .await
                .unwrap(),
            None,
            "per engine"
        );
        let mut other_owner = same.clone();
        other_owner.owner = "b".to_owned();
        assert_eq!(
            store.transcript_of(&other_owner).await.unwrap(),
            None,
            "per owner: no user learns that another uploaded the same audio"
        );
        let mut other_model = same.clone();
        other_model.model = "base".to_owned();
        assert_eq!(
            store.transcript_of(&other_model).await.unwrap(),
            None,
            "per model"
        );
        for options in [DecodeOptions::default(), translated.clone()] {
            assert_eq!(
                store
                    .transcript_of(&key("same", "sphinx", options.clone()))
                    .await
                    .unwrap(),
                None,
                "per language and task: {options:?}"
            );
        }
        let prompted = DecodeOptions {
            prompt: Some("Dashwood".to_owned()),
            ..german.clone()
        };
        assert_eq!(
            store
                .transcript_of(&key("same", "sphinx", prompted))
                .await
                .unwrap(),
            None,
            "per prompt"
        );
        assert_eq!(
            store
                .transcript_of(&key("other", "sphinx", german.clone()))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store.recent_completed(10).await.unwrap(),
            [("s".to_owned(), "a".to_owned())]
        );
    }
}

#[tokio::test]
async fn deleting_removes_everything_and_says_whether_the_audio_is_shared() {
    for Backend { store, .. } in backends().await {
        let store = store.as_ref();
        store
            .create_session(&session("one", "a", "shared", 1))
            .await
            .unwrap();
        store
            .create_session(&session("two", "b", "shared", 2))
            .await
            .unwrap();
        store
            .create_session(&session("three", "a", "shared", 3))
            .await
            .unwrap();
        let job = store.claim_job("w", LEASE).await.unwrap().unwrap();
        let delivery = Delivery {
            url: "http://hooks.example/done".to_owned(),
            attempt: 1,
            status_code: Some(503),
            error: Some("the receiver answered 503".to_owned()),
            delivered_at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_244_800_123_456),
        };
        store
            .record_delivery(&job.session.id, &delivery)
            .await
            .unwrap();
        assert_eq!(
            store.deliveries(&job.session.id).await.unwrap(),
            std::slice::from_ref(&delivery)
        );

        assert_eq!(
            store.delete_session("one", Some("b")).await.unwrap(),
            None,
            "not theirs"
        );
        let first = store
            .delete_session("one", Some("a"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.filename, "shared.audio", "{}", store.backend());
        assert!(
            first.audio_in_use,
            "sessions two and three have the same audio"
        );
        assert!(first.audio_kept_for_owner, "session three is a's too");
        assert_eq!(store.session("one", None).await.unwrap(), None);
        assert!(store.deliveries("one").await.unwrap().is_empty());
        // A worker holding a deleted session's job loses it.
        if job.session.id == "one" {
            assert!(!store.renew_lease(job.id, "w", LEASE).await.unwrap());
        }
        let third = store.delete_session("three", None).await.unwrap().unwrap();
        assert!(third.audio_in_use, "session two has the same audio");
        assert!(!third.audio_kept_for_owner, "but it is b's");
        let second = store.delete_session("two", None).await.unwrap().unwrap();
        assert!(!second.audio_in_use && !second.audio_kept_for_owner);
        assert_eq!(store.delete_session("two", None).await.unwrap(), None);
        let stats = store.stats().await.unwrap();
        assert_eq!(
            (stats.sessions, stats.jobs_queued, stats.jobs_running),
            (0, 0, 0)
        );
        assert!(!store.analyze().await.unwrap().is_empty());
    }
}
