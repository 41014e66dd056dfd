// `stub query`: the constrained query (docs/query.md), from flags or a JSON body, answered by
// a server (POST /v1/query) or offline from a database file (--db).

#include <boost/json/parse.hpp>
#include <iostream>

#include "cli/answer_output.hpp"
#include "cli/commands.hpp"

namespace stub::cli {

namespace {

struct QueryArgs {
  std::string json;
  std::string metric = "spend";
  std::vector<std::string> group_by;
  std::string subtree;
  std::vector<std::string> vendors, categories, kinds, codes, tags;
  std::string range, from, to, order;
  int64_t limit = 0;
  std::string format = "table";
};

Result<boost::json::object> body_of(const QueryArgs& args) {
  if (!args.json.empty()) {
    boost::system::error_code code;
    boost::json::value value = boost::json::parse(args.json, code);
    if (code || !value.is_object())
      return Error::invalid("invalid_query", "--json must be a JSON object.");
    return std::move(value.as_object());
  }
  boost::json::object body{{"metric", args.metric}};
  boost::json::array groups;
  for (const std::string& group : args.group_by)
    groups.emplace_back(group);
  body["group_by"] = std::move(groups);
  boost::json::object filters;
  if (!args.subtree.empty())
    filters["subtree"] = args.subtree;
  auto put = [&filters](const char* key, const std::vector<std::string>& values) {
    if (values.empty())
      return;
    boost::json::array array;
    for (const std::string& value : values)
      array.emplace_back(value);
    filters[key] = std::move(array);
  };
  put("vendor", args.vendors);
  put("category", args.categories);
  put("kind", args.kinds);
  put("code", args.codes);
  if (!args.tags.empty()) {
    boost::json::object tags;
    for (const std::string& tag : args.tags) {
      const size_t equals = tag.find('=');
      if (equals == std::string::npos || equals == 0)
        return Error::invalid("invalid_query", "--tag takes KEY=VALUE.");
      tags[tag.substr(0, equals)] = tag.substr(equals + 1);
    }
    filters["tags"] = std::move(tags);
  }
  body["filters"] = std::move(filters);
  if (!args.range.empty())
    body["range"] = args.range;
  if (!args.from.empty())
    body["from"] = args.from;
  if (!args.to.empty())
    body["to"] = args.to;
  if (!args.order.empty())
    body["order"] = args.order;
  if (args.limit != 0)
    body["limit"] = args.limit;
  return body;
}

}  // namespace

void add_query_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<QueryArgs>();
  auto source = std::make_shared<AnswerSource>();
  CLI::App* command = app.add_subcommand(
      "query", "Ask the ledger a constrained query (metric, group_by, filters, time range)");
  command->add_option("--json", args->json, "The whole query as JSON (overrides the flags)");
  command->add_option("--metric", args->metric, "spend, count, denials, holds_open, avg")
      ->capture_default_str();
  command->add_option("--group-by", args->group_by,
                      "budget, budget:N, team, agent, vendor, category, intent, tag:KEY, hour, "
                      "day, week, month (at most 3)");
  command->add_option("--subtree", args->subtree, "The budget subtree (required for the admin)");
  command->add_option("--vendor", args->vendors, "Only these vendors");
  command->add_option("--category", args->categories, "Only these categories");
  command->add_option("--kind", args->kinds, "Only these entry kinds (spend, capture, expire)");
  command->add_option("--code", args->codes, "Denial codes (metric denials)");
  command->add_option("--tag", args->tags, "KEY=VALUE tag equality (repeatable)");
  command->add_option("--range", args->range,
                      "all, today, this month, last 7d, 2026-11, 2026-11-03, ...");
  command->add_option("--from", args->from, "RFC 3339 start (inclusive)");
  command->add_option("--to", args->to, "RFC 3339 end (exclusive)");
  command->add_option("--order", args->order, "value_desc, value_asc, key_asc");
  command->add_option("--limit", args->limit, "At most this many rows (1..1000)");
  command->add_option("--format", args->format, "table, csv or json")
      ->check(CLI::IsMember({"table", "csv", "json"}))
      ->capture_default_str();
  add_answer_source_options(*command, *source);
  command->callback([args, source, &exit_code] {
    auto body = body_of(*args);
    if (!body.ok()) {
      std::cerr << "stub query: " << body.error().message << "\n";
      exit_code = 1;
      return;
    }
    auto answer = fetch_answer(*source, "/v1/query", *body);
    if (!answer.ok()) {
      std::cerr << "stub query: " << answer.error().message << "\n";
      exit_code = 1;
      return;
    }
    exit_code = print_answer(*answer, args->format);
  });
}

}  // namespace stub::cli
