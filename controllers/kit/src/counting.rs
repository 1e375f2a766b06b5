//! A tower layer for the kube client that counts every API request by method and response code
//! (`rest_client_requests_total`, client-go's name). A watch counts once, when its response
//! head arrives.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::RestLabels;

#[derive(Clone)]
pub struct CountLayer {
    family: Family<RestLabels, Counter>,
}

impl CountLayer {
    pub fn new(family: Family<RestLabels, Counter>) -> CountLayer {
        CountLayer { family }
    }
}

impl<S> tower::Layer<S> for CountLayer {
    type Service = Count<S>;
    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            family: self.family.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Count<S> {
    inner: S,
    family: Family<RestLabels, Counter>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Count<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.method().as_str().to_string();
        let family = self.family.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            let code = match &r {
                Ok(resp) => resp.status().as_u16().to_string(),
                Err(_) => "<error>".to_string(),
            };
            family.get_or_create(&RestLabels { method, code }).inc();
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, Service, ServiceExt};

    #[tokio::test]
    async fn counts_by_method_and_code() {
        let family = Family::<RestLabels, Counter>::default();
        let inner = tower::service_fn(|req: http::Request<()>| async move {
            let code = if req.method() == http::Method::GET {
                200
            } else {
                409
            };
            Ok::<_, std::convert::Infallible>(
                http::Response::builder().status(code).body(()).unwrap(),
            )
        });
        let mut svc = CountLayer::new(family.clone()).layer(inner);
        for m in [http::Method::GET, http::Method::GET, http::Method::PATCH] {
            let req = http::Request::builder().method(m).body(()).unwrap();
            svc.ready().await.unwrap().call(req).await.unwrap();
        }
        let n = |m: &str, c: &str| {
            family
                .get_or_create(&RestLabels {
                    method: m.into(),
                    code: c.into(),
                })
                .get()
        };
        assert_eq!(n("GET", "200"), 2);
        assert_eq!(n("PATCH", "409"), 1);
    }
}

/// A tower layer for the kube client that sends the caller's trace context as W3C
/// `traceparent` with every request, so the API server's request span joins the controller's
/// trace. kube's client buffers requests, but tower's buffer re-enters the caller's span around
/// the inner call, so the current span here is the caller's.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner }
    }
}

#[derive(Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Trace<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        rdd_process::telemetry::inject(req.headers_mut());
        self.inner.call(req)
    }
}
