#include <string_view>

#include "store/postgres/pg_store.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "store/store.hpp"

namespace stub::store {

namespace {

// Replaces the value of every `password=VALUE` (up to `&`, space or the end) with ***.
std::string redact_password_parameters(std::string text) {
  for (size_t at = text.find("password="); at != std::string::npos;
       at = text.find("password=", at + 1)) {
    const size_t value = at + 9;
    size_t end = value;
    if (end < text.size() && text[end] == '\'') {
      end = text.find('\'', end + 1);
      end = end == std::string::npos ? text.size() : end + 1;
    } else {
      while (end < text.size() && text[end] != '&' && text[end] != ' ')
        ++end;
    }
    text.replace(value, end - value, "***");
  }
  return text;
}

// A libpq keyword/value connection string ("host=a,b,c port=5432 dbname=stub
// target_session_attrs=read-write"): the text before its first '=' is one of libpq's keywords.
// Multi-host failover setups are usually written this way, so it must not be taken for a SQLite
// file name (a file really named so is still reachable as "sqlite:host=...").
bool is_keyword_connection_string(std::string_view location) {
  constexpr std::string_view keywords[] = {
      "host",    "hostaddr", "port",    "dbname",          "user",
      "service", "sslmode",  "options", "connect_timeout", "target_session_attrs"};
  size_t start = location.find_first_not_of(' ');
  if (start == std::string_view::npos)
    return false;
  location.remove_prefix(start);
  const size_t equals = location.find('=');
  if (equals == std::string_view::npos)
    return false;
  std::string_view name = location.substr(0, equals);
  while (!name.empty() && name.back() == ' ')
    name.remove_suffix(1);
  for (std::string_view keyword : keywords) {
    if (name == keyword)
      return true;
  }
  return false;
}

}  // namespace

std::string redact_database_url(std::string_view url) {
  std::string out(url);
  const size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    // postgres://user:password@host/... -> postgres://user:***@host/...
    const size_t authority = scheme + 3;
    const size_t end = out.find_first_of("/?", authority);
    const size_t at = out.rfind('@', end == std::string::npos ? out.size() : end);
    if (at != std::string::npos && at > authority) {
      const size_t colon = out.find(':', authority);
      if (colon != std::string::npos && colon < at)
        out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  return redact_password_parameters(std::move(out));
}

Result<std::unique_ptr<Store>> open_store(const std::string& url, const StoreOptions& options) {
  std::string_view location = url;
  if (location.starts_with("postgres://") || location.starts_with("postgresql://") ||
      is_keyword_connection_string(location)) {
    auto store = postgres::PgStore::open(url, options);
    if (!store.ok())
      return store.error();
    return std::unique_ptr<Store>(std::move(store).value());
  }
  if (location.starts_with("sqlite:"))
    location.remove_prefix(7);
  if (location.empty())
    return Error::invalid("invalid_db", "The database path is empty.");
  auto store = sqlite::SqliteStore::open(std::string(location), options);
  if (!store.ok())
    return store.error();
  return std::unique_ptr<Store>(std::move(store).value());
}

}  // namespace stub::store
