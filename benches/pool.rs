//! Buffer pools side by side: perf-pool's `BufferPool`, object-pool, lockfree-object-pool,
//! and a plain allocation of the same buffer.
//!
//! * `pool/buffer_get_put/4KiB` and `/1MiB`: take a buffer, write 64 bytes, give it back
//!   (clear it for the pools that do not), on one thread. At 4 KiB the allocator's own free
//!   lists compete; at 1 MiB an allocation is an `mmap` and pooling pays.
//!
//! Run: `cargo bench -p pocwhisp-benches --bench pool`

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perf_pool::buffer::BufferPool;

const PAYLOAD: &[u8] = &[7; 64];

fn buffers(c: &mut Criterion) {
    for (label, size) in [("4KiB", 4 << 10), ("1MiB", 1 << 20)] {
        buffers_of(c, label, size);
    }
}

fn buffers_of(c: &mut Criterion, label: &str, size: usize) {
    let mut group = c.benchmark_group(format!("pool/buffer_get_put/{label}"));
    group.throughput(Throughput::Elements(1));

    let ours = BufferPool::default();
    group.bench_function("perf-pool", |b| {
        b.iter(|| {
            let mut buffer = ours.get(size);
            buffer.extend_from_slice(PAYLOAD);
            black_box(buffer.len())
        })
    });

    let object_pool = object_pool::Pool::new(16, || BytesMut::with_capacity(size));
    group.bench_function("object-pool", |b| {
        b.iter(|| {
            let mut buffer = object_pool.pull(|| BytesMut::with_capacity(size));
            buffer.clear();
            buffer.extend_from_slice(PAYLOAD);
            black_box(buffer.len())
        })
    });

    let lockfree = lockfree_object_pool::LinearObjectPool::new(
        move || BytesMut::with_capacity(size),
        |buffer: &mut BytesMut| buffer.clear(),
    );
    group.bench_function("lockfree-object-pool", |b| {
        b.iter(|| {
            let mut buffer = lockfree.pull();
            buffer.extend_from_slice(PAYLOAD);
            black_box(buffer.len())
        })
    });

    group.bench_function("allocation", |b| {
        b.iter(|| {
            let mut buffer = BytesMut::with_capacity(size);
            buffer.extend_from_slice(PAYLOAD);
            black_box(buffer.len())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = buffers
}
criterion_main!(benches);
