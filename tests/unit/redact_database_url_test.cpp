// `stub serve` prints and logs its database URL: never with the password in it.

#include <gtest/gtest.h>

#include "store/store.hpp"

namespace stub::store {
namespace {

TEST(RedactDatabaseUrl, HidesEveryFormOfPassword) {
  EXPECT_EQ(redact_database_url("postgres://stub:s3cret@db.internal:5432/ledger"),
            "postgres://stub:***@db.internal:5432/ledger");
  EXPECT_EQ(redact_database_url("postgresql://stub:p%40ss@a,b,c/ledger?sslmode=require"),
            "postgresql://stub:***@a,b,c/ledger?sslmode=require");
  EXPECT_EQ(
      redact_database_url("postgres://db/ledger?user=stub&password=hunter2&sslmode=verify-full"),
      "postgres://db/ledger?user=stub&password=***&sslmode=verify-full");
  EXPECT_EQ(redact_database_url("host=db user=stub password='two words' dbname=ledger"),
            "host=db user=stub password=*** dbname=ledger");
  // Nothing to hide: left as it is.
  EXPECT_EQ(redact_database_url("postgres://stub@db/ledger"), "postgres://stub@db/ledger");
  EXPECT_EQ(redact_database_url("/var/lib/stub/stub.db"), "/var/lib/stub/stub.db");
  EXPECT_EQ(redact_database_url("sqlite:stub.db"), "sqlite:stub.db");
}

}  // namespace
}  // namespace stub::store
