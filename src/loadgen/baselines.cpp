#include "loadgen/baselines.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <chrono>
#include <initializer_list>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "http/credentials.hpp"

namespace stub::loadgen {

namespace {

using Clock = std::chrono::steady_clock;

// Every spend touches the org, one team and one agent.
constexpr int path_levels = 3;
constexpr size_t callers_max = 4'096;
constexpr int connect_timeout_seconds = 10;
// A spend queues behind every other caller on the org row; a minute is far beyond any healthy
// wait and still ends a stuck run with an error instead of a hang.
constexpr int statement_timeout_milliseconds = 60'000;
// Retries of one spend after 40001/40P01 before it counts as failed.
constexpr uint64_t retries_per_spend_max = 1'000;

// ---- libpq ownership ----------------------------------------------------------------------------

struct ConnectionDeleter {
  void operator()(PGconn* connection) const { PQfinish(connection); }
};
struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
struct ConninfoDeleter {
  void operator()(PQconninfoOption* options) const { PQconninfoFree(options); }
};
using ConnectionPtr = std::unique_ptr<PGconn, ConnectionDeleter>;
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;
using ConninfoPtr = std::unique_ptr<PQconninfoOption, ConninfoDeleter>;

// ---- SQL ----------------------------------------------------------------------------------------

constexpr const char* create_budgets_sql =
    "CREATE TABLE IF NOT EXISTS baseline_budgets (path text PRIMARY KEY, parent text, "
    "limit_micros bigint NOT NULL, spent bigint NOT NULL, reserved bigint NOT NULL)";
constexpr const char* create_entries_sql =
    "CREATE TABLE IF NOT EXISTS baseline_entries (id text PRIMARY KEY, budget text NOT NULL, "
    "amount bigint NOT NULL, vendor text NOT NULL, created_at timestamptz NOT NULL)";
// TRUNCATE rather than DELETE so every run starts from fresh heaps and indexes, not from the
// previous run's dead row versions.
constexpr const char* truncate_sql = "TRUNCATE baseline_budgets, baseline_entries";
constexpr const char* insert_budget_sql =
    "INSERT INTO baseline_budgets (path, parent, limit_micros, spent, reserved) "
    "VALUES ($1::text, $2::text, $3::bigint, 0, 0)";
constexpr const char* set_headroom_sql =
    "UPDATE baseline_budgets SET limit_micros = spent + reserved + $2::bigint "
    "WHERE path = $1::text";
constexpr const char* overspend_sql =
    "SELECT coalesce(max(greatest(spent + reserved - limit_micros, 0)), 0)::bigint "
    "FROM baseline_budgets";
constexpr const char* org_totals_sql =
    "SELECT (SELECT spent FROM baseline_budgets WHERE path = $1::text), "
    "(SELECT coalesce(sum(amount), 0)::bigint FROM baseline_entries)";

// The statements a spend runs, prepared once per caller connection. Transaction control is
// prepared too, so a whole phase of a transaction can go out in one pipeline.
struct PreparedStatement {
  const char* name;
  const char* sql;
};

constexpr PreparedStatement begin_read_committed{"baseline_begin", "BEGIN"};
constexpr PreparedStatement begin_serializable{"baseline_begin_serializable",
                                               "BEGIN ISOLATION LEVEL SERIALIZABLE"};
constexpr PreparedStatement commit{"baseline_commit", "COMMIT"};
constexpr PreparedStatement roll_back{"baseline_roll_back", "ROLLBACK"};

constexpr PreparedStatement insert_entry{
    "baseline_insert_entry",
    "INSERT INTO baseline_entries (id, budget, amount, vendor, created_at) "
    "VALUES ($1::text, $2::text, $3::bigint, $4::text, now())"};

// conditional-update. One UPDATE decides and writes all three levels: a row is updated only if it
// has room, and READ COMMITTED re-checks that condition on the newest version of a row once its
// lock is ours, so no interleaving can overspend. The row locks are taken first, in path order,
// by the MATERIALIZED locking CTE: PostgreSQL applies ORDER BY before FOR UPDATE, and an ancestor's
// path is a prefix of its descendants', so every spend locks org, then team, then agent, and two
// spends can never wait on each other in a cycle. A bare `UPDATE ... WHERE path = ANY(...)` locks
// in whatever order its plan visits the rows (heap order under a bitmap or sequential scan): the
// same transaction written that way deadlocked at 16 clients and ran at 15 spends/s.
constexpr PreparedStatement conditional_update{
    "baseline_conditional_update",
    "WITH locked AS MATERIALIZED ("
    "SELECT path FROM baseline_budgets WHERE path = ANY($1::text[]) ORDER BY path FOR UPDATE) "
    "UPDATE baseline_budgets AS budget SET spent = budget.spent + $2::bigint FROM locked "
    "WHERE budget.path = locked.path "
    "AND budget.spent + budget.reserved + $2::bigint <= budget.limit_micros "
    "RETURNING budget.path"};

// occ-per-spend. A plain read, the decision in C++, then one UPDATE per level in path order (no
// single statement guarantees an order without a locking clause) so concurrent writers meet on
// the org row first and lose with 40001 instead of deadlocking.
constexpr PreparedStatement occ_read{
    "baseline_occ_read",
    "SELECT limit_micros, spent, reserved FROM baseline_budgets WHERE path = ANY($1::text[])"};
constexpr PreparedStatement occ_update{
    "baseline_occ_update",
    "UPDATE baseline_budgets SET spent = spent + $2::bigint WHERE path = $1::text"};

constexpr PreparedStatement spend_statements[] = {
    begin_read_committed, begin_serializable, commit,   roll_back,
    insert_entry,         conditional_update, occ_read, occ_update};

// One execution of a prepared statement with its text parameters (nullptr is NULL).
struct Call {
  const PreparedStatement& statement;
  std::vector<const char*> parameters;
};

// ---- Errors -------------------------------------------------------------------------------------

constexpr std::string_view serialization_failure = "40001";
constexpr std::string_view deadlock_detected = "40P01";

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  return text;
}

// The URL as postgres://user@host:port/dbname, so errors can name it without its password.
std::string url_without_password(const std::string& url) {
  char* parse_error = nullptr;
  ConninfoPtr options(PQconninfoParse(url.c_str(), &parse_error));
  PQfreemem(parse_error);
  if (!options)
    return "an unparseable database URL";
  std::string user, host, port, dbname;
  for (const PQconninfoOption* option = options.get(); option->keyword != nullptr; ++option) {
    const std::string_view keyword = option->keyword;
    const std::string value = option->val != nullptr ? option->val : "";
    if (keyword == "user")
      user = value;
    else if (keyword == "host")
      host = value;
    else if (keyword == "port")
      port = value;
    else if (keyword == "dbname")
      dbname = value;
  }
  return "postgres://" + (user.empty() ? "" : user + "@") + host +
         (port.empty() ? "" : ":" + port) + "/" + dbname;
}

// Serialization failures and deadlocks are `conflict` (the transaction may simply run again);
// everything else is `unavailable`. The subcode keeps the SQLSTATE.
Error statement_error(PGconn* connection, const PGresult* result, std::string_view what) {
  const char* sqlstate = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const std::string state = sqlstate != nullptr ? sqlstate : "connection";
  const std::string message =
      trimmed(result != nullptr ? PQresultErrorMessage(result) : PQerrorMessage(connection));
  const bool retryable = state == serialization_failure || state == deadlock_detected;
  return Error{retryable ? ErrorCode::conflict : ErrorCode::unavailable, "sqlstate_" + state,
               std::string(what) + " failed: " + message};
}

bool is_retryable(const Error& error) {
  return error.code == ErrorCode::conflict;
}

// ---- Session ------------------------------------------------------------------------------------

// One libpq connection, owned by one thread at a time.
class Session {
 public:
  static Result<Session> open(const std::string& url) {
    // Our defaults first and the URL last, so whatever the URL sets wins. synchronous_commit is
    // pinned on: these baselines measure commits that survive a power cut.
    const std::string connect_timeout = std::to_string(connect_timeout_seconds);
    // client_min_messages keeps CREATE TABLE IF NOT EXISTS from printing NOTICEs on stderr.
    const std::string options =
        "-c synchronous_commit=on -c client_min_messages=warning -c statement_timeout=" +
        std::to_string(statement_timeout_milliseconds);
    const char* keywords[] = {"connect_timeout", "application_name", "options", "dbname", nullptr};
    const char* values[] = {connect_timeout.c_str(), "stub-bench-baseline", options.c_str(),
                            url.c_str(), nullptr};
    ConnectionPtr connection(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
    if (!connection || PQstatus(connection.get()) != CONNECTION_OK) {
      const std::string reason =
          connection ? trimmed(PQerrorMessage(connection.get())) : "out of memory";
      return Error{ErrorCode::unavailable, "baseline_connect",
                   "Cannot connect to " + url_without_password(url) + ": " + reason};
    }
    return Session(std::move(connection));
  }

  // A command without parameters or rows: BEGIN, COMMIT, ROLLBACK, DDL.
  Status command(const char* sql) {
    auto result = checked(ResultPtr(PQexec(connection_.get(), sql)), sql);
    if (!result.ok())
      return result.error();
    return Status::success();
  }

  // A one-off statement with text parameters (nullptr is NULL).
  Result<ResultPtr> query(const char* sql, std::initializer_list<const char*> parameters) {
    return checked(
        ResultPtr(PQexecParams(connection_.get(), sql, static_cast<int>(parameters.size()), nullptr,
                               parameters.begin(), nullptr, nullptr,
                               /*resultFormat=*/0)),
        sql);
  }

  Status prepare(const PreparedStatement& statement) {
    auto result =
        checked(ResultPtr(PQprepare(connection_.get(), statement.name, statement.sql, 0, nullptr)),
                statement.name);
    if (!result.ok())
      return result.error();
    return Status::success();
  }

  // Sends every call in one pipeline ending in a Sync, so they cost one round trip together, and
  // returns their results in order. The server skips the calls after a failed one; the first
  // failure is the Error. When libpq itself fails (a broken connection) the session is left
  // unusable, which the caller learns from the non-retryable Error.
  Result<std::vector<ResultPtr>> execute_pipelined(const std::vector<Call>& calls) {
    PGconn* connection = connection_.get();
    if (PQenterPipelineMode(connection) != 1)
      return statement_error(connection, nullptr, "entering pipeline mode");
    for (const Call& call : calls) {
      if (PQsendQueryPrepared(connection, call.statement.name,
                              static_cast<int>(call.parameters.size()), call.parameters.data(),
                              nullptr, nullptr, /*resultFormat=*/0) != 1) {
        return statement_error(connection, nullptr, call.statement.name);
      }
    }
    if (PQpipelineSync(connection) != 1)
      return statement_error(connection, nullptr, "pipeline sync");
    auto results = collect_pipelined(calls);
    if (PQexitPipelineMode(connection) != 1 && results.ok())
      return statement_error(connection, nullptr, "leaving pipeline mode");
    return results;
  }

  // After a failed statement the transaction is aborted (or, if COMMIT failed, already over).
  void roll_back_if_open() {
    if (PQtransactionStatus(connection_.get()) != PQTRANS_IDLE)
      static_cast<void>(command("ROLLBACK"));
  }

 private:
  explicit Session(ConnectionPtr connection) : connection_(std::move(connection)) {}

  // Reads one result per call (each followed by the null that ends it), then the Sync's.
  Result<std::vector<ResultPtr>> collect_pipelined(const std::vector<Call>& calls) {
    PGconn* connection = connection_.get();
    std::vector<ResultPtr> results;
    std::optional<Error> failure;
    for (const Call& call : calls) {
      ResultPtr result(PQgetResult(connection));
      if (!result)
        return statement_error(connection, nullptr, call.statement.name);
      const ExecStatusType status = PQresultStatus(result.get());
      if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && !failure &&
          status != PGRES_PIPELINE_ABORTED) {
        failure = statement_error(connection, result.get(), call.statement.name);
      }
      results.push_back(std::move(result));
      const ResultPtr end_of_call(PQgetResult(connection));
      assert(end_of_call == nullptr);
    }
    const ResultPtr sync(PQgetResult(connection));
    if (!sync || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC)
      return statement_error(connection, sync.get(), "pipeline sync");
    if (failure)
      return *failure;
    assert(results.size() == calls.size());
    return results;
  }

  Result<ResultPtr> checked(ResultPtr result, std::string_view what) {
    const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
      return result;
    return statement_error(connection_.get(), result.get(), what);
  }

  ConnectionPtr connection_;
};

int64_t column_int64(const PGresult* result, int row, int column) {
  assert(PQgetisnull(result, row, column) == 0);
  const char* text = PQgetvalue(result, row, column);
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text, text + PQgetlength(result, row, column), value);
  assert(error == std::errc{});
  static_cast<void>(end);
  return value;
}

Result<int64_t> query_int64(Session& session, const char* sql,
                            std::initializer_list<const char*> parameters) {
  auto result = session.query(sql, parameters);
  if (!result.ok())
    return result.error();
  assert(PQntuples(result->get()) == 1);
  return column_int64(result->get(), 0, 0);
}

// ---- One spend ----------------------------------------------------------------------------------

// What one caller spends, precomputed once: its path from the org down and the SQL parameters.
struct CallerPlan {
  std::vector<std::string> path;  // org, team, agent
  std::string path_array;         // the same as a text[] literal
  std::string amount;             // micros, as text
  int64_t amount_micros = 0;
  std::string entry_prefix;
};

enum class SpendOutcome { committed, refused };

// A text[] literal with every element quoted, so any path text survives.
std::string text_array_literal(const std::vector<std::string>& items) {
  std::string literal = "{";
  for (const std::string& item : items) {
    if (literal.size() > 1)
      literal += ',';
    literal += '"';
    for (const char character : item) {
      if (character == '"' || character == '\\')
        literal += '\\';
      literal += character;
    }
    literal += '"';
  }
  return literal + "}";
}

Call insert_entry_call(const CallerPlan& plan, const std::string& entry_id) {
  return {insert_entry,
          {entry_id.c_str(), plan.path.back().c_str(), plan.amount.c_str(), "api.example.com"}};
}

Result<SpendOutcome> end_transaction(Session& session, SpendOutcome outcome) {
  auto ended =
      session.execute_pipelined({{outcome == SpendOutcome::committed ? commit : roll_back, {}}});
  if (!ended.ok())
    return ended.error();
  return outcome;
}

// Two round trips. The entry goes in before the UPDATE, so the hot rows stay locked only from the
// UPDATE's answer to the COMMIT; with the INSERT after the UPDATE they are held one round trip
// longer, which pgbench measured at 10-30% fewer spends/s on this machine. A refused spend rolls
// the entry back with the rest.
Result<SpendOutcome> attempt_conditional_update(Session& session, const CallerPlan& plan,
                                                const std::string& entry_id) {
  auto results = session.execute_pipelined(
      {{begin_read_committed, {}},
       insert_entry_call(plan, entry_id),
       {conditional_update, {plan.path_array.c_str(), plan.amount.c_str()}}});
  if (!results.ok())
    return results.error();
  const int levels_updated = PQntuples(results->back().get());
  assert(levels_updated >= 0 && levels_updated <= path_levels);
  return end_transaction(
      session, levels_updated == path_levels ? SpendOutcome::committed : SpendOutcome::refused);
}

// True when every level read by the OCC statement can take `amount` more. Each value is at most
// Money::micros_max (a ninth of INT64_MAX), so the sum cannot overflow.
bool every_level_has_room(const PGresult* levels, int64_t amount) {
  for (int row = 0; row < PQntuples(levels); ++row) {
    const int64_t limit = column_int64(levels, row, 0);
    const int64_t used = column_int64(levels, row, 1) + column_int64(levels, row, 2);
    assert(limit <= ledger::Money::micros_max && used <= ledger::Money::micros_max);
    if (used + amount > limit)
      return false;
  }
  return true;
}

// Two round trips: BEGIN with the read, then the updates in path order, the entry and the COMMIT
// together, so the snapshot-to-commit window that decides the retry rate is as short as it gets.
Result<SpendOutcome> attempt_occ_per_spend(Session& session, const CallerPlan& plan,
                                           const std::string& entry_id) {
  auto read =
      session.execute_pipelined({{begin_serializable, {}}, {occ_read, {plan.path_array.c_str()}}});
  if (!read.ok())
    return read.error();
  const PGresult* levels = read->back().get();
  if (PQntuples(levels) != path_levels) {
    return Error{ErrorCode::internal, "baseline_tree_missing",
                 "The baseline tree lacks a level of " + plan.path.back() + "."};
  }
  if (!every_level_has_room(levels, plan.amount_micros))
    return end_transaction(session, SpendOutcome::refused);
  std::vector<Call> writes;
  for (const std::string& level : plan.path)
    writes.push_back({occ_update, {level.c_str(), plan.amount.c_str()}});
  writes.push_back(insert_entry_call(plan, entry_id));
  writes.push_back({commit, {}});
  auto written = session.execute_pipelined(writes);
  if (!written.ok())
    return written.error();
  for (size_t level = 0; level < plan.path.size(); ++level)
    assert(std::string_view(PQcmdTuples((*written)[level].get())) == "1");
  return SpendOutcome::committed;
}

// ---- Callers ------------------------------------------------------------------------------------

// What one caller saw; only its own thread touches it until the drive joins.
struct CallerTally {
  uint64_t committed = 0;
  uint64_t refused = 0;
  uint64_t failed = 0;
  uint64_t attempts = 0;
  uint64_t retries = 0;
  std::vector<int64_t> latencies;
  std::optional<Error> failure;
};

Result<SpendOutcome> attempt_spend(Session& session, BaselineDesign design, const CallerPlan& plan,
                                   const std::string& entry_id) {
  switch (design) {
    case BaselineDesign::conditional_update:
      return attempt_conditional_update(session, plan, entry_id);
    case BaselineDesign::occ_per_spend:
      return attempt_occ_per_spend(session, plan, entry_id);
  }
  return Error{ErrorCode::internal, "unknown_design", "Unknown baseline design."};
}

// Runs the spend's transaction until it commits, is refused, fails for good, or exhausts its
// retries. Retries go out at once, as pgbench's --max-tries does, deliberately without the
// jittered exponential backoff we use elsewhere: in this closed loop, backoff lets whichever
// caller just committed go again at once while the losers sleep longer and longer, so the run
// degenerates into one caller spending serially. Measured at 64 callers: 8,000 spends/s instead
// of 1,000, but one caller committed 3,210 spends while another committed 1 and waited 6 s, which
// p99 does not show. That would measure starvation, not the design.
Result<SpendOutcome> spend_with_retries(Session& session, BaselineDesign design,
                                        const CallerPlan& plan, const std::string& entry_id,
                                        CallerTally& tally) {
  for (uint64_t retries = 0;; ++retries) {
    ++tally.attempts;
    Result<SpendOutcome> outcome = attempt_spend(session, design, plan, entry_id);
    if (outcome.ok())
      return outcome;
    session.roll_back_if_open();
    if (!is_retryable(outcome.error()) || retries == retries_per_spend_max)
      return outcome;
    ++tally.retries;
  }
}

void run_caller(Session& session, BaselineDesign design, const CallerPlan& plan,
                const DriveOptions& options, const Clock::time_point& deadline,
                CallerTally& tally) {
  uint64_t consecutive_refusals = 0;
  for (uint64_t count = 0; Clock::now() < deadline; ++count) {
    const auto started = Clock::now();
    const auto outcome =
        spend_with_retries(session, design, plan, plan.entry_prefix + std::to_string(count), tally);
    tally.latencies.push_back(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count());
    if (!outcome.ok()) {
      ++tally.failed;
      tally.failure = outcome.error();
      return;
    }
    if (*outcome == SpendOutcome::committed) {
      ++tally.committed;
      consecutive_refusals = 0;
      continue;
    }
    ++tally.refused;
    if (options.stop_after_refusals_per_caller > 0 &&
        ++consecutive_refusals >= options.stop_after_refusals_per_caller) {
      return;
    }
  }
}

CallerPlan plan_caller(const BenchTree& tree, size_t caller, const DriveOptions& options,
                       const std::string& run_prefix) {
  const int agent = static_cast<int>(caller % static_cast<size_t>(tree.agent_count()));
  CallerPlan plan;
  plan.path = {tree.root, tree.team_path(agent % tree.teams), tree.agent_path(agent)};
  assert(plan.path.size() == path_levels && plan.path[2].starts_with(plan.path[1]));
  plan.path_array = text_array_literal(plan.path);
  plan.amount_micros = options.amount.micros();
  plan.amount = std::to_string(plan.amount_micros);
  plan.entry_prefix = run_prefix + std::to_string(caller) + "-";
  return plan;
}

Result<std::vector<Session>> open_caller_sessions(const std::string& url, size_t callers) {
  std::vector<Session> sessions;
  sessions.reserve(callers);
  for (size_t caller = 0; caller < callers; ++caller) {
    auto session = Session::open(url);
    if (!session.ok())
      return session.error();
    for (const PreparedStatement& statement : spend_statements) {
      if (Status prepared = session->prepare(statement); !prepared.ok())
        return prepared.error();
    }
    sessions.push_back(std::move(session).value());
  }
  return sessions;
}

BaselineStats merge_tallies(std::vector<CallerTally>& tallies, double seconds) {
  assert(!tallies.empty());
  BaselineStats stats;
  stats.caller_committed_min = tallies.front().committed;
  std::vector<int64_t> latencies;
  for (CallerTally& tally : tallies) {
    stats.caller_committed_min = std::min(stats.caller_committed_min, tally.committed);
    stats.caller_committed_max = std::max(stats.caller_committed_max, tally.committed);
    stats.run.committed += tally.committed;
    stats.run.refused += tally.refused;
    stats.run.failed += tally.failed;
    stats.attempts += tally.attempts;
    stats.retries += tally.retries;
    latencies.insert(latencies.end(), tally.latencies.begin(), tally.latencies.end());
    if (tally.failure && stats.first_failure.empty())
      stats.first_failure = tally.failure->message;
  }
  stats.run.seconds = seconds;
  if (!latencies.empty())
    stats.max_ms =
        static_cast<double>(*std::max_element(latencies.begin(), latencies.end())) / 1000.0;
  stats.run.p50_ms = percentile_ms(latencies, 0.50);
  stats.run.p99_ms = percentile_ms(latencies, 0.99);
  return stats;
}

// Refuses to measure on a server that does not flush its WAL: the numbers would not be durable.
Status check_durable(Session& session) {
  auto fsync = session.query("SHOW fsync", {});
  if (!fsync.ok())
    return fsync.error();
  if (std::string_view(PQgetvalue(fsync->get(), 0, 0)) != "on") {
    return Error{ErrorCode::invalid_input, "baseline_not_durable",
                 "The PostgreSQL server runs with fsync off; baseline commits would not be "
                 "durable."};
  }
  return Status::success();
}

Status insert_budget(Session& session, const std::string& path, const char* parent,
                     ledger::Money limit) {
  const std::string limit_text = std::to_string(limit.micros());
  auto inserted = session.query(insert_budget_sql, {path.c_str(), parent, limit_text.c_str()});
  if (!inserted.ok())
    return inserted.error();
  return Status::success();
}

Status insert_tree(Session& session, const BenchTree& tree, ledger::Money org_limit) {
  const auto generous = ledger::Money::from_micros(ledger::Money::micros_max / 1'000);
  if (Status status = insert_budget(session, tree.root, nullptr, org_limit); !status.ok())
    return status;
  for (int team = 0; team < tree.teams; ++team) {
    if (Status status = insert_budget(session, tree.team_path(team), tree.root.c_str(), generous);
        !status.ok()) {
      return status;
    }
  }
  for (int agent = 0; agent < tree.agent_count(); ++agent) {
    const std::string team = tree.team_path(agent % tree.teams);
    if (Status status = insert_budget(session, tree.agent_path(agent), team.c_str(), generous);
        !status.ok()) {
      return status;
    }
  }
  return Status::success();
}

}  // namespace

std::string_view baseline_design_name(BaselineDesign design) {
  switch (design) {
    case BaselineDesign::conditional_update:
      return "conditional-update";
    case BaselineDesign::occ_per_spend:
      return "occ-per-spend";
  }
  return "unknown";
}

std::optional<BaselineDesign> parse_baseline_design(std::string_view name) {
  for (BaselineDesign design :
       {BaselineDesign::conditional_update, BaselineDesign::occ_per_spend}) {
    if (name == baseline_design_name(design))
      return design;
  }
  return std::nullopt;
}

Status reset_baseline_tree(const std::string& url, const BenchTree& tree, ledger::Money org_limit) {
  auto session = Session::open(url);
  if (!session.ok())
    return session.error();
  if (Status durable = check_durable(*session); !durable.ok())
    return durable;
  for (const char* sql : {create_budgets_sql, create_entries_sql, truncate_sql}) {
    if (Status status = session->command(sql); !status.ok())
      return status;
  }
  if (Status status = session->command("BEGIN"); !status.ok())
    return status;
  if (Status status = insert_tree(*session, tree, org_limit); !status.ok())
    return status;
  if (Status status = session->command("COMMIT"); !status.ok())
    return status;
  // Fresh statistics, as a long-lived table would have, so the planner sees 105 rows.
  return session->command("ANALYZE baseline_budgets");
}

Status set_baseline_org_headroom(const std::string& url, const BenchTree& tree,
                                 ledger::Money headroom) {
  auto session = Session::open(url);
  if (!session.ok())
    return session.error();
  const std::string headroom_text = std::to_string(headroom.micros());
  auto updated = session->query(set_headroom_sql, {tree.root.c_str(), headroom_text.c_str()});
  if (!updated.ok())
    return updated.error();
  if (std::string_view(PQcmdTuples(updated->get())) != "1")
    return Error{ErrorCode::not_found, "not_found", "No baseline root " + tree.root + "."};
  return Status::success();
}

Result<BaselineStats> drive_baseline(const std::string& url, BaselineDesign design,
                                     const BenchTree& tree, const DriveOptions& options) {
  if (options.callers == 0 || options.callers > callers_max) {
    return Error::invalid("invalid_callers", "Baseline callers must be between 1 and " +
                                                 std::to_string(callers_max) + ".");
  }
  auto sessions = open_caller_sessions(url, options.callers);
  if (!sessions.ok())
    return sessions.error();
  const std::string run_prefix = "baseline-" + http::random_hex(6) + "-";
  std::vector<CallerPlan> plans;
  for (size_t caller = 0; caller < options.callers; ++caller)
    plans.push_back(plan_caller(tree, caller, options, run_prefix));
  std::vector<CallerTally> tallies(options.callers);

  // Every caller is connected before the clock starts; the latch releases them together and
  // publishes `deadline` to their threads.
  std::latch start(1);
  Clock::time_point deadline;
  Clock::time_point started;
  {
    std::vector<std::jthread> threads;
    threads.reserve(options.callers);
    for (size_t caller = 0; caller < options.callers; ++caller) {
      threads.emplace_back([&, caller] {
        start.wait();
        run_caller((*sessions)[caller], design, plans[caller], options, deadline, tallies[caller]);
      });
    }
    started = Clock::now();
    deadline = started + options.duration;
    start.count_down();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return merge_tallies(tallies, seconds);
}

Status create_schema(const std::string& url, const std::string& schema) {
  auto session = Session::open(url);
  if (!session.ok())
    return session.error();
  return session->command(("CREATE SCHEMA " + schema).c_str());
}

Status drop_schema(const std::string& url, const std::string& schema) {
  auto session = Session::open(url);
  if (!session.ok())
    return session.error();
  return session->command(("DROP SCHEMA IF EXISTS " + schema + " CASCADE").c_str());
}

std::string url_with_schema(const std::string& url, const std::string& schema) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" +
         schema;
}

Status checkpoint(const std::string& url) {
  auto session = Session::open(url);
  if (!session.ok())
    return session.error();
  return session->command("CHECKPOINT");
}

Result<ledger::Money> measure_baseline_overspend(const std::string& url, const BenchTree& tree) {
  auto session = Session::open(url);
  if (!session.ok())
    return session.error();
  auto totals = session->query(org_totals_sql, {tree.root.c_str()});
  if (!totals.ok())
    return totals.error();
  const int64_t org_spent = column_int64(totals->get(), 0, 0);
  const int64_t entries_total = column_int64(totals->get(), 0, 1);
  if (org_spent != entries_total) {
    return Error{ErrorCode::internal, "baseline_totals_differ",
                 "The baseline org spent " + std::to_string(org_spent) +
                     " micros but its entries sum to " + std::to_string(entries_total) + "."};
  }
  auto overspend = query_int64(*session, overspend_sql, {});
  if (!overspend.ok())
    return overspend.error();
  return ledger::Money::from_micros(*overspend);
}

}  // namespace stub::loadgen
