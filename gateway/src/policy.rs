//! Policy: who may run what against which target, how classified columns are masked for
//! them, and which statements are denied or wait for approval. Loading and validation are
//! here; evaluation is a pure function of (identity, target, statement facts).

mod catalog;
pub mod derived;
mod describe;
mod evaluate;
mod format;
mod glob;
mod identity;
mod load;
pub mod mask;
mod provenance;
mod rules;
mod store;
#[cfg(test)]
mod tests;

pub use catalog::{Catalog, Relation, RelationKind};
pub use describe::{explain, summary};
pub use evaluate::{evaluate, Decision, HoldOver, MaskPlan, StatementView};
pub use identity::{parse_identity_spec, IdentityFacts};
pub use load::{load, PolicyError};
pub use provenance::{combine, Resolved, ResolvedColumn, Resolver};
pub use rules::{Policy, TargetClassification};
pub use store::{Loaded, PolicyStore, StoreError};
