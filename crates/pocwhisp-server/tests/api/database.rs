//! The server on the real PostgreSQL, each test in a schema of its own: faults (connections
//! killed under load, the database away at start, an instance killed mid-job), several
//! instances sharing one database and audio directory, and a delete while its job runs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pocwhisp_server::config::Secret;
use tempfile::TempDir;

use crate::helpers::{ADMIN, JsonReply, TestApp, USER, error_of, spawn_with, start_binary};
use crate::postgres::TestSchema;
use crate::speech::{joined_recordings, recording, references};

fn wav(id: &str) -> Vec<u8> {
    std::fs::read(recording(id)).unwrap()
}

/// Waits (30 s at most) for `base` to answer `/api/v1/ready` with 200.
async fn ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client.get(format!("{base}/api/v1/ready")).send().await;
        if response.is_ok_and(|response| response.status() == 200) {
            return;
        }
        assert!(Instant::now() < deadline, "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server on `schema` with a short lease, once ready.
async fn spawn_on(schema: &TestSchema) -> TestApp {
    let url = schema.url();
    let app = spawn_with(move |config| {
        config.database.url = Some(Secret::new(url));
        config.jobs.lease = Duration::from_secs(3);
        config.jobs.uploads_per_hour = 100_000;
    })
    .await;
    ready(&app.client, &app.base).await;
    app
}

/// The status of session `id` as `base` shows it.
async fn status_of(client: &reqwest::Client, base: &str, id: &str) -> String {
    let session: serde_json::Value = client
        .get(format!("{base}/api/v1/transcribe/{id}"))
        .bearer_auth(USER)
        .header("cache-control", "no-cache")
        .json_reply()
        .await;
    session["status"].as_str().unwrap_or("?").to_owned()
}

/// Waits (two minutes at most) for every session in `ids` to be completed, as `base` sees it.
pub(crate) async fn all_completed(client: &reqwest::Client, base: &str, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in ids {
        loop {
            let status = status_of(client, base, id).await;
            if status == "completed" {
                break;
            }
            assert_ne!(status, "failed", "{id}");
            assert!(Instant::now() < deadline, "{id} is still {status}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub(crate) async fn upload_async(
    client: &reqwest::Client,
    base: &str,
    audio: Vec<u8>,
) -> reqwest::Response {
    client
        .post(format!("{base}/api/v1/transcribe?mode=async"))
        .bearer_auth(USER)
        .header("content-type", "audio/wav")
        .body(audio)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn session_id(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["session_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_give_503s_lose_nothing_acknowledged_and_heal() {
    let schema = TestSchema::create("faults").await;
    let app = spawn_on(&schema).await;
    let first = app.transcribe(USER, wav(&references()[0].0)).await;
    assert_eq!(first["status"], "completed");
    let path = format!(
        "/api/v1/transcribe/{}",
        first["session_id"].as_str().unwrap()
    );

    // Uploads and reads for four seconds while every connection is killed four times.
    let stop = Instant::now() + Duration::from_secs(4);
    let traffic = {
        let (client, base, path) = (app.client.clone(), app.base.clone(), path.clone());
        tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut statuses = BTreeSet::new();
            while Instant::now() < stop {
                let upload = upload_async(&client, &base, wav(&references()[1].0)).await;
                let read = client
                    .get(format!("{base}{path}"))
                    .bearer_auth(USER)
                    .header("cache-control", "no-cache")
                    .send()
                    .await
                    .unwrap();
                for response in [&upload, &read] {
                    let status = response.status().as_u16();
                    if status == 503 {
                        assert!(response.headers().contains_key("retry-after"));
                    }
                    statuses.insert(status);
                }
                if upload.status() == 202 {
                    accepted.push(session_id(upload).await);
                }
            }
            (accepted, statuses)
        })
    };
    let mut killed = 0;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        killed += schema.kill_connections().await;
    }
    let (accepted, statuses) = traffic.await.unwrap();
    eprintln!(
        "{killed} connections killed; statuses seen: {statuses:?}; {} uploads accepted",
        accepted.len()
    );
    assert!(killed > 0, "the server had connections to kill");
    assert!(
        statuses
            .iter()
            .all(|status| [200, 202, 503].contains(status)),
        "only successes and 503s: {statuses:?}"
    );
    assert!(!accepted.is_empty());

    // Every acknowledged upload is stored and transcribed, and reads work again without a
    // restart.
    all_completed(&app.client, &app.base, &accepted).await;
    let list: serde_json::Value = app
        .get("/api/v1/transcribe?limit=1")
        .bearer_auth(USER)
        .json_reply()
        .await;
    assert_eq!(list["pagination"]["total"], accepted.len() + 1, "{list}");
}

#[tokio::test]
async fn the_server_starts_without_its_database_and_becomes_ready_when_it_comes() {
    let schema = TestSchema::create("late").await;
    // A port where nothing listens yet; later, a proxy to the real server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = schema
        .url()
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{port}"));
    let app = spawn_with(move |config| config.database.url = Some(Secret::new(url))).await;

    let not_ready = app.get("/api/v1/ready").send().await.unwrap();
    assert_eq!(not_ready.status(), 503);
    assert!(not_ready.headers().contains_key("retry-after"));
    let body: serde_json::Value = not_ready.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        !message.contains("PostgreSQL") && !message.contains("127.0.0.1"),
        "why is for admins: {body}"
    );
    let body: serde_json::Value = app.admin_get("/api/v1/ready").await.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("PostgreSQL"),
        "{body}"
    );
    let health: serde_json::Value = app.get("/api/v1/health").json_reply().await;
    assert_eq!(
        health["components"]["storage"]["status"], "down",
        "{health}"
    );
    // Uploads are refused with 503; after five failures in a row the breaker opens, and
    // the refusal says so without trying the database.
    let mut messages = Vec::new();
    for _ in 0..6 {
        let refused = app
            .upload(USER, wav(&references()[0].0), "audio/wav", "")
            .await;
        assert!(refused.headers().contains_key("retry-after"));
        let (status, error) = error_of(refused).await;
        assert_eq!(status, 503, "{error}");
        messages.push(error["message"].as_str().unwrap().to_owned());
    }
    assert!(
        messages.last().unwrap().contains("has been failing"),
        "{messages:?}"
    );

    // The database "comes up".
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect("127.0.0.1:5432").await?;
                tokio::io::copy_bidirectional(&mut client, &mut server).await
            });
        }
    });
    ready(&app.client, &app.base).await;
    // The breaker lets a probe through once its open period ends, and closes on success.
    let deadline = Instant::now() + Duration::from_secs(30);
    let accepted = loop {
        let response = app
            .upload(USER, wav(&references()[0].0), "audio/wav", "")
            .await;
        if response.status() != 503 {
            break response;
        }
        assert!(Instant::now() < deadline, "uploads never resumed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(accepted.status(), 200);
    let session: serde_json::Value = accepted.json().await.unwrap();
    assert_eq!(session["status"], "completed");
}

/// Jobs completed by the instance at `base`, from its metrics.
async fn completed_here(client: &reqwest::Client, base: &str) -> u64 {
    let text = client
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|line| {
            line.starts_with("pocwhisp_jobs_finished_total")
                && line.contains("outcome=\"completed\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0, |value| value.parse::<f64>().unwrap() as u64)
}

/// Two server processes on one schema and one data directory, both ready.
pub(crate) struct Pair {
    pub(crate) schema: TestSchema,
    /// The audio directory both share; kept until the test ends.
    pub(crate) data: TempDir,
    /// For the recordings the test joins.
    pub(crate) scratch: TempDir,
    pub(crate) client: reqwest::Client,
    pub(crate) first: (tokio::process::Child, String),
    pub(crate) second: (tokio::process::Child, String),
}

impl Pair {
    /// Starts both on a new schema named after `name`, with job leases of `lease`.
    async fn start(name: &str, lease: &str) -> Pair {
        Pair::start_with(name, &[("POCWHISP_JOBS__LEASE", lease)]).await
    }

    /// Starts both on a new schema named after `name`, with `settings` (`POCWHISP_*`
    /// variables) besides the database's.
    pub(crate) async fn start_with(name: &str, settings: &[(&str, &str)]) -> Pair {
        let schema = TestSchema::create(name).await;
        let data = TempDir::new().unwrap();
        let url = schema.url();
        let mut env = vec![("POCWHISP_DATABASE_URL", url.as_str())];
        env.extend_from_slice(settings);
        let first = start_binary(data.path(), &env).await;
        let second = start_binary(data.path(), &env).await;
        let client = reqwest::Client::new();
        ready(&client, &first.1).await;
        ready(&client, &second.1).await;
        Pair {
            schema,
            data,
            scratch: TempDir::new().unwrap(),
            client,
            first,
            second,
        }
    }
}

#[tokio::test]
async fn two_instances_share_one_database_and_run_each_job_once() {
    let Pair {
        schema,
        scratch,
        client,
        first: (_first, one),
        second: (_second, two),
        data: _data,
    } = Pair::start("pair", "3s").await;

    // Six different recordings, uploaded to one instance and the other in turn.
    let mut ids = Vec::new();
    for n in 0..6 {
        let audio = std::fs::read(joined_recordings(scratch.path(), n)).unwrap();
        let base = if n % 2 == 0 { &one } else { &two };
        let response = upload_async(&client, base, audio).await;
        assert_eq!(response.status(), 202);
        ids.push(session_id(response).await);
    }
    all_completed(&client, &one, &ids).await;
    let attempts = schema
        .query("SELECT attempts, status FROM processing_jobs ORDER BY id")
        .await;
    assert_eq!(attempts.len(), 6);
    assert!(
        attempts
            .iter()
            .all(|row| row[0].as_deref() == Some("1") && row[1].as_deref() == Some("completed")),
        "each job ran once: {attempts:?}"
    );
    let (by_one, by_two) = (
        completed_here(&client, &one).await,
        completed_here(&client, &two).await,
    );
    assert_eq!(by_one + by_two, 6, "{by_one} + {by_two}");
    assert!(
        by_one > 0 && by_two > 0,
        "both worked: {by_one} and {by_two}"
    );
    // Either instance shows the same sessions.
    for id in &ids {
        let read = |base: String| {
            let client = client.clone();
            let id = id.clone();
            async move {
                let mut session: serde_json::Value = client
                    .get(format!("{base}/api/v1/transcribe/{id}"))
                    .bearer_auth(USER)
                    .json_reply()
                    .await;
                session["transcript"].take()
            }
        };
        assert_eq!(read(one.clone()).await, read(two.clone()).await);
    }
}

#[tokio::test]
async fn a_job_of_a_killed_instance_is_finished_by_the_other() {
    let Pair {
        schema,
        scratch,
        client,
        first: (first, one),
        second: (second, two),
        data: _data,
    } = Pair::start("takeover", "2s").await;
    let audio = std::fs::read(joined_recordings(scratch.path(), 0)).unwrap();
    let id = session_id(upload_async(&client, &one, audio).await).await;

    // Whichever instance claimed it is killed while it runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        let rows = schema
            .query("SELECT locked_by FROM processing_jobs WHERE status = 'running'")
            .await;
        if let Some(worker) = rows.first().and_then(|row| row[0].clone()) {
            break worker;
        }
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let first_pid = first.id().unwrap();
    let (mut victim, survivor) = if holder.contains(&format!("-{first_pid}-")) {
        (first, (second, two))
    } else {
        (second, (first, one))
    };
    victim.start_kill().unwrap();
    victim.wait().await.unwrap();

    all_completed(&client, &survivor.1, std::slice::from_ref(&id)).await;
    let rows = schema
        .query("SELECT attempts, status FROM processing_jobs")
        .await;
    assert_eq!(
        rows,
        [[Some("2".to_owned()), Some("completed".to_owned())]],
        "taken over once"
    );
}

#[tokio::test]
async fn deleting_a_session_while_its_job_runs_cancels_the_job() {
    let schema = TestSchema::create("cancel").await;
    let app = spawn_on(&schema).await;
    let scratch = TempDir::new().unwrap();
    let audio = std::fs::read(joined_recordings(scratch.path(), 0)).unwrap();
    let id = session_id(upload_async(&app.client, &app.base, audio).await).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_of(&app.client, &app.base, &id).await != "processing" {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deleted = app
        .request(reqwest::Method::DELETE, &format!("/api/v1/transcribe/{id}"))
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    // The job notices at its next lease renewal (a third of the 3 s lease) and stops.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health: serde_json::Value = app
            .get("/api/v1/health")
            .bearer_auth(ADMIN)
            .json_reply()
            .await;
        let engine = health["components"]["engine"]["detail"]
            .as_str()
            .unwrap()
            .to_owned();
        if engine.contains(", 0 jobs running here") {
            break;
        }
        assert!(Instant::now() < deadline, "{engine}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone = app
        .get(&format!("/api/v1/transcribe/{id}"))
        .bearer_auth(USER)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    assert!(
        schema
            .query("SELECT id FROM processing_jobs")
            .await
            .is_empty()
    );
    assert!(
        schema
            .query("SELECT id FROM transcript_segments")
            .await
            .is_empty()
    );
}
