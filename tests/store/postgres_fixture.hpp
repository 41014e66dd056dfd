#pragma once

// PostgreSQL for the store suites. STUB_TEST_POSTGRES_URL names a server (scripts/test.sh
// starts a throwaway cluster and sets it); each test gets its own schema, named after its
// temporary directory, so opening the same directory twice reopens the same database. Without
// the variable the PostgreSQL cases are not instantiated, unless STUB_REQUIRE_POSTGRES=1, which
// turns that into a failure (CI sets it, so the suites cannot silently skip).

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "store/store.hpp"

namespace stub::store::conformance {

inline std::string postgres_base_url() {
  const char* url = std::getenv("STUB_TEST_POSTGRES_URL");
  return url == nullptr ? "" : url;
}

inline bool postgres_required() {
  const char* required = std::getenv("STUB_REQUIRE_POSTGRES");
  return required != nullptr && std::string(required) == "1";
}

// Runs one statement on a short-lived connection; returns the error text or "".
inline std::string postgres_exec(const std::string& url, const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  std::string error;
  if (PQstatus(conn) != CONNECTION_OK) {
    error = PQerrorMessage(conn);
  } else {
    PGresult* result = PQexec(conn, sql.c_str());
    if (PQresultStatus(result) != PGRES_COMMAND_OK && PQresultStatus(result) != PGRES_TUPLES_OK)
      error = PQresultErrorMessage(result);
    PQclear(result);
  }
  PQfinish(conn);
  return error;
}

// A schema per temporary directory: "t_" + the directory's name, lowercased, [a-z0-9_] only.
inline std::string postgres_schema_for(const std::string& temp_dir) {
  std::string schema = "t_";
  for (char c : std::filesystem::path(temp_dir).filename().string()) {
    const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    schema += std::isalnum(static_cast<unsigned char>(lower)) ? lower : '_';
  }
  return schema;
}

// The URL of a fresh (or, for the same directory, the same) schema.
inline std::string postgres_url_for(const std::string& temp_dir) {
  const std::string base = postgres_base_url();
  const std::string schema = postgres_schema_for(temp_dir);
  if (std::string error = postgres_exec(base, "CREATE SCHEMA IF NOT EXISTS " + schema);
      !error.empty()) {
    ADD_FAILURE() << "CREATE SCHEMA " << schema << ": " << error;
  }
  return base + (base.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" +
         schema;
}

inline std::unique_ptr<Store> open_postgres(const std::string& temp_dir,
                                            const std::string& isolation) {
  StoreOptions options;
  options.read_connections = 4;
  options.isolation = isolation;
  auto opened = open_store(postgres_url_for(temp_dir), options);
  if (!opened.ok()) {
    ADD_FAILURE() << "open_store: " << opened.error().message;
    return nullptr;
  }
  return std::move(opened).value();
}

}  // namespace stub::store::conformance
