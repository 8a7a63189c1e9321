//! What handlers return, and how it becomes a reply.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use ts_rs::TS;

use crate::error::{ErrorCode, ReplyError};

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
