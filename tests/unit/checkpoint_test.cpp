// Signed checkpoints: the signed text, the Ed25519 key (OpenSSL), its file, and the matcher that
// names the first checkpoint a chain contradicts.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "checkpoints/signing_key.hpp"
#include "ledger/chain.hpp"
#include "ledger/checkpoint.hpp"

namespace stub {
namespace {

using checkpoints::SigningKey;
using checkpoints::VerifyingKey;
using ledger::Checkpoint;
using ledger::CheckpointMatcher;
using ledger::Entry;

constexpr ledger::Micros t0 = 1'709'164'800'000'000;  // 2024-02-29T00:00:00Z

Checkpoint sample() {
  Checkpoint checkpoint;
  checkpoint.root = "acme";
  checkpoint.seq = 42;
  checkpoint.hash = std::string(64, 'a');
  checkpoint.ts = t0 + 123'456;
  checkpoint.key_id = "0123456789abcdef";
  checkpoint.signature = "c2ln";
  return checkpoint;
}

TEST(CheckpointText, SignsTheJcsOfRootSeqHashAndTs) {
  EXPECT_EQ(ledger::checkpoint_message(sample()),
            "{\"hash\":\"" + std::string(64, 'a') +
                "\",\"root\":\"acme\",\"seq\":42,\"ts\":\"2024-02-29T00:00:00.123456Z\"}");
  const std::string line = ledger::checkpoint_to_json(sample());
  auto read = ledger::checkpoint_from_json(line);
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(ledger::checkpoint_to_json(*read), line);
  EXPECT_EQ(read->ts, sample().ts);
}

TEST(CheckpointText, RefusesWhatIsNotACheckpoint) {
  for (const char* text :
       {"", "[]", "{\"root\":\"acme\"}",
        "{\"root\":\"acme\",\"seq\":0,\"hash\":\"aa\",\"ts\":\"2024-02-29T00:00:00.000000Z\","
        "\"signature\":\"x\"}",
        "{\"root\":\"acme\",\"seq\":1,\"hash\":\"" /* 64 uppercase */
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
        "\"ts\":\"2024-02-29T00:00:00.000000Z\",\"signature\":\"x\"}"}) {
    EXPECT_FALSE(ledger::checkpoint_from_json(text).ok()) << text;
  }
  EXPECT_FALSE(ledger::parse_timestamp("2024-02-30T00:00:00.000000Z"));
  EXPECT_FALSE(ledger::parse_timestamp("2024-02-29 00:00:00.000000Z"));
  EXPECT_EQ(ledger::parse_timestamp("1970-01-01T00:00:01.000002Z"), 1'000'002);
}

TEST(SigningKey, SignsWhatOnlyItsPublicKeyVerifies) {
  auto key = SigningKey::generate();
  ASSERT_TRUE(key.ok()) << key.error().message;
  auto other = SigningKey::generate();
  ASSERT_TRUE(other.ok());
  const std::string message = ledger::checkpoint_message(sample());
  auto signature = key->sign(message);
  ASSERT_TRUE(signature.ok());
  EXPECT_TRUE(key->public_key().verify(message, *signature));
  EXPECT_FALSE(other->public_key().verify(message, *signature));
  EXPECT_FALSE(key->public_key().verify(message + " ", *signature));
  EXPECT_FALSE(key->public_key().verify(message, "not base64!"));
  // The public key round-trips through its base64 and its PEM; the private key through PEM.
  for (const std::string& text :
       {key->public_key().public_key_base64(), key->public_key().public_key_pem()}) {
    auto read = VerifyingKey::from_text(text);
    ASSERT_TRUE(read.ok()) << read.error().message;
    EXPECT_TRUE(read->verify(message, *signature));
    EXPECT_EQ(read->key_id(), key->public_key().key_id());
  }
  auto again = SigningKey::from_text(key->private_key_pem());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->public_key().key_id(), key->public_key().key_id());
  EXPECT_FALSE(VerifyingKey::from_text("AAAA").ok());
  EXPECT_FALSE(SigningKey::from_text("-----BEGIN PRIVATE KEY-----\nAAAA\n").ok());
}

TEST(SigningKey, SeedTextIsTheRfc8032PrivateKey) {
  // RFC 8032 section 7.1, test 1: the seed and its public key.
  const std::string seed_hex = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
  std::string seed;
  for (size_t i = 0; i < seed_hex.size(); i += 2)
    seed += static_cast<char>(std::stoi(seed_hex.substr(i, 2), nullptr, 16));
  auto key = SigningKey::from_text(checkpoints::base64_encode(seed));
  ASSERT_TRUE(key.ok()) << key.error().message;
  auto raw = checkpoints::base64_decode(key->public_key().public_key_base64());
  ASSERT_TRUE(raw.ok());
  std::string hex;
  for (unsigned char c : *raw) {
    char buffer[3];
    std::snprintf(buffer, sizeof buffer, "%02x", c);
    hex += buffer;
  }
  EXPECT_EQ(hex, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  auto empty_signature = key->sign("");
  ASSERT_TRUE(empty_signature.ok());
  auto signature = checkpoints::base64_decode(*empty_signature);
  ASSERT_TRUE(signature.ok());
  EXPECT_EQ(static_cast<unsigned char>((*signature)[0]), 0xe5);   // RFC 8032: e5564300...
  EXPECT_EQ(static_cast<unsigned char>((*signature)[63]), 0x0b);  // ...5fb8290b
}

TEST(SigningKey, KeyFileIsCreatedPrivateAndReadBack) {
  const std::filesystem::path directory =
      std::filesystem::temp_directory_path() / ("stub-key-" + std::to_string(::getpid()));
  std::filesystem::create_directories(directory);
  const std::string path = (directory / "signing.pem").string();
  std::filesystem::remove(path);
  auto created = SigningKey::load_or_create(path);
  ASSERT_TRUE(created.ok()) << created.error().message;
  struct stat status {};
  ASSERT_EQ(::stat(path.c_str(), &status), 0);
  EXPECT_EQ(status.st_mode & 0777, 0600u);
  auto loaded = SigningKey::load_or_create(path);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->public_key().key_id(), created->public_key().key_id());
  ::chmod(path.c_str(), 0644);
  auto open_to_others = SigningKey::load_or_create(path);
  ASSERT_FALSE(open_to_others.ok());
  EXPECT_NE(open_to_others.error().message.find("chmod 600"), std::string::npos);
  std::filesystem::remove_all(directory);
}

std::vector<Entry> chain_of(int count) {
  std::vector<Entry> entries;
  for (int seq = 1; seq <= count; ++seq) {
    Entry entry;
    entry.seq = seq;
    entry.hash = std::string(63, 'a') + static_cast<char>('0' + seq % 10);
    entries.push_back(entry);
  }
  return entries;
}

Checkpoint at(const std::vector<Entry>& entries, int64_t seq) {
  Checkpoint checkpoint = sample();
  checkpoint.seq = seq;
  checkpoint.hash = entries[static_cast<size_t>(seq - 1)].hash;
  return checkpoint;
}

TEST(CheckpointMatcher, AgreesWithTheChainItSigned) {
  const auto entries = chain_of(9);
  CheckpointMatcher matcher({at(entries, 6), at(entries, 3), at(entries, 9)});
  for (const Entry& entry : entries)
    matcher.feed(entry);
  const auto report = matcher.finish(9, 9);
  EXPECT_FALSE(report.first_contradicted);
  EXPECT_EQ(report.checked, 3);
  EXPECT_EQ(report.latest_seq, 9);
}

TEST(CheckpointMatcher, NamesTheFirstCheckpointARewriteContradicts) {
  const auto entries = chain_of(9);
  std::vector<Checkpoint> signed_checkpoints{at(entries, 3), at(entries, 6), at(entries, 9)};
  auto rewritten = entries;
  for (size_t index = 4; index < rewritten.size(); ++index)
    rewritten[index].hash = std::string(64, 'f');  // seq 5 on, every hash recomputed
  CheckpointMatcher matcher(signed_checkpoints);
  for (const Entry& entry : rewritten)
    matcher.feed(entry);
  const auto report = matcher.finish(9, 9);
  ASSERT_TRUE(report.first_contradicted);
  EXPECT_EQ(report.first_contradicted->seq, 6);
  EXPECT_EQ(report.checked, 1);
  EXPECT_NE(report.problem.find("rewritten"), std::string::npos);
}

TEST(CheckpointMatcher, NamesTheFirstCheckpointBeyondATruncatedHead) {
  const auto entries = chain_of(9);
  CheckpointMatcher matcher({at(entries, 3), at(entries, 6), at(entries, 9)});
  for (int seq = 1; seq <= 5; ++seq)
    matcher.feed(entries[static_cast<size_t>(seq - 1)]);
  const auto report = matcher.finish(5, 5);
  ASSERT_TRUE(report.first_contradicted);
  EXPECT_EQ(report.first_contradicted->seq, 6);
  EXPECT_NE(report.problem.find("cut from the end"), std::string::npos);
  // A chain broken before a checkpoint does not prove it either.
  CheckpointMatcher broken({at(entries, 6)});
  for (const Entry& entry : entries)
    broken.feed(entry);
  const auto broken_report = broken.finish(4, 9);
  ASSERT_TRUE(broken_report.first_contradicted);
  EXPECT_NE(broken_report.problem.find("breaks at seq 5"), std::string::npos);
}

}  // namespace
}  // namespace stub
