//! `confab token <user-id>`: a user JWT for scripts and manual testing,
//! signed like the admin API's tokens, for a user that exists.

use chrono::{Duration, Utc};
use clap::Args;
use uuid::Uuid;

use super::{offline_persistence, CliError};
use crate::auth::Auth;
use crate::config::Settings;
use crate::domain::UserId;
use crate::error::AppError;
use crate::persistence::{ask, FindUser};

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user's id (a UUID, as the admin API returned it).
    user_id: Uuid,
    /// Lifetime: seconds, or a number with s, m, h or d (30m, 1h, 7d).
    /// Default: token_ttl_seconds; at most max_token_ttl_seconds.
    #[arg(long, value_parser = parse_ttl)]
    ttl: Option<u64>,
}

pub async fn run(settings: Settings, args: TokenArgs) -> Result<(), CliError> {
    if settings.jwt_secret.is_empty() {
        return Err(CliError::Usage(
            "token: no jwt_secret configured (set CONFAB_JWT_SECRET to the server's secret)".into(),
        ));
    }
    let max = settings.max_token_ttl_seconds;
    let ttl = args.ttl.unwrap_or(settings.token_ttl_seconds);
    if ttl == 0 || ttl > max {
        return Err(CliError::Usage(format!(
            "token: --ttl must be between 1 second and max_token_ttl_seconds ({max})"
        )));
    }
    let persistence = offline_persistence(&settings)?;
    let user = match ask(&persistence, FindUser(UserId(args.user_id))).await {
        Ok(user) => user,
        Err(AppError::NotFound(_)) => {
            return Err(CliError::Usage(format!("token: no user {}", args.user_id)))
        }
        Err(e) => return Err(CliError::Usage(format!("token: {e}"))),
    };
    let seconds =
        i64::try_from(ttl).map_err(|_| CliError::Usage("token: --ttl too large".into()))?;
    let expires_at = Utc::now() + Duration::seconds(seconds);
    let auth = Auth::new(settings.jwt_secret.as_bytes(), settings.admin_token.clone());
    println!("{}", auth.mint(user.id, user.company_id, expires_at, None)?);
    Ok(())
}

/// `3600`, `90s`, `30m`, `1h`, `7d` → seconds.
pub fn parse_ttl(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => raw.split_at(at),
        None => (raw, "s"),
    };
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{raw:?}: expected seconds or a number with s, m, h or d"
            ))
        }
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?}: expected seconds or a number with s, m, h or d"))?;
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{raw:?}: too long"))
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_takes_seconds_or_a_unit() {
        assert_eq!(parse_ttl("3600"), Ok(3600));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("2d"), Ok(172_800));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("").is_err());
        assert!(parse_ttl("-5").is_err());
    }
}
