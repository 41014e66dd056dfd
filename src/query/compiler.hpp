#pragma once

// Compiles a validated Query to parameterized SQL for one store dialect, and runs it.
//
// The SQL text is assembled only from fixed fragments chosen by the query's enums (metric,
// group kinds, which filters are present and how many values each has); every value a caller
// sent (paths, vendors, categories, tag keys and values, times) is a bound parameter. The SQL
// groups by the stored columns (the full budget path, the day or hour of `ts`); budget depths,
// teams, agents, weeks and months are rolled up from those groups here, so both stores need
// nothing but portable GROUP BY over whitelisted columns.

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "query/compiled_query.hpp"
#include "query/query.hpp"
#include "store/store.hpp"

namespace stub::query {

// The entries a query reads, as a seq range of its root (entry timestamps are monotone per
// root, so a time range is a seq range, found by binary search on the primary key).
struct SeqRange {
  int64_t first = 1;
  int64_t last = 0;  // inclusive; last < first: nothing to read
};

CompiledQuery compile(const Query& query, Dialect dialect, const SeqRange& seqs);

// Whether the entry rollup (store/rollup.hpp) can answer the query: every group and filter is a
// rollup dimension (budget, team, agent, vendor, category, day, week, month; subtree, vendor,
// category, kind among spend/capture/expire, code), and it is not about open holds.
bool rollup_covers(const Query& query);

// A covered query read from the rollup for its whole UTC days and from the entries for the
// partial days at either end of its range (a rolling "last 7d" starts and ends mid-day).
// Plain values, not optionals: GCC 12 warns falsely on optionals of these in release builds.
struct RollupPlan {
  struct Edge {
    bool used = false;
    Micros from = 0;
    Micros to = 0;
    SeqRange seqs;
  };
  int64_t first_day = 0;
  int64_t end_day = 0;      // exclusive
  bool open_ended = false;  // no end day
  Edge head;                // [range.from, first day)
  Edge tail;                // [end day, range.to)
};

CompiledQuery compile_with_rollup(const Query& query, Dialect dialect, const RollupPlan& plan);

struct AnswerRow {
  std::vector<std::optional<std::string>> keys;  // one per group_by, formatted
  int64_t amount_micros = 0;
  int64_t count = 0;
};

struct Answer {
  Query query;
  std::vector<AnswerRow> rows;  // ordered and limited
  int64_t total_amount_micros = 0;
  int64_t total_count = 0;
  size_t groups = 0;         // before the limit
  bool from_rollup = false;  // read (mostly) from the entry rollup
};

// How run_query reads: the rollup where it covers the query (the default), or always the
// entries (tests compare the two).
enum class ReadPath { automatic, entries_only };

// Runs a validated, scope-confined query against `store`.
Result<Answer> run_query(store::Store& store, const Query& query,
                         ReadPath path = ReadPath::automatic);

// The smallest seq range of `root` covering every entry with from <= ts < to.
Result<SeqRange> seq_range_for_time(store::Store& store, const std::string& root, Micros from,
                                    Micros to);

// {"query": ..., "rows": [...], "total": {...}}: amounts as decimal strings.
boost::json::object answer_to_json(const Answer& answer);

// The value a row is ordered by, in micro-units for money metrics and a plain count otherwise.
int64_t row_value(Metric metric, const AnswerRow& row);

}  // namespace stub::query
