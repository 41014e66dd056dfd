#pragma once

// Thin RAII ownership of libpq handles. A Connection belongs to one user at a time (the
// committing thread, or a reader that checked it out of the pool). Statements are prepared once
// per connection on first use; `pipeline` sends a list of them in one round trip (libpq
// pipeline mode) and classifies the first failure by SQLSTATE.

#include <libpq-fe.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "ledger/result.hpp"

namespace stub::store::postgres {

struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// A statement the store issues. Every one is a constant listed in pg_statements.hpp's
// `every_statement`, which the forbidden-SQL scan test reads.
struct Sql {
  const char* name;
  const char* text;
};

// A text-format parameter; nullopt is SQL NULL.
using Param = std::optional<std::string>;

struct Query {
  const Sql* sql;
  std::vector<Param> params;
};

// Why a statement failed, as far as the caller's next move is concerned.
enum class Failure {
  none,
  conflict,         // 40001, 40P01, 23505: another writer won; re-read and recompute
  data,             // SQLSTATE classes 22 and 23 (but 23505): this batch's data was refused
  connection_lost,  // the server may or may not have run what was sent
  fatal,            // anything else: a bug or a broken database
};

// Client-side limits on every connection (STYLE: pass timeouts explicitly). A URL may set the
// libpq ones itself (`?connect_timeout=...`): the URL's value wins.
inline constexpr int connect_timeout_seconds = 5;
// A peer that stops answering is noticed by TCP keepalives (idle 5 s, then 3 probes 2 s
// apart) and unacknowledged writes by tcp_user_timeout; neither notices a path that still
// acknowledges but never answers (a proxy or a load balancer holding the socket), so every
// wait for a result also has a deadline of its own, statement_timeout plus a margin.
inline constexpr int keepalives_idle_seconds = 5;
inline constexpr int keepalives_interval_seconds = 2;
inline constexpr int keepalives_count = 3;
inline constexpr int tcp_user_timeout_milliseconds = 10'000;
inline constexpr int statement_timeout_milliseconds = 10'000;
inline constexpr int result_deadline_milliseconds = statement_timeout_milliseconds + 5'000;

// What a connection is for: writers also pin synchronous_commit = on, so that a server or role
// default of `off` can never make an acknowledged commit vanish in a crash.
enum class Role { reader, writer };

struct DbError {
  Failure failure = Failure::none;
  std::string sqlstate;
  std::string message;
};

// Rows of one result, read by column index in text format.
class Rows {
 public:
  explicit Rows(const PGresult* result, int row = 0) : result_(result), row_(row) {}
  int size() const { return PQntuples(result_); }
  Rows at(int row) const { return Rows(result_, row); }

  bool column_is_null(int column) const { return PQgetisnull(result_, row_, column) != 0; }
  std::string column_text(int column) const {
    return std::string(PQgetvalue(result_, row_, column),
                       static_cast<size_t>(PQgetlength(result_, row_, column)));
  }
  int64_t column_int(int column) const;
  std::optional<int64_t> column_optional_int(int column) const {
    if (column_is_null(column))
      return std::nullopt;
    return column_int(column);
  }

 private:
  const PGresult* result_;
  int row_;
};

class Connection {
 public:
  static Result<std::unique_ptr<Connection>> open(const std::string& url, Role role);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { PQfinish(conn_); }

  // Runs one parameterless statement as a simple query (DDL, BEGIN, ROLLBACK).
  Result<ResultPtr> exec(const Sql& sql);
  // Runs one prepared statement outside any pipeline.
  Result<ResultPtr> run(const Query& query);
  // Runs one statement whose text is built per call (a constrained query, src/query), with
  // text-format parameters, unprepared: its shapes are too many to keep prepared.
  Result<ResultPtr> run_unprepared(const std::string& sql, const std::vector<Param>& params);

  // Sends every query and one Sync, then reads every result. On success `results` holds one
  // result per query. On failure the transaction (if any) is aborted or the connection lost;
  // `error` says which.
  struct PipelineOutcome {
    std::vector<ResultPtr> results;
    std::optional<DbError> error;
  };
  PipelineOutcome pipeline(std::span<const Query> queries);
  // The two halves of `pipeline`, for a caller with other work to do while the server runs the
  // queries: send_pipeline sends them and one Sync (an error means nothing is left to
  // collect), collect_pipeline reads the `count` results and the Sync's.
  // `flush_after` queries in, the server is asked to flush what it has answered so far (it
  // otherwise holds answers back until the Sync).
  std::optional<DbError> send_pipeline(std::span<const Query> queries, size_t flush_after = 0);
  PipelineOutcome collect_pipeline(size_t count);
  // collect_pipeline in steps: the next `count` results into `outcome` (false once the
  // connection is lost), then the Sync's.
  bool collect_results(size_t count, PipelineOutcome& outcome);
  void collect_sync(PipelineOutcome& outcome);

  bool broken() const { return PQstatus(conn_) != CONNECTION_OK; }
  // Reconnects with the same parameters and session settings; prepared statements are
  // prepared again on use.
  bool reset();
  // Shuts the socket down as a lost network would (fault injection, and a result that missed
  // its deadline: whatever the server still sends must not be read as a later answer).
  void sever();
  int backend_pid() const { return PQbackendPID(conn_); }
  // Migrations run DDL of any length: they lift statement_timeout and the result deadline for
  // their session (lifted = true) and put both back after (false).
  Status lift_statement_timeout(bool lifted);
  // The session statements, for the SQL-subset scan.
  static std::vector<const Sql*> session_statements();

  // Tests: sees the text of every statement any connection prepares or executes.
  using Observer = void (*)(std::string_view sql);
  static void set_observer(Observer observer);

 private:
  Connection(PGconn* conn, Role role) : conn_(conn), role_(role) {}
  std::optional<DbError> prepare(const Sql& sql);
  // The session settings every (re)connection starts with.
  std::optional<DbError> set_up_session();
  // Starts the result deadline of what is sent next: everything sent in one go (a pipeline's
  // statements included) must be answered within it, however the caller collects it.
  void start_deadline();
  // The next result, waiting at most until the result deadline; nullptr when the results of
  // the current query are done, or (with the connection severed) when the deadline passed.
  ResultPtr next_result();
  // Reads and discards every remaining result of the current query; false if the connection
  // was lost meanwhile.
  bool drain_results();
  // Runs a query sent with PQsend*: its first result, the rest drained.
  ResultPtr finish_sent();

  PGconn* conn_;
  Role role_;
  int result_deadline_milliseconds_ = result_deadline_milliseconds;
  std::chrono::steady_clock::time_point deadline_;
  std::unordered_set<std::string_view> prepared_;
};

// The error for a failed result (or a failed send, when `result` is null).
DbError classify(PGconn* conn, const PGresult* result);
// The class of an SQLSTATE, for a caller's next move.
Failure classify_sqlstate(std::string_view sqlstate);
// A parameter PostgreSQL cannot take: text-format parameters travel as C strings (libpq
// ignores lengths for them), so a NUL byte would cut the value short, and `text` cannot hold
// one anyway. Found before anything is sent, as the data error the server would have given.
std::optional<DbError> refuse_unsendable(std::span<const Param> params);
Error to_error(const DbError& error, std::string_view what);

// A URL with any password replaced by "***", for messages and logs.
std::string redact_url(std::string_view url);

// Text-format array literals for `$n::text[]` / `$n::bigint[]` parameters.
class ArrayBuilder {
 public:
  void add_text(std::string_view value);
  void add_int(int64_t value);
  void add_optional_int(const std::optional<int64_t>& value);
  void add_bool(bool value) { add_raw(value ? "t" : "f"); }
  Param finish();
  bool empty() const { return count_ == 0; }

 private:
  void add_raw(std::string_view token);
  std::string text_ = "{";
  size_t count_ = 0;
};

}  // namespace stub::store::postgres
