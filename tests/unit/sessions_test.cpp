// The dashboard's browser sessions: lifetime and idle expiry, eviction at the bound, the cookie
// attributes, and the header parsing the CSRF and Origin checks rely on.

#include <gtest/gtest.h>

#include "http/sessions.hpp"
#include "http/web_assets.hpp"

namespace stub::http {
namespace {

constexpr ledger::Micros second = 1'000'000;
constexpr ledger::Micros start = 1'767'225'600 * second;

SessionOptions short_options() {
  SessionOptions options;
  options.lifetime = std::chrono::seconds(100);
  options.idle_timeout = std::chrono::seconds(10);
  options.sessions_max = 3;
  return options;
}

TEST(SessionStore, FindsALiveSessionAndKeepsOnlyTheHashOfItsId) {
  SessionStore sessions(short_options());
  const SessionRecord created = sessions.create(true, "", start);
  EXPECT_EQ(created.id.size(), 64u);
  EXPECT_EQ(created.csrf_token.size(), 48u);
  EXPECT_NE(created.id, created.csrf_token);
  const auto found = sessions.find(created.id, start + second);
  ASSERT_TRUE(found.has_value());
  EXPECT_TRUE(found->admin);
  EXPECT_EQ(found->csrf_token, created.csrf_token);
  EXPECT_TRUE(found->id.empty());  // the store cannot hand the cookie back
  EXPECT_FALSE(sessions.find(created.csrf_token, start).has_value());
  EXPECT_FALSE(sessions.find("", start).has_value());
}

TEST(SessionStore, EndsAfterTheIdleTimeoutUnlessUsed) {
  SessionStore sessions(short_options());
  const SessionRecord created = sessions.create(false, "key_1", start);
  // Used every 9 s, it stays alive past the idle timeout...
  for (int i = 1; i <= 5; ++i)
    ASSERT_TRUE(sessions.find(created.id, start + i * 9 * second).has_value()) << i;
  // ...and left alone for 10 s, it ends.
  EXPECT_FALSE(sessions.find(created.id, start + 55 * second).has_value());
  EXPECT_EQ(sessions.size(), 0u);
}

TEST(SessionStore, NeverOutlivesItsLifetime) {
  SessionStore sessions(short_options());
  const SessionRecord created = sessions.create(true, "", start);
  for (int i = 1; i <= 11; ++i)
    ASSERT_TRUE(sessions.find(created.id, start + i * 9 * second).has_value()) << i;
  EXPECT_FALSE(sessions.find(created.id, start + 100 * second).has_value());
}

TEST(SessionStore, SignOutAndKeyRevocationEndSessions) {
  SessionStore sessions(short_options());
  const SessionRecord admin = sessions.create(true, "", start);
  const SessionRecord key = sessions.create(false, "key_7", start);
  EXPECT_TRUE(sessions.remove(admin.id));
  EXPECT_FALSE(sessions.remove(admin.id));
  EXPECT_FALSE(sessions.find(admin.id, start).has_value());
  EXPECT_EQ(sessions.remove_for_key("key_7"), 1u);
  EXPECT_FALSE(sessions.find(key.id, start).has_value());
}

TEST(SessionStore, EvictsTheOldestBeyondItsBound) {
  SessionStore sessions(short_options());
  const SessionRecord first = sessions.create(true, "", start);
  const SessionRecord second_session = sessions.create(true, "", start + 1);
  sessions.create(true, "", start + 2);
  const SessionRecord fourth = sessions.create(true, "", start + 3);
  EXPECT_EQ(sessions.size(), 3u);
  EXPECT_FALSE(sessions.find(first.id, start + 4).has_value());
  EXPECT_TRUE(sessions.find(second_session.id, start + 4).has_value());
  EXPECT_TRUE(sessions.find(fourth.id, start + 4).has_value());
}

TEST(SessionCookie, IsHttpOnlyStrictAndExpiresWithTheSession) {
  SessionStore sessions(short_options());
  const SessionRecord created = sessions.create(true, "", start);
  EXPECT_EQ(session_set_cookie(created, start + 40 * second, false),
            "stub_session=" + created.id + "; Path=/; HttpOnly; SameSite=Strict; Max-Age=60");
  EXPECT_EQ(session_clear_cookie(true),
            "stub_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure");
}

TEST(SessionCookie, ReadsTheNamedCookieOnly) {
  EXPECT_EQ(cookie_value("a=1; stub_session=abc; b=2", "stub_session"), "abc");
  EXPECT_EQ(cookie_value("stub_session=first;stub_session=second", "stub_session"), "first");
  EXPECT_EQ(cookie_value("xstub_session=evil; other=1", "stub_session"), "");
  EXPECT_EQ(cookie_value("", "stub_session"), "");
}

TEST(SessionOrigin, MatchesOnlyThisServersOrigin) {
  EXPECT_TRUE(origin_matches_host("http://127.0.0.1:8402", "127.0.0.1:8402"));
  EXPECT_TRUE(origin_matches_host("https://stub.example.com", "stub.example.com"));
  EXPECT_FALSE(origin_matches_host("http://evil.example", "127.0.0.1:8402"));
  EXPECT_FALSE(origin_matches_host("http://127.0.0.1:8402.evil.example", "127.0.0.1:8402"));
  EXPECT_FALSE(origin_matches_host("null", "127.0.0.1:8402"));
  EXPECT_FALSE(origin_matches_host("", "127.0.0.1:8402"));
}

TEST(WebAssets, ServeAnIndexPageAtTheRoot) {
  const WebAsset* page = find_web_asset("/");
  ASSERT_NE(page, nullptr);
  EXPECT_EQ(page, find_web_asset("/index.html"));
  EXPECT_EQ(page->content_type, "text/html; charset=utf-8");
  EXPECT_TRUE(page->etag.starts_with("\"") && page->etag.ends_with("\""));
  EXPECT_EQ(find_web_asset("/assets/none.js"), nullptr);
  EXPECT_EQ(find_web_asset("/../etc/passwd"), nullptr);
}

}  // namespace
}  // namespace stub::http
