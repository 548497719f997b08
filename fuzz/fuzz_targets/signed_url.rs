//! Signed-URL verification with arbitrary method, path, `expires` and `sig`: never panics, and
//! accepts only the exact URL the key signed (any change to a signed URL is refused).
#![no_main]

use libfuzzer_sys::fuzz_target;
use storefront_app::secrets::UrlSigner;

fuzz_target!(|input: (&str, &str, &str, &str, i64, u8)| {
    let (method, path, expires, sig, offset, flip) = input;
    let signer = UrlSigner::new(b"fuzzing-key-0123456789abcdef0123".to_vec(), vec![]);
    let now = chrono::Utc::now();
    // Arbitrary parameters: refused unless they happen to be a real signature.
    let _ = signer.verify(method, path, Some(expires), Some(sig), now);

    // A URL the key signed verifies; the same URL with one byte of its signature changed,
    // another method or another path does not.
    let Some(at) =
        chrono::DateTime::from_timestamp(now.timestamp() + 1 + offset.rem_euclid(86_400), 0)
    else {
        return;
    };
    let query = signer.sign(method, path, at);
    let (e, s) = query.split_once('&').expect("expires&sig");
    let (e, s) = (
        e.trim_start_matches("expires="),
        s.trim_start_matches("sig="),
    );
    assert!(signer.verify(method, path, Some(e), Some(s), now).is_ok());
    let mut tampered: Vec<u8> = s.bytes().collect();
    let i = usize::from(flip) % tampered.len();
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert!(signer
        .verify(method, path, Some(e), Some(&tampered), now)
        .is_err());
    let other_path = format!("{path}/x");
    assert!(signer
        .verify(method, &other_path, Some(e), Some(s), now)
        .is_err());
});
