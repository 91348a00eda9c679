//! `google.protobuf.Any` as GoBGP uses it: every NLRI, attribute, RD and community of its API
//! is a message packed with its type URL. Pure.

use gobgp_api::prost::{Message, Name};
use gobgp_api::prost_types::Any;

/// The domain Go's `anypb.New` writes, so that our paths read like the CLI's.
const TYPE_DOMAIN: &str = "type.googleapis.com/";

/// Packs `message` under `type.googleapis.com/apipb.<Name>`.
pub(super) fn pack<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: format!("{TYPE_DOMAIN}{}", M::full_name()),
        value: message.encode_to_vec(),
    }
}

/// The full name of the packed message: what follows the URL's last `/` (the domain is
/// free-form, RFC-less; Go resolves by this name too).
pub(super) fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or_default()
}

/// Whether `any` holds an `M`.
pub(super) fn is<M: Name>(any: &Any) -> bool {
    type_name(any) == M::full_name()
}

/// Unpacks `any` as an `M`: `None` if it holds another message, `Some(Err)` if its bytes do not
/// decode.
pub(super) fn unpack<M: Message + Name + Default>(
    any: &Any,
) -> Option<Result<M, gobgp_api::prost::DecodeError>> {
    is::<M>(any).then(|| M::decode(any.value.as_slice()))
}
