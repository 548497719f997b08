//! Any `Authorization: Payment ...` header value through the MPP SDK parser the storefront uses
//! on untrusted requests: it answers or refuses, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|header: &str| {
    if let Ok(credential) = mpp::parse_authorization(header) {
        // Whatever parsed names a challenge the server can look up.
        let _ = credential.challenge.id.len();
        let _ = credential.challenge.expires.as_deref();
    }
});
