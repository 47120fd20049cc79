// The test modules of the integration suite, shared by `tests/it` (SQLite)
// and `tests/it_pg` (PostgreSQL) through `include!`: a module listed here
// runs on both stores. Paths are written from `tests/` so that they resolve
// from either directory.
#[path = "../it/audit.rs"]
mod audit;
#[path = "../it/bulk.rs"]
mod bulk;
#[path = "../it/conformance.rs"]
mod conformance;
#[path = "../it/discovery.rs"]
mod discovery;
#[path = "../it/durability.rs"]
mod durability;
#[path = "../it/custom_schemas.rs"]
mod custom_schemas;
#[path = "../it/errors.rs"]
mod errors;
#[path = "../it/events.rs"]
mod events;
#[path = "../it/export_import.rs"]
mod export_import;
#[path = "../it/fido.rs"]
mod fido;
#[path = "../it/groups.rs"]
mod groups;
#[path = "../it/harness.rs"]
mod harness;
#[path = "../it/me.rs"]
mod me;
#[path = "../it/metrics.rs"]
mod metrics;
#[path = "../it/oauth.rs"]
mod oauth;
#[path = "../it/packaging.rs"]
mod packaging;
#[path = "../it/paging.rs"]
mod paging;
#[path = "../it/patch.rs"]
mod patch;
#[path = "../it/rates.rs"]
mod rates;
#[path = "../it/renderings.rs"]
mod renderings;
#[path = "../it/robustness.rs"]
mod robustness;
#[path = "../it/tls.rs"]
mod tls;
#[path = "../it/users.rs"]
mod users;
#[path = "../it/validators.rs"]
mod validators;
