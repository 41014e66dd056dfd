// The query compiler's input: a POST /v1/query body (parse_request_body, parse_query,
// confine_to_scope, then compile for both dialects, with and without the rollup), or, when the
// first byte is odd, a POST /v1/ask question through the offline parser over a small fixed
// vocabulary. Properties: a confined query stays inside the caller's subtree; the SQL depends
// only on the query's shape, never on a value a caller sent (the same query with every caller
// string replaced compiles to the same SQL); the SQLite SQL prepares against the real schema
// with one bound parameter per value; query_to_json parses back to the same query.

#include <sqlite3.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "fuzz/fuzz_check.hpp"
#include "http/request_fields.hpp"
#include "ledger/budget_path.hpp"
#include "query/compiler.hpp"
#include "query/query.hpp"
#include "query/question.hpp"
#include "store/store.hpp"

namespace query = stub::query;
using stub::ledger::Micros;

namespace {

constexpr Micros now = 1'795'348'800'000'000;  // 2026-11-22T12:00:00Z

// A database with Stub's schema (made by the real SQLite store), to prepare compiled SQL on.
sqlite3* schema_database() {
  static sqlite3* database = [] {
    static char directory[] = "/tmp/stub-fuzz-query.XXXXXX";
    FUZZ_CHECK(mkdtemp(directory) != nullptr);
    std::atexit([] { std::filesystem::remove_all(directory); });
    const std::string path = std::string(directory) + "/stub.db";
    stub::store::StoreOptions options;
    options.read_connections = 1;
    auto opened = stub::store::open_store("sqlite:" + path, options);
    FUZZ_CHECK(opened.ok());
    opened.value().reset();  // the schema is on disk; the store's threads are not needed
    sqlite3* handle = nullptr;
    FUZZ_CHECK(sqlite3_open_v2(path.c_str(), &handle, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    return handle;
  }();
  return database;
}

void check_prepares(const query::CompiledQuery& compiled) {
  sqlite3_stmt* statement = nullptr;
  const int status =
      sqlite3_prepare_v2(schema_database(), compiled.sql.c_str(), -1, &statement, nullptr);
  if (status != SQLITE_OK) {
    std::fprintf(stderr, "SQL does not prepare: %s\n%s\n", sqlite3_errmsg(schema_database()),
                 compiled.sql.c_str());
  }
  FUZZ_CHECK(status == SQLITE_OK);
  FUZZ_CHECK(static_cast<size_t>(sqlite3_bind_parameter_count(statement)) ==
             compiled.parameters.size());
  sqlite3_finalize(statement);
}

// The query with every value a caller chose replaced by a placeholder of the same count.
query::Query with_placeholders(query::Query q) {
  q.filters.subtree = q.filters.subtree.empty() ? "" : "placeholder";
  for (size_t i = 0; i < q.filters.vendors.size(); ++i)
    q.filters.vendors[i] = "vendor" + std::to_string(i);
  for (size_t i = 0; i < q.filters.categories.size(); ++i)
    q.filters.categories[i] = "category" + std::to_string(i);
  for (size_t i = 0; i < q.filters.tags.size(); ++i)
    q.filters.tags[i] = {"key" + std::to_string(i), "value" + std::to_string(i)};
  for (size_t i = 0; i < q.group_by.size(); ++i) {
    if (!q.group_by[i].tag_key.empty())
      q.group_by[i].tag_key = "group" + std::to_string(i);
  }
  return q;
}

void compile_all(const query::Query& q) {
  const query::SeqRange seqs{1, 1'000};
  const query::Query placeholders = with_placeholders(q);
  for (query::Dialect dialect : {query::Dialect::sqlite, query::Dialect::postgres}) {
    const query::CompiledQuery compiled = query::compile(q, dialect, seqs);
    const query::CompiledQuery shape = query::compile(placeholders, dialect, seqs);
    FUZZ_CHECK(compiled.sql == shape.sql);
    FUZZ_CHECK(compiled.parameters.size() == shape.parameters.size());
    if (dialect == query::Dialect::sqlite)
      check_prepares(compiled);
  }
  if (query::rollup_covers(q)) {
    query::RollupPlan plan;
    plan.first_day = 20'000;
    plan.end_day = 20'010;
    plan.head = {true, 20'000LL * 86'400'000'000 - 1'000, 20'000LL * 86'400'000'000, {1, 10}};
    plan.tail = {true, 20'010LL * 86'400'000'000, 20'010LL * 86'400'000'000 + 1'000, {90, 99}};
    for (query::Dialect dialect : {query::Dialect::sqlite, query::Dialect::postgres}) {
      const query::CompiledQuery compiled = query::compile_with_rollup(q, dialect, plan);
      FUZZ_CHECK(compiled.sql == query::compile_with_rollup(placeholders, dialect, plan).sql);
      if (dialect == query::Dialect::sqlite)
        check_prepares(compiled);
    }
  }
}

void run_json(std::string_view text) {
  auto body = stub::http::parse_request_body(text);
  if (!body.ok())
    return;
  auto parsed = query::parse_query(boost::json::value(body->object), now);
  if (!parsed.ok())
    return;
  FUZZ_CHECK(parsed->range.from < parsed->range.to);
  // The shape it was understood as reads back as the same query.
  auto again = query::parse_query(boost::json::value(query::query_to_json(*parsed)), now);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->metric == parsed->metric && again->group_by == parsed->group_by &&
             again->filters == parsed->filters && again->order == parsed->order &&
             again->limit == parsed->limit);
  for (std::string_view caller : {"", "acme/research"}) {
    query::Query confined = *parsed;
    if (!query::confine_to_scope(confined, caller).ok())
      continue;
    FUZZ_CHECK(!confined.filters.subtree.empty());
    if (!caller.empty()) {
      const auto node = stub::ledger::BudgetPath::parse(caller);
      const auto asked = stub::ledger::BudgetPath::parse(confined.filters.subtree);
      FUZZ_CHECK(asked && asked->within(*node));
    }
    compile_all(confined);
  }
}

void run_question(std::string_view text) {
  static const query::Vocabulary vocabulary = [] {
    query::Vocabulary v;
    v.default_subtree = "acme";
    v.budgets = {"acme", "acme/research", "acme/research/agent-1", "acme/support"};
    v.vendors = {"openai", "anthropic", "serpapi"};
    v.categories = {"llm", "search"};
    v.tag_values = {{"feature", {"ask", "chat"}}, {"env", {"prod"}}};
    return v;
  }();
  const query::QuestionParse parse = query::parse_question(text, vocabulary, now);
  if (!parse.query) {
    FUZZ_CHECK(!parse.cannot_answer.empty());
    return;
  }
  FUZZ_CHECK(parse.query->range.from < parse.query->range.to);
  query::Query confined = *parse.query;
  if (query::confine_to_scope(confined, "acme").ok())
    compile_all(confined);
  if (parse.comparison) {
    query::Query comparison = *parse.comparison;
    if (query::confine_to_scope(comparison, "acme").ok())
      compile_all(comparison);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  const std::string_view text = stub::fuzz::as_text(data + 1, size - 1);
  if (data[0] % 2 == 0)
    run_json(text);
  else
    run_question(text);
  return 0;
}
