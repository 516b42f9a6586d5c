//! Fuzzes webhook intake: event body decoding (plain/base64, JSON/form), header handling, signature
//! parsing and verification, event parsing, filters and Workflow building. Any input must yield a
//! response or a rejection, never a panic. The first bytes pick the shape; the rest is the body. Half
//! the inputs are signed correctly so the fuzzer gets past the signature check into the parsers.
//! Run: cargo +nightly fuzz run webhook_decode -- -max_total_time=60
#![no_main]

use aphex::webhook::{Intake, Secret, SecretSource, WebhookConfig, WebhookRequest};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret";
const EVENTS: [&str; 4] = ["push", "ping", "pull_request", ""];
const TYPES: [&str; 4] = ["application/json", "application/x-www-form-urlencoded", "text/plain", ""];

fn intake() -> &'static Intake {
    static INTAKE: std::sync::OnceLock<Intake> = std::sync::OnceLock::new();
    INTAKE.get_or_init(build_intake)
}

fn build_intake() -> Intake {
    let config = WebhookConfig::from_lookup(|k| match k {
        "APHEX_WEBHOOK_SECRET" => Some(SECRET.to_owned()),
        "APHEX_BRANCHES" => Some("main,release/**".to_owned()),
        "APHEX_TAGS" => Some("v*".to_owned()),
        _ => None,
    })
    .expect("config");
    let SecretSource::Env(secrets) = config.secret.clone() else { unreachable!() };
    Intake::new(&config, secrets).expect("intake")
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let (delivery, body) = rest.split_at(rest.len().min(usize::from(selector >> 4)));
    let mut headers = HeaderMap::new();
    headers.insert("x-github-event", HeaderValue::from_static(EVENTS[usize::from(selector & 3)]));
    headers.insert("content-type", HeaderValue::from_static(TYPES[usize::from((selector >> 2) & 3)]));
    if let Ok(v) = HeaderValue::from_bytes(delivery) {
        headers.insert("x-github-delivery", v);
    }
    let base64 = selector & 0x80 != 0;
    let text = String::from_utf8_lossy(body);
    let Ok(mut request) = WebhookRequest::from_event_body(headers, Some(&text), base64) else { return };
    if selector & 0x40 != 0 {
        let sig = Secret::new(SECRET).expect("secret").sign(&request.body);
        request.headers.insert("x-hub-signature-256", HeaderValue::from_str(&sig).expect("hex"));
    } else if let Ok(v) = HeaderValue::from_bytes(&body[..body.len().min(71)]) {
        request.headers.insert("x-hub-signature-256", v);
    }
    let _ = intake().prepare(&request);
    let _ = request.payload();
});
