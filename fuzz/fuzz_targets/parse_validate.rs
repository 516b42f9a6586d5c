//! Fuzzes config checking end to end (UTF-8 check, YAML tree, schema, rules, model): it must never
//! panic, and a config it accepts must survive a YAML round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let report = aphex::config::check_bytes("fuzz.yaml", data);
    if let Some(config) = report.config {
        let text = serde_saphyr::to_string(&config).expect("a valid config serializes");
        let again =
            aphex::config::parse("roundtrip.yaml", &text).expect("a serialized valid config is valid");
        assert_eq!(again, config);
    }
});
