//! Typed handlers and procedures, erased so the hub can store them by name.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;
use ts_rs::TS;

use crate::error::{ErrorCode, ReplyError};
use crate::socket::Socket;

/// What a handler's future resolves to: the reply's JSON, or an error reply.
pub(crate) type Reply = Result<String, ReplyError>;

/// A boxed handler future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a handler may return: `()`, or `Result<T, E>` with `T: Serialize` and
/// `E: Display`. With an `ack` in the request, it becomes the reply: `()` replies `null`,
/// `Ok(t)` replies `t`, `Err(e)` replies error `handler_error` with `e`'s text, or the
/// code and message of `e` itself when `E` is [`ReplyError`].
pub trait HandlerOutput: Send + 'static {
    /// The type of the reply's data, for the TypeScript declarations.
    type Data: TS + 'static;

    /// The reply: its data as JSON, or the error.
    fn into_reply(self) -> Result<String, ReplyError>;
}

impl HandlerOutput for () {
    type Data = ();

    fn into_reply(self) -> Result<String, ReplyError> {
        Ok("null".into())
    }
}

impl<T, E> HandlerOutput for Result<T, E>
where
    T: Serialize + TS + Send + 'static,
    E: Display + Send + 'static,
{
    type Data = T;

    fn into_reply(self) -> Result<String, ReplyError> {
        match self {
            Ok(value) => serde_json::to_string(&value)
                .map_err(|e| ReplyError::handler_error(format!("the reply could not be serialized: {e}"))),
            Err(error) => match (&error as &dyn Any).downcast_ref::<ReplyError>() {
                Some(reply) => Err(reply.clone()),
                None => Err(ReplyError::new(ErrorCode::HANDLER_ERROR, error.to_string())),
            },
        }
    }
}

/// A handler with its input type erased: reads `data` (or refuses it with `bad_payload`)
/// and starts the handler.
pub(crate) trait Erased: Send + Sync + 'static {
    fn start(&self, socket: Socket, data: &str) -> Result<BoxFuture<Reply>, ReplyError>;
}

/// A typed function as an [`Erased`] handler.
pub(crate) struct Typed<F, T, Fut, O> {
    f: F,
    _types: PhantomData<fn(T) -> (Fut, O)>,
}

impl<F, T, Fut, O> Typed<F, T, Fut, O> {
    pub(crate) fn new(f: F) -> Self {
        Typed { f, _types: PhantomData }
    }
}

impl<F, T, Fut, O> Erased for Typed<F, T, Fut, O>
where
    F: Fn(Socket, T) -> Fut + Send + Sync + 'static,
    T: DeserializeOwned + 'static,
    Fut: Future<Output = O> + Send + 'static,
    O: HandlerOutput,
{
    fn start(&self, socket: Socket, data: &str) -> Result<BoxFuture<Reply>, ReplyError> {
        let input: T = serde_json::from_str(data).map_err(|e| ReplyError::bad_payload(e.to_string()))?;
        let fut = (self.f)(socket, input);
        Ok(Box::pin(async move { fut.await.into_reply() }))
    }
}

/// A middleware run when a socket connects: may set the socket's data, or refuse.
pub(crate) type ConnectMiddleware = Box<dyn Fn(Socket) -> BoxFuture<Result<(), ReplyError>> + Send + Sync>;

/// A middleware run before every event, call and room operation: sees the socket, the
/// name (`$join` for joins, with the room in the data) and the raw data.
pub(crate) type EventMiddleware = Box<dyn Fn(&Socket, &str, &str) -> Result<(), ReplyError> + Send + Sync>;
