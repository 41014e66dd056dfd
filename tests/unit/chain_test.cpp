// The per-root hash chain: the JCS text that is hashed, and the verifier that finds the first
// altered, deleted or inserted entry.

#include "ledger/chain.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <string>
#include <vector>

#include "ledger/batch.hpp"
#include "ledger/canonical_json.hpp"

namespace stub::ledger {
namespace {

constexpr Micros t0 = 1'709'164'800'000'000;  // 2024-02-29T00:00:00Z

std::string canonical(std::string_view json_text) {
  return canonical_json(boost::json::parse(json_text));
}

Money units(int64_t whole) {
  return Money::from_micros(whole * Money::micros_per_unit);
}

// The JCS form of the entry as the API serves it, minus "hash", built the generic way.
std::string served_canonical_text(const Entry& entry) {
  boost::json::object served = boost::json::parse(entry_to_json_text(entry)).as_object();
  EXPECT_EQ(served.erase("hash"), 1u);
  return canonical_json(served);
}

Entry spend_with_rich_receipt() {
  Entry entry;
  entry.root = "acme";
  entry.seq = 7;
  entry.ts = t0 + 123'456;
  entry.kind = "spend";
  entry.budget = "acme/research/agent-1";
  entry.amount = Money::from_micros(12'345);
  entry.vendor = "openai";
  entry.intent = "summarise the \"quarterly\" report";
  entry.tags_json = canonical(
      R"({"team":"r\u00e9search","\ud83d\ude00":"grin","\ue000":"private use","ctl":"\u001f",
          "run":"42"})");
  entry.receipt_json = canonical(R"({
      "model": "gpt-\u00e9",
      "usage": {"prompt_tokens": 1200, "completion_tokens": 35, "cost": 0.0123,
                "ratio": 1e-7, "big": 1e21, "neg": -0.0, "tiny": 0.000001},
      "items": [1.5, {"b": 2, "a": [true, false, null]}, "x\ny"],
      "\u20ac": {"\ud83d\ude00": 1, "\ufb33": 2}
  })");
  entry.hold_id = "hold_01J9ZK";
  entry.actor = "key_123";
  entry.postings = {{"budget:acme/research/agent-1", Money::from_micros(-12'345)},
                    {"vendor:openai", Money::from_micros(12'345)}};
  entry.prev_hash = std::string(64, 'a');
  entry.hash = compute_entry_hash(entry);
  return entry;
}

Entry deny_entry() {
  Entry entry;
  entry.root = "acme";
  entry.seq = 8;
  entry.ts = t0 + 1;
  entry.kind = "deny";
  entry.budget = "acme";
  entry.amount = units(500);
  entry.code = "budget_exceeded";
  entry.actor = "admin";
  entry.detail_json = canonical(R"({"attempted":"spend","level":"acme","available":"0.00"})");
  entry.prev_hash = std::string(genesis_hash);
  entry.hash = compute_entry_hash(entry);
  return entry;
}

Entry admin_entry_without_optional_fields() {
  Entry entry;
  entry.root = "acme";
  entry.seq = 1;
  entry.ts = 0;
  entry.kind = "budget_set";
  entry.budget = "acme";
  entry.detail_json = canonical(R"({"created":true,"limit":null,"period":"month"})");
  entry.prev_hash = std::string(genesis_hash);
  return entry;
}

Entry entry_with_awkward_strings() {
  Entry entry;
  entry.root = "acme";
  entry.seq = 3;
  entry.ts = -1;
  entry.kind = "hold";
  entry.budget = "acme/t";
  entry.amount = Money::from_micros(-1);
  entry.vendor = "v\x01\x1f\"\\/\xe2\x80\xa8\xf0\x9f\x98\x80";
  entry.intent = "tab\there\r\nnew line \xc3\xa9";
  entry.hold_id = "hold_\xe2\x82\xac";
  entry.code = "c\b\f";
  entry.actor = "system";
  entry.tags_json = canonical(R"({"\u0080":"a","\u007f":"b","~":"c"})");
  entry.receipt_json = canonical(R"([1e-7, 123456789012345680000, "\u001f"])");
  entry.postings = {{"holds:acme/t", Money::from_micros(1)}, {"budget:acme/t", Money::zero()}};
  entry.prev_hash = std::string(64, 'f');
  return entry;
}

// A realistic chain, made by the batch applier itself.
struct Chain {
  std::vector<Entry> entries;
  int64_t head_seq = 0;
  std::string head_hash;
};

Command admin_command(CommandKind kind, std::string budget) {
  Command command;
  command.kind = kind;
  command.root = budget.substr(0, budget.find('/'));
  command.actor = std::string(admin_actor);
  command.budget = std::move(budget);
  return command;
}

// Entries build_chain makes: budgets, spends, a hold, a threshold alert, a capture, a denial, a
// freeze.
constexpr int64_t chain_length = 10;

Chain build_chain() {
  WorkingSet state;
  Micros now = t0;
  const auto run = [&](const Command& command) {
    const Outcome outcome = apply_command(state, command, now, [](const Answer&) {
      return RenderedAnswer{200, "{}"};  // the books are what this test reads, not answers
    });
    EXPECT_TRUE(outcome.ok()) << command_kind_name(command.kind);
    now += 1'000'000;
  };
  Command root = admin_command(CommandKind::set_budget, "acme");
  root.settings.limit_given = true;
  root.settings.limit = units(100);
  run(root);
  Command team = admin_command(CommandKind::set_budget, "acme/team");
  team.settings.limit_given = true;
  team.settings.limit = units(40);
  run(team);
  for (int i = 0; i < 3; ++i) {
    Command spend = admin_command(CommandKind::spend, "acme/team");
    spend.amount = units(5 + i);
    spend.vendor = "openai";
    spend.hold_id = "hold_spend_" + std::to_string(i);
    spend.tags_json = canonical(R"({"run":"7","\ud83d\ude00":"x"})");
    spend.receipt_json = canonical(R"({"usage":{"tokens":12,"cost":0.5}})");
    run(spend);
  }
  Command hold = admin_command(CommandKind::hold, "acme/team");
  hold.amount = units(10);
  hold.vendor = "anthropic";
  hold.hold_id = "hold_a";
  hold.ttl = 300'000'000;
  run(hold);
  Command capture = admin_command(CommandKind::capture, "acme/team");
  capture.hold_id = "hold_a";
  capture.amount = Money::from_micros(4'250'000);
  capture.receipt_json = canonical(R"({"id":"resp_1","cost":4.25})");
  run(capture);
  Command over = admin_command(CommandKind::spend, "acme/team");
  over.amount = units(50);
  over.hold_id = "hold_denied";
  run(over);  // a 402 denial is an outcome, and an entry
  Command freeze = admin_command(CommandKind::freeze, "acme");
  freeze.reason = "incident";
  run(freeze);

  Chain chain;
  chain.entries = state.new_entries;
  chain.head_seq = state.budgets.at("acme").head_seq;
  chain.head_hash = state.budgets.at("acme").head_hash;
  // The hold takes the team past 50 % of its limit: a threshold alert is chained too.
  EXPECT_EQ(chain.entries.size(), static_cast<size_t>(chain_length));
  return chain;
}

VerifyReport verify_entries(const std::vector<Entry>& entries, int64_t head_seq,
                            const std::string& head_hash) {
  ChainVerifier verifier;
  for (const Entry& entry : entries) {
    if (!verifier.feed(entry))
      break;
  }
  return verifier.finish(head_seq, head_hash);
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(EntryJson, ServesEveryContractField) {
  const boost::json::object served =
      boost::json::parse(entry_to_json_text(spend_with_rich_receipt())).as_object();
  for (const char* field :
       {"seq", "ts", "kind", "budget", "amount", "vendor", "intent", "tags", "receipt", "hold_id",
        "code", "actor", "detail", "postings", "prev_hash", "hash"}) {
    EXPECT_TRUE(served.contains(field)) << field;
  }
  EXPECT_EQ(served.size(), 16u);
  EXPECT_EQ(served.at("amount").as_string(), "0.012345");
  EXPECT_EQ(served.at("ts").as_string(), "2024-02-29T00:00:00.123456Z");
  EXPECT_EQ(served.at("postings").as_array().at(0).as_object().at("amount").as_string(),
            "-0.012345");
  EXPECT_TRUE(served.at("code").is_null());
}

TEST(EntryCanonicalText, EqualsGenericJcsOfTheServedEntry) {
  const std::vector<Entry> entries = {spend_with_rich_receipt(), deny_entry(),
                                      admin_entry_without_optional_fields(),
                                      entry_with_awkward_strings()};
  for (const Entry& entry : entries) {
    EXPECT_EQ(entry_canonical_text(entry), served_canonical_text(entry)) << entry.kind;
    EXPECT_EQ(compute_entry_hash(entry), sha256_hex(served_canonical_text(entry))) << entry.kind;
  }
}

TEST(EntryCanonicalText, EqualsGenericJcsForEntriesMadeByTheApplier) {
  const Chain chain = build_chain();
  for (const Entry& entry : chain.entries) {
    EXPECT_EQ(entry_canonical_text(entry), served_canonical_text(entry)) << entry.seq;
    EXPECT_EQ(entry.hash, sha256_hex(served_canonical_text(entry))) << entry.seq;
  }
}

TEST(EntryCanonicalText, ServedTextCarriesTheHashedTextVerbatim) {
  // Boost.JSON 1.81 is not correctly rounded when it parses doubles ("238.20188140736326" reads
  // back as 238.2018814073633), so the served entry is written from the stored canonical text,
  // never re-parsed: what the API serves minus "hash" is byte for byte what was hashed.
  Entry entry = spend_with_rich_receipt();
  entry.receipt_json = R"({"cost":238.20188140736326,"unit_price":949.6706392278069})";
  entry.hash = compute_entry_hash(entry);
  std::string expected = entry_canonical_text(entry);
  expected.pop_back();
  expected += ",\"hash\":\"" + entry.hash + "\"}";
  EXPECT_EQ(entry_to_json_text(entry), expected);
  EXPECT_NE(entry_to_json_text(entry).find(entry.receipt_json), std::string::npos);
}

TEST(EntryCanonicalText, HashCoversPrevHashAndEveryField) {
  const Entry base = spend_with_rich_receipt();
  const std::string original = compute_entry_hash(base);
  std::vector<Entry> variants(10, base);
  variants[0].prev_hash = std::string(64, 'b');
  variants[1].seq += 1;
  variants[2].ts += 1;
  variants[3].amount = Money::from_micros(12'346);
  variants[4].vendor = "anthropic";
  variants[5].tags_json = "{}";
  variants[6].receipt_json = "null";
  variants[7].postings[0].account = "budget:acme";
  variants[8].actor.clear();
  variants[9].hold_id.clear();
  for (size_t i = 0; i < variants.size(); ++i)
    EXPECT_NE(compute_entry_hash(variants[i]), original) << i;
}

TEST(PostingsJson, IsCanonical) {
  const std::vector<Posting> postings = {{"budget:acme", Money::from_micros(-40'000)},
                                         {"vendor:x\"y", Money::from_micros(40'000)}};
  const std::string text = postings_to_json_text(postings);
  EXPECT_EQ(
      text,
      R"([{"account":"budget:acme","amount":"-0.04"},{"account":"vendor:x\"y","amount":"0.04"}])");
  EXPECT_EQ(canonical(text), text);
  EXPECT_EQ(postings_to_json_text({}), "[]");
}

TEST(ChainVerifier, AcceptsAnIntactChain) {
  const Chain chain = build_chain();
  const VerifyReport report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_TRUE(report.ok) << report.problem;
  EXPECT_EQ(report.checked, chain_length);
  EXPECT_EQ(report.head_seq, chain_length);
  EXPECT_EQ(report.head_hash, chain.head_hash);
  EXPECT_FALSE(report.first_bad_seq.has_value());
  EXPECT_EQ(chain.entries.front().prev_hash, genesis_hash);
}

TEST(ChainVerifier, AcceptsAnEmptyChainAtGenesis) {
  const VerifyReport report = verify_entries({}, 0, std::string(genesis_hash));
  EXPECT_TRUE(report.ok);
  EXPECT_EQ(report.checked, 0);
}

TEST(ChainVerifier, DetectsAnAlteredEntry) {
  Chain chain = build_chain();
  chain.entries[3].amount = units(1);  // seq 4, hash left as it was
  const VerifyReport report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 4);
  EXPECT_EQ(report.checked, 3);
  EXPECT_NE(report.problem.find("hash"), std::string::npos) << report.problem;
}

TEST(ChainVerifier, DetectsAnAlteredEntryWhoseHashWasRecomputed) {
  Chain chain = build_chain();
  chain.entries[3].vendor = "attacker";
  chain.entries[3].hash = compute_entry_hash(chain.entries[3]);
  const VerifyReport report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 5);  // the next entry no longer links to it
  EXPECT_NE(report.problem.find("prev_hash"), std::string::npos) << report.problem;
}

TEST(ChainVerifier, DetectsAlteredTagsAndReceipt) {
  Chain chain = build_chain();
  chain.entries[2].tags_json = canonical(R"({"run":"8","\ud83d\ude00":"x"})");
  EXPECT_EQ(verify_entries(chain.entries, chain.head_seq, chain.head_hash).first_bad_seq, 3);
  chain = build_chain();
  chain.entries[4].receipt_json = canonical(R"({"usage":{"tokens":12,"cost":0.05}})");
  EXPECT_EQ(verify_entries(chain.entries, chain.head_seq, chain.head_hash).first_bad_seq, 5);
}

TEST(ChainVerifier, DetectsADeletedEntry) {
  Chain chain = build_chain();
  chain.entries.erase(chain.entries.begin() + 3);
  const VerifyReport report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 4);
  EXPECT_NE(report.problem.find("missing"), std::string::npos) << report.problem;
}

TEST(ChainVerifier, DetectsTheFirstEntryDeleted) {
  Chain chain = build_chain();
  chain.entries.erase(chain.entries.begin());
  const VerifyReport report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 1);
}

TEST(ChainVerifier, DetectsTheLastEntryDeletedThroughTheRecordedHead) {
  Chain chain = build_chain();
  chain.entries.pop_back();
  const VerifyReport report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, chain_length);
  EXPECT_EQ(report.checked, chain_length - 1);
}

TEST(ChainVerifier, DetectsAnEntryInsertedInTheMiddle) {
  Chain chain = build_chain();
  // A forged entry that links correctly to seq 3 and takes seq 4; the real seq 4 follows it.
  Entry forged = chain.entries[2];
  forged.seq = 4;
  forged.vendor = "forged";
  forged.prev_hash = chain.entries[2].hash;
  forged.hash = compute_entry_hash(forged);
  chain.entries.insert(chain.entries.begin() + 3, forged);
  const VerifyReport report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 5);
  EXPECT_EQ(report.checked, 4);
}

TEST(ChainVerifier, DetectsARechainedInsertionThroughTheRecordedHead) {
  Chain chain = build_chain();
  // The attacker inserts an entry and re-numbers and re-hashes everything after it, so the chain
  // is internally consistent; only the head recorded in the root's row gives it away.
  Entry forged = chain.entries[2];
  forged.vendor = "forged";
  chain.entries.insert(chain.entries.begin() + 3, forged);
  for (size_t i = 3; i < chain.entries.size(); ++i) {
    chain.entries[i].seq = static_cast<int64_t>(i) + 1;
    chain.entries[i].prev_hash = chain.entries[i - 1].hash;
    chain.entries[i].hash = compute_entry_hash(chain.entries[i]);
  }
  const VerifyReport report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, chain_length + 1);
  EXPECT_NE(report.problem.find("inserted"), std::string::npos) << report.problem;
}

TEST(ChainVerifier, DetectsAnEntryAppendedAfterTheRecordedHead) {
  Chain chain = build_chain();
  Entry extra = chain.entries.back();
  extra.seq = chain_length + 1;
  extra.prev_hash = chain.entries.back().hash;
  extra.hash = compute_entry_hash(extra);
  chain.entries.push_back(extra);
  const VerifyReport report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, chain_length + 1);
}

TEST(ChainVerifier, DetectsAHeadMismatch) {
  Chain chain = build_chain();
  const VerifyReport report = verify_entries(chain.entries, chain.head_seq, std::string(64, '1'));
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, chain_length);
  EXPECT_NE(report.problem.find("head"), std::string::npos) << report.problem;

  // The last entry rewritten and re-hashed: internally consistent, but not the recorded head.
  Chain rewritten = build_chain();
  rewritten.entries.back().detail_json = canonical(R"({"reason":"nothing to see"})");
  rewritten.entries.back().hash = compute_entry_hash(rewritten.entries.back());
  const VerifyReport rewritten_report =
      verify_entries(rewritten.entries, rewritten.head_seq, rewritten.head_hash);
  EXPECT_FALSE(rewritten_report.ok);
  EXPECT_EQ(rewritten_report.first_bad_seq, chain_length);
}

TEST(ChainVerifier, DetectsRepeatedAndReorderedEntries) {
  Chain chain = build_chain();
  chain.entries.insert(chain.entries.begin() + 3, chain.entries[2]);
  VerifyReport report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 4);

  chain = build_chain();
  std::swap(chain.entries[5], chain.entries[6]);
  report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 6);
}

TEST(ChainVerifier, RequiresGenesisPrevHash) {
  Chain chain = build_chain();
  chain.entries[0].prev_hash = std::string(64, '1');
  chain.entries[0].hash = compute_entry_hash(chain.entries[0]);
  const VerifyReport report = verify_entries(chain.entries, chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 1);
}

TEST(ChainVerifier, DetectsPostingsThatDoNotSumToZero) {
  Chain chain = build_chain();
  Entry& spend = chain.entries[2];
  ASSERT_EQ(spend.kind, "spend");
  spend.postings[1].amount = Money::from_micros(spend.postings[1].amount.micros() + 1);
  spend.hash = compute_entry_hash(spend);  // a self-consistent hash does not make it balance
  ChainVerifier verifier;
  EXPECT_TRUE(verifier.feed(chain.entries[0]));
  EXPECT_TRUE(verifier.feed(chain.entries[1]));
  EXPECT_FALSE(verifier.feed(chain.entries[2]));
  EXPECT_FALSE(verifier.feed(chain.entries[3]));  // ignored once bad
  const VerifyReport report = verifier.finish(chain.head_seq, chain.head_hash);
  EXPECT_FALSE(report.ok);
  EXPECT_EQ(report.first_bad_seq, 3);
  EXPECT_NE(report.problem.find("sum"), std::string::npos) << report.problem;
}

}  // namespace
}  // namespace stub::ledger
