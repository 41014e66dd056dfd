#pragma once

// Thin RAII ownership of sqlite3 handles, translating SQLite's codes into stub::Error at the
// store boundary. Nothing here is shared between threads: a connection belongs to one user at
// a time (the writer thread, or a reader that checked it out of the pool).

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "ledger/result.hpp"

namespace stub::store::sqlite {

class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* statement) : db_(db), statement_(statement) {}
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(statement_); }

  // Binds by 1-based position. Text is copied (SQLITE_TRANSIENT) so callers may pass temporaries.
  void bind(int index, std::string_view text);
  // Binds without copying: `text` must stay alive and unchanged until the statement is reset.
  void bind_static(int index, std::string_view text);
  void bind(int index, int64_t value);
  void bind_null(int index);
  void bind_optional(int index, const std::optional<int64_t>& value);

  // Steps once: true when a row is available, false when done; an Error on failure.
  Result<bool> step();
  // Steps to completion for statements that return no rows.
  Status run();
  void reset();

  int64_t column_int(int index) const { return sqlite3_column_int64(statement_, index); }
  bool column_is_null(int index) const {
    return sqlite3_column_type(statement_, index) == SQLITE_NULL;
  }
  std::optional<int64_t> column_optional_int(int index) const;
  std::string column_text(int index) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* statement_;
};

class Connection {
 public:
  static Result<Connection> open(const std::string& path, bool read_only);
  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&&) = delete;
  Connection(const Connection&) = delete;
  ~Connection();

  Status execute(std::string_view sql);
  // A statement prepared once per connection and reused (reset before each use).
  Result<Statement*> prepared(std::string_view sql);
  sqlite3* handle() { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, std::unique_ptr<Statement>> cache_;
};

Error sqlite_error(sqlite3* db, int code, std::string_view what);

}  // namespace stub::store::sqlite
