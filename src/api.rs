//! Facts of the DescribeSessions API that the exporter and the simulator
//! share: the two session lists and the enumerations of the service model.

use serde::{Deserialize, Serialize};

/// Which list a session is in: `Active` or `History`, as `State` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SessionState {
    Active,
    History,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Active => "Active",
            SessionState::History => "History",
        }
    }

    /// The list a session with this status belongs to. The service lists
    /// Connected, Connecting and Disconnected sessions as Active; every other
    /// status has ended.
    pub fn of_status(status: Option<&str>) -> SessionState {
        match status {
            Some("Connected" | "Connecting" | "Disconnected") => SessionState::Active,
            _ => SessionState::History,
        }
    }
}

/// Every `Status` value the service model defines.
pub const STATUSES: [&str; 6] = [
    "Connected",
    "Connecting",
    "Disconnected",
    "Terminated",
    "Terminating",
    "Failed",
];

/// Every `AccessType` value the service model defines.
pub const ACCESS_TYPES: [&str; 2] = ["Standard", "JustInTime"];

/// The most sessions one DescribeSessions page holds: `MaxResults`' maximum
/// in the service model.
pub const MAX_RESULTS: u16 = 200;
