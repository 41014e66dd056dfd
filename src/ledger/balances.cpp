#include "ledger/balances.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <cassert>

#include "ledger/budget_path.hpp"
#include "ledger/time_point.hpp"

namespace stub::ledger {

namespace {

// The period a budget_set entry's detail records for its node.
std::optional<Period> recorded_period(const std::string& detail_json) {
  boost::system::error_code error;
  const boost::json::value detail = boost::json::parse(detail_json, error);
  if (error || !detail.is_object())
    return std::nullopt;
  const auto* period = detail.get_object().if_contains("period");
  if (period == nullptr || !period->is_string())
    return std::nullopt;
  return parse_period(period->get_string());
}

// BudgetNode::roll_period on the replayed totals.
void roll(Micros& recorded_start, int64_t& spent, Period period, Micros now) {
  const Micros current = std::max(recorded_start, period_start(period, now));
  if (current != recorded_start) {
    spent = 0;
    recorded_start = current;
  }
}

}  // namespace

std::vector<BalanceReplay::Replayed*> BalanceReplay::lineage(const std::string& path, int64_t seq) {
  std::vector<Replayed*> out;
  const auto parsed = BudgetPath::parse(path);
  if (parsed) {
    for (const BudgetPath& node_path : parsed->lineage()) {
      auto found = nodes_.find(node_path.str());
      if (found == nodes_.end())
        break;
      out.push_back(&found->second);
    }
  }
  if (!parsed || out.size() != parsed->lineage().size()) {
    if (problem_.empty()) {
      problem_budget_ = path;
      problem_ = "entry " + std::to_string(seq) + " moves money on " + path +
                 ", which no budget_set entry created before it";
    }
    out.clear();
  }
  return out;
}

void BalanceReplay::feed(const Entry& entry) {
  assert(entry.ts >= 0);
  last_ts_ = std::max(last_ts_, entry.ts);
  if (entry.kind == "delegate") {
    // A delegation creates its node (period "none") and reserves its limit above it.
    if (!nodes_.contains(entry.budget)) {
      nodes_[entry.budget] = Replayed{Period::none, period_start(Period::none, entry.ts), 0, 0};
    } else if (problem_.empty()) {
      problem_budget_ = entry.budget;
      problem_ = "delegate entry " + std::to_string(entry.seq) + " creates " + entry.budget +
                 ", which already existed";
    }
  }
  if (entry.kind == "budget_set") {
    const auto period = recorded_period(entry.detail_json);
    if (!period) {
      if (problem_.empty()) {
        problem_budget_ = entry.budget;
        problem_ = "budget_set entry " + std::to_string(entry.seq) + " records no period";
      }
      return;
    }
    auto found = nodes_.find(entry.budget);
    if (found == nodes_.end()) {
      nodes_[entry.budget] = Replayed{*period, period_start(*period, entry.ts), 0, 0};
      return;
    }
    // As apply_set_budget: roll into the current period, then a new period starts now and
    // carries what was spent so far.
    Replayed& node = found->second;
    roll(node.period_start, node.spent, node.period, entry.ts);
    if (*period != node.period) {
      node.period = *period;
      node.period_start = period_start(*period, entry.ts);
    }
    return;
  }
  int64_t reserved_delta = 0;
  int64_t spent_delta = 0;
  bool moves_budget = false;
  for (const Posting& posting : entry.postings) {
    if (posting.account.starts_with("delegations:")) {
      // A delegation's carried reservation: reserved on every level above the delegation.
      const std::string delegated = posting.account.substr(std::string_view("delegations:").size());
      std::vector<Replayed*> above = lineage(delegated, entry.seq);
      if (!above.empty())
        above.pop_back();
      for (Replayed* node : above) {
        roll(node->period_start, node->spent, node->period, entry.ts);
        node->reserved += posting.amount.micros();
      }
      continue;
    }
    if (posting.account.starts_with("holds:")) {
      reserved_delta += posting.amount.micros();
      moves_budget = true;
    } else if (posting.account.starts_with("vendor:")) {
      spent_delta += posting.amount.micros();
      moves_budget = true;
    } else if (posting.account.starts_with("budget:")) {
      moves_budget = true;
    }
  }
  if (!moves_budget)
    return;
  for (Replayed* node : lineage(entry.budget, entry.seq)) {
    roll(node->period_start, node->spent, node->period, entry.ts);
    node->reserved += reserved_delta;
    node->spent += spent_delta;
  }
}

BalanceReplay::Report BalanceReplay::finish(const std::vector<BudgetNode>& nodes) const {
  Report report;
  if (!problem_.empty()) {
    report.first_bad_budget = problem_budget_;
    report.problem = problem_;
    return report;
  }
  for (const BudgetNode& node : nodes) {
    auto found = nodes_.find(node.path);
    const Replayed replayed = found == nodes_.end() ? Replayed{} : found->second;
    // Both sides as of the last entry: a period that ended since reads as zero spent on both.
    const Micros as_of = std::max(last_ts_, node.period_start);
    Micros start = replayed.period_start;
    int64_t spent = replayed.spent;
    roll(start, spent, replayed.period, as_of);
    const int64_t recorded_spent = node.spent_at(as_of).micros();
    if (found == nodes_.end()) {
      report.first_bad_budget = node.path;
      report.problem = "budget " + node.path + " has no budget_set entry creating it";
      return report;
    }
    if (recorded_spent != spent || node.reserved.micros() != replayed.reserved) {
      report.first_bad_budget = node.path;
      report.problem = "budget " + node.path + " records spent " +
                       node.spent_at(as_of).to_string() + " and reserved " +
                       node.reserved.to_string() + ", but its entries' postings give spent " +
                       Money::from_micros(spent).to_string() + " and reserved " +
                       Money::from_micros(replayed.reserved).to_string();
      return report;
    }
    ++report.budgets_checked;
  }
  assert(report.budgets_checked == static_cast<int64_t>(nodes.size()));
  return report;
}

}  // namespace stub::ledger
