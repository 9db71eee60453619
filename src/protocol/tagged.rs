//! Decoding of the feed's internally tagged objects (`{"type": "…", …}`) without buffering.
//!
//! serde's derived decoder for `#[serde(tag = "type")]` enums first copies every object into
//! an intermediate tree (it cannot know the variant before it has seen `type`), then decodes
//! the variant from that copy; a delta of 2 000 events is copied twice over. Our encoder always
//! writes `type` first, so [`tagged_deserialize!`] reads the first key: when it is `type`, the
//! rest of the object decodes straight into the variant's struct. Objects from other encoders
//! with `type` elsewhere still decode (through a buffered copy), to the same values.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, Visitor};

/// The first key of an object: the tag, or another key (kept for the buffered path).
pub(crate) enum Key {
    Tag,
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(if v == "type" {
                    Key::Tag
                } else {
                    Key::Other(v.to_owned())
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A tag value, borrowed from the input when it can be.
pub(crate) struct Tag<'de>(pub Cow<'de, str>);

impl<'de> Deserialize<'de> for Tag<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tag<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a type name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Tag<'de>, E> {
                Ok(Tag(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Tag<'de>, E> {
                Ok(Tag(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The rest of an object whose first key was not `type`, buffered: its tag and the object.
pub(crate) fn buffered<'de, A: de::MapAccess<'de>>(
    first: String,
    mut map: A,
) -> Result<(String, serde_json::Value), A::Error> {
    let mut obj = serde_json::Map::new();
    obj.insert(first, map.next_value::<serde_json::Value>()?);
    while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
        obj.insert(k, v);
    }
    let tag = obj
        .get("type")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| de::Error::missing_field("type"))?;
    Ok((tag, serde_json::Value::Object(obj)))
}

/// `Deserialize` for an enum of newtype variants tagged by `type`: the listed tags map to
/// variants; any other tag becomes `unknown` (the rest of the object skipped) when given, an
/// "unknown variant" error otherwise. The tags must match the enum's serde renames (the
/// protocol tests round-trip every variant through both).
macro_rules! tagged_deserialize {
    ($ty:ident, $expecting:literal, { $($tag:literal => $variant:ident),* $(,)? } $(, unknown => $unknown:ident)?) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const TAGS: &[&str] = &[$($tag),*];
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$ty, A::Error> {
                        use serde::de::Error as _;
                        match map.next_key::<$crate::protocol::tagged::Key>()? {
                            Some($crate::protocol::tagged::Key::Tag) => {
                                let tag: $crate::protocol::tagged::Tag = map.next_value()?;
                                let rest = serde::de::value::MapAccessDeserializer::new(map);
                                match &*tag.0 {
                                    $($tag => serde::Deserialize::deserialize(rest).map($ty::$variant),)*
                                    other => {
                                        $(
                                            let _ = other;
                                            let _: serde::de::IgnoredAny = serde::Deserialize::deserialize(rest)?;
                                            return Ok($ty::$unknown);
                                        )?
                                        #[allow(unreachable_code)]
                                        Err(A::Error::unknown_variant(other, TAGS))
                                    }
                                }
                            }
                            Some($crate::protocol::tagged::Key::Other(first)) => {
                                let (tag, obj) = $crate::protocol::tagged::buffered(first, map)?;
                                match tag.as_str() {
                                    $($tag => serde::Deserialize::deserialize(obj)
                                        .map($ty::$variant)
                                        .map_err(A::Error::custom),)*
                                    other => {
                                        $(
                                            let _ = other;
                                            return Ok($ty::$unknown);
                                        )?
                                        #[allow(unreachable_code)]
                                        Err(A::Error::unknown_variant(other, TAGS))
                                    }
                                }
                            }
                            None => Err(A::Error::missing_field("type")),
                        }
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

pub(crate) use tagged_deserialize;
