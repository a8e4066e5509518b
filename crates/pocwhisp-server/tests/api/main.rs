//! The server over loopback HTTP: each test builds a real `Application` on port 0 with a
//! data directory of its own, or runs the real binary.

mod helpers;
#[path = "../support/postgres.rs"]
mod postgres;
#[path = "../support/speech.rs"]
mod speech;
#[path = "../support/webdriver.rs"]
mod webdriver;

mod auth;
mod binary;
mod cli;
mod dashboard;
mod database;
mod errors;
mod formats;
mod hostile;
mod openai;
mod operations;
mod page;
mod protocol;
mod recovery;
mod remote;
mod shared;
mod transcribe;
mod whisper;
