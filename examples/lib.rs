//! Runnable examples of the PocWhisp-rs crates; each file beside this one is an example
//! (`cargo run -p pocwhisp-examples --example NAME`). This library itself is empty: Cargo
//! needs a target to hang the examples on.
