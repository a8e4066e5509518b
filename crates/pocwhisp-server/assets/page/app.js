// The transcription page: a user's token, an upload (a file, dropped or chosen, or a
// recording from the microphone) sent with POST /api/v1/transcribe?mode=stream, whose
// server-sent events (read with fetch, so that the token can go in a header) show the words
// as they are decoded; then the transcript with times and speakers, its downloads, and the
// user's own sessions. Everything the server refuses is said in its own words.
"use strict";

const TOKEN_KEY = "pocwhisp-token";
let current = null; // the session shown
let chosen = null; // { blob, name } to upload
let recorder = null;

function $(id) { return document.getElementById(id); }
function token() { return sessionStorage.getItem(TOKEN_KEY); }

function authorized(path, options = {}) {
  return fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${token()}` } });
}

// The server's message for a refused request, or a sentence saying what happened.
async function problemOf(response) {
  try {
    const body = await response.json();
    const error = body.error;
    if (typeof error === "object" && error && error.message) return error.message;
    if (body.message) return body.message;
  } catch (_) { /* not JSON */ }
  return `The server answered ${response.status} ${response.statusText}.`;
}

function say(text) { $("status").textContent = text; }
function complain(text) {
  $("problem").hidden = !text;
  $("problem").textContent = text || "";
}

function showSignIn(message) {
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").hidden = !message;
  $("sign-in-error").textContent = message || "";
  $("token").focus();
}

async function start() {
  if (!token()) return showSignIn();
  const check = await authorized("/api/v1/transcribe?limit=1");
  if (check.status === 401 || check.status === 403) {
    sessionStorage.removeItem(TOKEN_KEY);
    return showSignIn(check.status === 401 ? "That token is not valid." : "That token may not transcribe.");
  }
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  refresh();
}

function choose(blob, name) {
  chosen = blob ? { blob, name } : null;
  $("chosen").textContent = blob ? `Ready: ${name} (${Math.round(blob.size / 1024)} KiB).` : "No file chosen.";
}

// Reads server-sent events from a fetch response, calling `on(name, data)` for each.
async function readEvents(response, on) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) on(name, JSON.parse(data.join("\n")));
    }
  }
}

async function transcribe(event) {
  event.preventDefault();
  complain("");
  if (!chosen) return complain("Choose a file, drop one, or record from the microphone first.");
  const query = new URLSearchParams({ mode: "stream", task: $("task").value });
  if ($("language").value) query.set("language", $("language").value);
  const form = new FormData();
  form.append("file", chosen.blob, chosen.name);
  $("submit").disabled = true;
  $("live").hidden = false;
  $("live").textContent = "";
  say(`Uploading ${chosen.name}…`);
  try {
    const response = await authorized(`/api/v1/transcribe?${query}`, { method: "POST", body: form });
    if (!response.ok) {
      say("");
      $("live").hidden = true;
      return complain(await problemOf(response));
    }
    let finished = false;
    await readEvents(response, (name, data) => {
      if (name === "accepted") say("Stored. Transcribing…");
      else if (name === "words") $("live").textContent += ($("live").textContent ? " " : "") + data.text;
      else if (name === "completed") { finished = true; say("Transcribed."); show(data); }
      else if (name === "failed") { finished = true; say(""); complain(`The transcription failed: ${data.message}`); }
    });
    if (!finished) complain("The connection ended before the transcript did; it is in your sessions when it is ready.");
  } catch (error) {
    complain(`The upload did not reach the server: ${error.message}`);
  } finally {
    $("submit").disabled = false;
    $("live").hidden = true;
    refresh();
  }
}

function clock(seconds) {
  const whole = Math.floor(seconds);
  const m = Math.floor(whole / 60), s = whole % 60;
  return `${m}:${String(s).padStart(2, "0")}.${String(Math.round((seconds - whole) * 10) % 10)}`;
}

function show(session) {
  current = session;
  $("result").hidden = false;
  const meta = session.metadata || {};
  $("result-meta").textContent = [
    session.original_name,
    meta.duration != null ? `${meta.duration.toFixed(1)} s` : null,
    meta.language ? `language ${meta.language}` : null,
    meta.engine ? `engine ${meta.engine}` : null,
  ].filter(Boolean).join(" · ");
  const list = $("segments");
  list.replaceChildren();
  const segments = (session.transcript && session.transcript.segments) || [];
  for (const segment of segments) {
    const item = document.createElement("li");
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = `${clock(segment.start_time)} – ${clock(segment.end_time)}`;
    const words = document.createElement("span");
    if (segment.speaker && segment.speaker !== "speaker") {
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = `${segment.speaker}:`;
      words.append(who);
    }
    words.append(segment.text);
    item.append(when, words);
    list.append(item);
  }
  if (!segments.length) list.append(Object.assign(document.createElement("li"), { textContent: session.error || "No speech was heard." }));
}

async function open(id) {
  complain("");
  const response = await authorized(`/api/v1/transcribe/${id}`);
  if (!response.ok) return complain(await problemOf(response));
  show(await response.json());
}

function save(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

async function download(format) {
  if (!current) return;
  complain("");
  const stem = current.original_name.replace(/\.[^.]*$/, "") || "transcript";
  if (format === "json") {
    return save(new Blob([JSON.stringify(current, null, 2)], { type: "application/json" }), `${stem}.json`);
  }
  const response = await authorized(`/api/v1/transcribe/${current.session_id}/transcript?format=${format}`);
  if (!response.ok) return complain(await problemOf(response));
  const named = /filename="([^"]+)"/.exec(response.headers.get("content-disposition") || "");
  save(await response.blob(), named ? named[1] : `${stem}.${format}`);
}

async function remove(id, name) {
  if (!window.confirm(`Delete ${name} and its transcript?`)) return;
  complain("");
  const response = await authorized(`/api/v1/transcribe/${id}`, { method: "DELETE" });
  if (!response.ok) return complain(await problemOf(response));
  say(`Deleted ${name}.`);
  if (current && current.session_id === id) {
    current = null;
    $("result").hidden = true;
  }
  refresh();
}

async function refresh() {
  const response = await authorized("/api/v1/transcribe?limit=50");
  if (response.status === 401) return showSignIn("That token is no longer valid.");
  if (!response.ok) return complain(await problemOf(response));
  const page = await response.json();
  const body = $("sessions").tBodies[0];
  body.replaceChildren();
  for (const session of page.sessions) {
    const row = body.insertRow();
    row.dataset.session = session.session_id;
    row.insertCell().textContent = session.original_name;
    row.insertCell().textContent = new Date(session.created_at).toLocaleString();
    row.insertCell().textContent = `${session.duration.toFixed(1)} s`;
    row.insertCell().textContent = session.status;
    const actions = row.insertCell();
    const openButton = Object.assign(document.createElement("button"), { type: "button", className: "quiet", textContent: "Open" });
    openButton.setAttribute("aria-label", `Open ${session.original_name}`);
    openButton.addEventListener("click", () => open(session.session_id));
    const deleteButton = Object.assign(document.createElement("button"), { type: "button", className: "danger", textContent: "Delete" });
    deleteButton.setAttribute("aria-label", `Delete ${session.original_name}`);
    deleteButton.addEventListener("click", () => remove(session.session_id, session.original_name));
    actions.append(openButton, deleteButton);
  }
  $("sessions").hidden = page.sessions.length === 0;
  $("no-sessions").hidden = page.sessions.length !== 0;
}

async function toggleRecording() {
  complain("");
  if (recorder) return recorder.stop();
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    return complain(`The microphone is not available: ${error.message}`);
  }
  const chunks = [];
  const started = Date.now();
  recorder = new MediaRecorder(stream);
  recorder.addEventListener("dataavailable", (event) => chunks.push(event.data));
  const timer = setInterval(() => { $("recording-time").textContent = `Recording ${clock((Date.now() - started) / 1000)}`; }, 250);
  recorder.addEventListener("stop", () => {
    clearInterval(timer);
    stream.getTracks().forEach((track) => track.stop());
    const type = recorder.mimeType || "audio/webm";
    const blob = new Blob(chunks, { type });
    choose(blob, `recording-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}.${type.includes("ogg") ? "ogg" : "webm"}`);
    $("recording-time").textContent = "";
    $("record").textContent = "Record from the microphone";
    $("record").setAttribute("aria-pressed", "false");
    recorder = null;
  });
  recorder.start(1000);
  $("record").textContent = "Stop recording";
  $("record").setAttribute("aria-pressed", "true");
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("sign-out").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showSignIn(); });
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    choose(file || null, file ? file.name : "");
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) choose(file, file.name);
  });
  $("record").addEventListener("click", toggleRecording);
  $("upload").addEventListener("submit", transcribe);
  $("refresh").addEventListener("click", refresh);
  $("delete-current").addEventListener("click", () => current && remove(current.session_id, current.original_name));
  for (const button of document.querySelectorAll("[data-download]")) {
    button.addEventListener("click", () => download(button.dataset.download));
  }
  start();
});
