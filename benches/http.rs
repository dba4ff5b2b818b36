//! The per-request cost of `ctx::http`'s layers (benchmark 9 of BENCHMARKS.md): the same
//! handler served with and without the layer, the request built and its response body read to
//! the end inside the timed loop on both sides, so the difference is what the layer adds.
//!
//! - `ServerLayer`, a request without `grpc-timeout`: one `with_cancel` child, inserted into the
//!   request's extensions, cancelled when the body ends.
//! - `ServerLayer`, a request with `grpc-timeout: 200m`: the header parsed, a deadline child
//!   (a timer entry, released when the body ends).
//! - `ClientLayer`, a request carrying a context with a deadline: `grpc-timeout` written and the
//!   call raced against the context. Its baseline is the same request (with the context in its
//!   extensions) sent without the layer.
//!
//! The two `floor_` rows are the request context alone (a `with_cancel` or a 200 ms
//! `with_timeout` child of the same root, created, cancelled and dropped): what the layer cannot
//! do without.
//!
//! No network and no runtime: the handler answers at once (see `common/requests.rs`), so the
//! figures are the layers' own cost, not hyper's. The allocations are counted by
//! `benches/alloc.rs` (with `--features http`).

mod common;
#[path = "common/requests.rs"]
mod requests;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ctx::Context;
use ctx::http::{ClientLayer, ServerLayer};
use http::{HeaderValue, Request};
use tower::Layer;

fn with_timeout_header() -> Request<()> {
    let mut request = Request::new(());
    request.headers_mut().insert("grpc-timeout", HeaderValue::from_static("200m"));
    request
}

fn bench_server(c: &mut Criterion) {
    let (root, _shutdown) = Context::background().with_cancel();
    let mut bare = requests::handler();
    let mut layered = ServerLayer::new(&root).layer(requests::handler());

    let mut group = c.benchmark_group("http_server_request");
    group.bench_function("without_layer", |b| {
        b.iter(|| requests::serve(&mut bare, Request::new(())))
    });
    group.bench_function("server_layer", |b| {
        b.iter(|| requests::serve(&mut layered, Request::new(())))
    });
    group.bench_function("without_layer_grpc_timeout", |b| {
        b.iter(|| requests::serve(&mut bare, with_timeout_header()))
    });
    group.bench_function("server_layer_grpc_timeout", |b| {
        b.iter(|| requests::serve(&mut layered, with_timeout_header()))
    });
    // What ctx-core itself charges for the request context, in the same harness: the share of
    // the layer's cost that is the context's own.
    group.bench_function("floor_with_cancel_child", |b| {
        b.iter(|| {
            let (ctx, handle) = black_box(&root).with_cancel();
            handle.cancel();
            drop(black_box(ctx));
        })
    });
    group.bench_function("floor_with_deadline_child", |b| {
        b.iter(|| {
            let (ctx, handle) = black_box(&root).with_timeout(Duration::from_millis(200));
            handle.cancel();
            drop(black_box(ctx));
        })
    });
    group.finish();
}

fn bench_client(c: &mut Criterion) {
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_secs(3600));
    let request = || {
        let mut request = Request::new(());
        request.extensions_mut().insert(ctx.clone());
        request
    };
    let mut bare = requests::handler();
    let mut layered = ClientLayer::new().layer(requests::handler());

    let mut group = c.benchmark_group("http_client_request");
    group.bench_function("without_layer", |b| b.iter(|| requests::serve(&mut bare, request())));
    group.bench_function("client_layer", |b| b.iter(|| requests::serve(&mut layered, request())));
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_server, bench_client
}
criterion_main!(benches);
