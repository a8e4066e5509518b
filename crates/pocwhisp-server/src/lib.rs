//! The PocWhisp transcription server. **Planned, no code yet**: the
//! scope below is what it will provide (see `docs/ARCHITECTURE.md`).
//!
//! A thin hyper server composing the perf crates into a transcription API: WAV uploads
//! transcribed offline by PocketSphinx (or an OpenAI-compatible endpoint) into
//! speaker-labelled segments, stored in PostgreSQL or an embedded store, with performance,
//! cache, health and Prometheus endpoints.
