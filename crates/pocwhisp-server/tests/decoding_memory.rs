//! Decompression amplification: a few hundred kilobytes of FLAC can hold many minutes of
//! 48 kHz stereo. A job must hold only the samples the engine takes (16-bit at 16 kHz),
//! never the source's floats, and count them against the memory limit. A test binary of
//! its own, so that its peak resident memory is this test's alone.

use std::path::Path;
use std::process::Command;

use pocwhisp_server::audio::decode::{self, DecodeFailure};
use pocwhisp_server::config::{AudioConfig, ByteSize, MemoryLimit};
use pocwhisp_server::memory::{MemoryGuard, resident_bytes};

const MIB: u64 = 1 << 20;

/// Five minutes of 48 kHz stereo silence as FLAC, made by sox (without dither: true silence).
fn silent_flac(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("silence.flac");
    let made = Command::new("sox")
        .args(["-D", "-n", "-r", "48000", "-c", "2", "-b", "16"])
        .arg(&path)
        .args(["trim", "0", "5:00"])
        .status()
        .expect("sox (scripts/test installs it)");
    assert!(made.success());
    path
}

/// The process's peak resident memory (`VmHWM`), in bytes.
fn peak_resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_small_file_of_long_audio_is_held_at_the_engine_s_rate_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let flac = silent_flac(dir.path());
    assert!(
        std::fs::metadata(&flac).unwrap().len() < MIB,
        "a small file"
    );

    // The source as floats would be 5 * 60 * 48000 * 2 * 4 = 115 MB; what the engine takes
    // is 5 * 60 * 16000 * 2 * 2 = 19 MB.
    let memory = MemoryGuard::new(MemoryLimit::Unset);
    let before = peak_resident();
    let mut reservation = memory.reservation();
    let audio = decode::decode_for_engine(&flac, &AudioConfig::default(), &mut reservation)
        .expect("five minutes of silence decode");
    let grown = peak_resident().saturating_sub(before);
    assert_eq!(audio.channels.len(), 2);
    assert_eq!(audio.channels[0].len(), 5 * 60 * 16_000);
    assert_eq!(
        reservation.bytes(),
        2 * 5 * 60 * 16_000 * 2,
        "every sample counted"
    );
    assert!(
        grown < 48 * MIB,
        "decoding raised the peak resident memory by {} MiB",
        grown / MIB
    );
    drop(reservation);
    assert_eq!(memory.reserved(), 0, "given back");

    // Under a limit it would pass, decoding stops rather than take the memory.
    let resident = resident_bytes().unwrap();
    let limited = MemoryGuard::new(MemoryLimit::Bytes(ByteSize(resident + 16 * MIB)));
    limited.observe(resident, &NoRelief);
    let refused =
        decode::decode_for_engine(&flac, &AudioConfig::default(), &mut limited.reservation())
            .unwrap_err();
    let DecodeFailure::Memory(short) = refused else {
        panic!("refused for memory, not {refused:?}");
    };
    assert!(short.alone, "no other job holds memory");
    assert_eq!(limited.reserved(), 0, "nothing held after the refusal");
}

struct NoRelief;

impl pocwhisp_server::memory::Relief for NoRelief {
    fn shed(&self) {}
    fn restore(&self) {}
}
