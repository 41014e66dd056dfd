#pragma once

// The PostgreSQL store's schema: append-only migrations, one idempotent DDL statement per
// transaction (distributed engines refuse DDL mixed with DML, and several instances may run
// them at once: the loser of a catalog race runs the statement again), recorded in
// stub_migrations.

#include <vector>

#include "ledger/result.hpp"
#include "store/postgres/pg_connection.hpp"

namespace stub::store::postgres {

// Applies every migration not yet recorded, with no statement timeout while it runs.
Status migrate(Connection& connection);

// The DDL of every migration, for the SQL-subset scan.
std::vector<const Sql*> migration_statements();

}  // namespace stub::store::postgres
