#include "store/postgres/pg_store.hpp"

// The store's wiring: opening (connections, migrations), the statement lists for the SQL-subset
// scan, counters, and what every commit path shares (a writer that reconnects, marker pruning).
// The paths themselves: pg_locked_path.cpp (the locked path and ambiguous commits),
// pg_speculative.cpp (the pipeline and its cache), pg_reads.cpp (reads and the delivery log).

#include <algorithm>
#include <cassert>
#include <string>

#include "store/postgres/pg_batch_rows.hpp"
#include "store/postgres/pg_schema.hpp"
#include "store/postgres/pg_statements.hpp"

namespace stub::store::postgres {

std::vector<const Sql*> PgStore::statements() {
  std::vector<const Sql*> out(std::begin(every_statement), std::end(every_statement));
  for (const Sql* session : Connection::session_statements())
    out.push_back(session);
  return out;
}

std::vector<const Sql*> PgStore::migration_statements() {
  return postgres::migration_statements();
}

std::vector<Store::EventCount> PgStore::event_counts() const {
  return {
      {"conflict_retry", counters_.conflicts.load(std::memory_order_relaxed)},
      {"reconnect", counters_.reconnects.load(std::memory_order_relaxed)},
      {"ambiguous_commit", counters_.ambiguous.load(std::memory_order_relaxed)},
      {"ambiguous_commit_found_committed",
       counters_.found_committed.load(std::memory_order_relaxed)},
      {"speculated", counters_.speculated.load(std::memory_order_relaxed)},
      {"speculation_missed", counters_.speculation_missed.load(std::memory_order_relaxed)},
      {"foreign_write", counters_.foreign_writes.load(std::memory_order_relaxed)},
      {"ambiguous_commit_settled_later", counters_.settled_later.load(std::memory_order_relaxed)}};
}

Result<std::unique_ptr<PgStore>> PgStore::open(const std::string& url,
                                               const StoreOptions& options) {
  std::unique_ptr<PgStore> store(new PgStore());
  store->url_ = url;
  if (options.isolation == "serializable") {
    store->isolation_ = Isolation::serializable;
  } else if (options.isolation != "read-committed" && !options.isolation.empty()) {
    return Error::invalid("invalid_isolation", "Isolation must be read-committed or serializable.");
  }
  for (std::unique_ptr<Connection>& writer : store->writers_) {
    auto opened = Connection::open(url, Role::writer);
    if (!opened.ok())
      return opened.error();
    writer = std::move(opened).value();
  }
  if (!options.read_only) {
    if (Status status = migrate(*store->writers_[0]); !status.ok())
      return status.error();
  }
  const size_t readers = std::max<size_t>(1, options.read_connections);
  for (size_t i = 0; i < readers; ++i) {
    auto reader = Connection::open(url, Role::reader);
    if (!reader.ok())
      return reader.error();
    store->readers_.add(std::move(reader).value());
  }
  return store;
}

Status PgStore::ensure_writer(size_t index) {
  Connection& writer = *writers_[index];
  if (!writer.broken())
    return Status::success();
  if (!writer.reset()) {
    return Error{ErrorCode::unavailable, "db_unreachable",
                 "Cannot reconnect to " + redact_url(url_) + "."};
  }
  counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
  return Status::success();
}

void PgStore::after_commit(size_t connection) {
  // Every 1,000 commits, up to 1,000 markers older than an hour go: pruning keeps pace with one
  // marker per commit, and a failed prune is simply tried again later.
  if (++commits_since_prune_ < 1'000)
    return;
  commits_since_prune_ = 0;
  if (ensure_writer(connection).ok()) {
    (void)writers_[connection]->run(
        Query{&prune_markers,
              {std::to_string(now_micros() - marker_retention_micros), std::to_string(1'000)}});
  }
}

Result<std::vector<query::AggregateRow>> PgStore::run_query(const query::CompiledQuery& query) {
  assert(!query.sql.empty() && query.rows_max > 0);
  std::vector<Param> params;
  params.reserve(query.parameters.size());
  for (const query::SqlParameter& parameter : query.parameters) {
    if (const auto* number = std::get_if<int64_t>(&parameter))
      params.emplace_back(std::to_string(*number));
    else
      params.emplace_back(std::get<std::string>(parameter));
  }
  Reader reader = checkout_reader();
  if (reader->broken() && reader->reset())
    counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
  auto result = reader->run_unprepared(query.sql, params);
  if (!result.ok())
    return result.error();
  const Rows rows(result->get());
  if (static_cast<size_t>(rows.size()) > query.rows_max) {
    return Error::invalid("query_too_broad",
                          "The query has too many groups; narrow its range or its groups.");
  }
  const int keys = static_cast<int>(query.key_columns);
  std::vector<query::AggregateRow> out;
  out.reserve(static_cast<size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    const Rows row = rows.at(i);
    query::AggregateRow aggregate;
    for (int column = 0; column < keys; ++column) {
      if (row.column_is_null(column))
        aggregate.keys.emplace_back(std::nullopt);
      else
        aggregate.keys.emplace_back(row.column_text(column));
    }
    aggregate.amount_micros = row.column_int(keys);
    aggregate.count = row.column_int(keys + 1);
    out.push_back(std::move(aggregate));
  }
  assert(out.size() <= query.rows_max);
  return out;
}

}  // namespace stub::store::postgres
