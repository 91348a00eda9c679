//! Reading a plugin's configuration: the `config` table of its `[[plugin]]` section, which the
//! host hands over as JSON text. [`from_config`] deserializes it with errors that name the
//! field; [`PerVni`] is the "one value, or one per VNI" shape most policies want.

use std::collections::HashMap;

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::MacAddr;

/// The largest VNI: VNIs are 24 bits (RFC 7348 §5).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// Deserializes a plugin's configuration into `T` (a `serde::Deserialize` type, typically with
/// `#[serde(deny_unknown_fields)]`), with errors that name the field:
/// `config.rules[1].dst_port: invalid value: integer `70000`, expected u16`.
pub fn from_config<T: DeserializeOwned>(config: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!("config: {inner}")
        } else {
            format!("config.{path}: {inner}")
        }
    })
}

/// The host passes the `config` table as JSON text; none at all may come as an empty string.
#[doc(hidden)]
pub fn parse_config(config: &str) -> Result<Value, String> {
    if config.trim().is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_str(config).map_err(|e| format!("config is not valid JSON: {e}"))
}

/// A setting given once for every VNI, or per VNI:
///
/// ```toml
/// max_macs = 1000                              # every VNI
/// max_macs = { default = 1000, 5001 = 10 }     # VNI 5001: 10; the others: 1000
/// max_macs = { 5001 = 10 }                     # only VNI 5001 is limited
/// ```
///
/// A value that is itself a table (a `T` deserialized from a map) can only be given per VNI.
#[derive(Debug, Clone, PartialEq)]
pub struct PerVni<T> {
    default: Option<T>,
    by_vni: HashMap<u32, T>,
}

impl<T> Default for PerVni<T> {
    fn default() -> Self {
        PerVni {
            default: None,
            by_vni: HashMap::new(),
        }
    }
}

impl<T> PerVni<T> {
    /// The same value for every VNI.
    pub fn all(value: T) -> Self {
        PerVni {
            default: Some(value),
            by_vni: HashMap::new(),
        }
    }

    /// The value for `vni`: its own, else the default, else `None`.
    pub fn get(&self, vni: u32) -> Option<&T> {
        self.by_vni.get(&vni).or(self.default.as_ref())
    }

    /// Nothing is set, for any VNI.
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.by_vni.is_empty()
    }

    /// Every value given, the default first (in no particular order after it).
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.default.iter().chain(self.by_vni.values())
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for PerVni<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let Value::Object(map) = value else {
            let value = T::deserialize(value).map_err(de::Error::custom)?;
            return Ok(PerVni::all(value));
        };
        let mut out = PerVni::default();
        for (key, value) in map {
            let parsed =
                T::deserialize(value).map_err(|e| de::Error::custom(format!("{key}: {e}")))?;
            if key == "default" {
                out.default = Some(parsed);
                continue;
            }
            let vni = key
                .parse::<u32>()
                .ok()
                .filter(|&vni| vni <= MAX_VNI)
                .ok_or_else(|| {
                    de::Error::custom(format!(
                        "`{key}` is neither `default` nor a VNI (0-{MAX_VNI})"
                    ))
                })?;
            out.by_vni.insert(vni, parsed);
        }
        Ok(out)
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// From its text form, `02:00:00:00:00:01`.
impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(|_| {
            de::Error::custom(format!(
                "`{s}` is not a MAC address (expected six hex octets such as 02:00:00:00:00:01)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_parses_to_json() {
        assert_eq!(parse_config(" ").unwrap(), json!({}));
        assert_eq!(parse_config(r#"{"a":1}"#).unwrap(), json!({"a": 1}));
        let err = parse_config("{").unwrap_err();
        assert!(err.starts_with("config is not valid JSON"), "{err}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        port: u16,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(default)]
        rules: Vec<Rule>,
        #[serde(default)]
        max: PerVni<u32>,
        #[serde(default)]
        macs: PerVni<Vec<MacAddr>>,
    }

    #[test]
    fn errors_name_the_field() {
        let err =
            from_config::<Config>(&json!({"rules": [{"port": 1}, {"port": 70000}]})).unwrap_err();
        assert!(
            err.starts_with("config.rules[1].port: invalid value"),
            "{err}"
        );
        let err = from_config::<Config>(&json!({"rule": []})).unwrap_err();
        assert!(
            err.starts_with("config.rule: unknown field `rule`"),
            "{err}"
        );
        let err = from_config::<Config>(&json!(5)).unwrap_err();
        assert!(err.starts_with("config: invalid type"), "{err}");
    }

    #[test]
    fn per_vni_takes_one_value_or_a_table() {
        let c: Config = from_config(&json!({"rules": [{"port": 1}], "max": 7})).unwrap();
        assert_eq!(c.rules[0].port, 1);
        assert_eq!(c.max.get(1), Some(&7));
        assert!(c.macs.is_empty());
        let c: Config = from_config(&json!({
            "max": {"default": 7, "5001": 2},
            "macs": {"10": ["02:00:00:00:00:01"]},
        }))
        .unwrap();
        assert_eq!((c.max.get(5001), c.max.get(5002)), (Some(&2), Some(&7)));
        assert_eq!(c.macs.get(10), Some(&vec![MacAddr([2, 0, 0, 0, 0, 1])]));
        assert_eq!(c.macs.get(11), None);
        assert_eq!(c.max.values().count(), 2);
    }

    #[test]
    fn per_vni_errors_say_which_key() {
        let err = from_config::<Config>(&json!({"max": {"vni5001": 2}})).unwrap_err();
        assert!(
            err.contains("config.max: `vni5001` is neither `default` nor a VNI"),
            "{err}"
        );
        let err = from_config::<Config>(&json!({"max": {"16777216": 2}})).unwrap_err();
        assert!(
            err.contains("neither `default` nor a VNI (0-16777215)"),
            "{err}"
        );
        let err = from_config::<Config>(&json!({"max": {"5001": "x"}})).unwrap_err();
        assert!(
            err.starts_with("config.max: 5001: invalid type: string"),
            "{err}"
        );
        let err = from_config::<Config>(&json!({"macs": ["02:00:00:00:00:0g"]})).unwrap_err();
        assert!(
            err.contains("`02:00:00:00:00:0g` is not a MAC address"),
            "{err}"
        );
    }
}
