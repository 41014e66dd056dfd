#include "store/postgres/pg_connection.hpp"

#include <sys/socket.h>

#include <atomic>
#include <cstring>

namespace stub::store::postgres {

namespace {

bool is_conflict(std::string_view sqlstate) {
  // serialization_failure, deadlock_detected, unique_violation: a concurrent writer got there
  // first. Recomputing the batch against fresh state is always correct.
  return sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "23505";
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

Result<std::unique_ptr<Connection>> Connection::open(const std::string& url) {
  PGconn* conn = PQconnectdb(url.c_str());
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
  return std::unique_ptr<Connection>(new Connection(conn));
}

bool Connection::reset() {
  prepared_.clear();
  PQreset(conn_);
  return PQstatus(conn_) == CONNECTION_OK;
}

void Connection::sever() {
  ::shutdown(PQsocket(conn_), SHUT_RDWR);
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
  if (PQstatus(conn) != CONNECTION_OK || (result == nullptr && error.sqlstate.empty()) ||
      error.sqlstate.starts_with("08") || error.sqlstate == "57P01") {
    error.failure = Failure::connection_lost;
  } else if (is_conflict(error.sqlstate)) {
    error.failure = Failure::conflict;
  } else {
    error.failure = Failure::fatal;
  }
  return error;
}

Error to_error(const DbError& error, std::string_view what) {
  const ErrorCode code =
      error.failure == Failure::fatal ? ErrorCode::internal : ErrorCode::unavailable;
  std::string message = std::string(what) + ": " + error.message;
  if (!error.sqlstate.empty())
    message += " (SQLSTATE " + error.sqlstate + ")";
  return Error{code, "db_error", std::move(message)};
}

std::optional<DbError> Connection::prepare(const Sql& sql) {
  if (prepared_.contains(sql.name))
    return std::nullopt;
  observe(sql);
  ResultPtr result(PQprepare(conn_, sql.name, sql.text, 0, nullptr));
  if (PQresultStatus(result.get()) != PGRES_COMMAND_OK)
    return classify(conn_, result.get());
  prepared_.insert(sql.name);
  return std::nullopt;
}

Result<ResultPtr> Connection::exec(const Sql& sql) {
  observe(sql);
  ResultPtr result(PQexec(conn_, sql.text));
  const ExecStatusType status = PQresultStatus(result.get());
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
  const ParamArrays params(query.params);
  ResultPtr result(PQexecPrepared(conn_, query.sql->name, params.count(), params.values.data(),
                                  nullptr, nullptr, 0));
  const ExecStatusType status = PQresultStatus(result.get());
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
    if (auto error = prepare(*query.sql))
      return error;
  }
  if (PQenterPipelineMode(conn_) != 1)
    return classify(conn_, nullptr);
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
    ResultPtr result(PQgetResult(conn_));
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
    while (ResultPtr(PQgetResult(conn_)) != nullptr) {
    }
    outcome.results.push_back(std::move(result));
  }
  return true;
}

void Connection::collect_sync(PipelineOutcome& outcome) {
  ResultPtr sync(PQgetResult(conn_));
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
