//! Where a webhook may send: public addresses only, unless
//! `webhooks.allow_private`. A company's admin chooses the URL, so without
//! this rule a webhook could make confab call the services on its own
//! network (a metadata endpoint, a database's HTTP port).
//!
//! The rule is applied twice: when the webhook is created (its host's
//! current addresses, for a clear 400), and at every delivery by the
//! client's resolver, on the very addresses it then connects to, so a DNS
//! name that later points inward is refused too.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Host;

use crate::domain::WebhookUrl;
use crate::error::AppError;

/// How long creating a webhook waits for its host to resolve.
const CREATION_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A globally routable unicast address: not loopback, private, link-local,
/// unspecified, shared (CGNAT), multicast, broadcast, documentation or
/// reserved. IPv4-mapped IPv6 addresses are judged as the IPv4 they hold.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                // fec0::/10, the deprecated site-local range.
                || (s[0] & 0xffc0) == 0xfec0
                // 2001:db8::/32, documentation.
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                // 64:ff9b::/96 (NAT64) and ::/96 (IPv4-compatible) embed an
                // IPv4 address that may be anything.
                || (s[0] == 0x0064 && s[1] == 0xff9b)
                || s[..6].iter().all(|&x| x == 0))
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xfe) == 18)
        || a >= 240)
}

/// The refusal, worded for the API and the delivery log alike.
fn refused(ip: IpAddr) -> String {
    format!("url resolves to {ip}, which is not a public address (webhooks.allow_private is off)")
}

/// Checks a new webhook's URL: its host must resolve, and only to public
/// addresses (unless `allow_private`).
pub async fn check_new_url(url: &WebhookUrl, allow_private: bool) -> Result<(), AppError> {
    if allow_private {
        return Ok(());
    }
    let addresses: Vec<IpAddr> = match url.url().host() {
        Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(Host::Domain(domain)) => {
            let lookup = tokio::net::lookup_host((domain, 0));
            match tokio::time::timeout(CREATION_LOOKUP_TIMEOUT, lookup).await {
                Ok(Ok(found)) => found.map(|a| a.ip()).collect(),
                Ok(Err(_)) | Err(_) => {
                    return Err(AppError::bad_request(format!(
                        "url's host {domain:?} does not resolve"
                    )))
                }
            }
        }
        None => return Err(AppError::bad_request("url must name a host")),
    };
    match addresses.into_iter().find(|ip| !is_public(*ip)) {
        Some(ip) => Err(AppError::bad_request(refused(ip))),
        None => Ok(()),
    }
}

/// The refusal of a literal address in a URL at delivery time (the
/// resolver below never sees those).
pub fn check_literal_host(url: &url::Url, allow_private: bool) -> Result<(), String> {
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(refused(ip))
    }
}

/// The HTTP client's resolver: the system's, refusing a name if any of its
/// addresses is not public.
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if !allow_private {
                if let Some(bad) = found.iter().find(|a| !is_public(a.ip())) {
                    return Err(refused(bad.ip()).into());
                }
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inward_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn the_internet_is_public() {
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn literal_hosts_are_checked_at_delivery() {
        let url = url::Url::parse("http://127.0.0.1:9/hook").unwrap();
        assert!(check_literal_host(&url, false).is_err());
        assert!(check_literal_host(&url, true).is_ok());
        let named = url::Url::parse("https://hooks.example.com/").unwrap();
        assert!(check_literal_host(&named, false).is_ok());
    }

    #[actix_rt::test]
    async fn creation_refuses_localhost_unless_allowed() {
        let url = WebhookUrl::parse("http://localhost:9/hook").unwrap();
        assert!(check_new_url(&url, false).await.is_err());
        assert!(check_new_url(&url, true).await.is_ok());
    }
}
