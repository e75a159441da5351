//! Client-certificate sign-in for Graph and Partner Center without OpenSSL.
//!
//! Entra ID accepts, instead of a client secret, a *client assertion*: a JWT signed with the
//! private key of a certificate registered on the app, sent with the token request
//! (learn.microsoft.com/entra/identity-platform/certificate-credentials): header `alg: RS256`
//! and `x5t` (base64url SHA-1 thumbprint of the DER certificate), claims `aud` (the tenant's
//! token endpoint), `iss` and `sub` (the client id), `jti` (unique), `nbf` and `exp` (at most
//! ten minutes). azure_identity's own certificate credential needs OpenSSL, which the portable
//! handler does not link; its `ClientAssertionCredential` takes any assertion, and this module
//! makes one with the pure-Rust `rsa` crate.
//!
//! The certificate and key come as one PEM document (`CERTIFICATE` and `PRIVATE KEY` or
//! `RSA PRIVATE KEY` blocks): from a Key Vault reference in `GRAPH_CLIENT_CERTIFICATE` (a
//! Key Vault certificate created with content type PEM is readable as such a secret), or from
//! a file named by `GRAPH_CLIENT_CERTIFICATE_PATH`.

use std::fmt;

use azure_core::http::ClientMethodOptions;
use azure_identity::ClientAssertion;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// How long an assertion is valid (Entra ID accepts at most ten minutes).
const LIFETIME_SECS: i64 = 600;

/// A certificate and its private key, ready to sign assertions.
pub struct CertificateAssertion {
    key: SigningKey<Sha256>,
    thumbprint: String,
    client_id: String,
    audience: String,
}

impl fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("thumbprint", &self.thumbprint)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The body of the first PEM block labelled `label`, decoded.
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(b64).ok()
}

fn pem_text(pem: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)?;
    let stop = pem[start..].find(&end)? + start + end.len();
    Some(pem[start..stop].to_string())
}

impl CertificateAssertion {
    /// `pem` holds the certificate and its private key; `token_endpoint` is the tenant's
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`. Errors say what is
    /// missing, never the key.
    pub fn from_pem(pem: &str, client_id: &str, token_endpoint: &str) -> Result<Self, String> {
        let cert =
            pem_block(pem, "CERTIFICATE").ok_or("no CERTIFICATE block in the PEM document")?;
        let key = if let Some(k) = pem_text(pem, "PRIVATE KEY") {
            RsaPrivateKey::from_pkcs8_pem(&k)
                .map_err(|_| "the PRIVATE KEY block is not an RSA key in PKCS#8 form")?
        } else if let Some(k) = pem_text(pem, "RSA PRIVATE KEY") {
            RsaPrivateKey::from_pkcs1_pem(&k)
                .map_err(|_| "the RSA PRIVATE KEY block is not a PKCS#1 RSA key")?
        } else {
            return Err(
                "no PRIVATE KEY block in the PEM document (export the certificate with its key)"
                    .into(),
            );
        };
        Ok(Self {
            key: SigningKey::<Sha256>::new(key),
            thumbprint: URL_SAFE_NO_PAD.encode(Sha1::digest(&cert)),
            client_id: client_id.to_string(),
            audience: token_endpoint.to_string(),
        })
    }

    /// The certificate's thumbprint as Entra ID shows it (hex SHA-1), for messages.
    pub fn thumbprint_hex(&self) -> String {
        URL_SAFE_NO_PAD
            .decode(&self.thumbprint)
            .map(hex::encode_upper)
            .unwrap_or_default()
    }

    /// A signed assertion valid from `now` for ten minutes.
    pub fn assertion_at(&self, now: i64) -> String {
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": self.thumbprint});
        let claims = serde_json::json!({
            "aud": self.audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "exp": now + LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(signing_input.as_bytes()).to_bytes();
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(
        &self,
        _options: Option<ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        Ok(self.assertion_at(time::OffsetDateTime::now_utc().unix_timestamp()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::{Signature, VerifyingKey};
    use rsa::signature::Verifier;

    /// A throwaway self-signed test certificate and key (generated for these tests only).
    const PEM: &str = include_str!("../../tests/fixtures/identity/test-client-certificate.pem");

    #[test]
    fn assertions_are_signed_jwts_entra_accepts() {
        let endpoint = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/oauth2/v2.0/token";
        let a = CertificateAssertion::from_pem(PEM, "app-id", endpoint).unwrap();
        let jwt = a.assertion_at(1_800_000_000);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(header["x5t"].as_str().unwrap())
                .unwrap()
                .len(),
            20,
            "x5t is a SHA-1 thumbprint"
        );
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], endpoint);
        assert_eq!(claims["iss"], "app-id");
        assert_eq!(claims["sub"], "app-id");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["nbf"].as_i64().unwrap(),
            600
        );
        // The signature verifies with the certificate's public key.
        let key = RsaPrivateKey::from_pkcs8_pem(&pem_text(PEM, "PRIVATE KEY").unwrap()).unwrap();
        let verifier = VerifyingKey::<Sha256>::new(key.to_public_key());
        let sig =
            Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice()).unwrap();
        verifier
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("valid RS256 signature");
        assert_eq!(a.thumbprint_hex().len(), 40);
    }

    #[test]
    fn incomplete_documents_say_what_is_missing() {
        let cert_only = pem_text(PEM, "CERTIFICATE").unwrap();
        let e = CertificateAssertion::from_pem(&cert_only, "a", "https://x").unwrap_err();
        assert!(e.contains("PRIVATE KEY"), "{e}");
        let key_only = pem_text(PEM, "PRIVATE KEY").unwrap();
        let e = CertificateAssertion::from_pem(&key_only, "a", "https://x").unwrap_err();
        assert!(e.contains("CERTIFICATE"), "{e}");
        assert!(!e.contains("MII"), "no key material in errors: {e}");
    }
}
