#include "store/store.hpp"

#include <algorithm>
#include <cassert>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "ledger/balances.hpp"
#include "ledger/budget_path.hpp"
#include "store/row_mapping.hpp"

namespace stub::store {

namespace {

// A batch a depth-one store committed in send_batch: only its outcome is left to report.
class CommittedBatch final : public BatchInFlight {
 public:
  explicit CommittedBatch(Status status) : status(std::move(status)) {}
  Status status;
};

}  // namespace

std::unique_ptr<BatchInFlight> Store::send_batch(const ledger::ReadSet& read,
                                                 const ApplyBatch& apply,
                                                 const OnCommitted& committed) {
  return std::make_unique<CommittedBatch>(commit_batch(read, apply, committed));
}

Status Store::finish_batch(BatchInFlight& batch) {
  return static_cast<CommittedBatch&>(batch).status;
}

std::vector<ledger::Posting> parse_postings(const std::string& text) {
  std::vector<ledger::Posting> out;
  boost::system::error_code error;
  const boost::json::value postings = boost::json::parse(text, error);
  if (error || !postings.is_array())
    return out;
  for (const auto& posting : postings.get_array()) {
    if (!posting.is_object())
      continue;
    const auto* account = posting.get_object().if_contains("account");
    const auto* amount = posting.get_object().if_contains("amount");
    if (account == nullptr || amount == nullptr || !account->is_string() || !amount->is_string())
      continue;
    const auto money = ledger::Money::parse(amount->get_string());
    out.push_back({std::string(account->get_string()), money.value_or(ledger::Money::zero())});
  }
  return out;
}

std::string events_to_text(const std::vector<std::string>& events) {
  boost::json::array array;
  for (const std::string& event : events)
    array.emplace_back(event);
  return boost::json::serialize(array);
}

std::vector<std::string> events_from_text(const std::string& text) {
  std::vector<std::string> out;
  boost::system::error_code error;
  const boost::json::value parsed = boost::json::parse(text, error);
  if (error || !parsed.is_array())
    return out;
  for (const auto& event : parsed.get_array()) {
    if (event.is_string())
      out.emplace_back(event.get_string());
  }
  return out;
}

Result<std::vector<ledger::BudgetNode>> Store::get_lineage(const std::string& path) {
  std::vector<ledger::BudgetNode> out;
  const auto parsed = ledger::BudgetPath::parse(path);
  if (!parsed)
    return out;
  for (const ledger::BudgetPath& node_path : parsed->lineage()) {
    auto node = get_budget(node_path.str());
    if (!node.ok())
      return node.error();
    if (!node.value())
      return std::vector<ledger::BudgetNode>{};
    out.push_back(std::move(*node.value()));
  }
  return out;
}

Result<ledger::VerifyReport> Store::verify(const std::string& root, const VerifyProgress& progress,
                                           const VerifyOptions& options) {
  // The subtree is read in one statement, so its rows and the root's head come from one
  // snapshot; entries are then checked up to that head, so verifying a live ledger checks the
  // prefix that existed when it started, and the budget rows read are those of that prefix.
  auto nodes = list_subtree(root);
  if (!nodes.ok())
    return nodes.error();
  const auto head = std::find_if(nodes->begin(), nodes->end(), [&root](const auto& node) {
    return node.path == root && node.parent.empty();
  });
  if (head == nodes->end())
    return Error{ErrorCode::not_found, "root_not_found", "No root budget " + root + "."};
  constexpr size_t page_size = 10'000;
  const int64_t total = head->head_seq;
  ledger::ChainVerifier verifier;
  ledger::BalanceReplay balances;
  ledger::CheckpointMatcher checkpoints(options.checkpoints);
  int64_t after = 0;
  bool done = false;
  while (!done) {
    auto page = list_entries(root, after, page_size);
    if (!page.ok())
      return page.error();
    for (const ledger::Entry& entry : page->entries) {
      if (entry.seq > total || !verifier.feed(entry)) {
        done = true;
        break;
      }
      balances.feed(entry);
      checkpoints.feed(entry);
    }
    if (progress)
      progress(verifier.checked(), total);
    if (page->entries.size() < page_size)
      done = true;
    after = page->next_after;
  }
  const int64_t verified_seq = verifier.checked();
  ledger::VerifyReport report = verifier.finish(head->head_seq, head->head_hash);
  if (report.ok) {
    // A commit writes its entries and the head in one transaction, so in any one snapshot no
    // entry lies beyond the head; one that does was inserted behind the ledger's back.
    auto bounds = entry_bounds(root);
    if (!bounds.ok())
      return bounds.error();
    if (bounds->max_seq > bounds->head_seq) {
      report.ok = false;
      report.first_bad_seq = bounds->head_seq + 1;
      report.problem = "entry was inserted after the recorded head";
    }
  }
  if (report.ok) {
    // Totals can only be replayed over a whole, unbroken chain.
    const ledger::BalanceReplay::Report reconciled = balances.finish(*nodes);
    report.budgets_checked = reconciled.budgets_checked;
    if (!reconciled.problem.empty()) {
      report.ok = false;
      report.bad_budget = reconciled.first_bad_budget;
      report.balance_problem = reconciled.problem;
    }
  }
  if (!options.checkpoints.empty()) {
    const ledger::CheckpointMatcher::Report matched =
        checkpoints.finish(verified_seq, head->head_seq);
    report.checkpoints_checked = matched.checked;
    report.latest_checkpoint_seq = matched.latest_seq;
    if (matched.first_contradicted) {
      report.ok = false;
      report.first_bad_checkpoint_seq = matched.first_contradicted->seq;
      report.checkpoint_problem = matched.problem;
    }
  }
  assert(report.ok || report.first_bad_seq || !report.balance_problem.empty() ||
         report.first_bad_checkpoint_seq);
  return report;
}

Result<std::vector<ledger::Hold>> Store::list_expired_holds_from(ledger::Micros now,
                                                                 const std::string& pivot,
                                                                 size_t limit) {
  constexpr size_t spread_factor = 4;
  auto expired = list_expired_holds(now, limit * spread_factor);
  if (!expired.ok())
    return expired.error();
  std::vector<ledger::Hold> holds = std::move(expired).value();
  std::sort(holds.begin(), holds.end(),
            [](const ledger::Hold& a, const ledger::Hold& b) { return a.id < b.id; });
  const auto start = std::upper_bound(
      holds.begin(), holds.end(), pivot,
      [](const std::string& value, const ledger::Hold& hold) { return value < hold.id; });
  std::rotate(holds.begin(), start, holds.end());
  if (holds.size() > limit)
    holds.resize(limit);
  assert(holds.size() <= limit);
  return holds;
}

}  // namespace stub::store
