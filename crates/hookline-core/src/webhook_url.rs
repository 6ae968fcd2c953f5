//! Webhook URL rules: HTTPS only, and no loopback, private, link-local or
//! metadata addresses, unless the operator allows them.
//!
//! [`check_url`] runs when an application is registered; [`AddressPolicy::is_allowed`]
//! runs again on every resolved address at connect time, so a DNS answer that
//! changes after registration cannot reach a blocked address.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// Addresses and schemes the operator allows.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// `delivery.allow_http`: accept `http://` URLs.
    pub allow_http: bool,
    /// `delivery.allow_private_addresses`: accept loopback, private and
    /// link-local addresses (tests and local demos).
    pub allow_private: bool,
    /// Networks accepted even though they are private. Cloud metadata
    /// addresses are reachable only when a listed network contains them.
    pub allowed_networks: Vec<IpNet>,
}

/// A webhook URL that the rules reject.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("webhook_url is not a valid absolute URL ({0}); use https://host/path")]
    Invalid(String),
    #[error("webhook_url must use https, not {0}; plain http is accepted only when delivery.allow_http is set")]
    NotHttps(String),
    #[error("webhook_url must not contain a user name or password")]
    Credentials,
    #[error("webhook_url host {0} is a loopback, private, link-local or metadata address; use a public address, or set delivery.allow_private_addresses for local testing")]
    BlockedAddress(String),
    #[error("webhook_url has no host")]
    MissingHost,
}

impl AddressPolicy {
    /// Returns whether a connection to `ip` is allowed.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        if self.allowed_networks.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        if is_metadata(ip) {
            return false;
        }
        if self.allow_private {
            return !is_unspecified_or_multicast(ip);
        }
        !is_blocked(ip)
    }

    /// Checks a webhook URL as given by a user. Host names are checked again
    /// after resolution, at connect time.
    pub fn check_url(&self, raw: &str) -> Result<Url, UrlError> {
        let url = Url::parse(raw.trim()).map_err(|error| UrlError::Invalid(error.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => return Err(UrlError::NotHttps(other.to_owned())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        let blocked_name = |name: &str| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost"
                || name.ends_with(".localhost")
                || name == "metadata.google.internal"
                || name.ends_with(".internal")
        };
        match url.host() {
            None => return Err(UrlError::MissingHost),
            Some(Host::Ipv4(ip)) if !self.is_allowed(IpAddr::V4(ip)) => {
                return Err(UrlError::BlockedAddress(ip.to_string()));
            }
            Some(Host::Ipv6(ip)) if !self.is_allowed(IpAddr::V6(ip)) => {
                return Err(UrlError::BlockedAddress(ip.to_string()));
            }
            Some(Host::Domain(name)) if !self.allow_private && blocked_name(name) => {
                return Err(UrlError::BlockedAddress(name.to_owned()));
            }
            Some(_) => {}
        }
        Ok(url)
    }
}

/// Cloud instance metadata services: 169.254.169.254 (AWS, GCP, Azure and
/// others), 169.254.170.2 (AWS ECS task metadata), 100.100.100.200 (Alibaba
/// Cloud) and fd00:ec2::254 (AWS over IPv6), also in their IPv6 wrappings.
fn is_metadata(ip: IpAddr) -> bool {
    let v4 = match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => embedded_v4(v6),
    };
    if let Some(v4) = v4 {
        return matches!(
            v4.octets(),
            [169, 254, 169, 254] | [169, 254, 170, 2] | [100, 100, 100, 200]
        );
    }
    ip == IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254))
}

fn is_unspecified_or_multicast(ip: IpAddr) -> bool {
    ip.is_unspecified() || ip.is_multicast()
}

/// Returns whether an address can never be a public webhook endpoint.
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_blocked_v4(v4),
        IpAddr::V6(v6) => is_blocked_v6(v6),
    }
}

fn is_blocked_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking (RFC 2544)
        || a >= 240 // reserved
}

fn is_blocked_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_blocked_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
}

/// Extracts the IPv4 address inside IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96)
/// and 6to4 (2002::/16) addresses, which reach that IPv4 host.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(low());
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(low());
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> AddressPolicy {
        AddressPolicy::default()
    }

    #[test]
    fn public_https_url_is_accepted() {
        let url = strict()
            .check_url("https://hooks.example.com/orders")
            .unwrap();
        assert_eq!(url.host_str(), Some("hooks.example.com"));
    }

    #[test]
    fn http_needs_allow_http() {
        assert_eq!(
            strict().check_url("http://hooks.example.com/"),
            Err(UrlError::NotHttps("http".into()))
        );
        let relaxed = AddressPolicy {
            allow_http: true,
            ..AddressPolicy::default()
        };
        assert!(relaxed.check_url("http://hooks.example.com/").is_ok());
        assert!(matches!(
            relaxed.check_url("ftp://hooks.example.com/"),
            Err(UrlError::NotHttps(_))
        ));
    }

    #[test]
    fn private_and_special_hosts_are_rejected() {
        let cases = [
            "https://127.0.0.1/",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://[2002:7f00:1::]/",
            "https://localhost/",
            "https://localhost./",
            "https://api.localhost/",
            "https://metadata.google.internal/",
            "https://2130706433/",
            "https://0x7f.1/",
            "https://0177.0.0.1/",
        ];
        for case in cases {
            assert!(
                matches!(strict().check_url(case), Err(UrlError::BlockedAddress(_))),
                "{case} should be rejected as a blocked address"
            );
        }
    }

    #[test]
    fn credentials_are_rejected() {
        assert_eq!(
            strict().check_url("https://user:pw@hooks.example.com/"),
            Err(UrlError::Credentials)
        );
    }

    #[test]
    fn allow_private_accepts_loopback() {
        let relaxed = AddressPolicy {
            allow_private: true,
            ..AddressPolicy::default()
        };
        assert!(relaxed.check_url("https://127.0.0.1:8443/hook").is_ok());
        assert!(relaxed.check_url("https://localhost/hook").is_ok());
        assert!(!relaxed.is_allowed("0.0.0.0".parse().unwrap()));
    }

    #[test]
    fn metadata_stays_blocked_with_allow_private() {
        let relaxed = AddressPolicy {
            allow_private: true,
            ..AddressPolicy::default()
        };
        for ip in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "100.100.100.200",
        ] {
            assert!(
                !relaxed.is_allowed(ip.parse().unwrap()),
                "{ip} must stay blocked"
            );
        }
        let named = AddressPolicy {
            allow_private: true,
            allowed_networks: vec!["169.254.169.254/32".parse().unwrap()],
            ..AddressPolicy::default()
        };
        assert!(
            named.is_allowed("169.254.169.254".parse().unwrap()),
            "a listed network opens it"
        );
    }

    #[test]
    fn obfuscated_hosts_are_normalised_then_rejected() {
        let cases = [
            "https://0x7f000001/",
            "https://017700000001/",
            "https://127.1/",
            "https://0177.1/",
            "https://%31%32%37.0.0.1/",
            "https://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}/",
            "https://LOCALHOST./",
            "https://localhost%2e/",
            "https://[::ffff:7f00:1]/",
            "https://[::127.0.0.1]/",
            "https://[0:0:0:0:0:ffff:169.254.169.254]/",
            "https://[2002:a9fe:a9fe::1]/",
            "https://evil.example.com@127.0.0.1/",
            "https://127.0.0.1#@hooks.example.com/",
        ];
        for case in cases {
            let result = strict().check_url(case);
            assert!(
                matches!(
                    result,
                    Err(UrlError::BlockedAddress(_))
                        | Err(UrlError::Credentials)
                        | Err(UrlError::Invalid(_))
                ),
                "{case} must be rejected, got {result:?}"
            );
        }
    }

    #[test]
    fn other_schemes_are_rejected() {
        for case in [
            "file:///etc/passwd",
            "gopher://hooks.example.com/",
            "ftp://hooks.example.com/",
            "javascript:alert(1)",
            "data:text/plain,x",
        ] {
            assert!(
                matches!(strict().check_url(case), Err(UrlError::NotHttps(_))),
                "{case}"
            );
        }
    }

    #[test]
    fn public_idn_and_ipv6_hosts_work() {
        let idn = strict().check_url("https://bücher.example/hook").unwrap();
        assert_eq!(
            idn.host_str(),
            Some("xn--bcher-kva.example"),
            "the A-label is used"
        );
        let v6 = strict()
            .check_url("https://[2606:4700:4700::1111]/hook")
            .unwrap();
        assert_eq!(v6.host_str(), Some("[2606:4700:4700::1111]"));
    }

    #[test]
    fn allowed_networks_open_only_their_range() {
        let policy = AddressPolicy {
            allowed_networks: vec!["10.8.0.0/16".parse().unwrap()],
            ..AddressPolicy::default()
        };
        assert!(policy.is_allowed("10.8.1.1".parse().unwrap()));
        assert!(!policy.is_allowed("10.9.1.1".parse().unwrap()));
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "93.184.216.34",
            "2606:2800:220:1:248:1893:25c8:1946",
            "1.1.1.1",
        ] {
            assert!(strict().is_allowed(ip.parse().unwrap()), "{ip}");
        }
    }
}
