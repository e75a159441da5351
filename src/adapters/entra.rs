//! The Microsoft identity platform's v2.0 token endpoint, spoken directly: client credentials
//! with a secret or a signed assertion, the device authorization grant, and refresh tokens.
//!
//! Why not azure_identity for these: its 1.x line has no device-code credential, and it refuses
//! any authority that is not `https`, so the loopback Entra stand-in (local mode, tests) could
//! not be reached through the same code path as Entra. This client allows plain `http` for
//! loopback hosts only, like every other client of ours.
//!
//! Protocol (Microsoft identity platform docs): `POST {authority}/{tenant}/oauth2/v2.0/token`
//! with a form body ("OAuth 2.0 client credentials flow", "device authorization grant flow",
//! "refresh tokens"); `POST {authority}/{tenant}/oauth2/v2.0/devicecode`. Errors are
//! `{"error", "error_description", "error_codes": [AADSTS numbers]}`.

use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;

use crate::auth::{is_loopback, Secret};

/// `client_assertion_type` of a JWT client assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// `grant_type` of the device authorization grant (RFC 8628).
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Entra's public sign-in host.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The audience of a managed identity token used as a federated client assertion.
pub const TOKEN_EXCHANGE_SCOPE: &str = "api://AzureADTokenExchange/.default";

/// How a confidential client proves who it is.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    Secret(Secret),
    /// A signed JWT: a certificate assertion, or a managed identity's token (federated
    /// identity credential).
    Assertion(Secret),
}

/// A token answer.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub expires_at: OffsetDateTime,
    pub refresh_token: Option<Secret>,
}

/// The start of a device sign-in: what to show the user and what to poll with.
#[derive(Debug, Clone)]
pub struct DeviceCode {
    pub device_code: Secret,
    pub user_code: String,
    pub verification_uri: String,
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
    /// Entra's own sentence for the user ("To sign in, use a web browser to open ...").
    pub message: String,
}

/// One poll of a device sign-in.
#[derive(Debug, Clone)]
pub enum DevicePoll {
    /// The user has not finished signing in yet.
    Pending,
    /// Polling too fast: add 5 seconds to the interval (RFC 8628 §3.5).
    SlowDown,
    Done(TokenResponse),
}

#[derive(Debug, thiserror::Error)]
pub enum EntraError {
    /// Entra answered with its error document.
    #[error("Entra ID refused ({status}): {error}: {description}{}", hint_suffix(*codes))]
    Refused {
        status: u16,
        error: String,
        description: String,
        codes: Option<u64>,
    },
    #[error("Entra ID could not be reached at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("unexpected answer from Entra ID: {0}")]
    Invalid(String),
    #[error("authority {0}: must be https (plain http only for a loopback stand-in)")]
    InsecureAuthority(String),
}

fn hint_suffix(code: Option<u64>) -> String {
    code.and_then(hint)
        .map(|h| format!(" (fix: {h})"))
        .unwrap_or_default()
}

/// What to do about the AADSTS errors a partner meets while setting up.
pub fn hint(code: u64) -> Option<&'static str> {
    Some(match code {
        700016 => "the app (client id) is not found in this tenant: check the client id and the tenant id, and that the app is registered or consented in the partner tenant",
        7000215 => "the client secret is wrong: copy the secret's value (not its id) into the setting",
        7000222 => "the client secret has expired: create a new one and update the setting",
        70021 | 700211 | 700212 | 700213 => "no federated identity credential of the app matches the managed identity: add one with issuer https://login.microsoftonline.com/<tenant>/v2.0, subject = the identity's principal (object) id, audience api://AzureADTokenExchange",
        65001 => "admin consent is missing: grant admin consent for the app's permissions",
        7000218 => "the app does not allow public client flows: enable 'Allow public client flows' on the app registration (Authentication) for device sign-in",
        50059 | 90002 => "the tenant is not found: check the tenant id",
        500011 => "the resource is not available in this tenant",
        _ => return None,
    })
}

#[derive(Deserialize)]
struct WireToken {
    access_token: String,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
}

#[derive(Deserialize)]
struct WireDeviceCode {
    device_code: String,
    user_code: String,
    verification_uri: String,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

/// Answers larger than this are not Entra's.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// A client of one tenant's token endpoints.
#[derive(Debug, Clone)]
pub struct EntraTokenClient {
    http: reqwest::Client,
    base: Url,
}

impl EntraTokenClient {
    /// `authority` is Entra's sign-in host (`AZURE_AUTHORITY_HOST`, default
    /// [`DEFAULT_AUTHORITY`]); `tenant` a tenant id (or `organizations` for device sign-in).
    pub fn new(http: reqwest::Client, authority: &Url, tenant: &str) -> Result<Self, EntraError> {
        if authority.scheme() != "https"
            && !(authority.scheme() == "http" && is_loopback(authority))
        {
            return Err(EntraError::InsecureAuthority(authority.to_string()));
        }
        let tenant_ok = !tenant.is_empty()
            && tenant.len() <= 64
            && tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !tenant_ok {
            return Err(EntraError::Invalid(format!(
                "{tenant:?} is not a tenant id or domain"
            )));
        }
        let mut base = authority.clone();
        base.set_query(None);
        base.set_fragment(None);
        let path = format!(
            "{}/{tenant}/oauth2/v2.0/",
            base.path().trim_end_matches('/')
        );
        base.set_path(&path);
        Ok(Self { http, base })
    }

    pub fn token_endpoint(&self) -> Url {
        self.base.join("token").expect("relative path")
    }

    pub fn device_code_endpoint(&self) -> Url {
        self.base.join("devicecode").expect("relative path")
    }

    /// The client credentials grant for `scope` (one `.default` scope).
    pub async fn client_credentials(
        &self,
        client_id: &str,
        scope: &str,
        auth: &ClientAuth,
    ) -> Result<TokenResponse, EntraError> {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", scope),
        ];
        match auth {
            ClientAuth::Secret(s) => form.push(("client_secret", s.expose())),
            ClientAuth::Assertion(a) => {
                form.push(("client_assertion_type", JWT_BEARER));
                form.push(("client_assertion", a.expose()));
            }
        }
        let (status, body) = self.post(self.token_endpoint(), &form).await?;
        if status != 200 {
            return Err(refused(status, &body));
        }
        parse_token(&body)
    }

    /// Starts a device sign-in for `scopes` (space-joined; add `offline_access` for a refresh
    /// token).
    pub async fn start_device_code(
        &self,
        client_id: &str,
        scopes: &str,
    ) -> Result<DeviceCode, EntraError> {
        let form = [("client_id", client_id), ("scope", scopes)];
        let (status, body) = self.post(self.device_code_endpoint(), &form).await?;
        if status != 200 {
            return Err(refused(status, &body));
        }
        let w: WireDeviceCode = serde_json::from_slice(&body)
            .map_err(|e| EntraError::Invalid(format!("device code answer: {e}")))?;
        Ok(DeviceCode {
            message: w.message.unwrap_or_else(|| {
                format!(
                    "To sign in, open {} and enter the code {}.",
                    w.verification_uri, w.user_code
                )
            }),
            device_code: Secret::new(w.device_code),
            user_code: w.user_code,
            verification_uri: w.verification_uri,
            expires_in: w.expires_in.min(3600),
            interval: w.interval.unwrap_or(5).clamp(1, 60),
        })
    }

    /// One poll of a device sign-in.
    pub async fn poll_device_code(
        &self,
        client_id: &str,
        device_code: &Secret,
    ) -> Result<DevicePoll, EntraError> {
        let form = [
            ("grant_type", DEVICE_CODE_GRANT),
            ("client_id", client_id),
            ("device_code", device_code.expose()),
        ];
        let (status, body) = self.post(self.token_endpoint(), &form).await?;
        if status == 200 {
            return parse_token(&body).map(DevicePoll::Done);
        }
        let err = refused(status, &body);
        match &err {
            EntraError::Refused { error, .. } if error == "authorization_pending" => {
                Ok(DevicePoll::Pending)
            }
            EntraError::Refused { error, .. } if error == "slow_down" => Ok(DevicePoll::SlowDown),
            _ => Err(err),
        }
    }

    /// A new access token from a refresh token (which Entra may rotate: keep the new one).
    pub async fn refresh(
        &self,
        client_id: &str,
        refresh_token: &Secret,
        scopes: &str,
    ) -> Result<TokenResponse, EntraError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token.expose()),
            ("scope", scopes),
        ];
        let (status, body) = self.post(self.token_endpoint(), &form).await?;
        if status != 200 {
            return Err(refused(status, &body));
        }
        parse_token(&body)
    }

    async fn post(&self, url: Url, form: &[(&str, &str)]) -> Result<(u16, Vec<u8>), EntraError> {
        let unreachable = |e: reqwest::Error| EntraError::Unreachable {
            endpoint: crate::auth::redact_url(&url),
            reason: e.without_url().to_string(),
        };
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let res = self
            .http
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = res.status().as_u16();
        if res
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(EntraError::Invalid(format!("answer of {status} too large")));
        }
        let body = res.bytes().await.map_err(unreachable)?;
        if body.len() > MAX_ANSWER_BYTES {
            return Err(EntraError::Invalid(format!("answer of {status} too large")));
        }
        Ok((status, body.to_vec()))
    }
}

fn refused(status: u16, body: &[u8]) -> EntraError {
    let w: Option<WireError> = serde_json::from_slice(body).ok();
    let (error, description, codes) = match w {
        Some(w) => (
            w.error.unwrap_or_else(|| "error".into()),
            w.error_description.unwrap_or_default(),
            w.error_codes.first().copied(),
        ),
        None => ("error".into(), format!("HTTP {status}"), None),
    };
    // Entra's descriptions carry trace and correlation ids on further lines: keep the first.
    let description: String = description
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(400)
        .collect();
    EntraError::Refused {
        status,
        error,
        description,
        codes,
    }
}

fn parse_token(body: &[u8]) -> Result<TokenResponse, EntraError> {
    let w: WireToken = serde_json::from_slice(body)
        .map_err(|e| EntraError::Invalid(format!("token answer: {e}")))?;
    // `expires_in` is a number in v2.0 answers, a string in some older ones.
    let secs = match &w.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(3600)
    .clamp(60, 24 * 3600);
    if w.access_token.is_empty() {
        return Err(EntraError::Invalid("empty access_token".into()));
    }
    Ok(TokenResponse {
        access_token: Secret::new(w.access_token),
        expires_at: OffsetDateTime::now_utc() + time::Duration::seconds(secs),
        refresh_token: w.refresh_token.filter(|r| !r.is_empty()).map(Secret::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_authority_rules() {
        let http = reqwest::Client::new();
        let c = EntraTokenClient::new(
            http.clone(),
            &Url::parse(DEFAULT_AUTHORITY).unwrap(),
            "11111111-1111-1111-1111-111111111111",
        )
        .unwrap();
        assert_eq!(
            c.token_endpoint().as_str(),
            "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/oauth2/v2.0/token"
        );
        assert!(c
            .device_code_endpoint()
            .as_str()
            .ends_with("/oauth2/v2.0/devicecode"));
        let local = Url::parse("http://127.0.0.1:9/").unwrap();
        assert!(EntraTokenClient::new(http.clone(), &local, "organizations").is_ok());
        let plain = Url::parse("http://login.example.com/").unwrap();
        assert!(matches!(
            EntraTokenClient::new(http.clone(), &plain, "t"),
            Err(EntraError::InsecureAuthority(_))
        ));
        assert!(EntraTokenClient::new(http, &local, "a/../b").is_err());
    }

    #[test]
    fn refusals_keep_the_first_line_and_name_the_fix() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: x\r\nCorrelation ID: y","error_codes":[7000215]}"#;
        let e = refused(401, body).to_string();
        assert!(
            e.contains("AADSTS7000215: Invalid client secret provided."),
            "{e}"
        );
        assert!(!e.contains("Trace ID"), "{e}");
        assert!(e.contains("fix: the client secret is wrong"), "{e}");
    }
}
