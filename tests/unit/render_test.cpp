// http::render_answer: the one place typed answers become statuses and bytes. The bytes are the
// API's (tests/e2e asserts them end to end, scripts/compare_answers.py against an older binary);
// these cases pin the ones a client parses first, and the replay rule.

#include "http/render.hpp"

#include <gtest/gtest.h>

#include <string>

#include "ledger/time_point.hpp"

namespace stub::http {
namespace {

using ledger::Answer;
using ledger::Micros;
using ledger::Money;

constexpr Micros t0 = 1'709'164'800'000'000;  // 2024-02-29T00:00:00Z

Money cents(int64_t count) {
  return Money::from_micros(count * Money::micros_per_unit / 100);
}

TEST(RenderAnswer, ASpendIsCreatedWithItsIdAndSeq) {
  const ledger::RenderedAnswer rendered = render_answer(
      Answer{ledger::SpendCommitted{"hold_1", "acme/team", cents(125), "api \"x\"", 6}, t0});
  EXPECT_EQ(rendered.status, 201);
  EXPECT_EQ(rendered.body,
            "{\"id\":\"hold_1\",\"status\":\"captured\",\"budget\":\"acme/team\",\"amount\":"
            "\"1.25\",\"vendor\":\"api \\\"x\\\"\",\"seq\":6,\"created_at\":\"" +
                ledger::format_timestamp(t0) + "\"}");
}

TEST(RenderAnswer, ADenialIsA402WithItsHintAndRule) {
  ledger::Denied denied;
  denied.code = ledger::DenialCode::approval_required;
  denied.message = "Too much.";
  denied.level = "acme/team";
  denied.requested = cents(1600);
  denied.available = cents(3400);
  denied.seq = 9;
  const ledger::RenderedAnswer approval = render_answer(Answer{denied, t0});
  EXPECT_EQ(approval.status, 402);
  EXPECT_EQ(approval.body,
            "{\"error\":{\"type\":\"denied\",\"code\":\"approval_required\",\"message\":\"Too "
            "much.\",\"budget\":\"acme/team\",\"requested\":\"16.00\",\"available\":\"34.00\","
            "\"seq\":9,\"hint\":\"Reserve it with a hold instead: a hold waits for an admin's "
            "approval.\"}}");

  denied.code = ledger::DenialCode::vendor_limit_exceeded;
  denied.available = std::nullopt;
  denied.vendor_limit = ledger::VendorLimit{{"api.twilio.com"}, cents(300), ledger::Period::month};
  denied.vendor_limit_index = 2;
  const ledger::RenderedAnswer vendor = render_answer(Answer{denied, t0});
  EXPECT_EQ(vendor.status, 402);
  EXPECT_EQ(vendor.body,
            "{\"error\":{\"type\":\"denied\",\"code\":\"vendor_limit_exceeded\",\"message\":\"Too "
            "much.\",\"budget\":\"acme/team\",\"requested\":\"16.00\",\"available\":null,"
            "\"seq\":9,\"vendor_limit\":{\"vendors\":[\"api.twilio.com\"],\"limit\":\"3.00\","
            "\"period\":\"month\",\"index\":2}}}");
}

TEST(RenderAnswer, AHoldWaitingForApprovalIsAccepted) {
  ledger::Hold hold;
  hold.id = "hold_2";
  hold.budget = "acme/team";
  hold.amount = cents(1600);
  hold.status = ledger::HoldStatus::pending_approval;
  hold.created_at = t0;
  hold.expires_at = t0 + 600 * ledger::micros_per_second;
  const ledger::RenderedAnswer waiting =
      render_answer(Answer{ledger::HoldPlaced{hold, 11, std::string("acme")}, t0});
  EXPECT_EQ(waiting.status, 202);
  EXPECT_NE(waiting.body.find("\"status\":\"pending_approval\""), std::string::npos);
  EXPECT_NE(waiting.body.find(",\"seq\":11,\"approval_level\":\"acme\"}"), std::string::npos);
  hold.status = ledger::HoldStatus::held;
  const ledger::RenderedAnswer held =
      render_answer(Answer{ledger::HoldPlaced{hold, 12, std::nullopt}, t0});
  EXPECT_EQ(held.status, 201);
  EXPECT_EQ(held.body.find("approval_level"), std::string::npos);
}

TEST(RenderAnswer, ANewKeyNeverCarriesItsSecret) {
  ledger::ApiKey key;
  key.id = "key_1";
  key.budget = "acme/team";
  key.name = "bot";
  key.created_at = t0;
  const ledger::RenderedAnswer created = render_answer(Answer{ledger::KeyCreated{key}, t0});
  EXPECT_EQ(created.status, 201);
  EXPECT_EQ(created.body,
            "{\"id\":\"key_1\",\"budget\":\"acme/team\",\"name\":\"bot\","
            "\"created_at\":\"" +
                ledger::format_timestamp(t0) +
                "\",\"expires_at\":null,\"revoked_at\":null,\"key\":null}");
}

TEST(RenderAnswer, AReplayIsItsRecordedBytesUnchanged) {
  const ledger::RenderedAnswer recorded{402, "{\"as\":\"recorded\", \"spacing\":1}"};
  const ledger::RenderedAnswer replayed = render_answer(Answer{ledger::Replayed{recorded}, t0});
  EXPECT_EQ(replayed.status, recorded.status);
  EXPECT_EQ(replayed.body, recorded.body);
}

}  // namespace
}  // namespace stub::http
