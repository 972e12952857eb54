//! Other accounts the simulator serves (`--accounts-file`): each with its own
//! data per region, the role it trusts (and the external id it requires),
//! and regions it has not enabled. `sts:AssumeRole` hands out credentials
//! bound to the target account (the account id is in the access key id);
//! every later call is answered from the data of the account and region its
//! signature names, so a caller that mixes credentials up gets another
//! account's data, or an error, never silently the right one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::RwLock;

use serde::Deserialize;

use super::store::Store;

/// The file `--accounts-file` names.
#[derive(Debug, Deserialize)]
pub struct TenantsFile {
    /// The role every account trusts unless it says otherwise.
    pub role_name: String,
    /// The external id every role requires, if any.
    #[serde(default)]
    pub external_id: Option<String>,
    pub accounts: Vec<TenantSpec>,
    /// Organizational units: id and parent (`r-root` or another OU).
    #[serde(default)]
    pub ous: Vec<OuSpec>,
}

#[derive(Debug, Deserialize)]
pub struct OuSpec {
    pub id: String,
    pub parent: String,
}

#[derive(Debug, Deserialize)]
pub struct TenantSpec {
    pub account_id: String,
    #[serde(default)]
    pub role_name: Option<String>,
    #[serde(default)]
    pub disabled_regions: Vec<String>,
    /// Regions enabled besides those with data (for account:ListRegions).
    #[serde(default)]
    pub enabled_regions: Vec<String>,
    /// `ACTIVE` (default) or `SUSPENDED`, as organizations:ListAccounts says.
    #[serde(default)]
    pub status: Option<String>,
    /// The OU (or root) the account is in; default `r-root`.
    #[serde(default)]
    pub parent: Option<String>,
    /// Region to data; a region not listed (nor disabled) has no sessions.
    #[serde(default)]
    pub regions: BTreeMap<String, RegionData>,
}

/// A region's sessions: a JSON Lines file (`ssm-sim generate`), or
/// generated here.
#[derive(Debug, Deserialize)]
pub struct RegionData {
    #[serde(default)]
    pub data: Option<PathBuf>,
    #[serde(default)]
    pub sessions: usize,
    #[serde(default)]
    pub seed: u64,
}

/// One account.
#[derive(Debug)]
pub struct Tenant {
    pub role_name: String,
    pub disabled_regions: BTreeSet<String>,
    pub enabled_regions: BTreeSet<String>,
    pub status: String,
    pub parent: String,
    pub stores: BTreeMap<String, RwLock<Store>>,
}

/// Every account of the file.
#[derive(Debug, Default)]
pub struct Tenants {
    pub external_id: Option<String>,
    /// OU id to its parent.
    pub ous: BTreeMap<String, String>,
    pub accounts: BTreeMap<String, Tenant>,
    /// Calls per `account/region`, for tests that check which pairs a
    /// rerun touched.
    pub calls: std::sync::Mutex<BTreeMap<String, u64>>,
}

/// Where a signed request says it is from and for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// None: the simulator's own account (long-lived test keys).
    pub account_id: Option<String>,
    pub region: Option<String>,
}

/// Reads the SigV4 `Authorization` header: the access key id (an assumed
/// role's, `ASIA` and the account id, or any other) and the region of its
/// credential scope.
pub fn caller_of(authorization: Option<&str>) -> Caller {
    let credential = authorization
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split([',', ' ']).next())
        .unwrap_or("");
    let mut parts = credential.split('/');
    let key = parts.next().unwrap_or("");
    let region = parts.nth(1).map(str::to_owned);
    let account_id = key
        .strip_prefix("ASIA")
        .and_then(|rest| rest.get(..12))
        .filter(|id| id.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned);
    Caller { account_id, region }
}

impl Tenants {
    /// Loads the file, generating data relative to `now_ms`.
    pub fn load(path: &std::path::Path, now_ms: i64) -> anyhow::Result<Tenants> {
        use anyhow::Context as _;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: TenantsFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an accounts file", path.display()))?;
        let mut accounts = BTreeMap::new();
        for spec in file.accounts {
            let mut stores = BTreeMap::new();
            for (region, data) in spec.regions {
                let sessions = match &data.data {
                    Some(path) => super::data::load_jsonl(path)?,
                    None => super::data::generate(&super::data::GenerateSpec {
                        count: data.sessions,
                        seed: data.seed,
                        now_ms,
                        account_id: spec.account_id.clone(),
                        skew_share: 0.0,
                        bursts: 0,
                        burst_size: 0,
                        active_share: 0.03,
                    }),
                };
                stores.insert(region, RwLock::new(Store::new(sessions)));
            }
            let mut enabled: BTreeSet<String> = stores.keys().cloned().collect();
            enabled.extend(spec.enabled_regions);
            accounts.insert(
                spec.account_id.clone(),
                Tenant {
                    role_name: spec.role_name.unwrap_or_else(|| file.role_name.clone()),
                    enabled_regions: enabled
                        .into_iter()
                        .filter(|r| !spec.disabled_regions.contains(r))
                        .collect(),
                    disabled_regions: spec.disabled_regions.into_iter().collect(),
                    status: spec.status.unwrap_or_else(|| "ACTIVE".into()),
                    parent: spec.parent.unwrap_or_else(|| "r-root".into()),
                    stores,
                },
            );
        }
        Ok(Tenants {
            external_id: file.external_id,
            ous: file.ous.into_iter().map(|ou| (ou.id, ou.parent)).collect(),
            accounts,
            calls: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// Whether `role_arn` may be assumed with `external_id`: the account's
    /// id when it may, the reason when not.
    pub fn assume(&self, role_arn: &str, external_id: Option<&str>) -> Result<String, String> {
        let rest = role_arn
            .strip_prefix("arn:aws:iam::")
            .ok_or_else(|| format!("{role_arn} is not a role ARN"))?;
        let (account_id, role) = rest
            .split_once(":role/")
            .ok_or_else(|| format!("{role_arn} is not a role ARN"))?;
        let tenant = self
            .accounts
            .get(account_id)
            .ok_or_else(|| format!("no account {account_id}"))?;
        let name = role.rsplit('/').next().unwrap_or(role);
        if name != tenant.role_name {
            return Err(format!(
                "User is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ));
        }
        if self.external_id.as_deref() != external_id && self.external_id.is_some() {
            return Err(format!(
                "User is not authorized to perform: sts:AssumeRole on resource: {role_arn} (external id)"
            ));
        }
        Ok(account_id.to_owned())
    }

    /// organizations:ListAccounts, ListAccountsForParent and
    /// ListOrganizationalUnitsForParent, paged 20 at a time.
    pub fn organizations(&self, operation: &str, body: &[u8]) -> Result<serde_json::Value, String> {
        let request: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let start: usize = request["NextToken"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let parent = request["ParentId"].as_str().unwrap_or("");
        let account_json = |(id, tenant): (&String, &Tenant)| {
            serde_json::json!({
                "Id": id,
                "Arn": format!("arn:aws:organizations::000000000000:account/o-sim/{id}"),
                "Email": format!("{id}@example.com"),
                "Name": format!("account {id}"),
                "Status": tenant.status,
                "State": tenant.status,
                "JoinedMethod": "CREATED",
            })
        };
        let (key, items): (&str, Vec<serde_json::Value>) = match operation {
            "ListAccounts" => ("Accounts", self.accounts.iter().map(account_json).collect()),
            "ListAccountsForParent" => (
                "Accounts",
                self.accounts
                    .iter()
                    .filter(|(_, t)| t.parent == parent)
                    .map(account_json)
                    .collect(),
            ),
            "ListOrganizationalUnitsForParent" => (
                "OrganizationalUnits",
                self.ous
                    .iter()
                    .filter(|(_, p)| *p == parent)
                    .map(|(id, _)| serde_json::json!({ "Id": id, "Name": id, "Arn": format!("arn:aws:organizations::000000000000:ou/o-sim/{id}") }))
                    .collect(),
            ),
            other => return Err(format!("the simulator does not serve organizations:{other}")),
        };
        const PAGE: usize = 20;
        let page: Vec<_> = items.iter().skip(start).take(PAGE).cloned().collect();
        let mut answer = serde_json::json!({ key: page });
        if start + PAGE < items.len() {
            answer["NextToken"] = serde_json::json!((start + PAGE).to_string());
        }
        Ok(answer)
    }

    /// account:ListRegions for `account`: its enabled regions.
    pub fn list_regions(&self, account: &str) -> Option<serde_json::Value> {
        let tenant = self.accounts.get(account)?;
        let regions: Vec<_> = tenant
            .enabled_regions
            .iter()
            .map(|r| serde_json::json!({ "RegionName": r, "RegionOptStatus": "ENABLED" }))
            .collect();
        Some(serde_json::json!({ "Regions": regions }))
    }

    pub fn count_call(&self, account_id: &str, region: &str) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        *calls.entry(format!("{account_id}/{region}")).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_names_the_account_and_the_region() {
        let header = "AWS4-HMAC-SHA256 Credential=ASIA111122223333ABCD/20261102/eu-west-1/ssm/aws4_request, SignedHeaders=host, Signature=00";
        assert_eq!(
            caller_of(Some(header)),
            Caller {
                account_id: Some("111122223333".into()),
                region: Some("eu-west-1".into())
            }
        );
        let own = "AWS4-HMAC-SHA256 Credential=test/20261102/us-east-1/ssm/aws4_request, SignedHeaders=host";
        assert_eq!(caller_of(Some(own)).account_id, None);
        assert_eq!(caller_of(Some(own)).region.as_deref(), Some("us-east-1"));
        assert_eq!(
            caller_of(None),
            Caller {
                account_id: None,
                region: None
            }
        );
    }
}
