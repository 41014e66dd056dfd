#include "ledger/batch.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cassert>
#include <limits>
#include <span>

#include "ledger/budget_path.hpp"
#include "ledger/canonical_json.hpp"
#include "ledger/chain.hpp"
#include "ledger/decision.hpp"

namespace stub::ledger {

namespace {

Error not_found(std::string subcode, std::string message) {
  return {ErrorCode::not_found, std::move(subcode), std::move(message)};
}
Error conflict(std::string subcode, std::string message) {
  return {ErrorCode::conflict, std::move(subcode), std::move(message)};
}

void add_lineage(std::set<std::string>& out, const std::string& path) {
  const auto parsed = BudgetPath::parse(path);
  if (!parsed)
    return;  // The edge validates paths; an invalid one simply reads nothing.
  for (const BudgetPath& node : parsed->lineage())
    out.insert(node.str());
}

// The nodes from the root down to `path`, root first, or empty when any is missing.
std::vector<BudgetNode*> lineage_of(WorkingSet& state, const std::string& path) {
  std::vector<BudgetNode*> out;
  const auto parsed = BudgetPath::parse(path);
  if (!parsed)
    return out;
  for (const BudgetPath& node_path : parsed->lineage()) {
    auto found = state.budgets.find(node_path.str());
    if (found == state.budgets.end())
      return {};
    out.push_back(&found->second);
  }
  return out;
}

std::vector<const BudgetNode*> const_view(const std::vector<BudgetNode*>& nodes) {
  return {nodes.begin(), nodes.end()};
}

// Appends an entry to its root's chain: next seq, prev_hash from the head, its own hash.
void append_entry(WorkingSet& state, Entry entry) {
  auto root = state.budgets.find(entry.root);
  assert(root != state.budgets.end());
  BudgetNode& head = root->second;
  entry.seq = head.head_seq + 1;
  entry.prev_hash = head.head_hash;
  assert(entry.ts >= head.updated_at);  // decision_time() made sure of it
  entry.hash = compute_entry_hash(entry);
  head.head_seq = entry.seq;
  head.head_hash = entry.hash;
  head.updated_at = entry.ts;
  state.dirty_budgets.insert(head.path);
  assert(entry.seq >= 1 && entry.hash.size() == 64);
  state.new_entries.push_back(std::move(entry));
}

Entry make_entry(const Command& command, std::string_view kind, Micros now) {
  Entry entry;
  entry.root = command.root;
  entry.ts = now;
  entry.kind = std::string(kind);
  entry.budget = command.budget;
  entry.actor = command.actor;
  return entry;
}

using Decided = Result<AnswerValue>;

// The budget state of `path` as it stands now, root first.
BudgetState budget_state(WorkingSet& state, const std::string& path) {
  BudgetState out;
  for (const BudgetNode* node : lineage_of(state, path))
    out.lineage.push_back(*node);
  assert(!out.lineage.empty() && out.lineage.back().path == path);
  return out;
}

std::string vendor_account(const std::string& vendor) {
  return "vendor:" + (vendor.empty() ? std::string("unknown") : vendor);
}

// The spend that would trip a velocity breaker is refused, and the level that tripped is frozen
// in the same commit, by the system, with the breaker's reason. The freeze entry is the alert.
void trip_breaker(WorkingSet& state, const Command& command, const Decision& decision, Micros now) {
  auto found = state.budgets.find(decision.level);
  assert(found != state.budgets.end());
  BudgetNode& node = found->second;
  assert(!node.frozen && node.policies.breaker.has_value());
  node.frozen = true;
  node.frozen_reason = decision.freeze_reason;
  node.updated_at = now;
  state.dirty_budgets.insert(node.path);
  Entry entry = make_entry(command, "freeze", now);
  entry.budget = node.path;
  entry.actor = std::string(system_actor);
  entry.detail_json =
      canonical_json(boost::json::object{{"reason", node.frozen_reason}, {"trigger", "breaker"}});
  append_entry(state, std::move(entry));
}

Decided deny(WorkingSet& state, const Command& command, const Decision& decision, Micros now) {
  Entry entry = make_entry(command, "deny", now);
  entry.amount = decision.requested;
  entry.vendor = command.vendor;
  entry.intent = command.intent;
  entry.tags_json = command.tags_json;
  entry.hold_id = command.hold_id;
  entry.code = std::string(denial_code_name(decision.code));
  boost::json::object detail{
      {"attempted", command_kind_name(command.kind)},
      {"level", decision.level},
      {"available", decision.available ? boost::json::value(decision.available->to_string())
                                       : boost::json::value(nullptr)}};
  // A vendor cap names its rule, in the books and in the answer.
  if (decision.vendor_rule) {
    const BudgetNode& level = state.budgets.at(decision.level);
    assert(*decision.vendor_rule < level.policies.vendor_limits.size());
    boost::json::object vendor_limit =
        vendor_limit_to_json(level.policies.vendor_limits[*decision.vendor_rule]);
    vendor_limit["index"] = *decision.vendor_rule;
    detail["vendor_limit"] = std::move(vendor_limit);
  }
  entry.detail_json = canonical_json(detail);
  append_entry(state, std::move(entry));

  Denied denied;
  denied.code = decision.code;
  denied.message = decision.message;
  denied.level = decision.level;
  denied.requested = decision.requested;
  denied.available = decision.available;
  denied.seq = state.new_entries.back().seq;
  if (decision.vendor_rule) {
    denied.vendor_limit =
        state.budgets.at(decision.level).policies.vendor_limits[*decision.vendor_rule];
    denied.vendor_limit_index = *decision.vendor_rule;
  }
  if (decision.code == DenialCode::breaker_tripped)
    trip_breaker(state, command, decision, now);
  return AnswerValue(denied);
}

// Moves `amount` into (positive) or out of (negative) `reserved`, and into `spent`, on every
// node of the path. Callers have checked the decision, so no node can go over its limit.
void adjust_path(WorkingSet& state, const std::vector<BudgetNode*>& path, Money reserved_delta,
                 Money spent_delta, Micros now) {
  for (BudgetNode* node : path) {
    node->roll_period(now);
    node->reserved = Money::from_micros(node->reserved.micros() + reserved_delta.micros());
    node->spent = Money::from_micros(node->spent.micros() + spent_delta.micros());
    node->updated_at = now;
    assert(!node->reserved.is_negative() && !node->spent.is_negative());
    state.dirty_budgets.insert(node->path);
  }
}

// The deepest node of `path` with an active delegation, or nullptr.
BudgetNode* funding_delegation(const std::vector<BudgetNode*>& path) {
  for (auto node = path.rbegin(); node != path.rend(); ++node) {
    if ((*node)->active_delegation())
      return *node;
  }
  return nullptr;
}

// After `delta` was added to spent + reserved on every node of `path` (root first): the levels
// above the deepest active delegation on it carry that delegation's unused headroom as reserved,
// and the headroom just changed by -delta, so their reserved moves by -delta (net zero there).
// Chained as a posting on delegations:<node> (the carried reservation) balanced by one on
// budget:<node> (the delegation's own funds). Nothing when no delegation is on the path.
void carry_through_delegation(WorkingSet& state, const std::vector<BudgetNode*>& path,
                              int64_t delta, Micros now, Entry& entry) {
  BudgetNode* delegated = funding_delegation(path);
  if (delegated == nullptr || delta == 0)
    return;
  for (BudgetNode* node : path) {
    if (node == delegated)
      break;
    node->roll_period(now);
    node->reserved = Money::from_micros(node->reserved.micros() - delta);
    node->updated_at = now;
    assert(!node->reserved.is_negative());
    state.dirty_budgets.insert(node->path);
  }
  Delegation& delegation = *delegated->delegation;
  delegation.carried = Money::from_micros(delegation.carried.micros() - delta);
  assert(!delegation.carried.is_negative());
  assert(delegated->limit && delegation.carried.micros() == delegated->limit->micros() -
                                                                delegated->spent.micros() -
                                                                delegated->reserved.micros());
  state.dirty_budgets.insert(delegated->path);
  entry.postings.push_back({"delegations:" + delegated->path, Money::from_micros(-delta)});
  entry.postings.push_back({"budget:" + delegated->path, Money::from_micros(delta)});
}

// The counter of a vendor rule on `node`, made on first use if the node's usage lacks it (a rule
// always has one after a budget change; this only keeps a damaged row from under-counting).
VendorCounter& counter_for(BudgetNode& node, const VendorLimit& rule, Micros now) {
  const std::string key = rule.counter_key();
  if (VendorCounter* found = node.usage.vendor_counter(key))
    return *found;
  VendorCounter counter;
  counter.key = key;
  counter.since = now;
  if (!rule.by_window())
    counter.period_start = period_start(*rule.period, now);
  node.usage.vendor_counters.push_back(std::move(counter));
  return node.usage.vendor_counters.back();
}

// Counts an accepted spend or hold in the rolling windows, the breaker and the vendor rules
// that name its vendor, on every node of its path. Every such node is written by the batch.
void count_usage(const std::vector<BudgetNode*>& path, Money amount, std::string_view vendor,
                 bool captured, Micros now) {
  for (BudgetNode* node : path) {
    for (Ring& ring : node->usage.windows)
      ring.add(now, amount.micros(), 1, now);
    if (node->usage.breaker)
      node->usage.breaker->add(now, amount.micros(), 1, now);
    for (const VendorLimit& rule : node->policies.vendor_limits) {
      if (rule.matches(vendor))
        counter_for(*node, rule, now).count(rule, amount.micros(), captured, now);
    }
  }
}

// Settles a hold in the same counters: what it released (held minus captured) is taken back
// from the rolling windows and breaker it was counted in; each vendor rule naming its vendor
// moves it from reserved to captured (or releases it).
void settle_usage(const std::vector<BudgetNode*>& path, const Hold& hold, Money captured,
                  Micros now) {
  const Money released = Money::from_micros(hold.amount.micros() - captured.micros());
  assert(!released.is_negative());
  for (BudgetNode* node : path) {
    if (!released.is_zero()) {
      for (Ring& ring : node->usage.windows)
        ring.release(hold.created_at, released.micros());
      if (node->usage.breaker)
        node->usage.breaker->release(hold.created_at, released.micros());
    }
    for (const VendorLimit& rule : node->policies.vendor_limits) {
      if (!rule.matches(hold.vendor))
        continue;
      counter_for(*node, rule, now)
          .settle(rule, hold.created_at, hold.amount.micros(), captured.micros(), now);
    }
  }
}

// Soft thresholds of vendor rules: after a spend or hold, each node on `path` raises at most one
// alert for the first of its rules naming `vendor` whose used amount reached one of the node's
// threshold percentages of the rule's limit not yet alerted (once per rule and period; for a
// rolling window, once per window duration). Bounded to one per level so that the rows one
// command writes stay bounded (rows_written_max); another rule that crossed alerts next time.
void raise_vendor_alerts(WorkingSet& state, const Command& command,
                         const std::vector<BudgetNode*>& path, std::string_view vendor,
                         Micros now) {
  for (BudgetNode* node : path) {
    const std::vector<int> thresholds = node->policies.effective_thresholds();
    if (thresholds.empty())
      continue;
    for (size_t index = 0; index < node->policies.vendor_limits.size(); ++index) {
      const VendorLimit& rule = node->policies.vendor_limits[index];
      if (!rule.matches(vendor) || !rule.limit.is_positive())
        continue;
      VendorCounter& counter = counter_for(*node, rule, now);
      const Micros current =
          rule.by_window() ? counter.alerted_start : counter.current_period_start(rule, now);
      const bool armed = rule.by_window() ? now >= counter.alerted_start + rule.window
                                          : counter.alerted_start != current;
      const int alerted = armed ? 0 : counter.alerted_percent;
      const int64_t used = counter.used_at(rule, now).micros();
      int crossed = 0;
      for (int percent : thresholds) {
        if (percent > alerted && static_cast<__int128>(used) * 100 >=
                                     static_cast<__int128>(rule.limit.micros()) * percent)
          crossed = percent;
      }
      if (crossed == 0)
        continue;
      counter.alerted_start = rule.by_window() ? now : current;
      counter.alerted_percent = crossed;
      state.dirty_budgets.insert(node->path);
      boost::json::object vendor_limit = vendor_limit_to_json(rule);
      vendor_limit["index"] = index;
      boost::json::object detail{{"event", "threshold_crossed"},
                                 {"percent", crossed},
                                 {"limit", rule.limit.to_string()},
                                 {"used", Money::from_micros(used).to_string()},
                                 {"vendor", vendor},
                                 {"vendor_limit", std::move(vendor_limit)}};
      if (!rule.by_window())
        detail["period_start"] = format_timestamp(current);
      Entry entry = make_entry(command, "alert", now);
      entry.budget = node->path;
      entry.actor = std::string(system_actor);
      entry.detail_json = canonical_json(detail);
      append_entry(state, std::move(entry));
      break;
    }
  }
}

// Soft thresholds: after a spend, hold or limit change, each node on `path` whose spent +
// reserved now reaches a threshold percentage of its limit not yet alerted in the current period
// raises one alert entry (the highest threshold reached). Once per threshold per period.
void raise_threshold_alerts(WorkingSet& state, const Command& command,
                            const std::vector<BudgetNode*>& path, Micros now) {
  for (BudgetNode* node : path) {
    if (!node->limit || !node->limit->is_positive())
      continue;
    const std::vector<int> thresholds = node->policies.effective_thresholds();
    if (thresholds.empty())
      continue;
    const Micros current = node->current_period_start(now);
    const int alerted =
        node->usage.alerted_period_start == current ? node->usage.alerted_percent : 0;
    const int64_t used = node->spent_at(now).micros() + node->reserved.micros();
    int crossed = 0;
    for (int percent : thresholds) {
      // 128-bit: used * 100 can exceed INT64_MAX for the largest budgets.
      if (percent > alerted && static_cast<__int128>(used) * 100 >=
                                   static_cast<__int128>(node->limit->micros()) * percent)
        crossed = percent;
    }
    if (crossed == 0)
      continue;
    node->usage.alerted_period_start = current;
    node->usage.alerted_percent = crossed;
    state.dirty_budgets.insert(node->path);
    Entry entry = make_entry(command, "alert", now);
    entry.budget = node->path;
    entry.actor = std::string(system_actor);
    entry.detail_json =
        canonical_json(boost::json::object{{"event", "threshold_crossed"},
                                           {"percent", crossed},
                                           {"limit", node->limit->to_string()},
                                           {"used", Money::from_micros(used).to_string()},
                                           {"period", period_name(node->period)},
                                           {"period_start", format_timestamp(current)}});
    append_entry(state, std::move(entry));
  }
}

// Every tag key a node on the path requires (require_tags) must be in the command's tags with
// a non-empty value. A refusal is a 400 like any malformed request, not a denial: nothing was
// decided about the money, so no entry records it.
Status check_required_tags(std::span<BudgetNode* const> path, const Command& command) {
  const bool any = std::any_of(path.begin(), path.end(), [](const BudgetNode* node) {
    return !node->policies.require_tags.empty();
  });
  if (!any)
    return Status::success();
  boost::system::error_code error;
  const boost::json::value tags = boost::json::parse(command.tags_json, error);
  // The edge made tags_json from a checked object; anything else is a caller bug.
  assert(!error && tags.is_object());
  const boost::json::object* object = error ? nullptr : tags.if_object();
  std::string missing;
  std::string level;
  for (const BudgetNode* node : path) {
    for (const std::string& key : node->policies.require_tags) {
      const boost::json::value* value = object == nullptr ? nullptr : object->if_contains(key);
      const bool present = value != nullptr && value->is_string() && !value->get_string().empty();
      if (present || missing.find("\"" + key + "\"") != std::string::npos)
        continue;
      missing += (missing.empty() ? "" : ", ") + ("\"" + key + "\"");
      if (level.empty())
        level = node->path;
    }
  }
  if (missing.empty())
    return Status::success();
  return Error::invalid("missing_required_tags",
                        "Budget " + level + " requires the tags " + missing +
                            " on every spend and hold; give them in \"tags\".");
}

// The tags a spend or hold gets from vendor_categories when it names no category of its own:
// the deepest node with a pattern matching the vendor decides; on a node, an exact name beats a
// wildcard and a longer wildcard a shorter one. nullopt: the tags stay as given.
std::optional<std::string> tags_with_vendor_category(std::span<BudgetNode* const> path,
                                                     const Command& command) {
  if (command.vendor.empty() || std::none_of(path.begin(), path.end(), [](const BudgetNode* node) {
        return !node->policies.vendor_categories.empty();
      }))
    return std::nullopt;
  const std::string* category = nullptr;
  for (auto node = path.rbegin(); node != path.rend() && category == nullptr; ++node) {
    size_t best = 0;
    for (const VendorCategory& rule : (*node)->policies.vendor_categories) {
      if (!vendor_matches(rule.vendor, command.vendor))
        continue;
      const size_t strength =
          rule.vendor.starts_with("*.") ? rule.vendor.size() : std::numeric_limits<size_t>::max();
      if (strength > best) {
        best = strength;
        category = &rule.category;
      }
    }
  }
  if (category == nullptr)
    return std::nullopt;
  boost::system::error_code error;
  boost::json::value tags = boost::json::parse(command.tags_json, error);
  assert(!error && tags.is_object());
  if (error || !tags.is_object() || tags.get_object().contains("category") ||
      tags.get_object().size() >= tags_with_default_category_max)
    return std::nullopt;
  tags.get_object()["category"] = *category;
  return canonical_json(tags);
}

Decided apply_spend_or_hold_as_tagged(WorkingSet& state, const Command& command, Micros now);

// A spend or hold, with the default category of its vendor filled in first (so that it is in
// the entry, the hold, a denial and the require_tags check alike).
Decided apply_spend_or_hold(WorkingSet& state, const Command& command, Micros now) {
  std::vector<BudgetNode*> path = lineage_of(state, command.budget);
  if (std::optional<std::string> tags = tags_with_vendor_category(path, command)) {
    Command categorized = command;
    categorized.tags_json = std::move(*tags);
    return apply_spend_or_hold_as_tagged(state, categorized, now);
  }
  return apply_spend_or_hold_as_tagged(state, command, now);
}

Decided apply_spend_or_hold_as_tagged(WorkingSet& state, const Command& command, Micros now) {
  assert(command.amount && command.amount->is_positive());
  // A hold's id is fixed at the edge; one that already exists is never overwritten (a batch
  // recomputed after a lost answer would otherwise reserve twice for one hold).
  if (command.kind == CommandKind::hold && state.holds.contains(command.hold_id)) {
    return conflict("hold_id_exists", "Hold " + command.hold_id + " already exists.");
  }
  std::vector<BudgetNode*> path = lineage_of(state, command.budget);
  if (path.empty())
    return not_found("budget_not_found", "No budget " + command.budget + ".");
  if (Status tagged = check_required_tags(path, command); !tagged.ok())
    return tagged.error();
  const std::vector<const BudgetNode*> view = const_view(path);
  const Decision decision = decide(
      view, SpendRequest{*command.amount, command.vendor, command.kind == CommandKind::hold}, now);
  if (!decision.accepted)
    return deny(state, command, decision, now);

  const Money amount = *command.amount;
  count_usage(path, amount, command.vendor, command.kind == CommandKind::spend, now);
  const std::string budget_account = "budget:" + command.budget;
  if (command.kind == CommandKind::spend) {
    adjust_path(state, path, Money::zero(), amount, now);
    Entry entry = make_entry(command, "spend", now);
    entry.amount = amount;
    entry.vendor = command.vendor;
    entry.intent = command.intent;
    entry.tags_json = command.tags_json;
    entry.receipt_json = command.receipt_json;
    entry.hold_id = command.hold_id;
    entry.postings = {{budget_account, amount.negated()}, {vendor_account(command.vendor), amount}};
    carry_through_delegation(state, path, amount.micros(), now, entry);
    append_entry(state, std::move(entry));
    const int64_t seq = state.new_entries.back().seq;
    raise_threshold_alerts(state, command, path, now);
    raise_vendor_alerts(state, command, path, command.vendor, now);
    return AnswerValue(
        SpendCommitted{command.hold_id, command.budget, amount, command.vendor, seq});
  }

  // A hold above an approval threshold reserves its amount like any hold (it passed every later
  // rule) but waits for an admin: pending_approval until approved, rejected, or `ttl` passes.
  adjust_path(state, path, amount, Money::zero(), now);
  Hold hold;
  hold.id = command.hold_id;
  hold.root = command.root;
  hold.budget = command.budget;
  hold.amount = amount;
  hold.status = decision.needs_approval ? HoldStatus::pending_approval : HoldStatus::held;
  hold.vendor = command.vendor;
  hold.intent = command.intent;
  hold.tags_json = command.tags_json;
  hold.on_expiry = command.on_expiry;
  hold.created_at = now;
  hold.expires_at = now + command.ttl;
  hold.ttl = command.ttl;
  hold.actor = command.actor;
  Entry entry = make_entry(command, "hold", now);
  entry.amount = amount;
  entry.vendor = command.vendor;
  entry.intent = command.intent;
  entry.tags_json = command.tags_json;
  entry.hold_id = hold.id;
  entry.postings = {{budget_account, amount.negated()}, {"holds:" + command.budget, amount}};
  carry_through_delegation(state, path, amount.micros(), now, entry);
  if (decision.needs_approval) {
    const BudgetNode& level = state.budgets.at(decision.approval_level);
    entry.detail_json = canonical_json(
        boost::json::object{{"status", "pending_approval"},
                            {"approval_level", decision.approval_level},
                            {"approval_above", level.policies.approval_above->to_string()},
                            {"decide_by", format_timestamp(hold.expires_at)}});
  }
  append_entry(state, std::move(entry));
  HoldPlaced placed{hold, state.new_entries.back().seq, std::nullopt};
  if (decision.needs_approval)
    placed.approval_level = decision.approval_level;
  state.holds[hold.id] = std::move(hold);
  state.dirty_holds.insert(command.hold_id);
  raise_threshold_alerts(state, command, path, now);
  raise_vendor_alerts(state, command, path, command.vendor, now);
  return AnswerValue(placed);
}

// Settles an open hold: captures `captured` (zero for a void or a rejection) and releases the
// rest. Only a held hold is ever captured.
void settle_hold(WorkingSet& state, const Command& command, Hold& hold, HoldStatus status,
                 Money captured, std::string_view kind, Micros now,
                 std::string detail_json = "null") {
  assert(hold.open());
  assert(hold.status == HoldStatus::held || captured.is_zero());
  assert(captured <= hold.amount && !captured.is_negative());
  std::vector<BudgetNode*> path = lineage_of(state, hold.budget);
  assert(!path.empty());  // Nodes are never deleted, and the hold's node existed when it was made.
  adjust_path(state, path, hold.amount.negated(), captured, now);
  settle_usage(path, hold, captured, now);
  hold.status = status;
  hold.captured = captured;
  hold.settled_at = now;
  state.dirty_holds.insert(hold.id);

  Entry entry = make_entry(command, kind, now);
  entry.budget = hold.budget;
  entry.amount = captured;
  entry.vendor = hold.vendor;
  entry.intent = hold.intent;
  entry.tags_json = hold.tags_json;
  entry.receipt_json = command.receipt_json;
  entry.hold_id = hold.id;
  entry.detail_json = std::move(detail_json);
  const Money released = Money::from_micros(hold.amount.micros() - captured.micros());
  entry.postings.push_back({"holds:" + hold.budget, hold.amount.negated()});
  if (!released.is_zero())
    entry.postings.push_back({"budget:" + hold.budget, released});
  if (!captured.is_zero())
    entry.postings.push_back({vendor_account(hold.vendor), captured});
  carry_through_delegation(state, path, captured.micros() - hold.amount.micros(), now, entry);
  append_entry(state, std::move(entry));
}

void expire_hold(WorkingSet& state, const Command& command, Hold& hold, Micros now) {
  // Conservative when unsure (guarantee 4): an unsettled hold is captured at its held amount
  // unless it was made with on_expiry "void".
  const Money captured = hold.on_expiry == OnExpiry::capture ? hold.amount : Money::zero();
  Command expiry = command;
  expiry.actor = std::string(system_actor);
  expiry.receipt_json = "null";
  settle_hold(state, expiry, hold, HoldStatus::expired, captured, "expire", now);
}

// An approval nobody gave in time is a rejection: the reservation is released, nothing moved.
void reject_unanswered(WorkingSet& state, const Command& command, Hold& hold, Micros now) {
  Command expiry = command;
  expiry.actor = std::string(system_actor);
  expiry.receipt_json = "null";
  settle_hold(state, expiry, hold, HoldStatus::rejected, Money::zero(), "reject", now,
              canonical_json(boost::json::object{{"reason", "approval expired"}}));
}

// Settles an open hold whose time is up: what the sweeper would do.
bool settle_if_lapsed(WorkingSet& state, const Command& command, Hold& hold, Micros now) {
  if (!hold.open() || now < hold.expires_at)
    return false;
  if (hold.status == HoldStatus::held) {
    expire_hold(state, command, hold, now);
  } else {
    reject_unanswered(state, command, hold, now);
  }
  return true;
}

// The hold as this command settled it, with the settlement's entry (the last one appended).
HoldSettled hold_answer(const WorkingSet& state, const Hold& hold) {
  assert(!state.new_entries.empty() && state.new_entries.back().hold_id == hold.id);
  return HoldSettled{hold, state.new_entries.back().seq};
}

// An admin's answer to a hold waiting for approval. Approving changes no money (the amount was
// reserved when it was requested) and starts the hold's ttl; rejecting releases the reservation.
Decided apply_approval(WorkingSet& state, const Command& command, Hold& hold, Micros now) {
  if (hold.status != HoldStatus::pending_approval) {
    return conflict("hold_not_pending", "Hold " + hold.id + " is " +
                                            std::string(hold_status_name(hold.status)) +
                                            ", not pending approval.");
  }
  const std::string detail = canonical_json(boost::json::object{{"reason", command.reason}});
  if (command.kind == CommandKind::reject_hold) {
    settle_hold(state, command, hold, HoldStatus::rejected, Money::zero(), "reject", now, detail);
    return AnswerValue(hold_answer(state, hold));
  }
  const std::vector<BudgetNode*> path = lineage_of(state, hold.budget);
  for (const BudgetNode* node : path) {
    if (node->frozen) {
      return conflict("budget_frozen",
                      "Budget " + node->path + " is frozen; unfreeze it or reject the hold.");
    }
  }
  hold.status = HoldStatus::held;
  hold.expires_at = now + hold.ttl;
  state.dirty_holds.insert(hold.id);
  Entry entry = make_entry(command, "approve", now);
  entry.budget = hold.budget;
  entry.amount = hold.amount;
  entry.vendor = hold.vendor;
  entry.intent = hold.intent;
  entry.tags_json = hold.tags_json;
  entry.hold_id = hold.id;
  entry.detail_json = detail;
  append_entry(state, std::move(entry));
  return AnswerValue(hold_answer(state, hold));
}

Decided apply_hold_settlement(WorkingSet& state, const Command& command, Micros now) {
  auto found = state.holds.find(command.hold_id);
  if (found == state.holds.end() || found->second.root != command.root) {
    return not_found("hold_not_found", "No hold " + command.hold_id + ".");
  }
  Hold& hold = found->second;
  if (command.kind == CommandKind::expire) {
    settle_if_lapsed(state, command, hold, now);
    return AnswerValue(HoldChecked{hold});
  }
  settle_if_lapsed(state, command, hold, now);
  if (command.kind == CommandKind::approve || command.kind == CommandKind::reject_hold)
    return apply_approval(state, command, hold, now);
  // The agent may withdraw a request that is still waiting for approval; it cannot capture it.
  if (command.kind == CommandKind::void_hold && hold.status == HoldStatus::pending_approval) {
    settle_hold(state, command, hold, HoldStatus::voided, Money::zero(), "void", now);
    return AnswerValue(hold_answer(state, hold));
  }
  if (hold.status != HoldStatus::held) {
    return conflict(
        "hold_not_held",
        "Hold " + hold.id + " is " + std::string(hold_status_name(hold.status)) + ", not held.");
  }
  if (command.kind == CommandKind::void_hold) {
    settle_hold(state, command, hold, HoldStatus::voided, Money::zero(), "void", now);
    return AnswerValue(hold_answer(state, hold));
  }
  const Money captured = command.amount.value_or(hold.amount);
  if (captured > hold.amount) {
    return conflict("capture_exceeds_hold", "Capture amount " + captured.to_string() +
                                                " is above the held amount " +
                                                hold.amount.to_string() + ".");
  }
  settle_hold(state, command, hold, HoldStatus::captured, captured, "capture", now);
  return AnswerValue(hold_answer(state, hold));
}

Decided apply_set_budget(WorkingSet& state, const Command& command, Micros now) {
  const auto path = BudgetPath::parse(command.budget);
  assert(path.has_value());
  const BudgetSettings& settings = command.settings;
  auto existing = state.budgets.find(command.budget);
  const bool created = existing == state.budgets.end();
  BudgetNode node;
  if (created) {
    if (const auto parent = path->parent(); parent && !state.budgets.contains(parent->str())) {
      return not_found("parent_not_found",
                       "Parent budget " + parent->str() + " does not exist; create it first.");
    }
    node.path = command.budget;
    node.root = path->root();
    node.parent = path->parent() ? path->parent()->str() : "";
    node.period_start = period_start(node.period, now);
    node.created_at = now;
  } else {
    node = existing->second;
  }
  if (node.active_delegation() && (settings.limit_given || settings.period)) {
    // What the parent chain carries for it is its limit minus what it used: fixed for its life.
    return conflict("delegation_fixed", "Budget " + node.path +
                                            " is an active delegation: its limit and period are "
                                            "fixed until its key is revoked or expires.");
  }
  node.roll_period(now);
  if (settings.limit_given)
    node.limit = settings.limit;
  if (settings.per_txn_max_given)
    node.per_txn_max = settings.per_txn_max;
  if (settings.currency && *settings.currency != node.currency) {
    // Every amount in a root's books is in its currency: changing it would re-denominate them.
    if (!created && node.head_seq > 0) {
      return conflict("currency_locked", "Root " + node.path + " keeps books in " + node.currency +
                                             " already; its currency cannot change.");
    }
    node.currency = *settings.currency;
  }
  if (settings.period && *settings.period != node.period) {
    // Spent so far carries into the new period: over-counting is the safe side.
    node.period = *settings.period;
    node.period_start = period_start(node.period, now);
  }
  if (settings.windows)
    node.policies.windows = *settings.windows;
  if (settings.vendors)
    node.policies.vendors = *settings.vendors;
  if (settings.vendor_limits)
    node.policies.vendor_limits = *settings.vendor_limits;
  if (settings.require_tags)
    node.policies.require_tags = *settings.require_tags;
  if (settings.vendor_categories)
    node.policies.vendor_categories = *settings.vendor_categories;
  if (settings.approval_above_given)
    node.policies.approval_above = settings.approval_above;
  if (settings.breaker_given)
    node.policies.breaker = settings.breaker;
  if (settings.thresholds_given)
    node.policies.thresholds = settings.thresholds;
  if (node.limit && node.policies.approval_above && *node.policies.approval_above > *node.limit) {
    return Error::invalid("invalid_approval_above",
                          "approval_above " + node.policies.approval_above->to_string() +
                              " is above the limit " + node.limit->to_string() + " of " +
                              node.path + ": no hold could ever need approval.");
  }
  sync_usage(node.usage, node.policies, now);
  if (node.limit) {
    const Money used = Money::from_micros(node.spent.micros() + node.reserved.micros());
    if (*node.limit < used) {
      return conflict("limit_below_usage", "Limit " + node.limit->to_string() + " is below what " +
                                               node.path + " has already spent or reserved (" +
                                               used.to_string() +
                                               "); freeze the budget to stop spending instead.");
    }
  }
  node.updated_at = now;
  state.budgets[node.path] = node;
  state.dirty_budgets.insert(node.path);

  boost::json::object detail{
      {"created", created},
      {"limit", node.limit ? boost::json::value(node.limit->to_string()) : nullptr},
      {"period", period_name(node.period)},
      {"per_txn_max",
       node.per_txn_max ? boost::json::value(node.per_txn_max->to_string()) : nullptr}};
  if (path->is_root())
    detail["currency"] = node.currency;
  if (settings.touches_policies() || !node.policies.empty())
    detail["policies"] = policies_to_json(node.policies);
  Entry entry = make_entry(command, "budget_set", now);
  entry.amount = node.limit;
  entry.detail_json = canonical_json(detail);
  append_entry(state, std::move(entry));

  const std::vector<BudgetNode*> lineage = lineage_of(state, node.path);
  // A lower limit (or new thresholds) can put what is already used past a threshold.
  raise_threshold_alerts(state, command, {lineage.back()}, now);
  return AnswerValue(BudgetWritten{budget_state(state, node.path), created});
}

bool within_subtree(std::string_view path, std::string_view subtree) {
  return path == subtree ||
         (path.size() > subtree.size() && path.starts_with(subtree) && path[subtree.size()] == '/');
}

// Voids the outstanding holds below a frozen node, in id order, as many as fit in
// void_rows_per_command_max written rows (each hold: its row, its entry, and any budget row not
// yet written by this batch). A hold already past its expiry is expired instead (conservative:
// captured at its held amount unless it was made with on_expiry "void").
VoidedShare void_open_holds(WorkingSet& state, const Command& command, Micros now) {
  VoidedShare share;
  auto listed = state.open_holds.find(command.budget);
  if (listed == state.open_holds.end())
    return share;
  const std::string detail =
      canonical_json(boost::json::object{{"voided_by", "freeze"}, {"frozen", command.budget}});
  size_t rows = 0;
  for (const std::string& id : listed->second) {
    auto found = state.holds.find(id);
    assert(found != state.holds.end());
    Hold& hold = found->second;
    assert(within_subtree(hold.budget, command.budget));
    if (!hold.open())
      continue;  // settled earlier in this batch
    const std::vector<BudgetNode*> path = lineage_of(state, hold.budget);
    assert(!path.empty());
    size_t needed = 2;
    for (const BudgetNode* node : path)
      needed += state.dirty_budgets.contains(node->path) ? 0 : 1;
    if (rows + needed > void_rows_per_command_max) {
      ++share.remaining;
      continue;
    }
    rows += needed;
    if (settle_if_lapsed(state, command, hold, now)) {
      ++share.expired;
    } else {
      settle_hold(state, command, hold, HoldStatus::voided, Money::zero(), "void", now, detail);
      ++share.voided;
    }
  }
  if (state.open_holds_truncated.contains(command.budget))
    ++share.remaining;
  return share;
}

Decided apply_void_holds(WorkingSet& state, const Command& command, Micros now) {
  std::vector<BudgetNode*> lineage = lineage_of(state, command.budget);
  if (lineage.empty())
    return not_found("budget_not_found", "No budget " + command.budget + ".");
  if (!lineage.back()->frozen) {
    return conflict("not_frozen", "Budget " + command.budget +
                                      " is not frozen; freeze it with void_holds to void its "
                                      "outstanding holds.");
  }
  const VoidedShare share = void_open_holds(state, command, now);
  return AnswerValue(HoldsVoided{budget_state(state, command.budget), share});
}

Decided apply_freeze(WorkingSet& state, const Command& command, Micros now) {
  std::vector<BudgetNode*> lineage = lineage_of(state, command.budget);
  if (lineage.empty())
    return not_found("budget_not_found", "No budget " + command.budget + ".");
  BudgetNode& node = *lineage.back();
  const bool freeze = command.kind == CommandKind::freeze;
  node.frozen = freeze;
  node.frozen_reason = freeze ? command.reason : "";
  if (!freeze && node.usage.breaker) {
    // Unfreezing re-arms the velocity breaker from zero: the spends that tripped it must not
    // trip it again the moment the admin lets the node spend.
    node.usage.breaker = Ring{node.usage.breaker->duration, now, {}};
  }
  node.updated_at = now;
  state.dirty_budgets.insert(node.path);
  Entry entry = make_entry(command, freeze ? "freeze" : "unfreeze", now);
  boost::json::object detail{{"reason", command.reason}};
  if (freeze && command.void_holds)
    detail["void_holds"] = true;
  entry.detail_json = canonical_json(detail);
  append_entry(state, std::move(entry));
  // The kill switch: with void_holds, the subtree's outstanding holds are voided in the same
  // commit as the freeze (what does not fit under the row bound, in the next ones).
  std::optional<VoidedShare> share;
  if (freeze && command.void_holds)
    share = void_open_holds(state, command, now);
  return AnswerValue(BudgetFrozen{budget_state(state, command.budget), share});
}

Decided apply_create_key(WorkingSet& state, const Command& command, Micros now) {
  if (!state.budgets.contains(command.key.budget)) {
    return not_found("budget_not_found", "No budget " + command.key.budget + ".");
  }
  ApiKey key = command.key;
  key.created_at = now;
  state.keys[key.id] = key;
  state.dirty_keys.insert(key.id);
  Entry entry = make_entry(command, "key_created", now);
  entry.detail_json = canonical_json(boost::json::object{
      {"key_id", key.id},
      {"name", key.name},
      {"expires_at",
       key.expires_at ? boost::json::value(format_timestamp(key.expires_at)) : nullptr}});
  append_entry(state, std::move(entry));
  // The secret is added by the edge to the first answer only; it is never stored.
  return AnswerValue(KeyCreated{std::move(key)});
}

// Ends the delegations rooted at `roots` (paths of active delegations, read with their whole
// subtree: ReadSet::open_hold_subtrees) and every active delegation below them, in one commit:
// first every open hold below them is settled as an expiry would (captured at its held amount
// unless made with on_expiry "void"; a pending approval is rejected), while the delegations are
// still active so that each settlement returns its release to the right one; then, deepest
// first, what each still carries returns to its parent chain (to the delegation above it, if
// any), chained as a delegation_ended entry, and the node is frozen. With `revoke`, the ended
// delegations' keys are revoked too. Returns how many delegations ended.
Result<int64_t> end_delegations(WorkingSet& state, const Command& command,
                                const std::vector<std::string>& roots, const std::string& reason,
                                bool revoke, Micros now) {
  std::vector<std::string> ending;  // path order: parents before children
  for (const auto& [key, node] : state.budgets) {
    if (!node.active_delegation())
      continue;
    const std::string& path = key;
    if (std::any_of(roots.begin(), roots.end(),
                    [&](const std::string& root) { return within_subtree(path, root); }))
      ending.push_back(path);
  }
  if (ending.empty())
    return int64_t{0};
  std::sort(ending.begin(), ending.end());
  for (const std::string& subtree : state.open_holds_truncated) {
    if (std::any_of(ending.begin(), ending.end(), [&](const std::string& path) {
          return within_subtree(path, subtree) || within_subtree(subtree, path);
        })) {
      return conflict("too_many_open_holds",
                      "The delegations below " + subtree +
                          " have more open holds than one commit settles; freeze " + subtree +
                          " with void_holds first, then retry.");
    }
  }
  const auto below_ending = [&](const std::string& budget) {
    return std::any_of(ending.begin(), ending.end(),
                       [&](const std::string& path) { return within_subtree(budget, path); });
  };
  Command system = command;
  system.receipt_json = "null";
  // Every open hold below: those read with the subtree, and any placed earlier in this batch
  // (in `holds` too), in id order.
  std::vector<std::string> open;
  for (const auto& [id, hold] : state.holds) {
    if (hold.open() && below_ending(hold.budget))
      open.push_back(id);
  }
  std::sort(open.begin(), open.end());
  for (const std::string& id : open) {
    Hold& hold = state.holds.at(id);
    if (hold.status == HoldStatus::held) {
      expire_hold(state, system, hold, now);
    } else {
      reject_unanswered(state, system, hold, now);
    }
  }
  for (auto path = ending.rbegin(); path != ending.rend(); ++path) {
    BudgetNode& node = state.budgets.at(*path);
    assert(node.active_delegation());
    std::vector<BudgetNode*> lineage = lineage_of(state, *path);
    assert(!lineage.empty() && lineage.back() == &node);
    const Money returned = node.delegation->carried;
    Entry entry = make_entry(command, "delegation_ended", now);
    entry.budget = *path;
    entry.actor = command.actor == admin_actor ? command.actor : std::string(system_actor);
    entry.amount = returned;
    lineage.pop_back();  // the levels above it, which carried `returned`
    if (!returned.is_zero()) {
      entry.postings.push_back({"delegations:" + *path, returned.negated()});
      adjust_path(state, lineage, returned.negated(), Money::zero(), now);
      BudgetNode* above = funding_delegation(lineage);
      if (above != nullptr) {
        // Back to the delegation above, whose levels above carry it again.
        carry_through_delegation(state, lineage, -returned.micros(), now, entry);
        // carry_through_delegation balanced with budget:<above>; the delegation's carried
        // reservation is what balances here.
        entry.postings.pop_back();
        entry.postings.pop_back();
        entry.postings.push_back({"delegations:" + above->path, returned});
      } else {
        entry.postings.push_back({"budget:" + node.parent, returned});
      }
    }
    node.delegation->carried = Money::zero();
    node.delegation->ended_at = now;
    node.frozen = true;
    node.frozen_reason = "delegation ended: " + reason;
    node.updated_at = now;
    state.dirty_budgets.insert(*path);
    entry.detail_json = canonical_json(boost::json::object{{"key_id", node.delegation->key_id},
                                                           {"reason", reason},
                                                           {"returned", returned.to_string()},
                                                           {"run", node.delegation->run}});
    append_entry(state, std::move(entry));
    if (revoke) {
      auto key = state.keys.find(node.delegation->key_id);
      if (key != state.keys.end() && key->second.revoked_at == 0) {
        key->second.revoked_at = now;
        state.dirty_keys.insert(key->first);
      }
    }
  }
  return static_cast<int64_t>(ending.size());
}

Decided apply_revoke_key(WorkingSet& state, const Command& command, Micros now) {
  auto found = state.keys.find(command.key.id);
  if (found == state.keys.end() ||
      BudgetPath::parse(found->second.budget)->root() != command.root) {
    return not_found("key_not_found", "No key " + command.key.id + ".");
  }
  const std::string key_id = found->second.id;
  const bool was_revoked = found->second.revoked_at != 0;
  // The delegations this key made, and the one it is the key of: each ends with everything
  // below it (every delegation below was made by a key at or below it).
  std::vector<std::string> roots;
  for (const auto& [path, node] : state.budgets) {
    if (node.active_delegation() &&
        (node.delegation->key_id == key_id || node.delegation->parent_key == key_id) &&
        within_subtree(path, found->second.budget))
      roots.push_back(path);
  }
  int64_t ended = 0;
  if (!roots.empty()) {
    auto done = end_delegations(state, command, roots, "key " + key_id + " revoked", true, now);
    if (!done.ok())
      return done.error();
    ended = done.value();
  }
  ApiKey& key = state.keys.at(key_id);
  if (!was_revoked) {
    key.revoked_at = now;
    state.dirty_keys.insert(key.id);
    Entry entry = make_entry(command, "key_revoked", now);
    entry.budget = key.budget;
    entry.detail_json = canonical_json(boost::json::object{{"key_id", key.id}});
    append_entry(state, std::move(entry));
  }
  return AnswerValue(KeyRevoked{key, ended});
}

// The sweeper's expiry check of a delegation: ends it (and everything below it) once its key's
// life is over; an answer either way.
Decided apply_end_delegation(WorkingSet& state, const Command& command, Micros now) {
  auto found = state.budgets.find(command.budget);
  if (found == state.budgets.end())
    return not_found("budget_not_found", "No budget " + command.budget + ".");
  const BudgetNode& node = found->second;
  if (!node.active_delegation() || node.delegation->expires_at == 0 ||
      now < node.delegation->expires_at)
    return AnswerValue(DelegationsEnded{command.budget, 0});
  auto done = end_delegations(state, command, {command.budget},
                              "key " + node.delegation->key_id + " expired", false, now);
  if (!done.ok())
    return done.error();
  return AnswerValue(DelegationsEnded{command.budget, done.value()});
}

// Whether every pattern of `child` is admitted by some pattern of `allow` (a wildcard admits
// the names and narrower wildcards it matches).
bool narrower_allow_list(const std::vector<std::string>& allow,
                         const std::vector<std::string>& child) {
  return std::all_of(child.begin(), child.end(), [&](const std::string& pattern) {
    return std::any_of(allow.begin(), allow.end(), [&](const std::string& parent) {
      return parent == pattern || vendor_matches(parent, pattern);
    });
  });
}

// A delegation: the child node and its key in one commit. The child's limit is reserved on every
// level above it (what each level has available now bounds it), its key lives no longer than the
// acting key (and any delegation above), and its vendor allow list, if given, is narrower than
// every allow list above it.
Decided apply_delegate(WorkingSet& state, const Command& command, Micros now) {
  assert(command.amount && command.amount->is_positive());
  const auto child_path = BudgetPath::parse(command.budget);
  assert(child_path && child_path->parent());
  const std::string parent = child_path->parent()->str();
  if (state.budgets.contains(command.budget)) {
    return conflict("budget_exists", "Budget " + command.budget +
                                         " already exists; give the delegation another name.");
  }
  if (state.keys.contains(command.key.id))
    return conflict("key_id_exists", "Key " + command.key.id + " already exists.");
  std::vector<BudgetNode*> lineage = lineage_of(state, parent);
  if (lineage.empty())
    return not_found("budget_not_found", "No budget " + parent + ".");
  for (const BudgetNode* node : lineage) {
    if (node->frozen) {
      return conflict(
          "budget_frozen",
          "Budget " + node->path + " is frozen" +
              (node->frozen_reason.empty() ? std::string(".") : ": " + node->frozen_reason + ".") +
              " It cannot delegate.");
    }
  }
  const Money limit = *command.amount;
  Micros expires_at = now + command.ttl;
  const auto life_bound = [&](Micros bound, const std::string& whose) -> Status {
    if (bound != 0 && expires_at > bound) {
      return Error::invalid("ttl_exceeds_parent",
                            "ttl would outlive " + whose + ", which expires at " +
                                format_timestamp(bound) + " (at most " +
                                format_duration(std::max<Micros>(0, bound - now)) + " from now).");
    }
    return Status::success();
  };
  if (command.actor != admin_actor) {
    const ApiKey& acting = state.keys.at(command.actor);  // check_actor read it
    if (Status bounded = life_bound(acting.expires_at, "the key " + acting.id); !bounded.ok())
      return bounded.error();
  }
  for (const BudgetNode* node : lineage) {
    if (!node->active_delegation())
      continue;
    if (Status bounded = life_bound(node->delegation->expires_at, "the delegation " + node->path);
        !bounded.ok())
      return bounded.error();
  }
  // What the levels that pay for it have available now (above an active delegation, its
  // reservation pays).
  const std::vector<const BudgetNode*> view = const_view(lineage);
  const size_t from = funded_from(view);
  for (size_t index = from; index < lineage.size(); ++index) {
    const BudgetNode& node = *lineage[index];
    const int64_t used = node.spent_at(now).micros() + node.reserved.micros();
    if (used > Money::micros_max - limit.micros()) {
      return conflict("delegation_exceeds_available",
                      "A limit of " + limit.to_string() + " would take " + node.path +
                          " beyond the largest total a budget can track.");
    }
    const std::optional<Money> room = node.available_at(now);
    if (room && limit > *room) {
      return conflict("delegation_exceeds_available",
                      "A limit of " + limit.to_string() + " is more than " + node.path +
                          " has available now (" + std::max(*room, Money::zero()).to_string() +
                          "); delegate at most that.");
    }
  }
  if (command.allow_vendors) {
    for (const BudgetNode* node : lineage) {
      const std::vector<std::string>& allow = node->policies.vendors.allow;
      if (!allow.empty() && !narrower_allow_list(allow, *command.allow_vendors)) {
        return Error::invalid("vendors_not_narrower",
                              "The vendor allow list must be narrower than the allow list of " +
                                  node->path + "; every pattern must be one it admits.");
      }
    }
  }

  BudgetNode child;
  child.path = command.budget;
  child.root = child_path->root();
  child.parent = parent;
  child.limit = limit;
  child.period = Period::none;
  child.period_start = period_start(Period::none, now);
  child.currency = state.budgets.at(command.root).currency;
  child.created_at = now;
  child.updated_at = now;
  if (command.allow_vendors)
    child.policies.vendors.allow = *command.allow_vendors;
  sync_usage(child.usage, child.policies, now);
  Delegation delegation;
  delegation.key_id = command.key.id;
  delegation.parent_key = command.actor == admin_actor ? "" : command.actor;
  delegation.expires_at = command.ttl > 0 ? expires_at : 0;
  delegation.carried = limit;
  delegation.run = command.run;
  child.delegation = delegation;
  if (command.ttl == 0)
    expires_at = 0;

  Entry entry = make_entry(command, "delegate", now);
  entry.amount = limit;
  entry.postings.push_back({"delegations:" + command.budget, limit});
  // The reservation: every level above carries the child's limit...
  adjust_path(state, lineage, limit, Money::zero(), now);
  if (BudgetNode* above = funding_delegation(lineage)) {
    // ...and a delegation above hands it down out of what it carries.
    carry_through_delegation(state, lineage, limit.micros(), now, entry);
    entry.postings.pop_back();
    entry.postings.pop_back();
    entry.postings.push_back({"delegations:" + above->path, limit.negated()});
  } else {
    entry.postings.push_back({"budget:" + parent, limit.negated()});
  }
  boost::json::array vendors;
  if (command.allow_vendors) {
    for (const std::string& pattern : *command.allow_vendors)
      vendors.emplace_back(pattern);
  }
  entry.detail_json = canonical_json(boost::json::object{
      {"key_id", command.key.id},
      {"name", command.key.name},
      {"parent_key", delegation.parent_key},
      {"limit", limit.to_string()},
      {"period", period_name(Period::none)},
      {"expires_at", expires_at ? boost::json::value(format_timestamp(expires_at)) : nullptr},
      {"vendors", command.allow_vendors ? boost::json::value(std::move(vendors)) : nullptr},
      {"run", command.run}});
  state.budgets[child.path] = std::move(child);
  state.dirty_budgets.insert(command.budget);
  append_entry(state, std::move(entry));
  const int64_t seq = state.new_entries.back().seq;

  ApiKey key = command.key;
  key.budget = command.budget;
  key.created_at = now;
  key.expires_at = expires_at;
  key.revoked_at = 0;
  state.keys[key.id] = key;
  state.dirty_keys.insert(key.id);
  std::vector<BudgetNode*> parents = lineage_of(state, parent);
  raise_threshold_alerts(state, command, parents, now);
  return AnswerValue(DelegationCreated{budget_state(state, command.budget), key, seq});
}

// A webhook as its entries record it (never its secret).
boost::json::object webhook_detail(const Webhook& webhook) {
  boost::json::array events;
  for (const std::string& event : webhook.events)
    events.emplace_back(event);
  return boost::json::object{{"name", webhook.name},
                             {"root", webhook.root},
                             {"url", webhook.url},
                             {"events", std::move(events)},
                             {"since_seq", webhook.since_seq}};
}

Decided apply_set_webhook(WorkingSet& state, const Command& command, Micros now) {
  const WebhookSettings& settings = command.webhook;
  auto existing = state.webhooks.find(settings.name);
  const bool created = existing == state.webhooks.end();
  if (!created && existing->second.root != command.root) {
    return conflict("webhook_root_mismatch", "Webhook " + settings.name + " belongs to root " +
                                                 existing->second.root +
                                                 "; delete it first to use the name elsewhere.");
  }
  Webhook webhook;
  if (created) {
    for (const auto& [field, given] : {std::pair{"url", settings.url.has_value()},
                                       std::pair{"events", settings.events.has_value()},
                                       std::pair{"secret", settings.secret.has_value()}}) {
      if (!given) {
        return Error::invalid("missing_field", std::string("Field \"") + field +
                                                   "\" is required to create a webhook.");
      }
    }
    webhook.name = settings.name;
    webhook.root = command.root;
    webhook.created_at = now;
    // Deliveries start with what commits after this change (whose entry takes the next seq).
    webhook.since_seq = state.budgets.at(command.root).head_seq + 1;
  } else {
    webhook = existing->second;
  }
  if (settings.url)
    webhook.url = *settings.url;
  if (settings.events)
    webhook.events = *settings.events;
  if (settings.secret)
    webhook.secret = *settings.secret;
  webhook.updated_at = now;

  boost::json::object detail = webhook_detail(webhook);
  detail["created"] = created;
  detail["secret_changed"] = settings.secret.has_value();
  Entry entry = make_entry(command, "webhook_set", now);
  entry.budget = command.root;
  entry.detail_json = canonical_json(detail);
  append_entry(state, std::move(entry));
  assert(webhook.since_seq >= 1 && webhook.root == command.root);
  WebhookWritten written{webhook, created};
  state.webhooks[webhook.name] = std::move(webhook);
  state.dirty_webhooks.insert(settings.name);
  state.deleted_webhooks.erase(settings.name);
  return AnswerValue(written);
}

Decided apply_delete_webhook(WorkingSet& state, const Command& command, Micros now) {
  auto existing = state.webhooks.find(command.webhook.name);
  if (existing == state.webhooks.end() || existing->second.root != command.root)
    return not_found("webhook_not_found", "No webhook " + command.webhook.name + ".");
  WebhookDeleted deleted{existing->second};
  Entry entry = make_entry(command, "webhook_deleted", now);
  entry.budget = command.root;
  entry.detail_json = canonical_json(webhook_detail(existing->second));
  append_entry(state, std::move(entry));
  state.webhooks.erase(existing);
  state.dirty_webhooks.erase(command.webhook.name);
  state.deleted_webhooks.insert(command.webhook.name);
  return AnswerValue(deleted);
}

// A vendor as its entries record it: its settings, never its credential.
boost::json::object vendor_detail(const Vendor& vendor) {
  return boost::json::object{{"name", vendor.name},
                             {"root", vendor.root},
                             {"settings", boost::json::parse(vendor.settings_json)}};
}

Decided apply_set_vendor(WorkingSet& state, const Command& command, Micros now) {
  const VendorSettings& settings = command.vendor_settings;
  auto existing = state.vendors.find(settings.name);
  const bool created = existing == state.vendors.end();
  if (!created && existing->second.root != command.root) {
    return conflict("vendor_root_mismatch", "Vendor " + settings.name + " belongs to root " +
                                                existing->second.root +
                                                "; delete it first to use the name elsewhere.");
  }
  Vendor vendor;
  if (created) {
    vendor.name = settings.name;
    vendor.root = command.root;
    vendor.created_at = now;
  } else {
    vendor = existing->second;
  }
  boost::json::value merged = boost::json::parse(vendor.settings_json);
  const boost::json::value patch = boost::json::parse(settings.settings_patch_json);
  if (!merged.is_object() || !patch.is_object())
    return Error{ErrorCode::internal, "vendor_settings_invalid", "Vendor settings unreadable."};
  for (const auto& member : patch.get_object()) {
    if (member.value().is_null())
      merged.get_object().erase(member.key());
    else
      merged.get_object()[member.key()] = member.value();
  }
  if (settings.credential)
    vendor.credential = *settings.credential;
  if (created) {
    for (const char* field : {"kind", "base_url"}) {
      if (!merged.get_object().contains(field)) {
        return Error::invalid("missing_field", std::string("Field \"") + field +
                                                   "\" is required to create a vendor.");
      }
    }
    if (vendor.credential.empty()) {
      return Error::invalid("missing_field",
                            "Field \"credential\" is required to create a vendor.");
    }
  }
  vendor.settings_json = canonical_json(merged);
  vendor.updated_at = now;

  boost::json::object detail = vendor_detail(vendor);
  detail["created"] = created;
  detail["credential_changed"] = settings.credential.has_value();
  Entry entry = make_entry(command, "vendor_set", now);
  entry.budget = command.root;
  entry.detail_json = canonical_json(detail);
  append_entry(state, std::move(entry));
  VendorWritten written{vendor, created};
  state.vendors[vendor.name] = std::move(vendor);
  state.dirty_vendors.insert(settings.name);
  state.deleted_vendors.erase(settings.name);
  return AnswerValue(written);
}

Decided apply_delete_vendor(WorkingSet& state, const Command& command, Micros now) {
  auto existing = state.vendors.find(command.vendor_settings.name);
  if (existing == state.vendors.end() || existing->second.root != command.root)
    return not_found("vendor_not_found", "No vendor " + command.vendor_settings.name + ".");
  VendorDeleted deleted{existing->second};
  Entry entry = make_entry(command, "vendor_deleted", now);
  entry.budget = command.root;
  entry.detail_json = canonical_json(vendor_detail(existing->second));
  append_entry(state, std::move(entry));
  state.vendors.erase(existing);
  state.dirty_vendors.erase(command.vendor_settings.name);
  state.deleted_vendors.insert(command.vendor_settings.name);
  return AnswerValue(deleted);
}

// Re-checks the acting key against the row read in this commit, so that a revoke or an expiry
// takes effect at once on every instance whatever the edge cached.
Status check_actor(const WorkingSet& state, const Command& command, Micros now) {
  if (command.actor == admin_actor || command.kind == CommandKind::expire ||
      command.kind == CommandKind::end_delegation)
    return Status::success();
  auto found = state.keys.find(command.actor);
  if (found == state.keys.end() || !found->second.usable_at(now)) {
    return Error{ErrorCode::unauthorized, "key_not_usable", "The key is revoked or expired."};
  }
  const auto target = BudgetPath::parse(command.budget);
  const auto bound = BudgetPath::parse(found->second.budget);
  if (!target || !bound || !target->within(*bound)) {
    return Error{ErrorCode::forbidden, "outside_key_subtree",
                 "The key for " + found->second.budget + " cannot act on " + command.budget + "."};
  }
  return Status::success();
}

// The control plane is the admin's, and expiries the system's: the core refuses them from
// anyone else, whatever the edge let through.
Status check_privilege(const Command& command) {
  switch (command.kind) {
    case CommandKind::spend:
    case CommandKind::hold:
    case CommandKind::capture:
    case CommandKind::void_hold:
    case CommandKind::delegate:
      return Status::success();
    case CommandKind::expire:
    case CommandKind::end_delegation:
      if (command.actor == system_actor || command.actor == admin_actor)
        return Status::success();
      break;
    case CommandKind::set_budget:
    case CommandKind::freeze:
    case CommandKind::unfreeze:
    case CommandKind::create_key:
    case CommandKind::revoke_key:
    case CommandKind::void_holds:
    case CommandKind::approve:
    case CommandKind::reject_hold:
    case CommandKind::set_webhook:
    case CommandKind::delete_webhook:
    case CommandKind::set_vendor:
    case CommandKind::delete_vendor:
      if (command.actor == admin_actor)
        return Status::success();
      break;
  }
  return Error{
      ErrorCode::forbidden, "admin_only",
      std::string("Only the admin may ") + std::string(command_kind_name(command.kind)) + "."};
}

// A row that could not be read whole is never decided on, nor written back (which would drop
// the policies it could not read): the command is refused until an operator repairs it.
Status check_readable(const WorkingSet& state, const Command& command) {
  const auto refuse = [](const BudgetNode& node) -> Status {
    return Error{ErrorCode::internal, "ledger_state_invalid",
                 "Budget " + node.path + " cannot be read: " + node.state_error};
  };
  for (std::string_view level : lineage_paths(command.budget)) {
    auto found = state.budgets.find(std::string(level));
    if (found != state.budgets.end() && !found->second.state_error.empty())
      return refuse(found->second);
  }
  if (command.kind == CommandKind::void_holds ||
      (command.kind == CommandKind::freeze && command.void_holds)) {
    for (const auto& [path, node] : state.budgets) {
      if (!node.state_error.empty() && within_subtree(path, command.budget))
        return refuse(node);
    }
  }
  return Status::success();
}

// Time only moves forward (SPEC guarantee 7): a command is decided at the later of the
// instance's clock and its root's newest recorded time (every entry moves the root's
// updated_at to its ts, and every row of the root changes only with an entry). So a skewed
// instance, or a clock stepping back, can never reopen a period, a window bucket or a breaker
// count, nor make an entry older than the one before it.
Micros decision_time(const WorkingSet& state, const Command& command, Micros now) {
  const auto root = state.budgets.find(command.root);
  if (root == state.budgets.end())
    return now;
  return std::max(now, root->second.updated_at);
}

}  // namespace

std::string_view command_kind_name(CommandKind kind) {
  switch (kind) {
    case CommandKind::spend:
      return "spend";
    case CommandKind::hold:
      return "hold";
    case CommandKind::capture:
      return "capture";
    case CommandKind::void_hold:
      return "void";
    case CommandKind::expire:
      return "expire";
    case CommandKind::set_budget:
      return "set_budget";
    case CommandKind::freeze:
      return "freeze";
    case CommandKind::unfreeze:
      return "unfreeze";
    case CommandKind::create_key:
      return "create_key";
    case CommandKind::revoke_key:
      return "revoke_key";
    case CommandKind::void_holds:
      return "void_holds";
    case CommandKind::approve:
      return "approve";
    case CommandKind::reject_hold:
      return "reject";
    case CommandKind::set_webhook:
      return "set_webhook";
    case CommandKind::delete_webhook:
      return "delete_webhook";
    case CommandKind::delegate:
      return "delegate";
    case CommandKind::end_delegation:
      return "end_delegation";
    case CommandKind::set_vendor:
      return "set_vendor";
    case CommandKind::delete_vendor:
      return "delete_vendor";
  }
  return "unknown";
}

std::string idempotency_slot(std::string_view root, std::string_view scoped_key) {
  std::string slot;
  slot.reserve(root.size() + 1 + scoped_key.size());
  slot += root;
  slot += '\x1f';
  slot += scoped_key;
  return slot;
}

std::string scoped_idempotency_key(const Command& command) {
  return command.actor + ":" + command.idempotency_key;
}

std::vector<std::string_view> lineage_paths(std::string_view path) {
  std::vector<std::string_view> out;
  if (!BudgetPath::parse(path))
    return out;
  for (size_t slash = path.find('/'); slash != std::string_view::npos;
       slash = path.find('/', slash + 1)) {
    out.push_back(path.substr(0, slash));
  }
  out.push_back(path);
  return out;
}

ReadSet read_set_for(std::span<const Command> commands) {
  ReadSet read;
  // A hot batch repeats a few paths many times: expand each distinct one once.
  std::unordered_set<std::string_view> expanded;
  for (const Command& command : commands) {
    if (expanded.insert(command.budget).second) {
      read.budgets.insert(command.root);
      add_lineage(read.budgets, command.budget);  // A new node's parent is in its lineage.
    }
    if (command.kind == CommandKind::create_key)
      add_lineage(read.budgets, command.key.budget);
    // A spend's id names no hold row (spends are captured in the same commit), so only hold
    // commands read theirs.
    if (!command.hold_id.empty() && command.kind != CommandKind::spend)
      read.holds.insert(command.hold_id);
    if (command.actor != admin_actor)
      read.keys.insert(command.actor);
    if (command.kind == CommandKind::revoke_key || command.kind == CommandKind::delegate)
      read.keys.insert(command.key.id);
    // Ending delegations reads the whole subtree: its nodes, open holds and keys.
    if (command.kind == CommandKind::revoke_key || command.kind == CommandKind::end_delegation)
      read.open_hold_subtrees.insert(command.budget);
    if ((command.kind == CommandKind::freeze && command.void_holds) ||
        command.kind == CommandKind::void_holds) {
      read.open_hold_subtrees.insert(command.budget);
    }
    if (command.kind == CommandKind::set_webhook || command.kind == CommandKind::delete_webhook)
      read.webhooks.insert(command.webhook.name);
    if (command.kind == CommandKind::set_vendor || command.kind == CommandKind::delete_vendor)
      read.vendors.insert(command.vendor_settings.name);
    if (!command.idempotency_key.empty()) {
      read.idempotency.emplace_back(command.root, scoped_idempotency_key(command));
    }
  }
  return read;
}

namespace {

// Checks the actor and the state, then applies the command: its typed answer, or why not.
Decided decide_command(WorkingSet& state, const Command& command, Micros now) {
  if (Status allowed = check_privilege(command); !allowed.ok())
    return allowed.error();
  if (Status actor = check_actor(state, command, now); !actor.ok())
    return actor.error();
  if (Status readable = check_readable(state, command); !readable.ok())
    return readable.error();
  if (command.kind != CommandKind::set_budget && command.kind != CommandKind::expire &&
      command.kind != CommandKind::revoke_key && !state.budgets.contains(command.root)) {
    return not_found("budget_not_found", "No budget " + command.root + ".");
  }

  switch (command.kind) {
    case CommandKind::spend:
    case CommandKind::hold:
      return apply_spend_or_hold(state, command, now);
    case CommandKind::capture:
    case CommandKind::void_hold:
    case CommandKind::expire:
    case CommandKind::approve:
    case CommandKind::reject_hold:
      return apply_hold_settlement(state, command, now);
    case CommandKind::set_budget:
      return apply_set_budget(state, command, now);
    case CommandKind::freeze:
    case CommandKind::unfreeze:
      return apply_freeze(state, command, now);
    case CommandKind::create_key:
      return apply_create_key(state, command, now);
    case CommandKind::revoke_key:
      return apply_revoke_key(state, command, now);
    case CommandKind::void_holds:
      return apply_void_holds(state, command, now);
    case CommandKind::set_webhook:
      return apply_set_webhook(state, command, now);
    case CommandKind::delete_webhook:
      return apply_delete_webhook(state, command, now);
    case CommandKind::delegate:
      return apply_delegate(state, command, now);
    case CommandKind::end_delegation:
      return apply_end_delegation(state, command, now);
    case CommandKind::set_vendor:
      return apply_set_vendor(state, command, now);
    case CommandKind::delete_vendor:
      return apply_delete_vendor(state, command, now);
  }
  return Error{ErrorCode::internal, "unknown_command", "Unknown command."};
}

}  // namespace

Outcome apply_command(WorkingSet& state, const Command& command, Micros wall_clock,
                      const AnswerRenderer& render) {
  assert(render);
  const Micros now = decision_time(state, command, wall_clock);
  assert(now >= wall_clock);
  const bool keyed = !command.idempotency_key.empty();
  if (keyed) {
    auto found =
        state.idempotency.find(idempotency_slot(command.root, scoped_idempotency_key(command)));
    if (found != state.idempotency.end()) {
      if (found->second.request_hash != command.request_hash) {
        return conflict("idempotency_key_reused",
                        "Idempotency-Key " + command.idempotency_key +
                            " was already used with a different request.");
      }
      // The bytes answered the first time, whatever the renderer would make of it today.
      RenderedAnswer recorded{found->second.status, found->second.body};
      return Answered{Answer{Replayed{recorded}, now}, std::move(recorded)};
    }
  }
  Decided decided = decide_command(state, command, now);
  if (!decided.ok())
    return decided.error();
  Answered answered{Answer{std::move(decided).value(), now}, {}};
  answered.rendered = render(answered.answer);
  assert(answered.rendered.status != 0);
  // An expiry check is the system's and answers the hold as it stands: never recorded.
  if (keyed && command.kind != CommandKind::expire) {
    IdempotencyRecord record{command.root,           scoped_idempotency_key(command),
                             command.request_hash,   answered.rendered.status,
                             answered.rendered.body, now};
    state.idempotency[idempotency_slot(record.root, record.key)] = record;
    state.new_idempotency.push_back(std::move(record));
  }
  return answered;
}

}  // namespace stub::ledger
