// Vendor credentials sealed at rest (proxy/secret_box.hpp): AES-256-GCM round trips, is bound
// to its context (the vendor's name), and any change to the sealed text is refused.

#include "proxy/secret_box.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "checkpoints/signing_key.hpp"

namespace stub::proxy {
namespace {

constexpr const char* key_hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

TEST(SecretBox, SealsAndOpensBoundToItsContext) {
  auto box = SecretBox::from_text(key_hex);
  ASSERT_TRUE(box.ok());
  auto sealed = box->seal("sk-live-secret", "openai");
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->rfind("v1:", 0), 0u);
  EXPECT_EQ(sealed->find("sk-live-secret"), std::string::npos);
  auto opened = box->open(*sealed, "openai");
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(*opened, "sk-live-secret");
  EXPECT_FALSE(box->open(*sealed, "anthropic").ok());
  // A fresh nonce each time: the same secret never seals to the same text.
  EXPECT_NE(*sealed, *box->seal("sk-live-secret", "openai"));
}

TEST(SecretBox, RefusesTamperingAndOtherKeys) {
  auto box = SecretBox::from_text(key_hex);
  ASSERT_TRUE(box.ok());
  const std::string sealed = *box->seal("credential", "v");
  auto raw = checkpoints::base64_decode(sealed.substr(3));
  ASSERT_TRUE(raw.ok());
  for (size_t i = 0; i < raw->size(); ++i) {
    std::string changed = *raw;
    changed[i] = static_cast<char>(changed[i] ^ 1);
    EXPECT_FALSE(box->open("v1:" + checkpoints::base64_encode(changed), "v").ok()) << i;
  }
  EXPECT_FALSE(box->open(sealed.substr(0, sealed.size() - 4), "v").ok());
  EXPECT_FALSE(box->open("v2:" + sealed.substr(3), "v").ok());
  auto other = SecretBox::generate();
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->open(sealed, "v").ok());
}

TEST(SecretBox, KeyTextIsHexOrBase64OfThirtyTwoBytes) {
  auto hex = SecretBox::from_text(key_hex);
  ASSERT_TRUE(hex.ok());
  EXPECT_EQ(hex->key_hex(), key_hex);
  auto base64 = SecretBox::from_text("ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=\n");
  ASSERT_TRUE(base64.ok());
  EXPECT_EQ(base64->key_hex(), key_hex);
  EXPECT_FALSE(SecretBox::from_text("").ok());
  EXPECT_FALSE(SecretBox::from_text("0011").ok());
  EXPECT_FALSE(SecretBox::from_text(std::string(64, 'g')).ok());
  EXPECT_FALSE(SecretBox::from_text("AAAA").ok());  // base64 of 3 bytes
}

TEST(SecretBox, KeyFileIsMadeOnceWithModeSixHundred) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("stub-secret-box-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "key").string();
  std::filesystem::remove(path);
  auto made = SecretBox::load_or_create(path);
  ASSERT_TRUE(made.ok());
  struct stat status {};
  ASSERT_EQ(::stat(path.c_str(), &status), 0);
  EXPECT_EQ(status.st_mode & 0777, 0600u);
  auto again = SecretBox::load_or_create(path);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->key_hex(), made->key_hex());
  ::chmod(path.c_str(), 0644);
  EXPECT_FALSE(SecretBox::load_or_create(path).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace stub::proxy
