//! The policy file: any bytes are a policy or an error; a policy round-trips through its JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnscore::policy::Policy;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Policy::from_json(data) {
        let again = Policy::from_json(p.to_json().as_bytes()).expect("a policy re-parses");
        assert_eq!(again, p);
        let _ = p.sha256();
    }
});
