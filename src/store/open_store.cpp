#include <string_view>

#include "store/postgres/pg_store.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "store/store.hpp"

namespace stub::store {

Result<std::unique_ptr<Store>> open_store(const std::string& url, const StoreOptions& options) {
  std::string_view location = url;
  if (location.starts_with("postgres://") || location.starts_with("postgresql://")) {
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
