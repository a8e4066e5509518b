"""Load tests of the PocWhisp server with Locust: the original's user classes, made to work
against this API, and the guide's scenarios.

Run through scripts/load-test (it starts a server, installs Locust when missing, and picks the
scenario):

    scripts/load-test normal     # 50 users, 5 new a second, 5 minutes
    scripts/load-test stress     # 200 users, 20 a second, 2 minutes
    scripts/load-test spike      # 500 users, 100 a second, 30 seconds
    scripts/load-test smoke      # 10 users for 15 seconds (scripts/test runs this one)

Environment: POCWHISP_API_TOKEN and POCWHISP_ADMIN_TOKEN (the tokens the server was started
with), LOCUST_SCENARIO (the shape), LIBRIVOX (the recordings' directory), LOCUST_FRESH_AUDIO
(the share of uploads made new audio, default 0.25).

The server stores and transcribes the same audio once, so an upload of a recording it has
seen is answered from the stored result. A share of the uploads changes the last sample of
the recording (still real speech, a new hash) so that the server decodes under load as it
would with real users, and the rest measure the path of repeated audio.

The run fails (exit code 1) when more than 1 % of requests fail for a reason other than the
refusals the server is built to give under load: 429 (a quota) and 503 (load shed, memory).
"""

import os
import pathlib
import random

from locust import HttpUser, LoadTestShape, between, events, task

API_TOKEN = os.environ.get("POCWHISP_API_TOKEN", "")
ADMIN_TOKEN = os.environ.get("POCWHISP_ADMIN_TOKEN", "")
LIBRIVOX = pathlib.Path(os.environ.get("LIBRIVOX", "/usr/share/pocketsphinx/test/data/librivox"))
RECORDINGS = [path.read_bytes() for path in sorted(LIBRIVOX.glob("*.wav"))]
FRESH_AUDIO = float(os.environ.get("LOCUST_FRESH_AUDIO", "0.25"))


def recording():
    """One of the recordings, or with probability FRESH_AUDIO a copy whose last sample
    differs: audio the server has not seen (the data chunk is the last in these files)."""
    audio = random.choice(RECORDINGS)
    if random.random() >= FRESH_AUDIO:
        return audio
    fresh = bytearray(audio)
    fresh[-2] ^= random.randint(1, 255)
    return bytes(fresh)

# Refusals that are the server working as designed under load, not failures.
INTENDED = {429, 503}
intended_refusals = {"count": 0}


def judge(response, expected=(200,)):
    """Marks `response` as a success when its status is expected or an intended refusal."""
    if response.status_code in expected:
        response.success()
    elif response.status_code in INTENDED:
        intended_refusals["count"] += 1
        response.success()
    else:
        response.failure(f"{response.status_code}: {response.text[:200]}")


class TranscriptionUser(HttpUser):
    """A client: uploads real speech, lists its sessions, reads the results (the cache's work)."""

    weight = 4
    wait_time = between(0.5, 2.0)

    def on_start(self):
        self.headers = {"Authorization": f"Bearer {API_TOKEN}"}
        self.sessions = []

    @task(1)
    def upload(self):
        audio = recording()
        with self.client.post(
            "/api/v1/transcribe?mode=async",
            data=audio,
            headers={**self.headers, "Content-Type": "audio/wav"},
            name="POST /api/v1/transcribe",
            catch_response=True,
        ) as response:
            judge(response, expected=(200, 202))
            if response.status_code in (200, 202):
                self.sessions.append(response.json()["session_id"])
                self.sessions = self.sessions[-20:]

    @task(3)
    def list_sessions(self):
        with self.client.get(
            "/api/v1/transcribe?limit=10", headers=self.headers, name="GET /api/v1/transcribe", catch_response=True
        ) as response:
            judge(response)

    @task(6)
    def read_session(self):
        if not self.sessions:
            return
        with self.client.get(
            f"/api/v1/transcribe/{random.choice(self.sessions)}",
            headers=self.headers,
            name="GET /api/v1/transcribe/{id}",
            catch_response=True,
        ) as response:
            judge(response, expected=(200, 304))


class AdminUser(HttpUser):
    """An operator: cache figures, warm-ups, the profiler's figures and health."""

    weight = 1
    wait_time = between(2.0, 5.0)

    def on_start(self):
        self.headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    @task(3)
    def cache_stats(self):
        with self.client.get("/api/v1/cache/stats", headers=self.headers, catch_response=True) as response:
            judge(response)

    @task(1)
    def warm_up(self):
        with self.client.post("/api/v1/cache/warmup", headers=self.headers, catch_response=True) as response:
            judge(response)

    @task(3)
    def performance(self):
        with self.client.get("/api/v1/performance/metrics", headers=self.headers, catch_response=True) as response:
            judge(response)


class HealthPoller(HttpUser):
    """A load balancer's probes."""

    weight = 1
    wait_time = between(1.0, 2.0)

    @task
    def probes(self):
        for path in ("/api/v1/live", "/api/v1/ready", "/api/v1/health"):
            with self.client.get(path, catch_response=True) as response:
                judge(response)


class StressUser(HttpUser):
    """Hammers the cheapest route, and fails logins on purpose (a 401 is the right answer)."""

    weight = 1
    wait_time = between(0.05, 0.2)

    @task(5)
    def live(self):
        with self.client.get("/api/v1/live", catch_response=True) as response:
            judge(response)

    @task(1)
    def failed_login(self):
        with self.client.get(
            "/api/v1/transcribe",
            headers={"Authorization": "Bearer not-a-real-token"},
            name="GET /api/v1/transcribe (bad token)",
            catch_response=True,
        ) as response:
            judge(response, expected=(401,))


# The guide's scenarios: (users, spawned per second, seconds).
SCENARIOS = {
    "smoke": (10, 5, 15),
    "normal": (50, 5, 300),
    "stress": (200, 20, 120),
    "spike": (500, 100, 30),
}


class Scenario(LoadTestShape):
    """Ramps to the scenario's users at its spawn rate, holds, and stops at its end."""

    def tick(self):
        users, rate, seconds = SCENARIOS[os.environ.get("LOCUST_SCENARIO", "smoke")]
        if self.get_run_time() >= seconds:
            return None
        return users, rate


@events.quitting.add_listener
def fail_on_errors(environment, **_kwargs):
    total = environment.stats.total
    ratio = total.num_failures / total.num_requests if total.num_requests else 0.0
    print(
        f"requests {total.num_requests}, failures {total.num_failures} ({ratio:.2%}), "
        f"intended refusals (429/503) {intended_refusals['count']}, "
        f"median {total.median_response_time} ms, p99 {total.get_response_time_percentile(0.99)} ms, "
        f"{total.total_rps:.1f} requests/s"
    )
    if total.num_requests == 0 or ratio > 0.01:
        environment.process_exit_code = 1
