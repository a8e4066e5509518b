"""The server through the official OpenAI Python SDK (pinned in tests/sdk/requirements.txt):
what its users call, every audio format OpenAI accepts (made by Debian's ffmpeg) heard as the
WAV is, and that every refusal reaches them as the exception OpenAI's own API
would raise (BadRequestError for a file that is not audio, AuthenticationError, RateLimitError,
a 413 for a file too large), with OpenAI's error body.

Usage: python openai_sdk.py BINARY (the server, with the Whisper model installed)
"""

import os
import pathlib
import re
import subprocess
import sys
import tempfile

import openai

USER, ADMIN = "sdk-user-token", "sdk-admin-token"
RECORDING = pathlib.Path(
    "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")
UPLOADS_PER_HOUR = 12
# What phones, browsers and video calls send, as ffmpeg makes them from the recording: the
# output options, then the file name.
FORMATS = [
    (["-c:a", "aac", "-b:a", "128k"], "memo.m4a"),
    (["-f", "lavfi", "-i", "color=c=black:s=64x64:r=5", "-map", "1:v", "-map", "0:a",
      "-shortest", "-c:v", "mpeg4", "-c:a", "aac"], "call.mp4"),
    (["-c:a", "libopus", "-b:a", "48k"], "chrome.webm"),
    (["-c:a", "libopus", "-b:a", "48k"], "firefox.ogg"),
    (["-f", "mp3", "-c:a", "libmp3lame", "-b:a", "128k"], "speech.mpeg"),
]


def start(binary, data_dir):
    env = dict(os.environ, POCWHISP_API_TOKEN=USER, POCWHISP_ADMIN_TOKEN=ADMIN,
               POCWHISP_JOBS__UPLOADS_PER_HOUR=str(UPLOADS_PER_HOUR),
               POCWHISP_AUDIO__MAX_UPLOAD="2MiB", RUST_LOG="warn")
    env.pop("POCWHISP_ENV", None)
    process = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--data-dir", data_dir],
                               env=env, stdout=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("listening on "):
            return process, line.split()[-1]
    sys.exit("the server did not start")


def expect(error_type, status, call):
    """`call` raises `error_type` with `status` and an OpenAI error body; returns the error."""
    try:
        call()
    except error_type as error:
        assert error.status_code == status, (error.status_code, error)
        body = error.body
        assert isinstance(body, dict) and {"message", "type"} <= body.keys(), body
        return error
    raise AssertionError(f"{call} did not raise {error_type.__name__}")


def words(text):
    return re.findall(r"[a-z']+", text.lower())


def edits(reference, heard):
    """Word-level edit distance."""
    previous = list(range(len(heard) + 1))
    for i, word in enumerate(reference):
        current = [i + 1]
        for j, other in enumerate(heard):
            current.append(min(previous[j] + (word != other), previous[j + 1] + 1, current[j] + 1))
        previous = current
    return previous[-1]


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory() as data_dir:
        process, base = start(binary, data_dir)
        try:
            run(f"{base}/v1", pathlib.Path(data_dir))
        finally:
            process.terminate()
            process.wait(timeout=30)
    print("openai SDK: every check passed")


def run(base_url, scratch):
    client = openai.OpenAI(api_key=USER, base_url=base_url, max_retries=0, timeout=300)

    models = [model.id for model in client.models.list()]
    assert "whisper-1" in models, models
    print(f"models.list: {models}")

    with RECORDING.open("rb") as audio:
        text = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert "leisure to consider" in text.text.lower(), text
    print(f"transcriptions.create: {text.text!r}")

    for options, name in FORMATS:
        made = scratch / name
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(RECORDING), *options,
                        str(made)], check=True)
        with made.open("rb") as audio:
            heard = client.audio.transcriptions.create(model="whisper-1", file=audio)
        wrong = edits(words(text.text), words(heard.text))
        print(f"{name}: {wrong} edits against the WAV's {len(words(text.text))} words")
        assert wrong * 10 <= len(words(text.text)), (name, heard.text, text.text)

    with RECORDING.open("rb") as audio:
        verbose = client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format="verbose_json",
            timestamp_granularities=["word"])
    assert verbose.language == "english" and verbose.words, verbose
    assert all(a.start <= b.start for a, b in zip(verbose.words, verbose.words[1:]))
    print(f"verbose_json: {len(verbose.segments)} segments, {len(verbose.words)} words")

    not_audio = scratch / "notes.wav"
    not_audio.write_text("these are meeting notes, not audio\n" * 20)
    error = expect(openai.BadRequestError, 400, lambda: client.audio.transcriptions.create(
        model="whisper-1", file=not_audio.open("rb")))
    assert error.body["type"] == "invalid_request_error", error.body
    assert error.body["message"].startswith("Invalid file format."), error.body
    print(f"a text file: BadRequestError {error.body['message']!r}")

    stranger = openai.OpenAI(api_key="sk-not-a-token", base_url=base_url, max_retries=0)
    error = expect(openai.AuthenticationError, 401, lambda: stranger.audio.transcriptions.create(
        model="whisper-1", file=RECORDING.open("rb")))
    print(f"a made-up token: AuthenticationError {error.body['message']!r}")

    large = scratch / "large.wav"
    large.write_bytes(RECORDING.read_bytes() * 20)
    error = expect(openai.APIStatusError, 413, lambda: client.audio.transcriptions.create(
        model="whisper-1", file=large.open("rb")))
    print(f"a file over the limit: {error.status_code} {error.body['message']!r}")

    error = None
    for _ in range(UPLOADS_PER_HOUR + 1):
        try:
            client.audio.transcriptions.create(model="whisper-1", file=not_audio.open("rb"))
        except openai.RateLimitError as limited:
            error = limited
            break
        except openai.BadRequestError:
            pass
    assert error is not None, "no RateLimitError within the hourly quota"
    assert error.body["type"] == "rate_limit_error", error.body
    assert int(error.response.headers["retry-after"]) > 0
    print(f"over the hourly quota: RateLimitError {error.body['message']!r}")


if __name__ == "__main__":
    main()
