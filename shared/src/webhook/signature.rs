//! `X-Hub-Signature-256` checks: HMAC-SHA256 over the raw body, compared in constant time, against the
//! current secret and, during a rotation, the previous one. Secrets never reach a log line or an error.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// A webhook secret. `Debug` is redacted; the keyed HMAC state is prepared once so each check only
/// hashes the body.
#[derive(Clone)]
pub struct Secret {
    keyed: HmacSha256,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the webhook secret is empty: set it to the secret configured on the GitHub webhook")]
    Empty,
}

impl Secret {
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        if secret.is_empty() {
            return Err(SecretError::Empty);
        }
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = HmacSha256::new_from_slice(secret.as_bytes()).map_err(|_| SecretError::Empty)?;
        Ok(Self { keyed })
    }

    /// The `X-Hub-Signature-256` header value GitHub would send for `body` (for tests and tools).
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.keyed.clone();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn verifies(&self, body: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.keyed.clone();
        mac.update(body);
        mac.verify_slice(tag).is_ok()
    }
}

/// The secrets a signature may be made with: the current one, and the previous one while GitHub's
/// webhook configuration is being switched over.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub current: Secret,
    pub previous: Option<Secret>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error(
        "missing `X-Hub-Signature-256` header: set a secret on the GitHub webhook so deliveries are signed"
    )]
    Missing,
    #[error("`X-Hub-Signature-256` is not of the form `sha256=<64 hex digits>`")]
    Malformed,
    #[error(
        "`X-Hub-Signature-256` does not match: the GitHub webhook's secret differs from APHEX_WEBHOOK_SECRET"
    )]
    Mismatch,
}

impl Secrets {
    pub fn new(current: Secret, previous: Option<Secret>) -> Self {
        Self { current, previous }
    }

    pub fn single(secret: &str) -> Result<Self, SecretError> {
        Ok(Self::new(Secret::new(secret)?, None))
    }

    /// Checks `header` (the `X-Hub-Signature-256` value, if any) against `body`. Every configured
    /// secret is tried so timing does not reveal which one matched.
    pub fn verify(&self, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let digest = header.strip_prefix("sha256=").ok_or(SignatureError::Malformed)?;
        let mut tag = [0u8; 32];
        hex::decode_to_slice(digest, &mut tag).map_err(|_| SignatureError::Malformed)?;
        let current = self.current.verifies(body, &tag);
        let previous = self.previous.as_ref().is_some_and(|p| p.verifies(body, &tag));
        if current | previous { Ok(()) } else { Err(SignatureError::Mismatch) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/../../shared/fixtures/github/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn githubs_documented_test_vector() {
        let v: serde_json::Value = serde_json::from_str(&fixture("hmac_test_vector.json")).unwrap();
        let secret = v["secret"].as_str().unwrap();
        let payload = v["payload"].as_str().unwrap();
        let header = v["X-Hub-Signature-256"].as_str().unwrap();
        let secrets = Secrets::single(secret).unwrap();
        assert_eq!(secrets.current.sign(payload.as_bytes()), header);
        assert_eq!(secrets.verify(payload.as_bytes(), Some(header)), Ok(()));
        // One flipped byte in the body or the digest fails.
        assert_eq!(secrets.verify(b"Hello, World?", Some(header)), Err(SignatureError::Mismatch));
        let mut bad = header.to_owned();
        bad.replace_range(bad.len() - 1.., "f");
        assert_eq!(secrets.verify(payload.as_bytes(), Some(&bad)), Err(SignatureError::Mismatch));
    }

    #[test]
    fn header_shapes() {
        let secrets = Secrets::single("s").unwrap();
        let body = b"{}";
        let good = secrets.current.sign(body);
        fn check(secrets: &Secrets, header: Option<&str>, expect: Result<(), SignatureError>) {
            assert_eq!(secrets.verify(b"{}", header), expect, "{header:?}");
        }
        check(&secrets, Some(&good), Ok(()));
        check(&secrets, None, Err(SignatureError::Missing));
        check(&secrets, Some(""), Err(SignatureError::Malformed));
        check(&secrets, Some(&good.replace("sha256=", "sha1=")), Err(SignatureError::Malformed));
        check(&secrets, Some(&good[..good.len() - 2]), Err(SignatureError::Malformed));
        check(&secrets, Some(&format!("{good}00")), Err(SignatureError::Malformed));
        check(&secrets, Some(&good.replace("sha256=", "sha256=zz")[..71]), Err(SignatureError::Malformed));
        // Upper-case hex is the same digest.
        check(&secrets, Some(&format!("sha256={}", good[7..].to_uppercase())), Ok(()));
    }

    #[test]
    fn rotation_accepts_current_and_previous_only() {
        let secrets = Secrets::new(Secret::new("new").unwrap(), Some(Secret::new("old").unwrap()));
        let body = b"payload";
        for (signer, ok) in [("new", true), ("old", true), ("other", false)] {
            let header = Secret::new(signer).unwrap().sign(body);
            assert_eq!(secrets.verify(body, Some(&header)).is_ok(), ok, "{signer}");
        }
    }

    #[test]
    fn empty_secret_is_refused_and_debug_is_redacted() {
        assert_eq!(Secret::new("").unwrap_err(), SecretError::Empty);
        let s = Secrets::single("hunter2-super-secret").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    proptest! {
        #[test]
        fn a_signature_made_with_another_secret_is_rejected(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            ours in "[ -~]{1,40}",
            theirs in "[ -~]{1,40}",
            previous in proptest::option::of("[ -~]{1,40}"),
        ) {
            prop_assume!(ours != theirs && previous.as_deref() != Some(theirs.as_str()));
            let secrets = Secrets::new(
                Secret::new(&ours).unwrap(),
                previous.as_deref().map(|p| Secret::new(p).unwrap()),
            );
            let forged = Secret::new(&theirs).unwrap().sign(&body);
            prop_assert_eq!(secrets.verify(&body, Some(&forged)), Err(SignatureError::Mismatch));
            let genuine = secrets.current.sign(&body);
            prop_assert_eq!(secrets.verify(&body, Some(&genuine)), Ok(()));
        }
    }
}
