//! Data attached to a connection before its 101 answer: a map keyed by type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;

/// Values of any type attached to a connection, at most one per type: what the
/// [`ServerBuilder::authorize`](crate::ServerBuilder::authorize) hook learned about the
/// client (a user id, a session), read later with [`WebSocket::data`](crate::WebSocket::data).
///
/// ```
/// let mut extensions = zapsocket::Extensions::new();
/// extensions.insert(42u64);
/// assert_eq!(extensions.get::<u64>(), Some(&42));
/// assert_eq!(extensions.get::<String>(), None);
/// ```
#[derive(Default)]
pub struct Extensions {
    map: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Extensions {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `value`, returning the value of the same type it replaces.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        let old = self.map.insert(TypeId::of::<T>(), Box::new(value))?;
        old.downcast().ok().map(|boxed| *boxed)
    }

    /// The value of type `T`, if one was stored.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.map.get(&TypeId::of::<T>())?.downcast_ref()
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Send + Sync + 'static>(&mut self) -> Option<T> {
        let old = self.map.remove(&TypeId::of::<T>())?;
        old.downcast().ok().map(|boxed| *boxed)
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions").field("len", &self.map.len()).finish()
    }
}

/// The data attached by the server's `authorize` hook, on every handle.
macro_rules! data_accessors {
    ($($handle:ty),*) => {$(
        impl $handle {
            /// The value of type `T` that the server's
            /// [`authorize`](crate::ServerBuilder::authorize) hook attached (a user id, a
            /// session), if any.
            pub fn data<T: Send + Sync + 'static>(&self) -> Option<&T> {
                self.info().extensions.get()
            }

            /// Everything the server's `authorize` hook attached.
            pub fn extensions(&self) -> &Extensions {
                &self.info().extensions
            }
        }
    )*};
}

data_accessors!(crate::WebSocket, crate::WebSocketSender, crate::WebSocketReceiver);
