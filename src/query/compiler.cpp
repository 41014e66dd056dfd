#include "query/compiler.hpp"

#include <algorithm>
#include <boost/json/array.hpp>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <limits>
#include <map>

#include "ledger/budget_path.hpp"
#include "ledger/money.hpp"

namespace stub::query {

namespace {

constexpr Micros micros_per_hour = 3'600 * ledger::micros_per_second;
constexpr Micros micros_per_day = 24 * micros_per_hour;

// Builds SQL text from fixed fragments and collects the parameters, numbered in order.
class SqlBuilder {
 public:
  explicit SqlBuilder(Dialect dialect) : dialect_(dialect) {}

  SqlBuilder& text(std::string_view fragment) {
    sql_ += fragment;
    return *this;
  }
  SqlBuilder& bind(std::string value) {
    parameters_.emplace_back(std::move(value));
    placeholder("::text");
    return *this;
  }
  SqlBuilder& bind(int64_t value) {
    parameters_.emplace_back(value);
    placeholder("::bigint");
    return *this;
  }
  // " IN (p1, p2, ...)" for a non-empty list.
  SqlBuilder& bind_list(const std::vector<std::string>& values) {
    assert(!values.empty() && values.size() <= filter_values_max);
    sql_ += " IN (";
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0)
        sql_ += ", ";
      bind(values[i]);
    }
    sql_ += ")";
    return *this;
  }
  Dialect dialect() const { return dialect_; }
  CompiledQuery finish(size_t key_columns) {
    return CompiledQuery{std::move(sql_), std::move(parameters_), key_columns, sql_rows_max};
  }

 private:
  void placeholder(std::string_view cast) {
    const std::string number = std::to_string(parameters_.size());
    if (dialect_ == Dialect::postgres) {
      sql_ += "$" + number;
      sql_ += cast;
    } else {
      sql_ += "?" + number;
    }
  }

  Dialect dialect_;
  std::string sql_;
  std::vector<SqlParameter> parameters_;
};

// The stored column or expression a group is computed from.
void group_expression(SqlBuilder& sql, const GroupBy& group, std::string_view time_column) {
  const bool postgres = sql.dialect() == Dialect::postgres;
  switch (group.kind) {
    case GroupKind::budget:
    case GroupKind::team:
    case GroupKind::agent:
      sql.text("budget");
      return;
    case GroupKind::vendor:
      sql.text("vendor");
      return;
    case GroupKind::intent:
      sql.text("intent");
      return;
    case GroupKind::category:
      // An empty category is no category, as in the rollup (store/rollup.hpp).
      sql.text(postgres ? "nullif(tags::jsonb ->> 'category', '')"
                        : "nullif(json_extract(tags, '$.category'), '')");
      return;
    case GroupKind::tag:
      if (postgres) {
        sql.text("(tags::jsonb ->> ").bind(group.tag_key).text(")");
      } else {
        sql.text("json_extract(tags, ").bind("$.\"" + group.tag_key + "\"").text(")");
      }
      return;
    case GroupKind::hour:
      sql.text("(").text(time_column).text(postgres ? " / 3600000000::bigint)" : " / 3600000000)");
      return;
    case GroupKind::day:
    case GroupKind::week:
    case GroupKind::month:
      sql.text("(")
          .text(time_column)
          .text(postgres ? " / 86400000000::bigint)" : " / 86400000000)");
      return;
  }
  assert(false && "unknown group kind");
}

void tag_condition(SqlBuilder& sql, const std::string& key, const std::string& value) {
  if (sql.dialect() == Dialect::postgres) {
    sql.text(" AND (tags::jsonb ->> ").bind(key).text(") = ").bind(value);
  } else {
    sql.text(" AND json_extract(tags, ").bind("$.\"" + key + "\"").text(") = ").bind(value);
  }
}

void subtree_condition(SqlBuilder& sql, const std::string& subtree) {
  // The node itself, or any path from "<node>/" up to (not including) "<node>0" ('0' follows
  // '/'): a range, so the prefix needs no LIKE pattern (whose '_' would be a wildcard).
  sql.text(" AND (budget = ")
      .bind(subtree)
      .text(" OR (budget >= ")
      .bind(subtree + "/")
      .text(" AND budget < ")
      .bind(subtree + "0")
      .text("))");
}

// " GROUP BY 1, 2, ..." over the query's group columns.
void group_by_clause(SqlBuilder& sql, const Query& query) {
  if (query.group_by.empty())
    return;
  sql.text(" GROUP BY ");
  for (size_t i = 0; i < query.group_by.size(); ++i) {
    if (i > 0)
      sql.text(", ");
    sql.text(std::to_string(i + 1));
  }
}

std::string root_of(const std::string& path) {
  return path.substr(0, path.find('/'));
}

std::string format_day(Micros day_index) {
  const std::chrono::year_month_day date{std::chrono::sys_days{std::chrono::days{day_index}}};
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%04d-%02u-%02u", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()));
  return buffer;
}

std::string truncate_path(const std::string& path, size_t depth) {
  size_t at = 0;
  for (size_t segment = 0; segment < depth; ++segment) {
    at = path.find('/', at);
    if (at == std::string::npos)
      return path;  // shallower than the depth: the node itself
    if (segment + 1 < depth)
      ++at;
  }
  return path.substr(0, at);
}

// The group key as shown, from the SQL group's raw value.
std::optional<std::string> roll_up(const GroupBy& group, const std::optional<std::string>& raw) {
  if (!raw)
    return std::nullopt;
  switch (group.kind) {
    case GroupKind::budget:
    case GroupKind::team:
    case GroupKind::agent:
      return truncate_path(*raw, group.depth);
    case GroupKind::hour: {
      const Micros hour = std::stoll(*raw);
      const std::string day = format_day(hour * micros_per_hour / micros_per_day);
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "%sT%02lld:00:00Z", day.c_str(),
                    static_cast<long long>(hour % 24));
      return std::string(buffer);
    }
    case GroupKind::day:
      return format_day(std::stoll(*raw));
    case GroupKind::week: {
      const Micros day = std::stoll(*raw);
      const Micros start = ledger::period_start(ledger::Period::week, day * micros_per_day);
      return format_day(start / micros_per_day);
    }
    case GroupKind::month:
      return format_day(std::stoll(*raw)).substr(0, 7);
    default:
      return raw;
  }
}

// One SELECT over the entries (or, for holds_open, the holds) with ts in [from, to) and seq in
// `seqs`, grouped by the query's groups.
void entries_select(SqlBuilder& sql, const Query& query, const SeqRange& seqs, Micros from,
                    Micros to) {
  const Dialect dialect = sql.dialect();
  const bool holds = query.metric == Metric::holds_open;
  const std::string_view time_column = holds ? "created_at" : "ts";
  sql.text("SELECT ");
  for (const GroupBy& group : query.group_by) {
    group_expression(sql, group, time_column);
    sql.text(", ");
  }
  if (dialect == Dialect::postgres)
    sql.text("coalesce(sum(amount), 0)::bigint, count(*)::bigint FROM ");
  else
    sql.text("coalesce(sum(amount), 0), count(*) FROM ");
  sql.text(holds ? "holds" : "entries");
  sql.text(" WHERE root = ").bind(root_of(query.filters.subtree));
  if (holds) {
    sql.text(" AND status IN ('held', 'pending_approval')");
  } else {
    sql.text(" AND seq >= ").bind(seqs.first).text(" AND seq <= ").bind(seqs.last);
  }
  sql.text(" AND ").text(time_column).text(" >= ").bind(from);
  if (to != std::numeric_limits<Micros>::max())
    sql.text(" AND ").text(time_column).text(" < ").bind(to);
  if (query.metric == Metric::denials) {
    sql.text(" AND kind = 'deny'");
    if (!query.filters.codes.empty())
      sql.text(" AND code").bind_list(query.filters.codes);
  } else if (!holds) {
    // Money that settled: spends, captures and expiries captured at their held amount.
    if (query.filters.kinds.empty())
      sql.text(" AND kind IN ('spend', 'capture', 'expire')");
    else
      sql.text(" AND kind").bind_list(query.filters.kinds);
    sql.text(" AND amount > 0");
  }
  subtree_condition(sql, query.filters.subtree);
  if (!query.filters.vendors.empty())
    sql.text(" AND vendor").bind_list(query.filters.vendors);
  if (!query.filters.categories.empty()) {
    sql.text(dialect == Dialect::postgres ? " AND (tags::jsonb ->> 'category')"
                                          : " AND json_extract(tags, '$.category')")
        .bind_list(query.filters.categories);
  }
  for (const auto& [key, value] : query.filters.tags)
    tag_condition(sql, key, value);
  group_by_clause(sql, query);
}

// The same sums from the rollup, for the whole days [first_day, end_day) (end_day nullopt: no
// end). Only for queries rollup_covers() admits.
void rollup_select(SqlBuilder& sql, const Query& query, const RollupPlan& plan) {
  assert(rollup_covers(query));
  const bool postgres = sql.dialect() == Dialect::postgres;
  sql.text("SELECT ");
  for (const GroupBy& group : query.group_by) {
    switch (group.kind) {
      case GroupKind::budget:
      case GroupKind::team:
      case GroupKind::agent:
        sql.text("budget");
        break;
      case GroupKind::vendor:
        sql.text("vendor");
        break;
      case GroupKind::category:
        sql.text("nullif(category, '')");
        break;
      case GroupKind::day:
      case GroupKind::week:
      case GroupKind::month:
        sql.text("day");  // days since the epoch, as the entries' ts / 86400000000
        break;
      default:
        assert(false && "not a rollup dimension");
    }
    sql.text(", ");
  }
  if (postgres)
    sql.text("coalesce(sum(amount), 0)::bigint, coalesce(sum(count), 0)::bigint FROM ");
  else
    sql.text("coalesce(sum(amount), 0), coalesce(sum(count), 0) FROM ");
  sql.text("entry_rollup WHERE root = ").bind(root_of(query.filters.subtree));
  sql.text(" AND day >= ").bind(plan.first_day);
  if (!plan.open_ended)
    sql.text(" AND day < ").bind(plan.end_day);
  if (query.metric == Metric::denials) {
    sql.text(" AND kind = 'deny'");
    if (!query.filters.codes.empty())
      sql.text(" AND code").bind_list(query.filters.codes);
  } else if (query.filters.kinds.empty()) {
    sql.text(" AND kind IN ('spend', 'capture', 'expire')");  // rolled up only when amount > 0
  } else {
    sql.text(" AND kind").bind_list(query.filters.kinds);
  }
  subtree_condition(sql, query.filters.subtree);
  if (!query.filters.vendors.empty())
    sql.text(" AND vendor").bind_list(query.filters.vendors);
  if (!query.filters.categories.empty())
    sql.text(" AND category").bind_list(query.filters.categories);
  group_by_clause(sql, query);
}

}  // namespace

bool rollup_covers(const Query& query) {
  if (query.metric == Metric::holds_open || !query.filters.tags.empty())
    return false;
  for (const GroupBy& group : query.group_by) {
    if (group.kind == GroupKind::intent || group.kind == GroupKind::tag ||
        group.kind == GroupKind::hour)
      return false;
  }
  // The rollup holds money only where it settled (spend, capture, expire above zero): a money
  // query about other kinds reads the entries.
  if (query.metric != Metric::denials) {
    for (const std::string& kind : query.filters.kinds) {
      if (kind != "spend" && kind != "capture" && kind != "expire")
        return false;
    }
  }
  // The rollup keeps "no category" as the empty string.
  return std::none_of(query.filters.categories.begin(), query.filters.categories.end(),
                      [](const std::string& category) { return category.empty(); });
}

CompiledQuery compile(const Query& query, Dialect dialect, const SeqRange& seqs) {
  assert(!query.filters.subtree.empty());
  assert(query.group_by.size() <= group_by_count_max);
  SqlBuilder sql(dialect);
  entries_select(sql, query, seqs, query.range.from, query.range.to);
  CompiledQuery compiled = sql.finish(query.group_by.size());
  assert(compiled.key_columns == query.group_by.size());
  return compiled;
}

CompiledQuery compile_with_rollup(const Query& query, Dialect dialect, const RollupPlan& plan) {
  assert(!query.filters.subtree.empty() && rollup_covers(query));
  assert(plan.open_ended || plan.first_day < plan.end_day);
  SqlBuilder sql(dialect);
  // One statement, so the rollup and the edges are read in one snapshot.
  rollup_select(sql, query, plan);
  for (const RollupPlan::Edge* edge : {&plan.head, &plan.tail}) {
    if (!edge->used)
      continue;
    sql.text(" UNION ALL ");
    entries_select(sql, query, edge->seqs, edge->from, edge->to);
  }
  CompiledQuery compiled = sql.finish(query.group_by.size());
  assert(compiled.key_columns == query.group_by.size());
  return compiled;
}

int64_t row_value(Metric metric, const AnswerRow& row) {
  switch (metric) {
    case Metric::spend:
    case Metric::holds_open:
      return row.amount_micros;
    case Metric::count:
    case Metric::denials:
      return row.count;
    case Metric::avg:
      // Rounded half up to the micro-unit.
      return row.count == 0 ? 0 : (row.amount_micros * 2 + row.count) / (row.count * 2);
  }
  return 0;
}

Result<SeqRange> seq_range_for_time(store::Store& store, const std::string& root, Micros from,
                                    Micros to) {
  auto bounds = store.entry_bounds(root);
  if (!bounds.ok())
    return bounds.error();
  const int64_t last_seq = bounds->max_seq;
  // The first seq whose ts is >= `at` (last_seq + 1 when none): a binary search over point
  // reads of the primary key, valid because ts never decreases along seq.
  auto first_at_or_after = [&](Micros at) -> Result<int64_t> {
    int64_t low = 1;
    int64_t high = last_seq + 1;
    int steps = 0;
    while (low < high) {
      const int64_t middle = low + (high - low) / 2;
      auto page = store.list_entries(root, middle - 1, 1);
      if (!page.ok())
        return page.error();
      if (page->entries.empty() || page->entries.front().ts >= at)
        high = middle;
      else
        low = middle + 1;
      ++steps;
      assert(steps <= 64);
    }
    return low;
  };
  auto first = first_at_or_after(from);
  if (!first.ok())
    return first.error();
  int64_t last = last_seq;
  if (to != std::numeric_limits<Micros>::max()) {
    auto end = first_at_or_after(to);
    if (!end.ok())
      return end.error();
    last = *end - 1;
  }
  return SeqRange{*first, last};
}

namespace {

// The rollup plan of a covered query: its whole days, and the partial days at its ends as
// seq ranges of the entries. False: not one whole day in the range (the entries answer it).
Result<bool> plan_rollup(store::Store& store, const Query& query, RollupPlan& out) {
  const Micros from = std::max<Micros>(query.range.from, 0);
  const Micros to = query.range.to;
  const bool open_ended = to == std::numeric_limits<Micros>::max();
  RollupPlan plan;
  plan.first_day = (from + micros_per_day - 1) / micros_per_day;
  plan.open_ended = open_ended;
  plan.end_day = open_ended ? 0 : to / micros_per_day;
  if (!open_ended && plan.end_day <= plan.first_day)
    return false;
  const std::string root = root_of(query.filters.subtree);
  const auto edge = [&](Micros edge_from, Micros edge_to) -> Result<RollupPlan::Edge> {
    auto seqs = seq_range_for_time(store, root, edge_from, edge_to);
    if (!seqs.ok())
      return seqs.error();
    return RollupPlan::Edge{true, edge_from, edge_to, *seqs};
  };
  if (from < plan.first_day * micros_per_day) {
    auto head = edge(from, plan.first_day * micros_per_day);
    if (!head.ok())
      return head.error();
    plan.head = *head;
  }
  if (!open_ended && plan.end_day * micros_per_day < to) {
    auto tail = edge(plan.end_day * micros_per_day, to);
    if (!tail.ok())
      return tail.error();
    plan.tail = *tail;
  }
  out = plan;
  return true;
}

}  // namespace

Result<Answer> run_query(store::Store& store, const Query& query, ReadPath path) {
  assert(!query.filters.subtree.empty());
  RollupPlan plan;
  bool from_rollup = false;
  if (path == ReadPath::automatic && rollup_covers(query)) {
    auto planned = plan_rollup(store, query, plan);
    if (!planned.ok())
      return planned.error();
    from_rollup = *planned;
  }
  CompiledQuery compiled;
  if (from_rollup) {
    compiled = compile_with_rollup(query, store.query_dialect(), plan);
  } else {
    SeqRange seqs;
    if (query.metric != Metric::holds_open) {
      auto range = seq_range_for_time(store, root_of(query.filters.subtree), query.range.from,
                                      query.range.to);
      if (!range.ok())
        return range.error();
      seqs = *range;
    }
    compiled = compile(query, store.query_dialect(), seqs);
  }
  auto raw = store.run_query(compiled);
  if (!raw.ok())
    return raw.error();
  // Roll the SQL groups up to the groups asked for.
  std::map<std::vector<std::optional<std::string>>, std::pair<int64_t, int64_t>> groups;
  Answer answer;
  answer.query = query;
  answer.from_rollup = from_rollup;
  for (const AggregateRow& row : *raw) {
    assert(row.keys.size() == query.group_by.size());
    std::vector<std::optional<std::string>> keys;
    keys.reserve(row.keys.size());
    for (size_t i = 0; i < row.keys.size(); ++i)
      keys.push_back(roll_up(query.group_by[i], row.keys[i]));
    auto& [amount, count] = groups[std::move(keys)];
    amount += row.amount_micros;
    count += row.count;
    answer.total_amount_micros += row.amount_micros;
    answer.total_count += row.count;
  }
  if (query.group_by.empty() && groups.empty())
    groups[{}] = {0, 0};
  answer.groups = groups.size();
  for (auto& [keys, totals] : groups)
    answer.rows.push_back(AnswerRow{keys, totals.first, totals.second});
  const Metric metric = query.metric;
  if (query.order != Order::key_asc) {
    const bool descending = query.order == Order::value_desc;
    std::stable_sort(answer.rows.begin(), answer.rows.end(),
                     [metric, descending](const AnswerRow& a, const AnswerRow& b) {
                       const int64_t left = row_value(metric, a);
                       const int64_t right = row_value(metric, b);
                       return descending ? left > right : left < right;
                     });
  }
  if (answer.rows.size() > query.limit)
    answer.rows.resize(query.limit);
  assert(answer.rows.size() <= query.limit);
  return answer;
}

boost::json::object answer_to_json(const Answer& answer) {
  const bool money = answer.query.metric == Metric::spend ||
                     answer.query.metric == Metric::holds_open ||
                     answer.query.metric == Metric::avg;
  boost::json::array rows;
  for (const AnswerRow& row : answer.rows) {
    boost::json::object out;
    for (size_t i = 0; i < row.keys.size(); ++i) {
      const std::string name = group_by_name(answer.query.group_by[i]);
      if (row.keys[i])
        out[name] = *row.keys[i];
      else
        out[name] = nullptr;
    }
    const int64_t value = row_value(answer.query.metric, row);
    if (money)
      out["value"] = ledger::Money::from_micros(value).to_string();
    else
      out["value"] = value;
    out["amount"] = ledger::Money::from_micros(row.amount_micros).to_string();
    out["count"] = row.count;
    rows.push_back(std::move(out));
  }
  return boost::json::object{
      {"query", query_to_json(answer.query)},
      {"rows", std::move(rows)},
      {"groups", static_cast<int64_t>(answer.groups)},
      {"total", boost::json::object{
                    {"amount", ledger::Money::from_micros(answer.total_amount_micros).to_string()},
                    {"count", answer.total_count}}}};
}

}  // namespace stub::query
