//! Objects that DDL, TRUNCATE, GRANT and COMMENT act on, and what CREATE ... AS reads.
//! Statements not listed here still have every relation they name swept into `reads`.

use sqlparser::ast::{
    AlterViewOperation, CreateTableLikeKind, GrantObjects, ObjectName, SchemaName, Statement,
};

use super::{
    super::{
        lineage::{push_unique, rename, Walker},
        names, RelationName, Store, StoredColumns,
    },
    SqlError, StatementFacts,
};

pub(super) fn objects(
    statement: &Statement,
    walker: &mut Walker,
    facts: &mut StatementFacts,
) -> Result<(), SqlError> {
    let mut objects: Vec<RelationName> = Vec::new();
    let mut add = |name: &ObjectName| push_unique(&mut objects, names::relation(name));
    match statement {
        Statement::CreateTable(table) => {
            add(&table.name);
            if let Some(query) = &table.query {
                // CREATE TABLE AS fills the new table: a write, like SELECT INTO.
                let outputs = walker.query(query, None)?;
                walker.effects.write(names::relation(&table.name));
                // `CREATE TABLE t (a, b) AS ...` renames the leading columns; the others keep
                // the query's names (past a `*` or a placeholder, nothing is known by name).
                let named: Vec<String> = table
                    .columns
                    .iter()
                    .map(|c| names::ident(&c.name))
                    .collect();
                walker.effects.stores.push(Store {
                    target: names::relation(&table.name),
                    new_table: true,
                    temporary: table.temporary,
                    columns: StoredColumns::InOrder(rename(outputs, &named)),
                });
            }
            if let Some(
                CreateTableLikeKind::Parenthesized(like) | CreateTableLikeKind::Plain(like),
            ) = &table.like
            {
                walker.effects.read(names::relation(&like.name));
            }
            for name in table.clone.iter().chain(table.inherits.iter().flatten()) {
                walker.effects.read(names::relation(name));
            }
        }
        Statement::CreateView(view) => {
            add(&view.name);
            walker.query(&view.query, None)?;
            if view.materialized {
                // A materialized view stores the query's rows.
                walker.effects.write(names::relation(&view.name));
            }
        }
        Statement::AlterView(view) => {
            add(&view.name);
            if let AlterViewOperation::As { query, .. } = &view.operation {
                walker.query(query, None)?;
            }
            if let AlterViewOperation::RenameTo { new_name } = &view.operation {
                add(new_name);
            }
        }
        Statement::CreateIndex(index) => {
            add(&index.table_name);
            index.name.iter().for_each(&mut add);
        }
        Statement::AlterTable(table) => add(&table.name),
        Statement::AlterIndex { name, .. } => add(name),
        Statement::AlterSchema(schema) => add(&schema.name),
        Statement::AlterType(alter) => add(&alter.name),
        Statement::AlterPolicy(policy) => add(&policy.table_name),
        Statement::Drop { names, table, .. } => {
            names.iter().chain(table).for_each(&mut add);
        }
        Statement::DropFunction(drop) => drop.func_desc.iter().for_each(|f| add(&f.name)),
        Statement::DropProcedure { proc_desc, .. } => proc_desc.iter().for_each(|f| add(&f.name)),
        Statement::DropDomain(drop) => add(&drop.name),
        Statement::DropPolicy(drop) => add(&drop.table_name),
        Statement::DropTrigger(drop) => {
            add(&drop.trigger_name);
            drop.table_name.iter().for_each(&mut add);
        }
        Statement::DropExtension(drop) => {
            for name in &drop.names {
                push_unique(&mut objects, names::simple(name));
            }
        }
        Statement::CreateFunction(function) => add(&function.name),
        Statement::CreateProcedure { name, .. }
        | Statement::CreateDatabase { db_name: name, .. }
        | Statement::CreateSequence { name, .. }
        | Statement::CreateType { name, .. } => add(name),
        Statement::CreateDomain(domain) => add(&domain.name),
        Statement::CreatePolicy(policy) => add(&policy.table_name),
        Statement::CreateServer(server) => add(&server.name),
        Statement::CreateTrigger(trigger) => {
            add(&trigger.name);
            add(&trigger.table_name);
        }
        Statement::CreateRole(role) => role.names.iter().for_each(&mut add),
        Statement::CreateSchema { schema_name, .. } => match schema_name {
            SchemaName::Simple(name) | SchemaName::NamedAuthorization(name, _) => add(name),
            SchemaName::UnnamedAuthorization(owner) => {
                push_unique(&mut objects, names::simple(owner));
            }
        },
        Statement::CreateExtension(extension) => {
            push_unique(&mut objects, names::simple(&extension.name));
        }
        Statement::AlterRole { name, .. } => push_unique(&mut objects, names::simple(name)),
        Statement::Truncate(truncate) => {
            for target in &truncate.table_names {
                add(&target.name);
                walker.effects.write(names::relation(&target.name));
            }
        }
        Statement::Grant(grant) => grant.objects.iter().for_each(|o| granted(o, &mut add)),
        Statement::Revoke(revoke) => revoke.objects.iter().for_each(|o| granted(o, &mut add)),
        Statement::Comment { object_name, .. } => add(object_name),
        _ => {}
    }
    for object in objects {
        push_unique(&mut facts.ddl_objects, object);
    }
    Ok(())
}

fn granted(objects: &GrantObjects, add: &mut impl FnMut(&ObjectName)) {
    match objects {
        GrantObjects::AllSequencesInSchema { schemas }
        | GrantObjects::AllTablesInSchema { schemas }
        | GrantObjects::AllViewsInSchema { schemas }
        | GrantObjects::AllMaterializedViewsInSchema { schemas }
        | GrantObjects::AllExternalTablesInSchema { schemas }
        | GrantObjects::AllFunctionsInSchema { schemas }
        | GrantObjects::AllProceduresInSchema { schemas }
        | GrantObjects::AllRoutinesInSchema { schemas }
        | GrantObjects::FutureTablesInSchema { schemas }
        | GrantObjects::FutureViewsInSchema { schemas }
        | GrantObjects::FutureExternalTablesInSchema { schemas }
        | GrantObjects::FutureMaterializedViewsInSchema { schemas }
        | GrantObjects::FutureSequencesInSchema { schemas } => schemas.iter().for_each(add),
        GrantObjects::FutureSchemasInDatabase { databases } => databases.iter().for_each(add),
        GrantObjects::Databases(names)
        | GrantObjects::Schemas(names)
        | GrantObjects::Sequences(names)
        | GrantObjects::Tables(names)
        | GrantObjects::Views(names)
        | GrantObjects::Warehouses(names)
        | GrantObjects::Integrations(names)
        | GrantObjects::ResourceMonitors(names)
        | GrantObjects::Users(names)
        | GrantObjects::ComputePools(names)
        | GrantObjects::Connections(names)
        | GrantObjects::FailoverGroup(names)
        | GrantObjects::ReplicationGroup(names)
        | GrantObjects::ExternalVolumes(names) => names.iter().for_each(add),
        GrantObjects::Procedures(routines)
        | GrantObjects::Functions(routines)
        | GrantObjects::Routines(routines) => {
            routines.iter().for_each(|routine| add(&routine.name));
        }
    }
}
