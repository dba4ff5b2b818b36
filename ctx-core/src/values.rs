//! Request-scoped values: [`Context::with_value`] and [`Context::value`], keyed by type.

use std::any::{Any, type_name};
use std::ops::ControlFlow;

use crate::Context;
use crate::tree::{Kind, KindRef, Layer, Node};

/// The value of a `with_value` layer, stored inline in its box (one allocation besides the node).
struct ValueLayer<T>(T);

impl<T: Any + Send + Sync> Layer for ValueLayer<T> {
    fn kind(&self) -> KindRef<'_> {
        KindRef::Value(&self.0, type_name::<T>())
    }
}

impl Context {
    /// Derives a context that carries `value`, found again with [`value::<T>()`](Context::value).
    ///
    /// Values are keyed by their type: define a newtype per key (`struct RequestId(u64)`) rather
    /// than storing bare `u64`s or `String`s that other code might shadow. A value hides any
    /// outer value of the same type. The new context is done whenever this one is.
    ///
    /// Use values for request-scoped data that crosses API boundaries (ids, auth, tracing), not
    /// to pass optional parameters to functions.
    ///
    /// ```
    /// #[derive(Debug, PartialEq)]
    /// struct RequestId(u64);
    ///
    /// let ctx = ctx::Context::background().with_value(RequestId(42));
    /// assert_eq!(ctx.value::<RequestId>(), Some(&RequestId(42)));
    /// assert_eq!(ctx.value::<String>(), None);
    /// ```
    pub fn with_value<T>(&self, value: T) -> Context
    where
        T: Any + Send + Sync,
    {
        Context::from_node(Node::derive(self, Kind::Value(Box::new(ValueLayer(value)))))
    }

    /// The innermost value of type `T` on the path to the root, if any. For a
    /// [merged](Context::merge) context, `self`'s chain is searched before the other parent's.
    ///
    /// The walk is a loop, not recursion: deep chains cannot overflow the stack.
    ///
    /// ```
    /// let outer = ctx::Context::background().with_value("outer");
    /// let inner = outer.with_value("inner");
    /// assert_eq!(inner.value::<&str>(), Some(&"inner"));
    /// assert_eq!(outer.value::<&str>(), Some(&"outer"));
    /// ```
    pub fn value<T>(&self) -> Option<&T>
    where
        T: Any + Send + Sync,
    {
        let mut found = None;
        self.walk_up(|node| match node.kind() {
            KindRef::Value(value, _) => match value.downcast_ref::<T>() {
                Some(value) => {
                    found = Some(value);
                    ControlFlow::Break(())
                }
                None => ControlFlow::Continue(true),
            },
            _ => ControlFlow::Continue(true),
        });
        found
    }
}
