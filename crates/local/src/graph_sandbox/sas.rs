//! User-delegation-style directory SAS tokens, minted and checked like Azure Storage does.
//!
//! The query string carries the same fields, order and percent-encoding as the tokens Graph hands
//! out (`skoid ... sdd=7&sig=`). The signature is an HMAC-SHA256 over every signed field plus the
//! directory the token covers, keyed by a per-sandbox random key. Revoking every token (the
//! sandbox's `expire_all_sas`) rotates that key, just as revoking a user delegation key does in
//! Azure: older signatures simply stop matching.

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Service version stamped on every token (and on blob answers).
pub const STORAGE_VERSION: &str = "2021-08-06";

/// Why a blob request's SAS was refused; the message goes into the Azure-style XML error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SasRejection {
    /// Missing fields, bad signature, wrong directory, revoked or expired: `AuthenticationFailed`.
    AuthenticationFailed(String),
    /// A valid token without read permission: `AuthorizationPermissionMismatch`.
    PermissionMismatch,
}

/// Mints and verifies tokens; one per sandbox.
pub struct SasSigner {
    key: [u8; 32],
    /// `skoid`: the object id of the (pretend) service principal that got the delegation key.
    object_id: Uuid,
    /// `sktid`: Microsoft's tenant, which signs the delegation key for Graph's storage.
    tenant_id: Uuid,
}

impl std::fmt::Debug for SasSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SasSigner(<key redacted>)")
    }
}

/// Fields of a token as read from a query string (values percent-decoded).
#[derive(Debug, Default)]
struct Fields {
    skoid: String,
    sktid: String,
    skt: String,
    ske: String,
    sks: String,
    skv: String,
    sv: String,
    se: String,
    sr: String,
    sp: String,
    sdd: String,
    sig: String,
}

impl SasSigner {
    pub fn new(object_id: Uuid, tenant_id: Uuid) -> Self {
        Self {
            key: random_key(),
            object_id,
            tenant_id,
        }
    }

    /// Makes every token minted so far invalid.
    pub fn rotate_key(&mut self) {
        self.key = random_key();
    }

    /// A token for the directory `dir` (a path `/container/seg/...`, no trailing slash), valid
    /// from `now` for `ttl`. Times are whole seconds like Azure's; the expiry is rounded down, so
    /// a zero or sub-second lifetime gives a token that is already expired.
    pub fn mint(&self, dir: &str, now: OffsetDateTime, ttl: std::time::Duration) -> String {
        let start = whole_seconds(now);
        let expiry = whole_seconds(now + ttl);
        let depth = dir.trim_matches('/').split('/').count().saturating_sub(1);
        let f = Fields {
            skoid: self.object_id.to_string(),
            sktid: self.tenant_id.to_string(),
            skt: functions_runtime::codec::seconds_utc(start),
            // The delegation key lives as long as the token: real keys outlive it, but nothing
            // observable depends on that.
            ske: functions_runtime::codec::seconds_utc(expiry.max(start)),
            sks: "b".into(),
            skv: STORAGE_VERSION.into(),
            sv: STORAGE_VERSION.into(),
            se: functions_runtime::codec::seconds_utc(expiry),
            sr: "d".into(),
            sp: "rl".into(),
            sdd: depth.to_string(),
            sig: String::new(),
        };
        let sig = URL_SAFE.encode(self.sign(&f, dir));
        format!(
            "skoid={}&sktid={}&skt={}&ske={}&sks={}&skv={}&sv={}&se={}&sr={}&sp={}&sdd={}&sig={}",
            f.skoid,
            f.sktid,
            enc(&f.skt),
            enc(&f.ske),
            f.sks,
            f.skv,
            f.sv,
            enc(&f.se),
            f.sr,
            f.sp,
            f.sdd,
            enc(&sig)
        )
    }

    /// Checks `query` for a read of the blob at `blob_path` (`/container/seg/.../name`,
    /// already validated and decoded) at `now`.
    pub fn verify(
        &self,
        query: &str,
        blob_path: &str,
        now: OffsetDateTime,
    ) -> Result<(), SasRejection> {
        let f = parse(query)?;
        if f.sr != "d" {
            return Err(auth_failed("Signed resource must be a directory (sr=d)."));
        }
        let depth: usize = f
            .sdd
            .parse()
            .map_err(|_| auth_failed("sdd is mandatory and must be a number."))?;
        // The directory a `sr=d` token covers is the first `sdd` folders below the container;
        // the blob must lie strictly inside it.
        let segs: Vec<&str> = blob_path.trim_start_matches('/').split('/').collect();
        if segs.len() < depth + 2 {
            return Err(auth_failed(
                "The blob is not inside the directory the signature covers.",
            ));
        }
        let dir = format!("/{}", segs[..=depth].join("/"));
        let sig = URL_SAFE
            .decode(f.sig.as_bytes())
            .map_err(|_| auth_failed("Signature fields not well formed."))?;
        if self.mac(&f, &dir).verify_slice(&sig).is_err() {
            return Err(auth_failed(
                "Signature did not match. String to sign used was not the one the token was made with.",
            ));
        }
        let expiry = OffsetDateTime::parse(&f.se, &Rfc3339)
            .map_err(|_| auth_failed("Signed expiry time is not a valid ISO 8601 time."))?;
        if now >= expiry {
            return Err(auth_failed(&format!(
                "Signed expiry time [{}] has to be after current time [{}]",
                httpdate::fmt_http_date(expiry.into()),
                httpdate::fmt_http_date(now.into())
            )));
        }
        if !f.sp.contains('r') {
            return Err(SasRejection::PermissionMismatch);
        }
        Ok(())
    }

    fn sign(&self, f: &Fields, dir: &str) -> Vec<u8> {
        self.mac(f, dir).finalize().into_bytes().to_vec()
    }

    /// The string to sign: every signed field, one per line, then the directory path.
    fn mac(&self, f: &Fields, dir: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        for part in [
            &f.sp, &f.skt, &f.se, &f.skoid, &f.sktid, &f.ske, &f.sks, &f.skv, &f.sv, &f.sr, &f.sdd,
        ] {
            mac.update(part.as_bytes());
            mac.update(b"\n");
        }
        mac.update(dir.as_bytes());
        mac
    }
}

fn random_key() -> [u8; 32] {
    // uuid's v4 generator draws from the OS RNG; two of them make a 256-bit key.
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(Uuid::new_v4().as_bytes());
    k[16..].copy_from_slice(Uuid::new_v4().as_bytes());
    k
}

fn auth_failed(msg: &str) -> SasRejection {
    SasRejection::AuthenticationFailed(msg.to_string())
}

fn parse(query: &str) -> Result<Fields, SasRejection> {
    let mut f = Fields::default();
    for pair in query.trim_start_matches('?').split('&') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        let v = partner_billing_export::billing::wire::percent_decode(v);
        let slot = match k {
            "skoid" => &mut f.skoid,
            "sktid" => &mut f.sktid,
            "skt" => &mut f.skt,
            "ske" => &mut f.ske,
            "sks" => &mut f.sks,
            "skv" => &mut f.skv,
            "sv" => &mut f.sv,
            "se" => &mut f.se,
            "sr" => &mut f.sr,
            "sp" => &mut f.sp,
            "sdd" => &mut f.sdd,
            "sig" => &mut f.sig,
            // Azure ignores parameters it does not sign (e.g. `comp`, `timeout`).
            _ => continue,
        };
        *slot = v;
    }
    for (name, value) in [
        ("sv", &f.sv),
        ("se", &f.se),
        ("sr", &f.sr),
        ("sp", &f.sp),
        ("sig", &f.sig),
        ("skoid", &f.skoid),
        ("sktid", &f.sktid),
        ("skt", &f.skt),
        ("ske", &f.ske),
    ] {
        if value.is_empty() {
            return Err(auth_failed(&format!(
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature. ({name} is mandatory)"
            )));
        }
    }
    Ok(f)
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).expect("0 ns is valid")
}

/// Percent-encodes what Azure's SDKs encode in SAS values (`:` `+` `/` `=`).
fn enc(s: &str) -> String {
    s.replace(':', "%3A")
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use time::macros::datetime;

    const DIR: &str = "/billedusagefastpath/v1/PartnerTenantId=t/BillingMonth=202601/InvoiceId=G1/InvoiceVersion=202602/Fragment=full/PartitionType=default";

    fn signer() -> SasSigner {
        SasSigner::new(Uuid::nil(), Uuid::nil())
    }

    fn blob() -> String {
        format!("{DIR}/part-00000-x.c000.json.gz")
    }

    #[test]
    fn token_looks_like_graphs() {
        let now = datetime!(2026-11-25 09:00:00.75 UTC);
        let sas = signer().mint(DIR, now, Duration::from_secs(3600));
        assert!(sas.starts_with("skoid="), "{sas}");
        assert!(sas.contains("&skt=2026-11-25T09%3A00%3A00Z&"), "{sas}");
        assert!(sas.contains("&se=2026-11-25T10%3A00%3A00Z&sr=d&sp=rl&sdd=7&sig="));
        assert!(sas.contains("&sks=b&skv=2021-08-06&sv=2021-08-06&"));
        assert!(!sas.contains(' ') && !sas.contains('+'));
        assert_eq!(
            partner_billing_export::billing::sas_expiry(&sas),
            Some(datetime!(2026-11-25 10:00:00 UTC))
        );
    }

    #[test]
    fn valid_token_reads_any_blob_in_its_directory_only() {
        let s = signer();
        let now = datetime!(2026-11-25 09:00:00 UTC);
        let sas = s.mint(DIR, now, Duration::from_secs(3600));
        assert_eq!(s.verify(&sas, &blob(), now), Ok(()));
        let other = blob().replace("InvoiceId=G1", "InvoiceId=G2");
        assert!(s.verify(&sas, &other, now).is_err());
        // The directory itself is not a blob inside it.
        assert!(s.verify(&sas, DIR, now).is_err());
    }

    #[test]
    fn expiry_is_checked_against_the_clock() {
        let s = signer();
        let now = datetime!(2026-11-25 09:00:00.5 UTC);
        let sas = s.mint(DIR, now, Duration::from_secs(60));
        assert!(s
            .verify(&sas, &blob(), now + Duration::from_secs(59))
            .is_ok());
        let err = s
            .verify(&sas, &blob(), now + Duration::from_secs(60))
            .unwrap_err();
        assert!(
            matches!(err, SasRejection::AuthenticationFailed(m) if m.contains("Signed expiry time"))
        );
        // Zero and sub-second lifetimes are expired from the start.
        for ttl in [Duration::ZERO, Duration::from_millis(1)] {
            let sas = s.mint(DIR, now, ttl);
            assert!(s.verify(&sas, &blob(), now).is_err(), "{ttl:?}");
        }
    }

    #[test]
    fn tampering_and_rotation_break_the_signature() {
        let mut s = signer();
        let now = datetime!(2026-11-25 09:00:00 UTC);
        let sas = s.mint(DIR, now, Duration::from_secs(3600));
        let longer = sas.replace("se=2026-11-25T10", "se=2026-11-25T23");
        assert!(s.verify(&longer, &blob(), now).is_err());
        let writable = sas.replace("sp=rl", "sp=rwl");
        assert!(s.verify(&writable, &blob(), now).is_err());
        let no_sig = sas.split("&sig=").next().unwrap().to_string();
        assert!(s.verify(&no_sig, &blob(), now).is_err());
        s.rotate_key();
        assert!(s.verify(&sas, &blob(), now).is_err());
        let fresh = s.mint(DIR, now, Duration::from_secs(3600));
        assert!(s.verify(&fresh, &blob(), now).is_ok());
    }
}
