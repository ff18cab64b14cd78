//! Who is asking. User JWTs are HS256 only, with `exp` required and no
//! leeway; the admin token is compared in constant time. Tokens are never
//! logged: callers log the user id a token resolved to, not the token.

use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::domain::{CompanyId, UserId};
use crate::error::AppError;

/// A caller whose token checked out. Whether the user still exists is the
/// caller's next question (see `persistence::LoadUser`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    pub user_id: UserId,
    pub company_id: CompanyId,
}

/// A signature-checked token: who it names and, if it says so, when it
/// was issued (seconds since the epoch), which `persistence::LoadUser`
/// checks against the user's last revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedToken {
    pub claimed: Claimed,
    pub issued_at: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: UserId,
    company_id: CompanyId,
    exp: i64,
    /// Optional: the contract requires only `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
}

/// How far in the future an `iat` may lie before the token is refused:
/// clocks of the minting and the checking machine differ a little.
const IAT_FUTURE_TOLERANCE_SECONDS: i64 = 60;

#[derive(Clone)]
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    admin_token: String,
}

impl Auth {
    pub fn new(jwt_secret: &[u8], admin_token: String) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(jwt_secret),
            decoding: DecodingKey::from_secret(jwt_secret),
            validation,
            admin_token,
        }
    }

    /// `valid_after`: the user's last revocation, if any. The token's `iat`
    /// is never before it, so a token minted in the second a revocation
    /// was rounded up to still works (see `persistence::LoadUser`).
    pub fn mint(
        &self,
        user_id: UserId,
        company_id: CompanyId,
        expires_at: DateTime<Utc>,
        valid_after: Option<DateTime<Utc>>,
    ) -> Result<String, AppError> {
        let now = Utc::now().timestamp();
        let iat = valid_after.map_or(now, |after| now.max(after.timestamp()));
        let claims = Claims {
            sub: user_id,
            company_id,
            exp: expires_at.timestamp(),
            iat: Some(iat),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AppError::Internal(format!("signing a token: {e}")))
    }

    pub fn verify_user(&self, token: &str) -> Result<VerifiedToken, AppError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            log::debug!("token refused: {e}");
            AppError::Unauthorized("invalid or expired token")
        })?;
        if data
            .claims
            .iat
            .is_some_and(|iat| iat > Utc::now().timestamp() + IAT_FUTURE_TOLERANCE_SECONDS)
        {
            return Err(AppError::Unauthorized("invalid or expired token"));
        }
        Ok(VerifiedToken {
            claimed: Claimed {
                user_id: data.claims.sub,
                company_id: data.claims.company_id,
            },
            issued_at: data.claims.iat,
        })
    }

    pub fn verify_admin(&self, token: &str) -> Result<(), AppError> {
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            Ok(())
        } else {
            Err(AppError::Unauthorized("invalid admin token"))
        }
    }
}

/// A random URL-safe secret of `bytes` bytes of entropy, hex encoded.
pub fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn auth() -> Auth {
        Auth::new(b"0123456789abcdef0123456789abcdef", "admin".into())
    }

    #[test]
    fn minted_tokens_verify() {
        let a = auth();
        let (u, c) = (UserId(Uuid::new_v4()), CompanyId(Uuid::new_v4()));
        let token = a
            .mint(u, c, Utc::now() + chrono::Duration::minutes(5), None)
            .unwrap();
        assert_eq!(
            a.verify_user(&token).unwrap().claimed,
            Claimed {
                user_id: u,
                company_id: c
            }
        );
    }

    #[test]
    fn iat_is_optional_but_not_far_in_the_future() {
        let a = auth();
        let (u, c) = (UserId(Uuid::new_v4()), CompanyId(Uuid::new_v4()));
        let exp = (Utc::now() + chrono::Duration::minutes(5)).timestamp();
        let sign = |iat: Option<i64>| {
            let claims = Claims {
                sub: u,
                company_id: c,
                exp,
                iat,
            };
            encode(&Header::new(Algorithm::HS256), &claims, &a.encoding).unwrap()
        };
        assert!(a.verify_user(&sign(None)).is_ok());
        assert!(a
            .verify_user(&sign(Some(Utc::now().timestamp() + 3600)))
            .is_err());
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let a = auth();
        let (u, c) = (UserId(Uuid::new_v4()), CompanyId(Uuid::new_v4()));
        let expired = a
            .mint(u, c, Utc::now() - chrono::Duration::seconds(1), None)
            .unwrap();
        assert!(a.verify_user(&expired).is_err());
        let other = Auth::new(b"another-secret-another-secret-xx", "admin".into());
        let foreign = other
            .mint(u, c, Utc::now() + chrono::Duration::minutes(5), None)
            .unwrap();
        assert!(a.verify_user(&foreign).is_err());
    }

    #[test]
    fn admin_token_must_match_exactly() {
        let a = auth();
        assert!(a.verify_admin("admin").is_ok());
        assert!(a.verify_admin("admin ").is_err());
        assert!(a.verify_admin("").is_err());
    }
}
