#pragma once

// Thin RAII ownership of libpq handles. A Connection belongs to one user at a time (the
// committing thread, or a reader that checked it out of the pool). Statements are prepared once
// per connection on first use; `pipeline` sends a list of them in one round trip (libpq
// pipeline mode) and classifies the first failure by SQLSTATE.

#include <libpq-fe.h>

#include <charconv>
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

// A statement the store issues. Every one is a constant listed in pg_store.cpp's
// `all_statements`, which the forbidden-SQL scan test reads.
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
  connection_lost,  // the server may or may not have run what was sent
  fatal,            // anything else: a bug or a broken database
};

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
  static Result<std::unique_ptr<Connection>> open(const std::string& url);
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
  // Reconnects with the same parameters; prepared statements are prepared again on use.
  bool reset();
  // Fault injection for tests: shuts the socket down as a lost network would.
  void sever();
  int backend_pid() const { return PQbackendPID(conn_); }

  // Tests: sees the text of every statement any connection prepares or executes.
  using Observer = void (*)(std::string_view sql);
  static void set_observer(Observer observer);

 private:
  explicit Connection(PGconn* conn) : conn_(conn) {}
  std::optional<DbError> prepare(const Sql& sql);

  PGconn* conn_;
  std::unordered_set<std::string_view> prepared_;
};

// The error for a failed result (or a failed send, when `result` is null).
DbError classify(PGconn* conn, const PGresult* result);
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
