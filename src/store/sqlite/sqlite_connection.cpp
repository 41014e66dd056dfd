#include "store/sqlite/sqlite_connection.hpp"

#include <cassert>
#include <memory>

namespace stub::store::sqlite {

Error sqlite_error(sqlite3* db, int code, std::string_view what) {
  std::string message = std::string(what) + ": " + sqlite3_errstr(code);
  if (db != nullptr)
    message += std::string(" (") + sqlite3_errmsg(db) + ")";
  const int primary = code & 0xFF;
  // A full disk fails the one transaction (rolled back, nothing recorded: the store reloads
  // every batch's state from the file) and passes once space is back, so it is not fatal:
  // the sequencer answers 503 storage_full and carries on.
  if (primary == SQLITE_FULL)
    return Error{ErrorCode::unavailable, "storage_full", message};
  // I/O and corruption errors mean the store can no longer be trusted with writes.
  const bool fatal = primary == SQLITE_IOERR || primary == SQLITE_FULL ||
                     primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB ||
                     primary == SQLITE_CANTOPEN || primary == SQLITE_READONLY;
  return Error{fatal ? ErrorCode::unavailable : ErrorCode::internal, "sqlite_error", message};
}

void Statement::bind(int index, std::string_view text) {
  sqlite3_bind_text(statement_, index, text.data(), static_cast<int>(text.size()),
                    SQLITE_TRANSIENT);
}

void Statement::bind_static(int index, std::string_view text) {
  sqlite3_bind_text(statement_, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

void Statement::bind(int index, int64_t value) {
  sqlite3_bind_int64(statement_, index, value);
}

void Statement::bind_null(int index) {
  sqlite3_bind_null(statement_, index);
}

void Statement::bind_optional(int index, const std::optional<int64_t>& value) {
  if (value) {
    bind(index, *value);
  } else {
    bind_null(index);
  }
}

Result<bool> Statement::step() {
  const int code = sqlite3_step(statement_);
  if (code == SQLITE_ROW)
    return true;
  if (code == SQLITE_DONE)
    return false;
  return sqlite_error(db_, code, "step");
}

Status Statement::run() {
  Result<bool> stepped = step();
  while (stepped.ok() && stepped.value())
    stepped = step();
  reset();
  if (!stepped.ok())
    return stepped.error();
  return Status::success();
}

void Statement::reset() {
  // Bindings are kept: every caller binds every parameter before each step, and clearing them
  // cost a measurable share of a batch's inserts.
  sqlite3_reset(statement_);
}

std::optional<int64_t> Statement::column_optional_int(int index) const {
  if (column_is_null(index))
    return std::nullopt;
  return column_int(index);
}

std::string Statement::column_text(int index) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(statement_, index));
  if (text == nullptr)
    return {};
  return std::string(text, static_cast<size_t>(sqlite3_column_bytes(statement_, index)));
}

Result<Connection> Connection::open(const std::string& path, bool read_only) {
  sqlite3* db = nullptr;
  const int flags =
      (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
      SQLITE_OPEN_NOMUTEX;
  const int code = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (code != SQLITE_OK) {
    Error error = sqlite_error(db, code, "open " + path);
    sqlite3_close(db);
    return error;
  }
  Connection connection(db);
  // busy_timeout first: readers and an offline verifier may briefly hold locks.
  sqlite3_busy_timeout(db, 5'000);
  sqlite3_extended_result_codes(db, 1);
  return connection;
}

Connection::Connection(Connection&& other) noexcept
    : db_(other.db_), cache_(std::move(other.cache_)) {
  other.db_ = nullptr;
}

Connection::~Connection() {
  cache_.clear();  // Statements must be finalized before the connection closes.
  if (db_ != nullptr)
    sqlite3_close(db_);
}

Status Connection::execute(std::string_view sql) {
  char* message = nullptr;
  const int code = sqlite3_exec(db_, std::string(sql).c_str(), nullptr, nullptr, &message);
  if (code != SQLITE_OK) {
    Error error = sqlite_error(db_, code, std::string("execute ") + std::string(sql.substr(0, 60)));
    sqlite3_free(message);
    return error;
  }
  return Status::success();
}

Result<Statement*> Connection::prepared(std::string_view sql) {
  auto found = cache_.find(std::string(sql));
  if (found != cache_.end()) {
    found->second->reset();
    return found->second.get();
  }
  sqlite3_stmt* raw = nullptr;
  const int code = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  if (code != SQLITE_OK)
    return sqlite_error(db_, code, "prepare");
  auto statement = std::make_unique<Statement>(db_, raw);
  Statement* pointer = statement.get();
  cache_.emplace(std::string(sql), std::move(statement));
  assert(pointer != nullptr);
  return pointer;
}

}  // namespace stub::store::sqlite
