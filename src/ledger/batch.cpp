#include "ledger/batch.hpp"

#include <boost/json/serialize.hpp>
#include <cassert>

#include "ledger/budget_path.hpp"
#include "ledger/canonical_json.hpp"
#include "ledger/chain.hpp"
#include "ledger/decision.hpp"
#include "ledger/views.hpp"

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

Response respond(WorkingSet& state, const Command& command, int status, std::string body,
                 Micros now) {
  Response response{status, std::move(body)};
  if (!command.idempotency_key.empty()) {
    IdempotencyRecord record{command.root,         scoped_idempotency_key(command),
                             command.request_hash, status,
                             response.body,        now};
    state.idempotency[idempotency_slot(record.root, record.key)] = record;
    state.new_idempotency.push_back(std::move(record));
  }
  return response;
}

Response respond(WorkingSet& state, const Command& command, int status,
                 const boost::json::object& body, Micros now) {
  return respond(state, command, status, boost::json::serialize(body), now);
}

// The answer to an accepted spend, written directly: it is on the hot path of every spend.
std::string spend_body(const Command& command, Money amount, int64_t seq, Micros now) {
  std::string out;
  out.reserve(256);
  out += "{\"id\":";
  append_json_string(out, command.hold_id);
  out += ",\"status\":\"captured\",\"budget\":";
  append_json_string(out, command.budget);
  out += ",\"amount\":\"" + amount.to_string() + "\",\"vendor\":";
  append_json_string(out, command.vendor);
  out += ",\"seq\":" + std::to_string(seq) + ",\"created_at\":\"" + format_timestamp(now) + "\"}";
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

Outcome deny(WorkingSet& state, const Command& command, const Decision& decision, Micros now) {
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
  std::optional<boost::json::object> vendor_limit;
  if (decision.vendor_rule) {
    const BudgetNode& level = state.budgets.at(decision.level);
    assert(*decision.vendor_rule < level.policies.vendor_limits.size());
    vendor_limit = vendor_limit_to_json(level.policies.vendor_limits[*decision.vendor_rule]);
    (*vendor_limit)["index"] = *decision.vendor_rule;
    detail["vendor_limit"] = *vendor_limit;
  }
  entry.detail_json = canonical_json(detail);
  append_entry(state, std::move(entry));

  boost::json::object error{
      {"type", "denied"},
      {"code", denial_code_name(decision.code)},
      {"message", decision.message},
      {"budget", decision.level},
      {"requested", decision.requested.to_string()},
      {"available", decision.available ? boost::json::value(decision.available->to_string())
                                       : boost::json::value(nullptr)},
      {"seq", state.new_entries.back().seq}};
  if (!decision.hint.empty())
    error["hint"] = decision.hint;
  if (vendor_limit)
    error["vendor_limit"] = std::move(*vendor_limit);
  if (decision.code == DenialCode::breaker_tripped)
    trip_breaker(state, command, decision, now);
  return respond(state, command, 402, boost::json::object{{"error", std::move(error)}}, now);
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

Outcome apply_spend_or_hold(WorkingSet& state, const Command& command, Micros now) {
  assert(command.amount && command.amount->is_positive());
  // A hold's id is fixed at the edge; one that already exists is never overwritten (a batch
  // recomputed after a lost answer would otherwise reserve twice for one hold).
  if (command.kind == CommandKind::hold && state.holds.contains(command.hold_id)) {
    return conflict("hold_id_exists", "Hold " + command.hold_id + " already exists.");
  }
  std::vector<BudgetNode*> path = lineage_of(state, command.budget);
  if (path.empty())
    return not_found("budget_not_found", "No budget " + command.budget + ".");
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
    append_entry(state, std::move(entry));
    const int64_t seq = state.new_entries.back().seq;
    raise_threshold_alerts(state, command, path, now);
    raise_vendor_alerts(state, command, path, command.vendor, now);
    return respond(state, command, 201, spend_body(command, amount, seq, now), now);
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
  if (decision.needs_approval) {
    const BudgetNode& level = state.budgets.at(decision.approval_level);
    entry.detail_json = canonical_json(
        boost::json::object{{"status", "pending_approval"},
                            {"approval_level", decision.approval_level},
                            {"approval_above", level.policies.approval_above->to_string()},
                            {"decide_by", format_timestamp(hold.expires_at)}});
  }
  append_entry(state, std::move(entry));
  boost::json::object body = hold_to_json(hold, now);
  body["seq"] = state.new_entries.back().seq;
  if (decision.needs_approval)
    body["approval_level"] = decision.approval_level;
  state.holds[hold.id] = std::move(hold);
  state.dirty_holds.insert(command.hold_id);
  raise_threshold_alerts(state, command, path, now);
  raise_vendor_alerts(state, command, path, command.vendor, now);
  return respond(state, command, decision.needs_approval ? 202 : 201, body, now);
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

Outcome hold_answer(WorkingSet& state, const Command& command, const Hold& hold, Micros now) {
  boost::json::object body = hold_to_json(hold, now);
  body["seq"] = state.new_entries.back().seq;
  return respond(state, command, 200, body, now);
}

// An admin's answer to a hold waiting for approval. Approving changes no money (the amount was
// reserved when it was requested) and starts the hold's ttl; rejecting releases the reservation.
Outcome apply_approval(WorkingSet& state, const Command& command, Hold& hold, Micros now) {
  if (hold.status != HoldStatus::pending_approval) {
    return conflict("hold_not_pending", "Hold " + hold.id + " is " +
                                            std::string(hold_status_name(hold.status)) +
                                            ", not pending approval.");
  }
  const std::string detail = canonical_json(boost::json::object{{"reason", command.reason}});
  if (command.kind == CommandKind::reject_hold) {
    settle_hold(state, command, hold, HoldStatus::rejected, Money::zero(), "reject", now, detail);
    return hold_answer(state, command, hold, now);
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
  return hold_answer(state, command, hold, now);
}

Outcome apply_hold_settlement(WorkingSet& state, const Command& command, Micros now) {
  auto found = state.holds.find(command.hold_id);
  if (found == state.holds.end() || found->second.root != command.root) {
    return not_found("hold_not_found", "No hold " + command.hold_id + ".");
  }
  Hold& hold = found->second;
  if (command.kind == CommandKind::expire) {
    settle_if_lapsed(state, command, hold, now);
    return Response{200, boost::json::serialize(hold_to_json(hold, now))};
  }
  settle_if_lapsed(state, command, hold, now);
  if (command.kind == CommandKind::approve || command.kind == CommandKind::reject_hold)
    return apply_approval(state, command, hold, now);
  // The agent may withdraw a request that is still waiting for approval; it cannot capture it.
  if (command.kind == CommandKind::void_hold && hold.status == HoldStatus::pending_approval) {
    settle_hold(state, command, hold, HoldStatus::voided, Money::zero(), "void", now);
    return hold_answer(state, command, hold, now);
  }
  if (hold.status != HoldStatus::held) {
    return conflict(
        "hold_not_held",
        "Hold " + hold.id + " is " + std::string(hold_status_name(hold.status)) + ", not held.");
  }
  if (command.kind == CommandKind::void_hold) {
    settle_hold(state, command, hold, HoldStatus::voided, Money::zero(), "void", now);
    return hold_answer(state, command, hold, now);
  }
  const Money captured = command.amount.value_or(hold.amount);
  if (captured > hold.amount) {
    return conflict("capture_exceeds_hold", "Capture amount " + captured.to_string() +
                                                " is above the held amount " +
                                                hold.amount.to_string() + ".");
  }
  settle_hold(state, command, hold, HoldStatus::captured, captured, "capture", now);
  return hold_answer(state, command, hold, now);
}

Outcome apply_set_budget(WorkingSet& state, const Command& command, Micros now) {
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
  const std::vector<const BudgetNode*> view = const_view(lineage);
  return respond(state, command, created ? 201 : 200, budget_to_json(*lineage.back(), view, now),
                 now);
}

bool within_subtree(std::string_view path, std::string_view subtree) {
  return path == subtree ||
         (path.size() > subtree.size() && path.starts_with(subtree) && path[subtree.size()] == '/');
}

struct VoidedShare {
  int64_t voided = 0;
  int64_t expired = 0;    // already past their expiry: settled as the sweeper would
  int64_t remaining = 0;  // outstanding holds left for another commit (at least this many)
};

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

void add_share(boost::json::object& body, const VoidedShare& share) {
  body["holds_voided"] = share.voided;
  body["holds_expired"] = share.expired;
  body["holds_remaining"] = share.remaining;
}

Outcome apply_void_holds(WorkingSet& state, const Command& command, Micros now) {
  std::vector<BudgetNode*> lineage = lineage_of(state, command.budget);
  if (lineage.empty())
    return not_found("budget_not_found", "No budget " + command.budget + ".");
  if (!lineage.back()->frozen) {
    return conflict("not_frozen", "Budget " + command.budget +
                                      " is not frozen; freeze it with void_holds to void its "
                                      "outstanding holds.");
  }
  const VoidedShare share = void_open_holds(state, command, now);
  const std::vector<const BudgetNode*> view = const_view(lineage_of(state, command.budget));
  boost::json::object body = budget_to_json(*view.back(), view, now);
  add_share(body, share);
  return respond(state, command, 200, body, now);
}

Outcome apply_freeze(WorkingSet& state, const Command& command, Micros now) {
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
  const std::vector<const BudgetNode*> view = const_view(lineage_of(state, command.budget));
  boost::json::object body = budget_to_json(*view.back(), view, now);
  if (share)
    add_share(body, *share);
  return respond(state, command, 200, body, now);
}

Outcome apply_create_key(WorkingSet& state, const Command& command, Micros now) {
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
  // The secret is added by the edge to the first answer only; it is never stored, so a replay
  // of this request answers with "key": null.
  boost::json::object body = key_to_json(key);
  body["key"] = nullptr;
  return respond(state, command, 201, body, now);
}

Outcome apply_revoke_key(WorkingSet& state, const Command& command, Micros now) {
  auto found = state.keys.find(command.key.id);
  if (found == state.keys.end() ||
      BudgetPath::parse(found->second.budget)->root() != command.root) {
    return not_found("key_not_found", "No key " + command.key.id + ".");
  }
  ApiKey& key = found->second;
  if (key.revoked_at == 0) {
    key.revoked_at = now;
    state.dirty_keys.insert(key.id);
    Entry entry = make_entry(command, "key_revoked", now);
    entry.budget = key.budget;
    entry.detail_json = canonical_json(boost::json::object{{"key_id", key.id}});
    append_entry(state, std::move(entry));
  }
  return respond(state, command, 200, key_to_json(key), now);
}

boost::json::object webhook_detail(const Webhook& webhook) {
  boost::json::object detail = webhook_to_json(webhook);
  detail.erase("created_at");
  detail.erase("updated_at");
  return detail;
}

Outcome apply_set_webhook(WorkingSet& state, const Command& command, Micros now) {
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
  const boost::json::object body = webhook_to_json(webhook);
  state.webhooks[webhook.name] = std::move(webhook);
  state.dirty_webhooks.insert(settings.name);
  state.deleted_webhooks.erase(settings.name);
  return respond(state, command, created ? 201 : 200, body, now);
}

Outcome apply_delete_webhook(WorkingSet& state, const Command& command, Micros now) {
  auto existing = state.webhooks.find(command.webhook.name);
  if (existing == state.webhooks.end() || existing->second.root != command.root)
    return not_found("webhook_not_found", "No webhook " + command.webhook.name + ".");
  boost::json::object body = webhook_to_json(existing->second);
  body["deleted"] = true;
  Entry entry = make_entry(command, "webhook_deleted", now);
  entry.budget = command.root;
  entry.detail_json = canonical_json(webhook_detail(existing->second));
  append_entry(state, std::move(entry));
  state.webhooks.erase(existing);
  state.dirty_webhooks.erase(command.webhook.name);
  state.deleted_webhooks.insert(command.webhook.name);
  return respond(state, command, 200, body, now);
}

// Re-checks the acting key against the row read in this commit, so that a revoke or an expiry
// takes effect at once on every instance whatever the edge cached.
Status check_actor(const WorkingSet& state, const Command& command, Micros now) {
  if (command.actor == admin_actor || command.kind == CommandKind::expire)
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
      return Status::success();
    case CommandKind::expire:
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
    if (command.kind == CommandKind::revoke_key)
      read.keys.insert(command.key.id);
    if ((command.kind == CommandKind::freeze && command.void_holds) ||
        command.kind == CommandKind::void_holds) {
      read.open_hold_subtrees.insert(command.budget);
    }
    if (command.kind == CommandKind::set_webhook || command.kind == CommandKind::delete_webhook)
      read.webhooks.insert(command.webhook.name);
    if (!command.idempotency_key.empty()) {
      read.idempotency.emplace_back(command.root, scoped_idempotency_key(command));
    }
  }
  return read;
}

Outcome apply_command(WorkingSet& state, const Command& command, Micros wall_clock) {
  const Micros now = decision_time(state, command, wall_clock);
  assert(now >= wall_clock);
  if (!command.idempotency_key.empty()) {
    auto found =
        state.idempotency.find(idempotency_slot(command.root, scoped_idempotency_key(command)));
    if (found != state.idempotency.end()) {
      if (found->second.request_hash != command.request_hash) {
        return conflict("idempotency_key_reused",
                        "Idempotency-Key " + command.idempotency_key +
                            " was already used with a different request.");
      }
      return Response{found->second.status, found->second.body};
    }
  }
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
  }
  return Error{ErrorCode::internal, "unknown_command", "Unknown command."};
}

}  // namespace stub::ledger
