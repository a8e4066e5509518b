//! A shared key secret: its own test binary, because the secret is process-wide.

use perf_middleware::rate_limit::{KeyValue, share_key_secret};

#[test]
fn a_shared_secret_is_set_once_and_keys_follow_it() {
    share_key_secret(b"one secret for every instance").unwrap();
    let alice = KeyValue::identity("alice");
    assert_ne!(alice, KeyValue::identity("bob"));
    // The same secret again is fine (every layer of a process may say so); another is refused,
    // because keys already made would no longer match.
    share_key_secret(b"one secret for every instance").unwrap();
    let refused = share_key_secret(b"another").unwrap_err();
    assert!(refused.to_string().contains("another secret"), "{refused}");
    assert_eq!(KeyValue::identity("alice"), alice);
    // The digest depends on the secret only: this value is what every process computes.
    let expected = {
        use std::hash::BuildHasher;
        let seed = foldhash::fast::FixedState::with_seed(0x7065_7266_2d6b_6579)
            .hash_one(b"one secret for every instance".as_slice());
        foldhash::fast::SeedableRandomState::with_seed(seed, foldhash::SharedSeed::global_fixed())
            .hash_one(b"alice".as_slice())
    };
    assert_eq!(alice, KeyValue::Hashed(expected));
}
