#pragma once

// Reconciles every budget's running totals with the books: replays a root's entries in seq
// order, moving each node's spent and reserved exactly as the core does (a hold's postings into
// holds:<path>, a settlement's out of it, vendor postings into spent, on the entry's node and
// every ancestor; periods rolled lazily at each such entry and by budget_set entries), then
// compares with the budget rows. A row whose spent or reserved was edited behind the ledger's
// back (so that an agent could spend again what it already spent) disagrees with its postings.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ledger/model.hpp"

namespace stub::ledger {

class BalanceReplay {
 public:
  // Entries in seq order, each already verified by the chain.
  void feed(const Entry& entry);
  struct Report {
    int64_t budgets_checked = 0;
    std::string first_bad_budget;  // empty: every node agrees
    std::string problem;           // one sentence about first_bad_budget
  };
  // Compares with `nodes` (the root's subtree, read in the same snapshot as the head the entries
  // were verified up to), as of the last entry's time.
  Report finish(const std::vector<BudgetNode>& nodes) const;

 private:
  struct Replayed {
    Period period = Period::month;
    Micros period_start = 0;
    int64_t spent = 0;
    int64_t reserved = 0;
  };
  // The lineage of `path` from the root, or empty (and a problem recorded) if a node on it was
  // never created by a budget_set entry.
  std::vector<Replayed*> lineage(const std::string& path, int64_t seq);

  std::map<std::string, Replayed> nodes_;
  Micros last_ts_ = 0;
  std::string problem_;  // the first entry the replay could not follow
  std::string problem_budget_;
};

}  // namespace stub::ledger
