#pragma once

// Accounting exports (docs/export.md): the money a subtree settled in a period, as CSV, an
// hledger journal or a beancount file, streamed page by page with bounded memory.
//
// One transaction per entry that settled money: each spend, each capture, and each expiry that
// captured its hold (voids, rejections and zero captures move no money and are left out; holds
// are reservations, not expenses). Accounts: `Expenses:Agents:<Root>:<Team>:...` (the entry's
// budget path) against `Liabilities:Vendors:<Vendor>`. Each transaction carries the entry's
// seq and hash, so an auditor can tie a line back to the chain.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "ledger/model.hpp"
#include "ledger/result.hpp"
#include "store/store.hpp"

namespace stub::journal {

using ledger::Micros;

enum class Format { csv, hledger, beancount };

std::optional<Format> parse_format(std::string_view text);
std::string_view format_name(Format format);

struct ExportOptions {
  Format format = Format::csv;
  std::string subtree;  // a budget path; its root names the chain
  Micros from = 0;
  Micros to = std::numeric_limits<Micros>::max();  // exclusive
  size_t page_size = 2'000;                        // entries read per store call
};

// Receives the text as it is produced; returning false stops the export (the reader left).
using Sink = std::function<bool(std::string_view chunk)>;
// Called after each page with the last seq written so far and the last seq of the range.
using Progress = std::function<void(int64_t seq, int64_t last_seq)>;

struct ExportSummary {
  int64_t transactions = 0;
  int64_t entries_read = 0;
  int64_t amount_micros = 0;  // the sum of every transaction
  std::string currency;
  // Totals by account name as written, for checking a tool's balances against Stub's.
  std::map<std::string, int64_t> account_totals;
  bool stopped = false;  // the sink asked to stop
};

class Writer;

// An export read one page at a time, so that a caller can hand each piece on before reading
// the next (GET /v1/export streams it; memory stays at one page's text whatever the size).
// open() checks the subtree and resolves the range; next() returns the text of the next page
// (the header comes with the first, the declarations with the last) until done(). Not
// thread-safe: one caller at a time.
class JournalExport {
 public:
  static Result<std::unique_ptr<JournalExport>> open(store::Store& store,
                                                     const ExportOptions& options);
  ~JournalExport();
  JournalExport(const JournalExport&) = delete;
  JournalExport& operator=(const JournalExport&) = delete;

  Result<std::string> next();
  bool done() const { return done_; }
  const ExportSummary& summary() const { return summary_; }
  int64_t position() const { return after_; }  // the last seq read so far
  int64_t last_seq() const { return last_seq_; }

 private:
  JournalExport(store::Store& store, ExportOptions options);

  store::Store& store_;
  ExportOptions options_;
  std::string root_;
  std::string pending_;
  Sink sink_;  // appends to pending_; the writer keeps a reference to it
  std::unique_ptr<Writer> writer_;
  ExportSummary summary_;
  int64_t after_ = 0;
  int64_t last_seq_ = 0;
  bool done_ = false;
};

// Runs a whole export into `sink` (the offline `stub export --db`), calling `progress` after
// each page.
Result<ExportSummary> export_journal(store::Store& store, const ExportOptions& options,
                                     const Sink& sink, const Progress& progress);

// The account scheme, exposed for tests and docs: a budget path's expense account and a
// vendor's liability account.
std::string expense_account(std::string_view budget_path);
std::string vendor_account(std::string_view vendor);
// One account name component from any text: a clean name ([a-z0-9][a-z0-9-]*) is capitalized
// ("research-agent" -> "Research-agent"); any other gets a readable form plus 8 hex digits of
// its SHA-256, so distinct names never share an account.
std::string account_component(std::string_view name);

}  // namespace stub::journal
