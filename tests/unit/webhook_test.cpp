// Webhooks: the signature (HMAC-SHA256 over "<t>.<body>"), which entries are which events, and
// the payload a receiver gets.

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "ledger/chain.hpp"
#include "webhooks/events.hpp"
#include "webhooks/sender.hpp"
#include "webhooks/signature.hpp"

namespace stub::webhooks {
namespace {

TEST(Signature, HmacSha256MatchesRfc4231) {
  // RFC 4231, test case 2.
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Signature, SignsTheTimestampDotBody) {
  const std::string body = R"({"id":"evt_acme_3_frozen"})";
  const std::string header = signature("whsec_0123456789abcdef", 1'700'000'000, body);
  EXPECT_EQ(header,
            "t=1700000000,v1=" + hmac_sha256_hex("whsec_0123456789abcdef", "1700000000." + body));
  EXPECT_NE(header, signature("whsec_0123456789abcdef", 1'700'000'001, body));
  EXPECT_NE(header, signature("another-secret-0000", 1'700'000'000, body));
}

ledger::Entry entry(std::string kind, std::string detail = "null", std::string code = "") {
  ledger::Entry out;
  out.root = "acme";
  out.seq = 42;
  out.ts = 1'700'000'000'000'000;
  out.kind = std::move(kind);
  out.budget = "acme/team";
  out.detail_json = std::move(detail);
  out.code = std::move(code);
  out.actor = "system";
  out.prev_hash = std::string(64, '0');
  out.hash = ledger::compute_entry_hash(out);
  return out;
}

TEST(Events, EachEntryKindMapsToItsEvents) {
  using Events = std::vector<std::string>;
  EXPECT_EQ(events_of(entry("freeze", R"({"reason":"x"})")), (Events{"frozen"}));
  EXPECT_EQ(events_of(entry("freeze", R"({"reason":"breaker: 4 spends","trigger":"breaker"})")),
            (Events{"breaker_tripped", "frozen"}));
  EXPECT_EQ(events_of(entry("unfreeze", R"({"reason":""})")), (Events{"unfrozen"}));
  EXPECT_EQ(events_of(entry("alert", R"({"event":"threshold_crossed","percent":80})")),
            (Events{"threshold_crossed"}));
  EXPECT_EQ(events_of(entry("hold", R"({"status":"pending_approval"})")),
            (Events{"approval_requested"}));
  EXPECT_EQ(events_of(entry("hold")), Events{});
  EXPECT_EQ(events_of(entry("approve", R"({"reason":""})")), (Events{"approval_decided"}));
  EXPECT_EQ(events_of(entry("reject", R"({"reason":"approval expired"})")),
            (Events{"approval_decided"}));
  EXPECT_EQ(events_of(entry("deny", "null", "budget_exceeded")), (Events{"budget_exceeded"}));
  EXPECT_EQ(events_of(entry("deny", "null", "window_exceeded")), Events{});
  EXPECT_EQ(events_of(entry("spend")), Events{});
  for (const std::string& name : event_names())
    EXPECT_TRUE(known_event(name)) << name;
  EXPECT_FALSE(known_event("spend"));
}

TEST(Events, PayloadCarriesTheEntryAsServedWithAStableId) {
  const ledger::Entry frozen = entry("freeze", R"({"reason":"x"})");
  const std::string payload = event_payload(frozen, "frozen");
  const auto parsed = boost::json::parse(payload).as_object();
  EXPECT_EQ(parsed.at("id").as_string(), "evt_acme_42_frozen");
  EXPECT_EQ(event_id(frozen, "frozen"), "evt_acme_42_frozen");
  EXPECT_EQ(parsed.at("type").as_string(), "frozen");
  EXPECT_EQ(parsed.at("budget").as_string(), "acme/team");
  EXPECT_NE(payload.find(ledger::entry_to_json_text(frozen)), std::string::npos);
  EXPECT_EQ(parsed.at("entry").at("hash").as_string(), frozen.hash);
}

TEST(Sender, AcceptsHttpAndHttpsUrlsOnly) {
  EXPECT_TRUE(valid_url("http://127.0.0.1:8080/hook"));
  EXPECT_TRUE(valid_url("https://hooks.example.com/stub?x=1"));
  EXPECT_FALSE(valid_url("ftp://example.com/"));
  EXPECT_FALSE(valid_url("example.com/hook"));
  EXPECT_FALSE(valid_url("http:///nohost"));
  EXPECT_FALSE(valid_url("https://example.com/" + std::string(2'100, 'a')));
}

// Found by fuzz/webhook.cpp: URLs that parsed but that post() could not (or must not) send to.
TEST(Sender, RefusesUrlsItCouldNotSendTo) {
  // A percent-encoded host was decoded into the Host header (CRLF: a header of the URL's
  // choosing) and SNI (NUL: a truncated name).
  EXPECT_FALSE(valid_url("http://a%0d%0aX-Injected:%201/"));
  EXPECT_FALSE(valid_url("https://evil.example%00.good.example/"));
  EXPECT_FALSE(valid_url("http://[fe80::1%25eth0]/"));
  // No port, or one that does not exist.
  EXPECT_FALSE(valid_url("http://a:/"));
  EXPECT_FALSE(valid_url("http://a:0/"));
  EXPECT_FALSE(valid_url("http://a:65536/"));
  EXPECT_FALSE(valid_url("http://a:000080/"));
  // Boost.URL's port_number() wraps this one to 17332; the digits are what count.
  EXPECT_FALSE(valid_url("https://on:82868/x"));
  EXPECT_TRUE(valid_url("http://a:65535/"));
  // Boost.URL 1.81 reads this as port 44 and the path "_3/x".
  EXPECT_FALSE(valid_url("https://user:pw@example.com:44_3/a%20b"));
  EXPECT_TRUE(valid_url("http://a:65535/"));
  EXPECT_TRUE(valid_url("http://[::1]:9/"));
  // An empty path is "/" on the request line, before any query.
  const auto target = parse_url("http://h.example?x=1");
  ASSERT_TRUE(target.has_value());
  EXPECT_EQ(target->path, "/?x=1");
  EXPECT_EQ(target->host, "h.example");
  EXPECT_EQ(target->port, "80");
  const auto tls = parse_url("https://h.example:8443/a/b?c");
  ASSERT_TRUE(tls.has_value());
  EXPECT_TRUE(tls->tls);
  EXPECT_EQ(tls->port, "8443");
  EXPECT_EQ(tls->path, "/a/b?c");
}

TEST(Sender, UnreachableReceiverIsAnErrorNotAStatus) {
  // Port 1 on loopback refuses at once.
  const PostResult result = post("http://127.0.0.1:1/hook", {}, "{}", std::chrono::seconds(2));
  EXPECT_EQ(result.status, 0);
  EXPECT_FALSE(result.error.empty());
  EXPECT_FALSE(result.ok());
}

}  // namespace
}  // namespace stub::webhooks
