//! Outbound HTTP from functions: where a request may connect, checked where it connects.
//!
//! `http_allow` names the hosts a handler's function may call. A name is only half the check:
//! it may resolve to the executor's own loopback, the cluster's private network or the cloud's
//! metadata service (`169.254.169.254`), which a function must never reach. So the executor
//! resolves the name itself, refuses every address in a forbidden range (loopback, private,
//! shared, link-local, unique-local, multicast, unspecified, reserved; IPv4 inside IPv6 is
//! checked as IPv4) unless an operator allowed that network explicitly
//! (`executor.http_allow_networks`), and connects to the checked address itself, so a DNS answer
//! that changes between the check and the connection (rebinding) changes nothing. TLS is
//! verified against the host name. Redirects are never followed by the host: a function that
//! follows one makes a new request, which is checked again.
//!
//! The request and response plumbing follows `wasmtime_wasi_http::default_send_request`
//! (Apache-2.0 WITH LLVM-exception), whose connection step cannot be replaced on its own.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions};

/// Where outbound requests may connect: public addresses, and the networks an operator allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Networks reachable although they are in a forbidden range.
    allowed: Vec<IpNet>,
}

impl OutboundPolicy {
    /// A policy that also allows `networks`.
    pub fn allowing(networks: Vec<IpNet>) -> Self {
        OutboundPolicy { allowed: networks }
    }

    /// Why a connection to `ip` is refused, or `None` when it may be made.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        forbidden(ip)
    }
}

/// Why `ip` is not a public address a function may reach, if it is not.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64
            // (64:ff9b::a.b.c.d) addresses reach the IPv4 address inside.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
                return forbidden_v4(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])));
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return forbidden_v4(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])));
            }
            forbidden_v6(v6)
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip.is_link_local() {
        "link-local (cloud metadata lives here)"
    } else if a == 100 && (64..128).contains(&b) {
        "shared address space (carrier-grade NAT)"
    } else if ip.is_unspecified() || a == 0 {
        "unspecified (\"this network\")"
    } else if ip.is_broadcast() || ip.is_multicast() {
        "broadcast or multicast"
    } else if a >= 240 {
        "reserved"
    } else if a == 192 && b == 0 && ip.octets()[2] == 0 {
        "IETF protocol assignments"
    } else if a == 198 && (b == 18 || b == 19) {
        "benchmarking"
    } else {
        return None;
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if first & 0xfe00 == 0xfc00 {
        "unique local (private)"
    } else if first & 0xffc0 == 0xfe80 {
        "link-local"
    } else if first & 0xffc0 == 0xfec0 {
        "site-local (deprecated private)"
    } else if ip.is_multicast() {
        "multicast"
    } else {
        return None;
    })
}

trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T> Io for T where T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

/// A response body that fails when no frame comes within the between-bytes timeout.
pub struct Incoming {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl http_body::Body for Incoming {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(e)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

/// The addresses of `host` a request may connect to, resolved now.
async fn addresses(
    policy: &OutboundPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Error> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| Error::DnsError {
                rcode: None,
                info_code: None,
            })?
            .collect(),
    };
    if resolved.is_empty() {
        return Err(Error::DestinationNotFound);
    }
    let (allowed, refused): (Vec<_>, Vec<_>) = resolved
        .into_iter()
        .partition(|addr| policy.refuses(addr.ip()).is_none());
    for addr in &refused {
        let reason = policy.refuses(addr.ip()).unwrap_or_default();
        tracing::warn!(%host, address = %addr.ip(), reason, "outgoing http request to an internal address refused (executor.http_allow_networks allows a network explicitly)");
    }
    if allowed.is_empty() {
        return Err(Error::DestinationIpProhibited);
    }
    Ok(allowed)
}

/// Sends `request` as `wasmtime_wasi_http::default_send_request` does, connecting only to an
/// address `policy` allows (see the module documentation).
pub async fn send_request(
    policy: Arc<OutboundPolicy>,
    mut request: http::Request<wasmtime_wasi_http::WasiBody>,
    options: RequestOptions,
) -> Result<
    (
        http::Response<Incoming>,
        impl Future<Output = Result<(), Error>> + Send,
    ),
    Error,
> {
    let uri = request.uri();
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_string();
    let use_tls = uri.scheme() == Some(&Scheme::HTTPS);
    let port = uri.port_u16().unwrap_or(if use_tls { 443 } else { 80 });
    let connect_timeout = options.connect_timeout.unwrap_or(Duration::from_secs(600));
    let first_byte_timeout = options
        .first_byte_timeout
        .unwrap_or(Duration::from_secs(600));
    let between_bytes_timeout = options
        .between_bytes_timeout
        .unwrap_or(Duration::from_secs(600))
        .max(Duration::from_nanos(1));

    let connect = async {
        let mut last = Error::DestinationUnavailable;
        for addr in addresses(&policy, &host, port).await? {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Error::Connect(e),
            }
        }
        Err(last)
    };
    let stream = tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| Error::ConnectionTimeout)??;
    let stream: Box<dyn Io> = if use_tls {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(host.clone())?,
        };
        let tls = tokio::time::timeout(connect_timeout, connector.connect(name, stream))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new()
            .handshake(wasmtime_wasi_http::io::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // The request line carries the path only (the scheme and authority are for proxies).
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(
            request
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/"),
        )
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;

    let send = async move {
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(Error::from)?;
        let mut timeout = tokio::time::interval(between_bytes_timeout);
        timeout.reset();
        Ok::<_, Error>(response.map(|incoming| Incoming { incoming, timeout }))
    };
    let mut send = pin!(send);
    let mut conn = Some(conn);
    // Wait for the response while driving the connection.
    let response = std::future::poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(driving) = conn.as_mut() else {
                return Poll::Pending;
            };
            let done = ready!(Pin::new(driving).poll(cx));
            conn = None;
            match done {
                Ok(()) => send.as_mut().poll(cx),
                Err(e) => Poll::Ready(Err(Error::from(e))),
            }
        }
    })
    .await?;
    Ok((response, async move {
        let Some(conn) = conn.take() else {
            return Ok(());
        };
        conn.await.map_err(|e| {
            if e.is_timeout() {
                Error::HttpResponseTimeout
            } else {
                Error::from(e)
            }
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> Option<&'static str> {
        forbidden(ip.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(refused(ip).is_some(), "{ip} must be refused");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(refused(ip), None, "{ip} is public");
        }
        assert_eq!(
            refused("169.254.169.254"),
            Some("link-local (cloud metadata lives here)")
        );
    }

    #[test]
    fn an_operator_can_allow_a_network_explicitly() {
        let policy = OutboundPolicy::allowing(vec!["10.1.0.0/16".parse().unwrap()]);
        assert_eq!(policy.refuses("10.1.2.3".parse().unwrap()), None);
        assert!(policy.refuses("10.2.0.1".parse().unwrap()).is_some());
        assert!(policy.refuses("127.0.0.1".parse().unwrap()).is_some());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused() {
        let policy = OutboundPolicy::default();
        let err = addresses(&policy, "localhost", 80).await.unwrap_err();
        assert!(matches!(err, Error::DestinationIpProhibited), "{err:?}");
        let loopback = OutboundPolicy::allowing(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        assert!(!addresses(&loopback, "localhost", 80)
            .await
            .unwrap()
            .is_empty());
    }
}
