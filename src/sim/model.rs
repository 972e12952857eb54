//! The session as the DescribeSessions API shapes it on the wire, which is
//! also the shape of the simulator's JSON Lines data files.
//!
//! Timestamps live in memory as epoch milliseconds (the service's precision)
//! and go on the wire as epoch seconds with a millisecond fraction. When a
//! data file is read, a timestamp may also be an ISO-8601 string, which is
//! how the AWS CLI prints `aws ssm describe-sessions` output.

use serde::{Deserialize, Serialize};

use ssm_audit::api::SessionState;

/// `OutputUrl` of a session (reserved by the service, usually empty strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct OutputUrl {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "S3OutputUrl"
    )]
    pub s3_output_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch_output_url: Option<String>,
}

/// One session, field for field as the service model defines `Session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SimSession {
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Required here although optional in the model: the simulator orders and
    /// filters by it, and the service always sets it.
    #[serde(with = "wire_time")]
    pub start_date: i64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "wire_time::option"
    )]
    pub end_date: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_url: Option<OutputUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_type: Option<String>,
}

impl SimSession {
    pub fn state(&self) -> SessionState {
        SessionState::of_status(self.status.as_deref())
    }
}

/// Epoch milliseconds in memory; epoch seconds with a millisecond fraction on
/// the wire; an epoch number or an RFC 3339 string when read.
pub mod wire_time {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(millis: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(*millis as f64 / 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        deserializer.deserialize_any(TimeVisitor)
    }

    struct TimeVisitor;

    impl de::Visitor<'_> for TimeVisitor {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("epoch seconds or an RFC 3339 timestamp")
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            Ok((v * 1000.0).round() as i64)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v * 1000)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            Ok(v as i64 * 1000)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.timestamp_millis())
                .map_err(|e| E::custom(format!("timestamp {v:?} is not RFC 3339: {e}")))
        }
    }

    pub mod option {
        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(millis) => super::serialize(millis, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_time_round_trips_milliseconds() {
        let json = r#"{"SessionId":"a-1","StartDate":1550676938.352,"EndDate":"2019-02-20T15:35:38.352Z"}"#;
        let s: SimSession = serde_json::from_str(json).expect("parses");
        assert_eq!(s.start_date, 1_550_676_938_352);
        assert_eq!(s.end_date, Some(1_550_676_938_352));
        let out = serde_json::to_string(&s).expect("serialises");
        assert!(out.contains("\"StartDate\":1550676938.352"), "{out}");
    }

    #[test]
    fn state_follows_status() {
        assert_eq!(
            SessionState::of_status(Some("Disconnected")),
            SessionState::Active
        );
        assert_eq!(
            SessionState::of_status(Some("Failed")),
            SessionState::History
        );
        assert_eq!(SessionState::of_status(None), SessionState::History);
    }
}
