#pragma once

// What a store runs for a constrained query: SQL assembled by the query compiler from fixed,
// whitelisted fragments for the store's dialect, and the values of its parameters. Nothing a
// caller sent is ever part of `sql`; every caller value is one of `parameters`.
//
// Header only, so that the Store interface can name it without the store library linking the
// query library (which itself runs queries through a Store).

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace stub::query {

enum class Dialect { sqlite, postgres };

using SqlParameter = std::variant<int64_t, std::string>;

struct CompiledQuery {
  std::string sql;
  std::vector<SqlParameter> parameters;  // $1.. (PostgreSQL) or ?1.. (SQLite), in order
  size_t key_columns = 0;                // the leading columns of each row are group keys
  size_t rows_max = 0;                   // a store stops reading (and fails) beyond this
};

// One row of an aggregate: the group key values (nullopt for SQL NULL, e.g. a missing tag),
// then the sum of amounts in micro-units and the number of entries.
struct AggregateRow {
  std::vector<std::optional<std::string>> keys;
  int64_t amount_micros = 0;
  int64_t count = 0;
};

}  // namespace stub::query
