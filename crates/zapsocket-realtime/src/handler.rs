//! What handlers return, and how it becomes a reply.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use ts_rs::TS;

use crate::binary::Json;
use crate::error::{ErrorCode, ReplyError};

/// What a handler's future resolves to: the reply's data (JSON and byte arrays), or an
/// error reply.
pub(crate) type Reply = Result<Json, ReplyError>;

/// A boxed handler future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a handler may return: `()`, or `Result<T, E>` with `T: Serialize` and
/// `E: Display`. With an `ack` in the request, it becomes the reply: `()` replies `null`,
/// `Ok(t)` replies `t`, `Err(e)` replies error `handler_error` with `e`'s text, or the
/// code and message of `e` itself when `E` is [`ReplyError`].
pub trait HandlerOutput: Send + 'static {
    /// The type of the reply's data, for the TypeScript declarations.
    type Data: TS + 'static;

    /// The reply: its data (JSON, and the byte arrays its placeholders point to), or
    /// the error. Not part of the API: called by the hub.
    #[doc(hidden)]
    fn into_reply(self) -> Result<Json, ReplyError>;
}

impl HandlerOutput for () {
    type Data = ();

    fn into_reply(self) -> Result<Json, ReplyError> {
        Ok(Json::plain("null".into()))
    }
}

impl<T, E> HandlerOutput for Result<T, E>
where
    T: Serialize + TS + Send + 'static,
    E: Display + Send + 'static,
{
    type Data = T;

    fn into_reply(self) -> Result<Json, ReplyError> {
        match self {
            Ok(value) => crate::binary::to_json(&value)
                .map_err(|e| ReplyError::handler_error(format!("the reply could not be serialized: {e}"))),
            Err(error) => match (&error as &dyn Any).downcast_ref::<ReplyError>() {
                Some(reply) => Err(reply.clone()),
                None => Err(ReplyError::new(ErrorCode::HANDLER_ERROR, error.to_string())),
            },
        }
    }
}
