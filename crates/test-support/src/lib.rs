//! Helpers the workspace's tests share (not published).

pub mod redis;
