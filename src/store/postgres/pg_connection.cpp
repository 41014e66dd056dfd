#include "store/postgres/pg_connection.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace stub::store::postgres {

namespace {

// Session settings, run on every (re)connection. The values are the constants in the header.
constexpr Sql session_statement_timeout{"session_statement_timeout",
                                        "SET statement_timeout = 10000"};
constexpr Sql session_no_statement_timeout{"session_no_statement_timeout",
                                           "SET statement_timeout = 0"};
constexpr Sql session_synchronous_commit{"session_synchronous_commit",
                                         "SET synchronous_commit = on"};
// A connection the store gave up behind a path that stalls (a proxy or load balancer that
// keeps the socket and acknowledges, but forwards nothing) is never closed on the database's
// side: its backend sits idle in the batch's transaction, holding the root's row lock, and
// every other instance's batch on that root waits on it until conflict_retries_exhausted, for
// as long as the path stays stalled (the fault suite's proxy scenario). 15 s is the store's
// own result deadline (statement_timeout + 5 s): by then this side has given the connection up.
constexpr Sql session_idle_in_transaction_timeout{
    "session_idle_in_transaction_timeout", "SET idle_in_transaction_session_timeout = 15000"};
static_assert(statement_timeout_milliseconds == 10'000, "session_statement_timeout's value");
constexpr int unbounded_result_deadline_milliseconds = 24 * 3'600'000;

bool is_conflict(std::string_view sqlstate) {
  // serialization_failure, deadlock_detected, unique_violation: a concurrent writer got there
  // first. lock_not_available and query_canceled: a lock wait ran into lock_timeout or
  // statement_timeout, and the transaction is aborted. Recomputing the batch against fresh
  // state is always correct.
  return sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "23505" || sqlstate == "55P03" ||
         sqlstate == "57014";
}

std::string trimmed(const char* text) {
  std::string out = text == nullptr ? "" : text;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
    out.pop_back();
  return out;
}

}  // namespace

namespace {
std::atomic<Connection::Observer> observer{nullptr};

void observe(const Sql& sql) {
  if (Connection::Observer callback = observer.load(std::memory_order_acquire))
    callback(sql.text);
}
}  // namespace

void Connection::set_observer(Observer callback) {
  observer.store(callback, std::memory_order_release);
}

int64_t Rows::column_int(int column) const {
  const char* text = PQgetvalue(result_, row_, column);
  const size_t length = static_cast<size_t>(PQgetlength(result_, row_, column));
  if (length == 1 && (text[0] == 't' || text[0] == 'f'))
    return text[0] == 't' ? 1 : 0;  // booleans read as 0/1
  int64_t value = 0;
  std::from_chars(text, text + length, value);
  return value;
}

Result<std::unique_ptr<Connection>> Connection::open(const std::string& url, Role role) {
  // The limits come before the URL (`dbname`, expanded as a connection string): a value the URL
  // sets itself overrides ours.
  const std::string connect_timeout = std::to_string(connect_timeout_seconds);
  const std::string idle = std::to_string(keepalives_idle_seconds);
  const std::string interval = std::to_string(keepalives_interval_seconds);
  const std::string count = std::to_string(keepalives_count);
  const std::string user_timeout = std::to_string(tcp_user_timeout_milliseconds);
  const char* const keywords[] = {
      "connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
      "keepalives_count", "tcp_user_timeout", "dbname",          nullptr};
  const char* const values[] = {
      connect_timeout.c_str(), "1",         idle.c_str(), interval.c_str(), count.c_str(),
      user_timeout.c_str(),    url.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, 1);
  if (conn == nullptr) {
    return Error{ErrorCode::unavailable, "db_connect_failed",
                 "Cannot allocate a PostgreSQL connection."};
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return Error{ErrorCode::unavailable, "db_connect_failed",
                 "Cannot connect to " + redact_url(url) + ": " + message};
  }
  // Server notices ("relation already exists, skipping") are not errors; keep them off stderr.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  std::unique_ptr<Connection> connection(new Connection(conn, role));
  if (auto error = connection->set_up_session()) {
    return Error{ErrorCode::unavailable, "db_connect_failed",
                 "Cannot set up a session on " + redact_url(url) + ": " + error->message};
  }
  return connection;
}

std::vector<const Sql*> Connection::session_statements() {
  return {&session_statement_timeout, &session_no_statement_timeout, &session_synchronous_commit,
          &session_idle_in_transaction_timeout};
}

std::optional<DbError> Connection::set_up_session() {
  result_deadline_milliseconds_ = result_deadline_milliseconds;
  std::vector<const Sql*> settings = {&session_statement_timeout,
                                      &session_idle_in_transaction_timeout};
  if (role_ == Role::writer)
    settings.push_back(&session_synchronous_commit);
  for (const Sql* setting : settings) {
    auto done = exec(*setting);
    if (!done.ok())
      return DbError{Failure::connection_lost, done.error().subcode, done.error().message};
  }
  return std::nullopt;
}

Status Connection::lift_statement_timeout(bool lifted) {
  auto done = exec(lifted ? session_no_statement_timeout : session_statement_timeout);
  if (!done.ok())
    return done.error();
  result_deadline_milliseconds_ =
      lifted ? unbounded_result_deadline_milliseconds : result_deadline_milliseconds;
  return Status::success();
}

bool Connection::reset() {
  prepared_.clear();
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK)
    return false;
  if (set_up_session()) {
    sever();  // A session without its settings must not be used.
    return false;
  }
  return true;
}

void Connection::sever() {
  ::shutdown(PQsocket(conn_), SHUT_RDWR);
}

void Connection::start_deadline() {
  deadline_ =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(result_deadline_milliseconds_);
}

ResultPtr Connection::next_result() {
  while (PQisBusy(conn_) == 1) {
    const auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
                               deadline_ - std::chrono::steady_clock::now())
                               .count();
    if (remaining <= 0) {
      // No answer in time on a connection that looks alive: treat it as lost. Severed, it can
      // never deliver this answer late as the answer to something else.
      sever();
    } else {
      pollfd socket{PQsocket(conn_), POLLIN, 0};
      const int ready = ::poll(&socket, 1, static_cast<int>(std::min<int64_t>(remaining, 1'000)));
      if (ready < 0 && errno != EINTR)
        sever();
      if (ready == 0)
        continue;
    }
    if (PQconsumeInput(conn_) == 0)
      break;  // Lost: PQgetResult reports it without waiting.
  }
  return ResultPtr(PQgetResult(conn_));
}

bool Connection::drain_results() {
  while (next_result() != nullptr) {
  }
  return PQstatus(conn_) == CONNECTION_OK;
}

ResultPtr Connection::finish_sent() {
  ResultPtr first = next_result();
  if (first != nullptr)
    drain_results();
  return first;
}

DbError classify(PGconn* conn, const PGresult* result) {
  DbError error;
  if (result != nullptr) {
    const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    error.sqlstate = state == nullptr ? "" : state;
    error.message = trimmed(PQresultErrorMessage(result));
  }
  if (error.message.empty())
    error.message = trimmed(PQerrorMessage(conn));
  if (PQstatus(conn) != CONNECTION_OK || (result == nullptr && error.sqlstate.empty())) {
    error.failure = Failure::connection_lost;
  } else {
    error.failure = classify_sqlstate(error.sqlstate);
  }
  return error;
}

Failure classify_sqlstate(std::string_view sqlstate) {
  // 08: connection exceptions; 57P01-57P03: the server is shutting down or restarting (an
  // immediate restart ends every backend with 57P01 before the socket closes).
  if (sqlstate.empty() || sqlstate.starts_with("08") || sqlstate == "57P01" ||
      sqlstate == "57P02" || sqlstate == "57P03") {
    return Failure::connection_lost;
  }
  if (is_conflict(sqlstate))
    return Failure::conflict;
  // Data exceptions (22: a malformed literal, an invalid byte sequence, a value out of range)
  // and integrity violations (23) are about this batch's data, not about the database.
  if (sqlstate.starts_with("22") || sqlstate.starts_with("23"))
    return Failure::data;
  return Failure::fatal;
}

std::optional<DbError> refuse_unsendable(std::span<const Param> params) {
  for (const Param& param : params) {
    if (param && param->find('\0') != std::string::npos) {
      return DbError{Failure::data, "22021",
                     "a parameter contains a NUL byte, which PostgreSQL text cannot hold"};
    }
  }
  return std::nullopt;
}

Error to_error(const DbError& error, std::string_view what) {
  ErrorCode code = ErrorCode::unavailable;
  if (error.failure == Failure::fatal)
    code = ErrorCode::internal;
  else if (error.failure == Failure::data)
    code = ErrorCode::invalid_input;
  std::string message = std::string(what) + ": " + error.message;
  if (!error.sqlstate.empty())
    message += " (SQLSTATE " + error.sqlstate + ")";
  return Error{code, "db_error", std::move(message)};
}

std::optional<DbError> Connection::prepare(const Sql& sql) {
  if (prepared_.contains(sql.name))
    return std::nullopt;
  observe(sql);
  ResultPtr result;
  start_deadline();
  if (PQsendPrepare(conn_, sql.name, sql.text, 0, nullptr) == 1)
    result = finish_sent();
  if (result == nullptr || PQresultStatus(result.get()) != PGRES_COMMAND_OK)
    return classify(conn_, result.get());
  prepared_.insert(sql.name);
  return std::nullopt;
}

Result<ResultPtr> Connection::exec(const Sql& sql) {
  observe(sql);
  ResultPtr result;
  start_deadline();
  if (PQsendQuery(conn_, sql.text) == 1)
    result = finish_sent();
  const ExecStatusType status =
      result == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    const DbError error = classify(conn_, result.get());
    Error out = to_error(error, "PostgreSQL");
    out.subcode = error.sqlstate.empty() ? "db_error" : error.sqlstate;
    return out;
  }
  return result;
}

namespace {

// libpq wants parallel arrays of C strings.
struct ParamArrays {
  explicit ParamArrays(const std::vector<Param>& params) {
    values.reserve(params.size());
    for (const Param& param : params)
      values.push_back(param ? param->c_str() : nullptr);
  }
  int count() const { return static_cast<int>(values.size()); }
  std::vector<const char*> values;
};

}  // namespace

Result<ResultPtr> Connection::run(const Query& query) {
  if (auto error = prepare(*query.sql)) {
    Error out = to_error(*error, query.sql->name);
    out.subcode = error->sqlstate.empty() ? "db_error" : error->sqlstate;
    return out;
  }
  if (auto refused = refuse_unsendable(query.params)) {
    Error out = to_error(*refused, query.sql->name);
    out.subcode = refused->sqlstate;
    return out;
  }
  const ParamArrays params(query.params);
  ResultPtr result;
  start_deadline();
  if (PQsendQueryPrepared(conn_, query.sql->name, params.count(), params.values.data(), nullptr,
                          nullptr, 0) == 1) {
    result = finish_sent();
  }
  const ExecStatusType status =
      result == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    const DbError error = classify(conn_, result.get());
    Error out = to_error(error, query.sql->name);
    out.subcode = error.sqlstate.empty() ? "db_error" : error.sqlstate;
    return out;
  }
  return result;
}

Connection::PipelineOutcome Connection::pipeline(std::span<const Query> queries) {
  if (auto error = send_pipeline(queries)) {
    PipelineOutcome outcome;
    outcome.error = std::move(error);
    return outcome;
  }
  return collect_pipeline(queries.size());
}

std::optional<DbError> Connection::send_pipeline(std::span<const Query> queries,
                                                 size_t flush_after) {
  for (const Query& query : queries) {
    if (auto refused = refuse_unsendable(query.params))
      return refused;
  }
  for (const Query& query : queries) {
    if (auto error = prepare(*query.sql))
      return error;
  }
  if (PQenterPipelineMode(conn_) != 1)
    return classify(conn_, nullptr);
  start_deadline();
  bool sent = true;
  for (size_t i = 0; i < queries.size() && sent; ++i) {
    const Query& query = queries[i];
    const ParamArrays params(query.params);
    sent = PQsendQueryPrepared(conn_, query.sql->name, params.count(), params.values.data(),
                               nullptr, nullptr, 0) == 1;
    if (sent && i + 1 == flush_after)
      sent = PQsendFlushRequest(conn_) == 1;
  }
  if (!sent || PQpipelineSync(conn_) != 1) {
    DbError error = classify(conn_, nullptr);
    error.failure = Failure::connection_lost;
    PQexitPipelineMode(conn_);
    return error;
  }
  return std::nullopt;
}

Connection::PipelineOutcome Connection::collect_pipeline(size_t count) {
  PipelineOutcome outcome;
  if (collect_results(count, outcome))
    collect_sync(outcome);
  return outcome;
}

bool Connection::collect_results(size_t count, PipelineOutcome& outcome) {
  // One result per query, each followed by a null.
  for (size_t i = 0; i < count; ++i) {
    ResultPtr result = next_result();
    if (result == nullptr) {
      if (!outcome.error)
        outcome.error = classify(conn_, nullptr);
      outcome.error->failure = Failure::connection_lost;
      return false;
    }
    const ExecStatusType status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && !outcome.error) {
      outcome.error = classify(conn_, result.get());
      if (status == PGRES_PIPELINE_ABORTED && outcome.error->message.empty())
        outcome.error->message = "pipeline aborted";
    }
    if (!drain_results()) {
      outcome.results.push_back(std::move(result));
      if (!outcome.error || outcome.error->failure != Failure::connection_lost) {
        outcome.error = classify(conn_, nullptr);
        outcome.error->failure = Failure::connection_lost;
      }
      return false;
    }
    outcome.results.push_back(std::move(result));
  }
  return true;
}

void Connection::collect_sync(PipelineOutcome& outcome) {
  ResultPtr sync = next_result();
  if (sync == nullptr || PQresultStatus(sync.get()) != PGRES_PIPELINE_SYNC) {
    if (!outcome.error) {
      outcome.error = classify(conn_, sync.get());
      outcome.error->failure = Failure::connection_lost;
    }
    return;
  }
  if (PQexitPipelineMode(conn_) != 1 && !outcome.error) {
    outcome.error = classify(conn_, nullptr);
    outcome.error->failure = Failure::connection_lost;
  }
}

std::string redact_url(std::string_view url) {
  // postgres://user:password@host/... -> postgres://user:***@host/...
  const size_t scheme = url.find("://");
  const size_t at = url.find('@');
  if (scheme == std::string_view::npos || at == std::string_view::npos || at < scheme)
    return std::string(url);
  const size_t colon = url.find(':', scheme + 3);
  if (colon == std::string_view::npos || colon > at)
    return std::string(url);
  return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
}

void ArrayBuilder::add_raw(std::string_view token) {
  if (count_++ > 0)
    text_ += ',';
  text_ += token;
}

void ArrayBuilder::add_text(std::string_view value) {
  if (count_++ > 0)
    text_ += ',';
  // Every element is quoted, so only the quote and the backslash need escaping.
  text_ += '"';
  size_t run = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '"' || value[i] == '\\') {
      text_.append(value.data() + run, i - run);
      text_ += '\\';
      run = i;
    }
  }
  text_.append(value.data() + run, value.size() - run);
  text_ += '"';
}

void ArrayBuilder::add_int(int64_t value) {
  char buffer[24];
  const auto end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
  add_raw(std::string_view(buffer, static_cast<size_t>(end - buffer)));
}

void ArrayBuilder::add_optional_int(const std::optional<int64_t>& value) {
  if (value)
    add_int(*value);
  else
    add_raw("NULL");
}

Param ArrayBuilder::finish() {
  text_ += '}';
  return std::move(text_);
}

Result<ResultPtr> Connection::run_unprepared(const std::string& sql,
                                             const std::vector<Param>& params) {
  observe(Sql{"constrained_query", sql.c_str()});
  const ParamArrays values(params);
  ResultPtr result(PQexecParams(conn_, sql.c_str(), values.count(), nullptr, values.values.data(),
                                nullptr, nullptr, 0));
  const ExecStatusType status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    const DbError error = classify(conn_, result.get());
    Error out = to_error(error, "constrained query");
    out.subcode = error.sqlstate.empty() ? "db_error" : error.sqlstate;
    return out;
  }
  return result;
}

}  // namespace stub::store::postgres
