//! The SSRF guard for outbound HTTP from tools.
//!
//! A tool's URL comes from a file an operator wrote, but its arguments come from a person or a
//! model, and a remote API may redirect anywhere. None of that may reach loopback, private,
//! link-local (cloud metadata) or otherwise internal addresses, unless the operator allowed the
//! host by name in `tools.allow_hosts`.
//!
//! # Where the check happens
//!
//! The check runs inside the HTTP client's DNS resolver ([`GuardedResolver`]): the addresses it
//! approves are exactly the addresses the client connects to, so a name that resolves to a
//! public address when checked and to `127.0.0.1` when connecting (DNS rebinding) cannot slip
//! through. If *any* address of a name is internal, the whole name is refused, so a client that
//! falls back from one address to the next cannot end up on the internal one.
//!
//! URLs whose host is an IP literal never reach a resolver, so [`GuardedClient::send`] checks
//! them directly, and the redirect policy checks every hop the same way (IP literal directly,
//! names again through the resolver when the hop connects). Redirects are limited to
//! [`MAX_REDIRECTS`] hops, only `http` and `https` are spoken, and an `https` → `http` downgrade
//! is refused. Proxies from the environment are ignored: a proxy would resolve names itself and
//! bypass the guard.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Url, redirect};

use crate::error::{Error, Result};

/// Most redirects one request follows.
pub const MAX_REDIRECTS: usize = 5;

/// How long establishing a connection may take; the whole call is bounded by the tool timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Host names (and IP literals, compared as text) that may resolve to internal addresses.
///
/// Matching is exact and case-insensitive, after dropping a trailing dot and IPv6 brackets:
/// `api.internal` allows `API.internal.` but not `x.api.internal`.
#[derive(Debug, Clone, Default)]
pub struct AllowHosts(Arc<HashSet<String>>);

impl AllowHosts {
    /// The allow list from `tools.allow_hosts`.
    pub fn new<S: AsRef<str>>(hosts: &[S]) -> Self {
        Self(Arc::new(
            hosts.iter().map(|h| normalise_host(h.as_ref())).collect(),
        ))
    }

    /// Whether `host` is on the list.
    pub fn contains(&self, host: &str) -> bool {
        self.0.contains(&normalise_host(host))
    }
}

fn normalise_host(host: &str) -> String {
    let h = host.trim().trim_end_matches('.');
    let h = h
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(h);
    h.to_ascii_lowercase()
}

/// Why an outbound request was refused. Its message is meant for the person or model that
/// made the call, and says how an operator can allow the host when that is intended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    message: String,
}

impl Blocked {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    fn address(host: &str, ip: IpAddr, reason: &str) -> Self {
        let shown = if host == ip.to_string() {
            host.to_owned()
        } else {
            format!("{host} ({ip})")
        };
        Self::new(format!(
            "refused to connect to {shown}: {reason} addresses are not reachable from tools; \
             if this is an internal service you trust, add \"{host}\" to tools.allow_hosts"
        ))
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Blocked {}

/// Why `ip` must not be reached from a tool, or `None` when it is a public unicast address.
///
/// Documentation and benchmarking ranges (192.0.2.0/24, 198.18.0.0/15, 2001:db8::/32, …) are
/// not internal and are allowed; they are unroutable anyway.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    // AWS/GCP/Azure instance metadata, and Azure's wireserver (DHCP, DNS, health, metadata).
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(168, 63, 129, 16) {
        Some("cloud metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified (\"this network\")")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("carrier-grade NAT (shared)")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return Some("cloud metadata");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64
    // (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::) all lead to the embedded IPv4 address.
    if let Some(v4) = ip.to_ipv4() {
        return v4_reason(v4);
    }
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_reason(embedded_v4(seg[6], seg[7]));
    }
    // IPv4-translated (::ffff:0:a.b.c.d, RFC 2765) also carries an IPv4 address.
    if seg[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return v4_reason(embedded_v4(seg[6], seg[7]));
    }
    // Local-use NAT64 (64:ff9b:1::/48, RFC 8215): where the IPv4 address sits depends on the
    // operator's prefix length, so none of it is reachable.
    if seg[..3] == [0x64, 0xff9b, 1] {
        return Some("NAT64 (local use)");
    }
    // Teredo (2001::/32) tunnels to an obfuscated IPv4 address.
    if seg[..2] == [0x2001, 0] {
        return Some("Teredo tunnel");
    }
    if seg[0] == 0x2002 {
        return v4_reason(embedded_v4(seg[1], seg[2]));
    }
    if seg[0] & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if seg[0] & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if seg[0] & 0xffc0 == 0xfec0 {
        Some("site-local")
    } else if seg[0] & 0xff00 == 0xff00 {
        Some("multicast")
    } else {
        None
    }
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    let [a, b] = hi.to_be_bytes();
    let [c, d] = lo.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Checks a URL before it is requested: the scheme, and the address when the host is an IP
/// literal (names are checked by [`GuardedResolver`] when the client connects).
pub fn check_url(url: &Url, allow: &AllowHosts) -> std::result::Result<(), Blocked> {
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(Blocked::new(format!(
                "refused the URL {}: only http and https are allowed, not {other}",
                redact_url(url)
            )));
        }
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(Blocked::new(format!(
            "refused the URL {}: it has no host",
            redact_url(url)
        )));
    };
    // The URL parser has already normalised IP literals (`http://2130706433/` has the host
    // `127.0.0.1`); IPv6 literals keep their brackets.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = bare.parse::<IpAddr>() else {
        // A name: checked by the resolver when the client connects.
        return Ok(());
    };
    if allow.contains(host) {
        return Ok(());
    }
    match forbidden_reason(ip) {
        Some(reason) => Err(Blocked::address(bare, ip, reason)),
        None => Ok(()),
    }
}

/// A URL as shown in messages: scheme, host, port and path, without user info or query (an
/// API key is sometimes put there).
pub fn redact_url(url: &Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    shown.push_str(url.path());
    shown
}

/// Reads a response body chunk by chunk, never holding more than `cap` bytes (plus one
/// chunk): `None` when the body is larger (a declared `Content-Length` over the cap is refused
/// before anything is read).
pub async fn read_at_most(
    response: &mut reqwest::Response,
    cap: usize,
) -> std::result::Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Ok(None);
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if out.len() + chunk.len() > cap {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// A DNS resolver that refuses names resolving to internal addresses (see the module docs).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow: AllowHosts,
}

impl GuardedResolver {
    /// A resolver with this allow list.
    pub fn new(allow: AllowHosts) -> Self {
        Self { allow }
    }

    /// Resolves `host` and applies the check; the returned addresses are the ones to use.
    /// A refusal is a [`Blocked`]; a name that does not resolve is another error.
    pub async fn resolve_checked(
        &self,
        host: &str,
    ) -> std::result::Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| format!("cannot resolve the host {host}: {e}"))?
            .collect();
        if addrs.is_empty() {
            return Err(format!("cannot resolve the host {host}: no addresses").into());
        }
        if !self.allow.contains(host) {
            for addr in &addrs {
                if let Some(reason) = forbidden_reason(addr.ip()) {
                    return Err(Blocked::address(host, addr.ip(), reason).into());
                }
            }
        }
        Ok(addrs)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let addrs = this.resolve_checked(name.as_str()).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// An HTTP client whose every connection and redirect goes through the guard.
#[derive(Debug, Clone)]
pub struct GuardedClient {
    client: reqwest::Client,
    allow: AllowHosts,
}

/// How a [`GuardedClient`] treats redirects beyond the guard itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientOptions {
    /// Refuse redirects to another origin (scheme, host, port). Set for requests that carry
    /// credentials in headers of their own naming, which the client would otherwise forward
    /// (it strips only `Authorization` and cookies across origins).
    pub same_origin_redirects_only: bool,
}

impl GuardedClient {
    /// Builds a client with the guard, [`MAX_REDIRECTS`], no environment proxies.
    pub fn new(allow: AllowHosts, options: ClientOptions) -> Result<Self> {
        let policy_allow = allow.clone();
        let policy = redirect::Policy::custom(move |attempt| {
            match check_redirect(
                attempt.url(),
                attempt.previous(),
                &policy_allow,
                options.same_origin_redirects_only,
            ) {
                Ok(()) => attempt.follow(),
                Err(blocked) => attempt.error(blocked),
            }
        });
        let client = reqwest::Client::builder()
            .dns_resolver(GuardedResolver::new(allow.clone()))
            .redirect(policy)
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("conveyor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal("building the HTTP client for tools", e))?;
        Ok(Self { client, allow })
    }

    /// Starts a request; send it with [`GuardedClient::send`].
    pub fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// Checks the URL and sends the request. A refusal by the guard, anywhere along the way,
    /// is an [`Error::Unauthorized`] carrying the guard's sentence; other failures are
    /// [`Error::Upstream`] without the URL's query.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let request = request
            .build()
            .map_err(|e| Error::BadInput(format!("cannot build the request: {}", describe(&e))))?;
        check_url(request.url(), &self.allow).map_err(|b| Error::Unauthorized(b.to_string()))?;
        let shown = redact_url(request.url());
        self.client.execute(request).await.map_err(|e| {
            if let Some(blocked) = find_blocked(&e) {
                Error::Unauthorized(blocked.to_string())
            } else if e.is_timeout() {
                Error::Upstream(format!("{shown} did not answer in time"))
            } else {
                Error::Upstream(format!("request to {shown} failed: {}", describe(&e)))
            }
        })
    }
}

fn check_redirect(
    next: &Url,
    previous: &[Url],
    allow: &AllowHosts,
    same_origin_only: bool,
) -> std::result::Result<(), Blocked> {
    // `previous` holds the first URL and every hop so far, so this is the number of the hop
    // about to be taken.
    if previous.len() > MAX_REDIRECTS {
        return Err(Blocked::new(format!(
            "stopped after {MAX_REDIRECTS} redirects; the API redirects too often"
        )));
    }
    check_url(next, allow)?;
    if let Some(last) = previous.last() {
        if last.scheme() == "https" && next.scheme() == "http" {
            return Err(Blocked::new(format!(
                "refused a redirect from https to plain http ({})",
                redact_url(next)
            )));
        }
        if same_origin_only && last.origin() != next.origin() {
            return Err(Blocked::new(format!(
                "refused a redirect to another host ({}): the request carries credentials",
                redact_url(next)
            )));
        }
    }
    Ok(())
}

/// The guard's refusal inside a client error, if that is what the error is.
fn find_blocked<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Blocked> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<Blocked>() {
            return Some(b);
        }
        cur = err.source();
    }
    None
}

/// The innermost cause of a client error (the outer layers only repeat "error sending
/// request for url (…)", with arguments in it).
fn describe(e: &reqwest::Error) -> String {
    let mut innermost = None;
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        innermost = Some(err);
        cur = err.source();
    }
    match innermost {
        Some(err) => err.to_string(),
        None if e.is_connect() => "connection failed".to_owned(),
        None if e.is_body() || e.is_decode() => "reading the response failed".to_owned(),
        None => "request failed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn reason(s: &str) -> Option<&'static str> {
        forbidden_reason(s.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:c0a8:0101::1",
        ] {
            assert!(reason(ip).is_some(), "{ip} should be refused");
        }
        assert_eq!(reason("169.254.169.254"), Some("cloud metadata"));
        assert_eq!(reason("fd00:ec2::254"), Some("cloud metadata"));
        assert_eq!(reason("::ffff:127.0.0.1"), Some("loopback"));
    }

    /// Issue 12, finding 8: ranges the guard missed.
    #[test]
    fn azure_wireserver_local_nat64_translated_and_teredo_are_refused() {
        assert_eq!(reason("168.63.129.16"), Some("cloud metadata"));
        assert_eq!(reason("::ffff:168.63.129.16"), Some("cloud metadata"));
        assert_eq!(reason("64:ff9b:1::a00:1"), Some("NAT64 (local use)"));
        assert_eq!(reason("64:ff9b:1:ffff::1"), Some("NAT64 (local use)"));
        assert_eq!(reason("::ffff:0:7f00:1"), Some("loopback"));
        assert_eq!(reason("::ffff:0:a9fe:a9fe"), Some("cloud metadata"));
        assert_eq!(
            reason("2001:0:4136:e378:8000:63bf:3fff:fdd2"),
            Some("Teredo tunnel")
        );
        // Neighbours stay allowed.
        assert_eq!(reason("168.63.129.17"), None);
        assert_eq!(reason("2001:4860:4860::8888"), None);
        assert_eq!(reason("64:ff9b:2::1"), None);
    }

    #[test]
    fn public_and_documentation_addresses_are_allowed() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.2.10",
            "198.18.0.1",
            "2606:4700::1111",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(reason(ip), None, "{ip} should be allowed");
        }
    }

    #[test]
    fn ip_literals_are_checked_and_allow_list_matches_text() {
        let none = AllowHosts::default();
        let url = |s: &str| Url::parse(s).unwrap();
        let err = check_url(&url("http://127.0.0.1:8080/x"), &none).unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        assert!(err.to_string().contains("tools.allow_hosts"), "{err}");
        // The URL parser normalises odd spellings into the address they mean.
        assert!(check_url(&url("http://2130706433/"), &none).is_err());
        assert!(check_url(&url("http://[::ffff:7f00:1]/"), &none).is_err());
        assert!(check_url(&url("ftp://example.com/"), &none).is_err());
        assert!(check_url(&url("http://example.com/"), &none).is_ok());

        let allow = AllowHosts::new(&["127.0.0.1", "[::1]", "Internal.Example."]);
        assert!(check_url(&url("http://127.0.0.1:9/"), &allow).is_ok());
        assert!(check_url(&url("http://[::1]:9/"), &allow).is_ok());
        assert!(allow.contains("internal.example"));
        assert!(!allow.contains("x.internal.example"));
    }

    #[test]
    fn redirects_are_checked_hop_by_hop() {
        let allow = AllowHosts::new(&["localhost"]);
        let url = |s: &str| Url::parse(s).unwrap();
        let start = url("https://api.example.com/a");
        assert!(
            check_redirect(
                &url("https://api.example.com/b"),
                std::slice::from_ref(&start),
                &allow,
                true
            )
            .is_ok()
        );
        let down = check_redirect(
            &url("http://api.example.com/b"),
            std::slice::from_ref(&start),
            &allow,
            false,
        )
        .unwrap_err();
        assert!(down.to_string().contains("https to plain http"), "{down}");
        let other = check_redirect(
            &url("https://other.example.com/"),
            std::slice::from_ref(&start),
            &allow,
            true,
        )
        .unwrap_err();
        assert!(other.to_string().contains("credentials"), "{other}");
        let to_ip = check_redirect(
            &url("https://169.254.169.254/latest"),
            std::slice::from_ref(&start),
            &allow,
            false,
        )
        .unwrap_err();
        assert!(to_ip.to_string().contains("metadata"), "{to_ip}");
        let many = vec![start; MAX_REDIRECTS + 1];
        assert!(check_redirect(&url("https://api.example.com/z"), &many, &allow, false).is_err());
    }

    #[tokio::test]
    async fn resolver_refuses_names_of_internal_addresses_unless_allowed() {
        let r = GuardedResolver::new(AllowHosts::default());
        let err = r.resolve_checked("localhost").await.unwrap_err();
        assert!(err.to_string().contains("localhost"), "{err}");
        assert!(err.to_string().contains("loopback"), "{err}");
        let r = GuardedResolver::new(AllowHosts::new(&["LOCALHOST"]));
        assert!(!r.resolve_checked("localhost").await.unwrap().is_empty());
    }
}
