// What only the SQLite store can be asked: opening by URL, read-only mode, and verify() finding
// rows that were changed behind the ledger's back (tampering needs the driver, so these cases are
// not part of the store-agnostic conformance suite).

#include <sqlite3.h>

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "edge_commands.hpp"
#include "engine/sequencer.hpp"
#include "store/store.hpp"

namespace stub::store::conformance {
namespace {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = directory_.str() + "/stub.db";
    open();
    // A chain of 8 entries on acme.
    execute(set_budget("acme", units(100)));
    execute(set_budget("acme/team", units(50)));
    for (int i = 0; i < 4; ++i)
      execute(spend("acme/team", units(1 + i), "hold_" + std::to_string(i)));
    execute(hold("acme/team", units(5), "hold_h", 60 * second));
    execute(spend("acme/team", units(500), "hold_denied"));
    ASSERT_EQ(store_->get_budget("acme").value()->head_seq, 8);
  }

  void open(bool read_only = false) {
    StoreOptions options;
    options.read_only = read_only;
    auto opened = open_store("sqlite:" + path_, options);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    store_ = std::move(opened).value();
  }

  void execute(const ledger::Command& command) {
    engine::Sequencer sequencer(
        *store_, [this] { return clock_.load(); }, edge_options(), nullptr);
    const ledger::Outcome outcome = sequencer.execute(command);
    ASSERT_TRUE(outcome.ok()) << outcome.error().message;
    clock_ += second;
  }

  // Runs SQL on the file through a separate connection, as an attacker or a careless operator
  // would, with the store closed.
  void tamper(const std::string& sql) {
    store_.reset();
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* message = nullptr;
    const int code = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
    const std::string error = message == nullptr ? "" : message;
    sqlite3_free(message);
    ASSERT_EQ(sqlite3_changes(db), 1) << sql;
    sqlite3_close(db);
    ASSERT_EQ(code, SQLITE_OK) << error;
    open();
  }

  ledger::VerifyReport verify() {
    auto report = store_->verify("acme", nullptr);
    EXPECT_TRUE(report.ok());
    return report.ok() ? report.value() : ledger::VerifyReport{};
  }

  TempDirectory directory_;
  std::string path_;
  std::atomic<Micros> clock_{t0};
  std::unique_ptr<Store> store_;
};

TEST_F(SqliteStoreTest, UntouchedChainVerifies) {
  const ledger::VerifyReport report = verify();
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.checked, 8);
}

TEST_F(SqliteStoreTest, VerifyFindsAnAlteredAmount) {
  tamper("UPDATE entries SET amount = 1 WHERE root = 'acme' AND seq = 4");
  const ledger::VerifyReport report = verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 4);
}

TEST_F(SqliteStoreTest, VerifyFindsAlteredPostings) {
  tamper(
      "UPDATE entries SET postings = "
      "'[{\"account\":\"budget:acme/team\",\"amount\":\"-1.00\"},"
      "{\"account\":\"vendor:evil\",\"amount\":\"1.00\"}]' WHERE root = 'acme' AND seq = 3");
  EXPECT_EQ(verify().first_bad_seq, 3);
}

TEST_F(SqliteStoreTest, VerifyFindsUnparseablePostings) {
  tamper("UPDATE entries SET postings = 'not json' WHERE root = 'acme' AND seq = 5");
  EXPECT_EQ(verify().first_bad_seq, 5);
}

TEST_F(SqliteStoreTest, VerifyFindsADeletedEntry) {
  tamper("DELETE FROM entries WHERE root = 'acme' AND seq = 6");
  const ledger::VerifyReport report = verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 6);
}

TEST_F(SqliteStoreTest, VerifyFindsTheLastEntryDeleted) {
  tamper("DELETE FROM entries WHERE root = 'acme' AND seq = 8");
  const ledger::VerifyReport report = verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 8);
}

TEST_F(SqliteStoreTest, VerifyFindsARewrittenHead) {
  tamper("UPDATE budgets SET head_hash = '" + std::string(64, 'e') + "' WHERE path = 'acme'");
  const ledger::VerifyReport report = verify();
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 8);
}

TEST_F(SqliteStoreTest, ReadOnlyStoreVerifiesButRefusesWrites) {
  store_.reset();
  open(/*read_only=*/true);
  EXPECT_TRUE(verify().ok);
  EXPECT_EQ(store_->get_budget("acme/team").value()->spent, units(10));
  const Status status = store_->commit_batch(ledger::ReadSet{}, [](ledger::WorkingSet&) {});
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, ErrorCode::unavailable);
}

TEST(OpenStore, ASecondOwnerOfOneFileIsRefusedUntilTheFirstCloses) {
  TempDirectory directory;
  const std::string url = "sqlite:" + directory.str() + "/stub.db";
  auto first = open_store(url, StoreOptions{});
  ASSERT_TRUE(first.ok()) << first.error().message;
  auto second = open_store(url, StoreOptions{});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().subcode, "database_in_use");
  // Offline verification only reads, so it may open a file that a server owns.
  StoreOptions read_only;
  read_only.read_only = true;
  EXPECT_TRUE(open_store(url, read_only).ok());
  first.value().reset();
  EXPECT_TRUE(open_store(url, StoreOptions{}).ok());
}

TEST(OpenStore, RejectsEmptyLocations) {
  const auto empty = open_store("sqlite:", StoreOptions{});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, ErrorCode::invalid_input);
  EXPECT_FALSE(open_store("", StoreOptions{}).ok());
}

TEST(OpenStore, AcceptsAPlainPath) {
  TempDirectory directory;
  const std::string path = directory.str() + "/plain.db";
  {
    auto store = open_store(path, StoreOptions{});
    ASSERT_TRUE(store.ok()) << store.error().message;
    EXPECT_TRUE(store.value()->list_roots().value().empty());
  }
  // The same file through the "sqlite:" form.
  auto again = open_store("sqlite:" + path, StoreOptions{});
  ASSERT_TRUE(again.ok()) << again.error().message;
}

}  // namespace
}  // namespace stub::store::conformance
