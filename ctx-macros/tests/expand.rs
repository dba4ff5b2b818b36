//! Expansion snapshots: what `#[cancellable]` turns each shape of function into, pretty-printed
//! so a reviewer can read it (`tests/snapshots/expand__*.snap`, each "you write" then "it
//! expands to"). After a deliberate change, regenerate with
//! `INSTA_UPDATE=always cargo test -p ctx-macros --test expand` and review the diff.
//!
//! A proc-macro crate exports nothing but its macros, so its modules are compiled in here
//! directly; `proc_macro2` runs outside the compiler.

#![allow(missing_docs, dead_code)]

#[path = "../src/args.rs"]
mod args;
#[path = "../src/context.rs"]
mod context;
#[path = "../src/expand.rs"]
mod expand;
#[path = "../src/markers.rs"]
mod markers;
#[path = "../src/select.rs"]
mod select;
#[path = "../src/visit.rs"]
mod visit;
#[path = "../src/wrappers.rs"]
mod wrappers;

use proc_macro2::TokenStream;
use quote::ToTokens as _;

/// Runs the macro on `source` (a function carrying `#[cancellable(..)]`), and returns the
/// source and the expansion, both pretty-printed.
fn you_write_it_expands_to(source: TokenStream) -> String {
    let file: syn::File = syn::parse2(source).expect("the snapshot source parses");
    let mut item = file.items.into_iter().next().expect("one item");
    let written = prettyplease::unparse(&syn::File {
        shebang: None,
        frontmatter: None,
        attrs: Vec::new(),
        items: vec![item.clone()],
    });

    let attrs = match &mut item {
        syn::Item::Fn(func) => &mut func.attrs,
        syn::Item::Struct(item) => &mut item.attrs,
        _ => panic!("snapshots are functions (or a struct, for the error case)"),
    };
    let at =
        attrs.iter().position(|attr| attr.path().is_ident("cancellable")).expect("#[cancellable]");
    let args = match attrs.remove(at).meta {
        syn::Meta::List(list) => list.tokens,
        _ => TokenStream::new(),
    };

    let output = expand::cancellable(args, item.into_token_stream());
    let expanded: syn::File = syn::parse2(output.clone())
        .unwrap_or_else(|err| panic!("the expansion does not parse ({err}):\n{output}"));
    let expanded = prettyplease::unparse(&expanded);
    format!("// you write\n{written}\n// it expands to\n{expanded}")
}

macro_rules! snapshot {
    ($name:ident: $($source:tt)*) => {
        #[test]
        fn $name() {
            insta::with_settings!({ omit_expression => true }, {
                insta::assert_snapshot!(you_write_it_expands_to(quote::quote!($($source)*)));
            });
        }
    };
}

snapshot! { flagship:
    #[cancellable(on_cancel = println!("{name} got the cancellation signal, stopping"))]
    async fn task(ctx: Context, name: &str) {
        loop {
            println!("{name} is working");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

snapshot! { sync_loops:
    #[cancellable]
    fn drain(ctx: &Context, queue: &mut Vec<u32>, rows: &[Vec<u32>]) -> Option<u32> {
        let mut sum = 0;
        while let Some(job) = queue.pop() {
            sum += job;
        }
        'rows: for row in rows {
            for cell in row {
                if *cell == 0 {
                    continue 'rows;
                }
                sum += cell;
            }
        }
        let first_big = loop {
            if sum > 10 {
                break sum;
            }
            sum += 1;
        };
        Some(first_big)
    }
}

snapshot! { result_default_value:
    #[cancellable]
    fn parse_all(ctx: &Context, lines: &[&str]) -> Result<Vec<u32>, std::io::Error> {
        let mut out = Vec::new();
        for line in lines {
            out.push(line.len() as u32);
        }
        Ok(out)
    }
}

snapshot! { await_in_loop_condition:
    #[cancellable]
    async fn consume(ctx: &Context, rx: &mut Receiver<u32>) -> Result<u32, Error> {
        let mut total = 0;
        while let Some(n) = rx.recv().await {
            total += n;
        }
        Ok(total)
    }
}

snapshot! { method_with_explicit_context:
    #[cancellable(ctx = self.ctx, on_cancel = self.stopped += 1)]
    fn poll(&mut self) {
        loop {
            self.ticks += 1;
        }
    }
}

snapshot! { loops_only:
    #[cancellable(loops_only)]
    async fn flush(ctx: Context, file: &mut File, chunks: Vec<Vec<u8>>) -> io::Result<()> {
        for chunk in chunks {
            file.write_all(&chunk).await?;
        }
        Ok(())
    }
}

snapshot! { not_cancellable_marker:
    #[cancellable]
    async fn commit(ctx: Context, tx: Transaction, rows: Vec<Row>) -> Result<(), Error> {
        for row in rows {
            tx.insert(row).await?;
        }
        #[not_cancellable]
        tx.commit().await?;
        Ok(())
    }
}

snapshot! { where_it_stops:
    #[cancellable]
    async fn stops(ctx: Context, items: Vec<u32>) {
        let doubled: Vec<u32> = items.iter().map(|x| {
            let mut y = *x;
            while y < 100 { y *= 2; }
            y
        }).collect();
        let later = async move {
            loop { tokio::task::yield_now().await; }
        };
        fn helper() {
            loop {}
        }
        tokio::select! {
            _ = later => {}
        }
        let _ = vec![doubled];
    }
}

// What `#[async_trait]` (0.1.92) makes of `#[cancellable] async fn serve(&self, ctx: Context)
// -> Option<u32> { loop { self.tick().await; } }` before `#[cancellable]` runs.
snapshot! { async_trait_shape:
    #[cancellable]
    fn serve<'life0, 'async_trait>(
        &'life0 self,
        ctx: Context,
    ) -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = Option<u32>> + ::core::marker::Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            if let ::core::option::Option::Some(__ret) = ::core::option::Option::None::<Option<u32>> {
                #[allow(unreachable_code)]
                return __ret;
            }
            let __self = self;
            let ctx = ctx;
            let __ret: Option<u32> = {
                loop {
                    __self.tick().await;
                }
            };
            #[allow(unreachable_code)]
            __ret
        })
    }
}

// The same for `#[cancellable(ctx = self.ctx, on_cancel = self.stopped)] async fn
// drain(&mut self) -> u32`: the context is taken before `self` moves into the future, and
// `on_cancel` follows `self` into `__self`.
snapshot! { async_trait_self:
    #[cancellable(ctx = self.ctx, on_cancel = self.stopped)]
    fn drain<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> ::core::pin::Pin<Box<dyn ::core::future::Future<Output = u32> + ::core::marker::Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            if let ::core::option::Option::Some(__ret) = ::core::option::Option::None::<u32> {
                #[allow(unreachable_code)]
                return __ret;
            }
            let mut __self = self;
            let __ret: u32 = {
                __self.queue.clear();
                0
            };
            #[allow(unreachable_code)]
            __ret
        })
    }
}

snapshot! { generics_and_renamed_crate:
    #[cancellable(crate = my_ctx, on_cancel = Vec::new().into_iter())]
    pub fn evens<'a, T, I>(ctx: &'a mut my_ctx::Context, items: I) -> impl Iterator<Item = T> + 'a
    where
        T: Copy + 'a,
        I: IntoIterator<Item = (bool, T)>,
    {
        let mut kept = Vec::new();
        for (even, item) in items {
            if even {
                kept.push(item);
            }
        }
        kept.into_iter()
    }
}

snapshot! { error_keeps_the_function:
    #[cancellable(on_cancle = 0)]
    fn typo(ctx: &Context) -> u32 {
        #[not_cancellable]
        let x = 1;
        x
    }
}

snapshot! { select_raced_handlers_kept:
    #[cancellable]
    async fn serve(ctx: &Context, rx: &mut Receiver<u32>) -> Result<u32, Error> {
        let mut total = 0;
        loop {
            tokio::select! {
                biased;
                Some(mut n) = rx.recv(), if total < 100 => {
                    n += 1;
                    total += n;
                }
                _ = tick.tick() => continue,
                else => break,
            }
        }
        Ok(total)
    }
}

snapshot! { select_with_a_done_branch_is_left_as_written:
    #[cancellable]
    async fn go_style(ctx: &Context, rx: &mut Receiver<u32>) -> Option<u32> {
        tokio::select! {
            _ = ctx.done() => None,
            n = rx.recv() => n,
        }
    }
}

snapshot! { join_raced_as_a_whole:
    #[cancellable]
    async fn both(ctx: &Context) -> Result<(u32, u32), Error> {
        let pair = tokio::join!(first(), second());
        futures::try_join!(check(pair.0), check(pair.1))
    }
}

snapshot! { blocking_sleep:
    #[cancellable]
    fn nap(ctx: &Context, naps: u32) -> Option<u32> {
        for _ in 0..naps {
            std::thread::sleep(Duration::from_millis(10));
        }
        thread::sleep(Duration::from_millis(10));
        #[not_cancellable]
        sleep(Duration::from_millis(10));
        Some(naps)
    }
}

snapshot! { never_returning:
    #[cancellable(on_cancel = std::process::exit(0))]
    fn serve(ctx: Context) -> ! {
        loop {}
    }
}

snapshot! { impl_trait_inside_a_default_value:
    #[cancellable]
    fn evens(ctx: &Context, up_to: u32) -> Option<impl Iterator<Item = u32>> {
        Some((0..up_to).filter(|n| n % 2 == 0))
    }
}

snapshot! { await_on_a_parenthesized_future:
    #[cancellable]
    async fn parens(ctx: &Context, fut: &mut Fut, boxed: Box<Fut>, c: bool) {
        (&mut *fut).await;
        (*boxed).await;
        (if c { a() } else { b() }).await;
    }
}

// What `#[tokio::main]` (tokio-macros 2.7) makes of `#[tokio::main] #[cancellable] async fn
// run(ctx: &Context) -> Option<u32> { .. }` before `#[cancellable]` runs: the body is found in
// `let body = async { .. }`.
snapshot! { tokio_main_above:
    #[cancellable]
    fn run(ctx: &Context) -> Option<u32> {
        let body = async {
            loop {
                tick().await;
            }
        };
        let body = {
            if false {
                let _: &dyn ::core::future::Future<Output = Option<u32>> = &body;
            }
            body
        };
        #[allow(clippy::expect_used, clippy::diverging_sub_expression, clippy::needless_return)]
        {
            return tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("Failed building the Runtime")
                .block_on(body);
        }
    }
}

// `#[tracing::instrument(err)]` (tracing-attributes 0.1.31) above `#[cancellable]` on a sync fn:
// the body is in an immediately called closure.
snapshot! { instrument_err_above_a_sync_fn:
    #[cancellable]
    fn parse(ctx: &Context, lines: &[&str]) -> Result<u32, Error> {
        let __tracing_attr_span;
        let __tracing_attr_guard;
        if ::tracing::level_enabled!(::tracing::Level::INFO) {
            __tracing_attr_span = ::tracing::span!(::tracing::Level::INFO, "parse");
            __tracing_attr_guard = __tracing_attr_span.enter();
        }
        #[allow(clippy::redundant_closure_call)]
        match (move || {
            let mut n = 0;
            for line in lines {
                n += line.len() as u32;
            }
            Ok(n)
        })() {
            #[allow(clippy::unit_arg)]
            Ok(x) => Ok(x),
            Err(e) => {
                ::tracing::event!(::tracing::Level::ERROR, error = %e);
                Err(e)
            }
        }
    }
}

// `#[tracing::instrument(ret)]` above `#[cancellable]` on an async fn: the body is the innermost
// `async move` block that the instrumented future awaits.
snapshot! { instrument_ret_above_an_async_fn:
    #[cancellable]
    async fn crunch(ctx: &Context) -> Option<u32> {
        let __tracing_attr_span = ::tracing::span!(::tracing::Level::INFO, "crunch");
        let __tracing_instrument_future = async move {
            let x = async move {
                let mut n = 0;
                while n < 10 {
                    n += 1;
                }
                Some(n)
            }
            .await;
            ::tracing::event!(::tracing::Level::INFO, return = ?x);
            x
        };
        if !__tracing_attr_span.is_disabled() {
            ::tracing::Instrument::instrument(__tracing_instrument_future, __tracing_attr_span).await
        } else {
            __tracing_instrument_future.await
        }
    }
}

// A future-returning fn: the context is cloned before the future is made, so the future does
// not borrow the parameter, and `on_cancel` (the future's output) reads the clone.
snapshot! { box_future_with_on_cancel:
    #[cancellable(on_cancel = Err(ctx.err().unwrap()))]
    fn fetch(ctx: &Context, key: u32) -> BoxFuture<'static, Result<u32, Error>> {
        async move {
            sleep(Duration::from_millis(key.into())).await;
            Ok(key)
        }
        .boxed()
    }
}

// `-> Self::Future` does not spell its output: the cancellation value is inferred.
snapshot! { tower_style_self_future:
    #[cancellable(ctx = self.ctx)]
    fn call(&mut self, request: Request) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { inner.handle(request).await })
    }
}
